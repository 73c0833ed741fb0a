//! Reads `builtins.list` and writes `$OUT_DIR/builtins.rs`: a module per
//! built-in (its file in `src/`), the `BuiltinKind` and `Builtin` enums that
//! run any of them natively, and the `BUILTINS` table. `host/build.rs` reads
//! the same list to build the WebAssembly modules, so one line here is all a
//! new built-in needs besides its file.

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
    let mut out = String::new();
    for e in &entries {
        let file = dir.join("src").join(format!("{}.rs", e.module));
        assert!(
            file.exists(),
            "builtins.list names {}, which is missing",
            file.display()
        );
        writeln!(
            out,
            "#[path = {:?}]\npub mod {};",
            file.display().to_string(),
            e.module
        )
        .unwrap();
    }
    out.push_str(
        "/// Every built-in strategy, in `strategy list` order.\n\
         #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]\n\
         pub enum BuiltinKind {\n",
    );
    for e in &entries {
        writeln!(out, "    /// `{}`: {}\n    {},", e.name, e.about, e.ty).unwrap();
    }
    out.push_str("}\n\nimpl BuiltinKind {\n    /// Every built-in, in list order.\n    pub const ALL: &'static [BuiltinKind] = &[");
    for e in &entries {
        write!(out, "BuiltinKind::{}, ", e.ty).unwrap();
    }
    out.push_str("];\n\n    /// Its name, as in `builtin:NAME`.\n    pub const fn name(self) -> &'static str {\n        match self {\n");
    for e in &entries {
        writeln!(out, "            BuiltinKind::{} => {:?},", e.ty, e.name).unwrap();
    }
    out.push_str("        }\n    }\n\n    /// One line on what it does.\n    pub const fn about(self) -> &'static str {\n        match self {\n");
    for e in &entries {
        writeln!(out, "            BuiltinKind::{} => {:?},", e.ty, e.about).unwrap();
    }
    out.push_str("        }\n    }\n\n    /// A fresh instance with its default configuration.\n    pub fn instantiate(self) -> Builtin {\n        match self {\n");
    for e in &entries {
        writeln!(
            out,
            "            BuiltinKind::{t} => Builtin::{t}(<{m}::{t} as Default>::default()),",
            t = e.ty,
            m = e.module
        )
        .unwrap();
    }
    out.push_str("        }\n    }\n}\n\n/// Any built-in, run natively (the host's fallback, tests, benchmarks).\n\
         /// Sized as its largest variant: there is no allocator to box with, and\n\
         /// instances live in statics and thread-locals, never on a hot stack.\n\
         #[allow(clippy::large_enum_variant)]\npub enum Builtin {\n");
    for e in &entries {
        writeln!(
            out,
            "    /// `{}`.\n    {t}({m}::{t}),",
            e.name,
            t = e.ty,
            m = e.module
        )
        .unwrap();
    }
    out.push_str("}\n\nimpl Builtin {\n    /// Which built-in this is.\n    pub fn kind(&self) -> BuiltinKind {\n        match self {\n");
    for e in &entries {
        writeln!(
            out,
            "            Builtin::{t}(_) => BuiltinKind::{t},",
            t = e.ty
        )
        .unwrap();
    }
    out.push_str("        }\n    }\n}\n\nimpl Default for Builtin {\n    fn default() -> Self {\n        BuiltinKind::ALL[0].instantiate()\n    }\n}\n\nimpl Strategy for Builtin {\n    fn configure(&mut self, config: &[u8]) -> Result<(), i32> {\n        match self {\n");
    for e in &entries {
        writeln!(
            out,
            "            Builtin::{t}(s) => s.configure(config),",
            t = e.ty
        )
        .unwrap();
    }
    out.push_str("        }\n    }\n\n    fn decide(&mut self, input: &Input<'_>) -> Option<usize> {\n        match self {\n");
    for e in &entries {
        writeln!(
            out,
            "            Builtin::{t}(s) => s.decide(input),",
            t = e.ty
        )
        .unwrap();
    }
    out.push_str("        }\n    }\n}\n");
    fs::write(
        PathBuf::from(env::var("OUT_DIR").unwrap()).join("builtins.rs"),
        out,
    )
    .unwrap();
}
