//! `switchyard strategy new NAME --lang LANG`: a ready project that builds,
//! passes `check` and passes its own cases without edits.
//!
//! The templates are the examples under `examples/strategies/` (and the Rust
//! one under `examples/canary-strategy/`) with the SDK copied in, so what a
//! user starts from is exactly what the language tests build and run.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, bail};

use crate::flags::{Lang, NewArgs};

const CASES: &str = include_str!("../../../examples/strategies/canary.cases.toml");

/// `(path in the project, contents)`.
type Files = Vec<(&'static str, String)>;

fn files(lang: Lang, name: &str) -> Files {
    let ex = |s: &str| s.replace("canary.wasm", "strategy.wasm");
    match lang {
        Lang::C => vec![
            (
                "strategy.c",
                include_str!("../../../examples/strategies/c/canary.c")
                    .replace("canary.c", "strategy.c"),
            ),
            (
                "Makefile",
                ex(include_str!("../../../examples/strategies/c/Makefile"))
                    .replace("canary.c", "strategy.c")
                    .replace("SDK = ../../../guest-sdk/c", "SDK = sdk"),
            ),
            (
                "sdk/switchyard.h",
                include_str!("../../../guest-sdk/c/switchyard.h").into(),
            ),
        ],
        Lang::Zig => vec![
            (
                "strategy.zig",
                include_str!("../../../examples/strategies/zig/canary.zig").into(),
            ),
            (
                "build.sh",
                ex(include_str!("../../../examples/strategies/zig/build.sh"))
                    .replace("canary.zig", "strategy.zig")
                    .replace("../../../guest-sdk/zig", "sdk"),
            ),
            (
                "sdk/switchyard.zig",
                include_str!("../../../guest-sdk/zig/switchyard.zig").into(),
            ),
        ],
        Lang::Assemblyscript => vec![
            (
                "strategy.ts",
                include_str!("../../../examples/strategies/assemblyscript/canary.ts")
                    .replace(
                        "../../../guest-sdk/assemblyscript/assembly/index",
                        "./sdk/index",
                    )
                    .replace("canary.ts", "strategy.ts"),
            ),
            (
                "build.sh",
                ex(include_str!(
                    "../../../examples/strategies/assemblyscript/build.sh"
                ))
                .replace("canary.ts", "strategy.ts"),
            ),
            (
                "package.json",
                format!(
                    "{{\n  \"name\": \"{name}\",\n  \"private\": true,\n  \"scripts\": {{ \"build\": \"./build.sh\" }},\n  \"devDependencies\": {{ \"assemblyscript\": \"0.28.20\" }}\n}}\n"
                ),
            ),
            (
                "sdk/index.ts",
                include_str!("../../../guest-sdk/assemblyscript/assembly/index.ts").into(),
            ),
        ],
        Lang::Go => vec![
            (
                "strategy.go",
                include_str!("../../../examples/strategies/go/canary.go").into(),
            ),
            (
                "go.mod",
                include_str!("../../../examples/strategies/go/go.mod")
                    .replace("module canary", &format!("module {}", go_module(name)))
                    .replace("=> ../../../guest-sdk/go", "=> ./sdk"),
            ),
            (
                "build.sh",
                ex(include_str!("../../../examples/strategies/go/build.sh")),
            ),
            (
                "sdk/go.mod",
                include_str!("../../../guest-sdk/go/go.mod").into(),
            ),
            (
                "sdk/switchyard.go",
                include_str!("../../../guest-sdk/go/switchyard.go").into(),
            ),
        ],
        Lang::Wat => vec![(
            "strategy.wat",
            include_str!("../../../examples/strategies/wat/canary.wat").into(),
        )],
        Lang::Rust => vec![
            (
                "Cargo.toml",
                format!(
                    r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2024"
publish = false

[lib]
crate-type = ["cdylib"]

[dependencies]
switchyard-guest = {{ path = "sdk", features = ["panic-handler"] }}

# Small, fast modules: one codegen unit, link-time optimisation, abort on
# panic (a panic traps, and the host falls back and logs it).
[profile.release]
opt-level = 3
lto = true
codegen-units = 1
panic = "abort"

# A project of its own, even when created inside another cargo workspace.
[workspace]
"#
                ),
            ),
            (
                "src/lib.rs",
                include_str!("../../../examples/canary-strategy/src/lib.rs")
                    .lines()
                    .filter(|l| {
                        !l.starts_with("//! Build:")
                            && !l.starts_with("//! Check:")
                            && !l.starts_with("//! Serve:")
                    })
                    .collect::<Vec<_>>()
                    .join("\n")
                    + "\n",
            ),
            (
                "build.sh",
                format!(
                    "#!/usr/bin/env bash\n# Builds strategy.wasm (rustup target add wasm32-unknown-unknown once).\nset -euo pipefail\ncd \"$(dirname \"$0\")\"\nOUT=${{OUT:-strategy.wasm}}\ncargo build --release --target wasm32-unknown-unknown\ncp target/wasm32-unknown-unknown/release/{}.wasm \"$OUT\"\n",
                    name.replace('-', "_")
                ),
            ),
            (
                "sdk/Cargo.toml",
                r#"[package]
name = "switchyard-guest"
version = "0.1.0"
edition = "2024"
license = "MIT"
publish = false

[features]
panic-handler = []
"#
                .into(),
            ),
            (
                "sdk/src/lib.rs",
                include_str!("../../../guest-sdk/src/lib.rs").into(),
            ),
            (
                "sdk/src/layout.rs",
                include_str!("../../../guest-sdk/src/layout.rs").into(),
            ),
            (
                "sdk/src/encode.rs",
                include_str!("../../../guest-sdk/src/encode.rs").into(),
            ),
            (
                "sdk/src/view.rs",
                include_str!("../../../guest-sdk/src/view.rs").into(),
            ),
        ],
    }
}

/// How to build, for the README and the closing message.
fn build_line(lang: Lang) -> &'static str {
    match lang {
        Lang::C => "make",
        Lang::Zig => {
            "ZIG=zig ./build.sh          # zig from PyPI: pip install ziglang; ZIG=\"python3 -m ziglang\""
        }
        Lang::Assemblyscript => "npm install && ./build.sh",
        Lang::Go => "./build.sh                 # Go 1.24 or later",
        Lang::Wat => "# nothing to build: switchyard loads strategy.wat as it is",
        Lang::Rust => "./build.sh",
    }
}

