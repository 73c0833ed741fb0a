//! The README is part of the product: every option has its row, spelled as
//! the code spells it.

use switchyard::RawConfig;

#[test]
fn every_option_has_a_readme_row_with_its_flag() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md"))
        .expect("README.md");
    for (key, flag) in RawConfig::options() {
        let row = readme
            .lines()
            .find(|l| l.starts_with(&format!("| `{key}`")))
            .unwrap_or_else(|| panic!("README has no row for `{key}`"));
        if let Some(flag) = flag {
            assert!(
                row.contains(&format!("`{flag}")),
                "the `{key}` row lacks `{flag}`: {row}"
            );
        }
    }
}
