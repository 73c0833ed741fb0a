//! Reads `builtins.list` and writes `$OUT_DIR/builtins.rs`: one call of the
//! `builtins!` macro (lib.rs) with a line per built-in, which declares its
//! module and makes the `BuiltinKind` and `Builtin` enums that run any of
//! them natively. `host/build.rs` reads the same list to build the
//! WebAssembly modules, so one line there is all a new built-in needs besides
//! its file.

use std::fmt::Write as _;
use std::path::PathBuf;
use std::{env, fs};

/// One line of `builtins.list`.
struct Entry {
    name: String,
    module: String,
    ty: String,
    about: String,
}

fn parse(text: &str) -> Vec<Entry> {
    text.lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| {
            let (name, rest) = l.split_once(char::is_whitespace).expect("name and type");
            let rest = rest.trim_start();
            let (path, about) = rest.split_once(char::is_whitespace).unwrap_or((rest, ""));
            let (module, ty) = path
                .split_once("::")
                .unwrap_or_else(|| panic!("builtins.list: `{path}` is not module::Type"));
            Entry {
                name: name.to_string(),
                module: module.to_string(),
                ty: ty.to_string(),
                about: about.trim().to_string(),
            }
        })
        .collect()
}

fn main() {
    let dir = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let list = dir.join("builtins.list");
    println!("cargo:rerun-if-changed={}", list.display());
    let entries = parse(&fs::read_to_string(&list).expect("strategies/builtins.list"));
    // One macro call; `builtins!` in lib.rs turns it into the modules and
    // the enums.
    let mut out = String::from("builtins! {\n");
    for e in &entries {
        let file = dir.join("src").join(format!("{}.rs", e.module));
        assert!(
            file.exists(),
            "builtins.list names {}, which is missing",
            file.display()
        );
        writeln!(
            out,
            "    {:?} {} {} {:?} {:?};",
            e.name,
            e.module,
            e.ty,
            file.display().to_string(),
            e.about
        )
        .unwrap();
    }
    out.push_str("}\n");
    fs::write(
        PathBuf::from(env::var("OUT_DIR").unwrap()).join("builtins.rs"),
        out,
    )
    .unwrap();
}