fn artifact(lang: Lang) -> &'static str {
    match lang {
        Lang::Wat => "strategy.wat",
        _ => "strategy.wasm",
    }
}

fn go_module(name: &str) -> String {
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '_' {
                c
            } else {
                '-'
            }
        })
        .collect()
}

pub fn run(args: NewArgs) -> anyhow::Result<ExitCode> {
    let dir: PathBuf = args.name.clone();
    let name = dir
        .file_name()
        .and_then(|n| n.to_str())
        .filter(|n| {
            !n.is_empty()
                && n.chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_')
                && n.starts_with(|c: char| c.is_ascii_alphabetic())
        })
        .with_context(|| {
            format!(
                "`{}`: a strategy's name starts with a letter and has only letters, digits, - and _",
                dir.display()
            )
        })?
        .to_string();
    if dir.exists() {
        bail!("{} exists already; choose a new name", dir.display());
    }
    let mut all = files(args.lang, &name);
    all.push((
        "cases.toml",
        CASES.replace("canary.cases.toml", "cases.toml"),
    ));
    all.push(("README.md", readme(args.lang, &name)));
    all.push((
        ".gitignore",
        "*.wasm\n*.cwasm\ntarget/\nnode_modules/\n.zig-cache/\n".into(),
    ));
    for (path, text) in &all {
        write(&dir, path, text)?;
    }
    println!(
        "created {} ({} strategy; starts as the canary example)",
        dir.display(),
        args.lang.name()
    );
    println!("  cd {}", dir.display());
    println!("  {}", build_line(args.lang));
    println!("  switchyard strategy check {}", artifact(args.lang));
    println!(
        "  switchyard strategy test {} --cases cases.toml",
        artifact(args.lang)
    );
    Ok(ExitCode::SUCCESS)
}

fn readme(lang: Lang, name: &str) -> String {
    format!(
        "# {name}\n\nA Switchyard strategy in {}, made by `switchyard strategy new`. It starts as\n\
the canary example: requests with `x-canary: 1` go to the last eligible\n\
backend, the rest to the least busy of the others. `cases.toml` says so,\n\
case by case; change both together.\n\n\
```sh\n{}\nswitchyard strategy check {art}\nswitchyard strategy test {art} --cases cases.toml\n\
switchyard serve --strategy {art}\n```\n\n\
The input layout is docs/abi.md of Switchyard; writing strategies in each\n\
language, the pitfalls and fuel are docs/strategies.md.{}\n",
        lang.name(),
        build_line(lang),
        if files(lang, name).iter().any(|(p, _)| p.starts_with("sdk/")) {
            " `sdk/` is a copy of\nthe SDK for this language."
        } else {
            ""
        },
        art = artifact(lang)
    )
}

fn write(dir: &Path, path: &str, text: &str) -> anyhow::Result<()> {
    let target = dir.join(path);
    if let Some(parent) = target.parent() {
        std::fs::create_dir_all(parent)
            .with_context(|| format!("creating {}", parent.display()))?;
    }
    std::fs::write(&target, text).with_context(|| format!("writing {}", target.display()))?;
    if path.ends_with(".sh") {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o755))?;
    }
    Ok(())
}
