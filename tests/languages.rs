//! "Any WebAssembly language", shown: the canary strategy written in C, Zig,
//! AssemblyScript, Go, WAT and Rust is built with each language's real
//! compiler, passes `switchyard strategy check`, and passes the same cases
//! file (`examples/strategies/canary.cases.toml`) through
//! `switchyard strategy test`. So does every project `strategy new` makes.
//!
//! The compilers come from `scripts/toolchains.sh` (run by the test command):
//! clang and wasm-ld on the PATH, Zig, Go and AssemblyScript under
//! `target/toolchains`.

mod support;

use std::path::{Path, PathBuf};
use std::process::Command;

use support::TempDir;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

fn toolchains() -> PathBuf {
    root().join("target/toolchains")
}

/// A tool from `target/toolchains`, or a message saying how to get it.
fn tool(rel: &str) -> PathBuf {
    let path = toolchains().join(rel);
    assert!(
        path.exists(),
        "{} is missing: run `bash scripts/toolchains.sh` (scripts/test.sh does)",
        path.display()
    );
    path
}

/// Runs a build command with the toolchains' caches kept under `target/`.
fn build(mut cmd: Command, what: &str) {
    let caches = toolchains();
    let out = cmd
        .env("ZIG_GLOBAL_CACHE_DIR", caches.join("zig-cache"))
        .env("ZIG_LOCAL_CACHE_DIR", caches.join("zig-cache"))
        .env("GOCACHE", caches.join("go-cache"))
        .env("GOPATH", caches.join("go-path"))
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_TARGET_DIR")
        .output()
        .unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn switchyard(args: &[&str]) -> (i32, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_switchyard"))
        .args(args)
        .output()
        .expect("run switchyard");
    (
        out.status.code().unwrap_or(-1),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

/// `check` accepts `module` and `test` passes every case of `cases`.
fn checks_and_passes(module: &Path, cases: &Path) {
    let m = module.to_str().unwrap();
    let (code, out) = switchyard(&["strategy", "check", m]);
    assert_eq!(code, 0, "check refused {m}:\n{out}");
    assert!(out.contains("(declared, checked)"), "{out}");
    let (code, out) = switchyard(&["strategy", "test", m, "--cases", cases.to_str().unwrap()]);
    assert_eq!(code, 0, "cases failed for {m}:\n{out}");
    assert!(out.contains("16 passed, 0 failed"), "{out}");
}

/// The canaries list the one header they read (`switchyard_headers`), and
/// the host shows the list it checked.
fn lists_its_header(module: &Path, list: &str) {
    let (code, out) = switchyard(&["strategy", "check", module.to_str().unwrap()]);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains(&format!("headers ({list})")), "{out}");
}

fn example(lang: &str) -> PathBuf {
    root().join("examples/strategies").join(lang)
}

fn shared_cases() -> PathBuf {
    root().join("examples/strategies/canary.cases.toml")
}

fn c_build(dir: &Path, out: &Path) -> Command {
    let mut cmd = Command::new("make");
    cmd.current_dir(dir)
        .arg("-s")
        .arg(format!("OUT={}", out.display()));
    cmd
}

fn script(dir: &Path, out: &Path, var: &str, tool: PathBuf) -> Command {
    let mut cmd = Command::new("bash");
    cmd.current_dir(dir)
        .arg("build.sh")
        .env("OUT", out)
        .env(var, tool);
    cmd
}

#[test]
fn c_without_libc() {
    let tmp = TempDir::new("lang-c");
    let out = tmp.0.join("canary.wasm");
    build(c_build(&example("c"), &out), "make (C)");
    checks_and_passes(&out, &shared_cases());
    lists_its_header(&out, "x-canary");
}

#[test]
fn zig() {
    let tmp = TempDir::new("lang-zig");
    let out = tmp.0.join("canary.wasm");
    build(
        script(&example("zig"), &out, "ZIG", tool("py/ziglang/zig")),
        "zig build-exe",
    );
    checks_and_passes(&out, &shared_cases());
    lists_its_header(&out, "x-canary");
}

#[test]
fn assemblyscript() {
    let tmp = TempDir::new("lang-as");
    let out = tmp.0.join("canary.wasm");
    build(
        script(
            &example("assemblyscript"),
            &out,
            "ASC",
            tool("npm/node_modules/.bin/asc"),
        ),
        "asc",
    );
    checks_and_passes(&out, &shared_cases());
    lists_its_header(&out, "x-canary");

    // The leak a first AssemblyScript strategy often has (a `new` in every
    // decision under the stub runtime) is refused, with its rate.
    let leak = tmp.0.join("leak.wasm");
    let mut cmd = Command::new(tool("npm/node_modules/.bin/asc"));
    cmd.current_dir(root().join("tests/as")).args([
        "leak.ts",
        "-o",
        leak.to_str().unwrap(),
        "--runtime",
        "stub",
        "-O3",
    ]);
    build(cmd, "asc leak.ts");
    let (code, out) = switchyard(&["strategy", "check", leak.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(
        out.contains("its memory kept growing") && out.contains("bytes a decision"),
        "{out}"
    );

    // With the SDK's abort handler a failed assert needs no `env.abort`
    // import, and its text and place reach the refusal.
    let abort = tmp.0.join("abort.wasm");
    let mut cmd = Command::new(tool("npm/node_modules/.bin/asc"));
    cmd.current_dir(root().join("tests/as")).args([
        "abort.ts",
        "-o",
        abort.to_str().unwrap(),
        "--runtime",
        "stub",
        "-O3",
        "--use",
        "abort=../../guest-sdk/assemblyscript/assembly/index/abortHandler",
    ]);
    build(cmd, "asc abort.ts");
    let (code, out) = switchyard(&["strategy", "check", abort.to_str().unwrap()]);
    assert_eq!(code, 1, "{out}");
    assert!(!out.contains("env.abort"), "{out}");
    assert!(
        out.contains("(the module logged: abort: too many candidates at abort.ts:9:3)"),
        "{out}"
    );
}

/// Go's reactor needs `_initialize` called first. Its 2 MB module takes a
/// while to compile in a debug build, so it is compiled once to a `.cwasm`
/// (which `check` and `test` then load without compiling).
#[test]
fn go_reactor_through_a_precompiled_artifact() {
    let tmp = TempDir::new("lang-go");
    let out = tmp.0.join("canary.wasm");
    build(
        script(&example("go"), &out, "GO", tool("py/go/bin/go")),
        "go build",
    );
    let cwasm = tmp.0.join("canary.cwasm");
    let (code, text) = switchyard(&[
        "strategy",
        "compile",
        out.to_str().unwrap(),
        "-o",
        cwasm.to_str().unwrap(),
    ]);
    assert_eq!(code, 0, "{text}");
    checks_and_passes(&cwasm, &shared_cases());
    lists_its_header(&cwasm, "x-canary");
    let (_, report) = switchyard(&["strategy", "check", cwasm.to_str().unwrap()]);
    assert!(report.contains("_initialize (func)"), "{report}");
    assert!(report.contains("precompiled (a .cwasm file)"), "{report}");
}

#[test]
fn wat_by_hand() {
    let wat = example("wat").join("canary.wat");
    checks_and_passes(&wat, &shared_cases());
    lists_its_header(&wat, "x-canary");
}

#[test]
fn rust_sdk_example_passes_the_same_cases() {
    let wasm = support::build_canary();
    checks_and_passes(&wasm, &shared_cases());
    lists_its_header(&wasm, "x-canary, cookie");
}

/// Every `strategy new` template builds with nothing but its build line,
/// passes `check`, and passes its own cases file.
#[test]
fn every_new_project_builds_checks_and_passes_its_cases() {
    let tmp = TempDir::new("lang-new");
    for (lang, builder) in [
        ("c", None),
        ("zig", Some(("ZIG", "py/ziglang/zig"))),
        ("assemblyscript", Some(("ASC", "npm/node_modules/.bin/asc"))),
        ("go", Some(("GO", "py/go/bin/go"))),
        ("rust", Some(("", ""))),
        ("wat", None),
    ] {
        let dir = tmp.0.join(format!("my-{lang}"));
        let (code, text) = switchyard(&["strategy", "new", dir.to_str().unwrap(), "--lang", lang]);
        assert_eq!(code, 0, "{text}");
        assert!(dir.join("cases.toml").exists() && dir.join("README.md").exists());
        let module = if lang == "wat" {
            dir.join("strategy.wat")
        } else {
            dir.join("strategy.wasm")
        };
        match (lang, builder) {
            ("c", _) => build(c_build(&dir, &module), "make (new C project)"),
            ("wat", _) => {}
            (_, Some(("", _))) => {
                let mut cmd = Command::new("bash");
                cmd.current_dir(&dir).arg("build.sh");
                build(cmd, "build.sh (new Rust project)");
            }
            (_, Some((var, path))) => build(
                script(&dir, &module, var, tool(path)),
                &format!("build.sh (new {lang} project)"),
            ),
            _ => unreachable!(),
        }
        checks_and_passes(&module, &dir.join("cases.toml"));
    }
    let (code, text) = switchyard(&[
        "strategy",
        "new",
        tmp.0.join("my-c").to_str().unwrap(),
        "--lang",
        "c",
    ]);
    assert_ne!(code, 0);
    assert!(text.contains("exists already"), "{text}");
}
