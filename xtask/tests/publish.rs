//! The publishable crates carry what a registry needs, and `.ci/run` packages every one of them
//! (`cargo package` builds each from its packaged sources, against the others packaged with it).

use std::process::Command;

/// The workspace's packages as `cargo metadata --no-deps` reports them.
fn workspace_packages() -> Vec<serde_json::Value> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(xtask::workspace_root())
        .args([
            "metadata",
            "--format-version",
            "1",
            "--no-deps",
            "--offline",
        ])
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo metadata failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metadata: serde_json::Value =
        serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON");
    metadata["packages"].as_array().unwrap().clone()
}

/// `publish = false` shows as an empty list of registries.
fn publishable(package: &serde_json::Value) -> bool {
    package["publish"].as_array().is_none_or(|r| !r.is_empty())
}

#[test]
fn publishable_crates_have_registry_metadata_and_license_files() {
    let root = xtask::workspace_root();
    for file in ["LICENSE-MIT", "LICENSE-APACHE"] {
        assert!(root.join(file).is_file(), "{file} is missing");
    }
    let packages = workspace_packages();
    let names: Vec<&str> = packages
        .iter()
        .filter(|p| publishable(p))
        .map(|p| p["name"].as_str().unwrap())
        .collect();
    assert_eq!(names.len(), 7, "publishable: {names:?}");
    for package in packages.iter().filter(|p| publishable(p)) {
        let name = package["name"].as_str().unwrap();
        for field in ["description", "license", "readme", "rust_version"] {
            assert!(
                package[field].as_str().is_some_and(|v| !v.is_empty()),
                "{name} has no {field}"
            );
        }
        for field in ["keywords", "categories"] {
            assert!(
                package[field].as_array().is_some_and(|v| !v.is_empty()),
                "{name} has no {field}"
            );
        }
        assert_eq!(package["license"], "MIT OR Apache-2.0", "{name}");
        // The license texts travel with the crate: each package folder links to them.
        let dir = std::path::Path::new(package["manifest_path"].as_str().unwrap())
            .parent()
            .unwrap();
        for file in ["LICENSE-MIT", "LICENSE-APACHE"] {
            let text = std::fs::read_to_string(dir.join(file))
                .unwrap_or_else(|e| panic!("{name}: {file}: {e}"));
            let original = std::fs::read_to_string(root.join(file)).unwrap();
            assert_eq!(text, original, "{name}: {file}");
        }
    }
}

#[test]
fn ci_packages_every_publishable_crate() {
    let ci = std::fs::read_to_string(xtask::workspace_root().join(".ci/run")).unwrap();
    let line = ci
        .lines()
        .find(|l| l.trim_start().starts_with("cargo package"))
        .expect(".ci/run runs cargo package");
    for package in workspace_packages().iter().filter(|p| publishable(p)) {
        let name = package["name"].as_str().unwrap();
        assert!(
            line.contains(&format!("-p {name} ")) || line.ends_with(&format!("-p {name}")),
            ".ci/run does not package {name}: {line}"
        );
    }
}
