//! The checked-in headers are generated: regenerating them must change nothing.

#[test]
fn headers_are_up_to_date() {
    let root = xtask::workspace_root();
    for (rel, expected) in xtask::generated_headers(&root).expect("headers generate") {
        let actual = std::fs::read_to_string(root.join(&rel))
            .unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
        assert!(
            actual == expected,
            "{} differs from what the Rust ABI definitions generate; run `cargo xtask headers`",
            rel.display()
        );
    }
}

#[test]
fn sdk_version_in_header_matches_cargo_toml() {
    let root = xtask::workspace_root();
    let version = xtask::workspace_version(&root).unwrap();
    let header = std::fs::read_to_string(root.join("include/calc_plugin.h")).unwrap();
    assert!(header.contains(&format!("#define CALC_SDK_VERSION \"{version}\"")));
}
