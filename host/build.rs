//! Builds the built-in strategies (`strategies/modules/*.rs`) for
//! `wasm32-unknown-unknown` and precompiles them with the same wasmtime
//! configuration the host runs, so `switchyard` starts them without compiling.
//!
//! The nested cargo uses its own target directory under `OUT_DIR` (sharing the
//! outer one would deadlock on its lock) and inherits cargo's jobserver, so it
//! respects `-j`.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::{env, fs};

#[allow(dead_code)]
mod engine_config {
    include!("src/strategy/engine_config.rs");
}

/// (built-in name, cdylib example name) in `strategy list` order.
const MODULES: &[(&str, &str)] = &[
    ("round-robin", "round_robin"),
    ("weighted-round-robin", "weighted_round_robin"),
    ("least-connections", "least_connections"),
    ("power-of-two", "power_of_two"),
    ("resource-aware", "resource_aware"),
    ("consistent-hash", "consistent_hash"),
    ("random", "random"),
];

fn main() {
    let manifest = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let root = manifest.parent().unwrap().to_path_buf();
    for dir in ["strategies", "guest-sdk"] {
        println!("cargo:rerun-if-changed={}", root.join(dir).display());
    }
    println!("cargo:rerun-if-changed=src/strategy/engine_config.rs");
    let out = PathBuf::from(env::var("OUT_DIR").unwrap());
    let wasm_dir = build_modules(&root, &out);

    let engine =
        wasmtime::Engine::new(&engine_config::engine_config(engine_config::Metering::Fuel))
            .expect("wasmtime engine");
    let mut hasher = DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    let hash = hasher.finish();

    let mut table = String::new();
    table.push_str(&format!(
        "/// Compatibility hash of the engine that precompiled the built-ins.\n\
         pub const PRECOMPILED_HASH: u64 = {hash:#x};\n\
         /// The built-in strategies: name, WebAssembly, precompiled artifact.\n\
         pub static BUILTIN_MODULES: &[BuiltinModule] = &[\n"
    ));
    for (name, file) in MODULES {
        let wasm = wasm_dir.join(format!("{file}.wasm"));
        let bytes = fs::read(&wasm).unwrap_or_else(|e| panic!("{}: {e}", wasm.display()));
        let cwasm = engine
            .precompile_module(&bytes)
            .unwrap_or_else(|e| panic!("precompiling {name}: {e:?}"));
        let wasm_out = out.join(format!("{file}.wasm"));
        let cwasm_out = out.join(format!("{file}.cwasm"));
        fs::write(&wasm_out, &bytes).unwrap();
        fs::write(&cwasm_out, &cwasm).unwrap();
        table.push_str(&format!(
            "    BuiltinModule {{ name: {name:?}, wasm: include_bytes!({:?}), cwasm: include_bytes!({:?}) }},\n",
            wasm_out.display().to_string(),
            cwasm_out.display().to_string()
        ));
    }
    table.push_str("];\n");
    fs::write(out.join("builtins.rs"), table).unwrap();
}

fn build_modules(root: &Path, out: &Path) -> PathBuf {
    let target_dir = out.join("strategies-target");
    let cargo = env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(root)
        .args([
            "build",
            "--quiet",
            "--package",
            "switchyard-strategies",
            "--examples",
            "--target",
            "wasm32-unknown-unknown",
            "--profile",
            "strategy",
            "--locked",
        ])
        .arg("--target-dir")
        .arg(&target_dir);
    // Flags meant for the host target must not leak into the wasm build.
    for (key, _) in env::vars() {
        if key.starts_with("CARGO_FEATURE_")
            || key.starts_with("CARGO_CFG_")
            || key == "CARGO_ENCODED_RUSTFLAGS"
            || key == "RUSTFLAGS"
            || key == "CARGO_TARGET_DIR"
            || key == "CARGO_BUILD_TARGET"
            || key == "RUSTC_WORKSPACE_WRAPPER"
        {
            cmd.env_remove(key);
        }
    }
    let status = cmd
        .status()
        .expect("running cargo for the built-in strategies");
    if !status.success() {
        panic!(
            "building the built-in strategies for wasm32-unknown-unknown failed.\n\
             If the target is missing, run: rustup target add wasm32-unknown-unknown\n\
             (the README's `./switchyard.sh` and `.ci/run` do this for you)"
        );
    }
    target_dir.join("wasm32-unknown-unknown/strategy/examples")
}
