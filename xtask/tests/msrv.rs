//! The declared MSRV (`rust-version` of `[workspace.package]`) is one the locked dependency graph
//! can be built with: no locked dependency declares a newer minimum compiler.

use std::process::Command;

/// `"1.85"`, `"1.85.0"` as comparable numbers (missing parts are 0).
fn version(text: &str) -> Result<(u64, u64, u64), String> {
    let mut parts = text.split('.').map(|p| {
        p.parse::<u64>()
            .map_err(|e| format!("rust-version {text:?}: {e}"))
    });
    let mut next = || parts.next().unwrap_or(Ok(0));
    Ok((next()?, next()?, next()?))
}

/// Every locked package outside the workspace whose `rust-version` is newer than `msrv`, as
/// `name version (rust-version X)`.
fn too_new(metadata: &serde_json::Value, msrv: &str) -> Result<Vec<String>, String> {
    let msrv = version(msrv)?;
    let members: Vec<&str> = metadata["workspace_members"]
        .as_array()
        .ok_or("cargo metadata has no workspace_members")?
        .iter()
        .filter_map(|m| m.as_str())
        .collect();
    let mut found = Vec::new();
    for package in metadata["packages"]
        .as_array()
        .ok_or("cargo metadata has no packages")?
    {
        let id = package["id"].as_str().unwrap_or_default();
        let Some(needs) = package["rust_version"].as_str() else {
            continue;
        };
        if !members.contains(&id) && version(needs)? > msrv {
            found.push(format!(
                "{} {} (rust-version {needs})",
                package["name"].as_str().unwrap_or("?"),
                package["version"].as_str().unwrap_or("?")
            ));
        }
    }
    Ok(found)
}

/// `cargo metadata` of the whole locked graph. Not `--offline`: the graph includes packages
/// for other platforms (Windows consoles, say) that a build here never downloads, so on a
/// fresh machine their manifests have to be fetched, as the build fetched the others.
fn metadata() -> serde_json::Value {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .current_dir(xtask::workspace_root())
        .args(["metadata", "--format-version", "1", "--locked"])
        .output()
        .expect("cargo runs");
    assert!(
        out.status.success(),
        "cargo metadata --locked failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("cargo metadata prints JSON")
}

#[test]
fn no_locked_dependency_needs_a_newer_compiler_than_the_declared_msrv() {
    let root = xtask::workspace_root();
    let msrv = xtask::workspace_package_field(&root, "rust-version").unwrap();
    let metadata = metadata();
    let found = too_new(&metadata, &msrv).unwrap();
    assert!(
        found.is_empty(),
        "Cargo.toml declares rust-version = \"{msrv}\", but these locked dependencies need a \
         newer Rust: {}",
        found.join(", ")
    );

    // Every workspace package that declares a rust-version inherits the workspace's.
    for package in metadata["packages"].as_array().unwrap() {
        if let Some(own) = package["rust_version"].as_str() {
            let id = package["id"].as_str().unwrap();
            let is_member = metadata["workspace_members"]
                .as_array()
                .unwrap()
                .iter()
                .any(|m| m.as_str() == Some(id));
            if is_member {
                assert_eq!(own, msrv, "{}", package["name"]);
            }
        }
    }
}

#[test]
fn a_dependency_newer_than_the_msrv_is_named() {
    let metadata = serde_json::json!({
        "workspace_members": ["ws 1.0.0"],
        "packages": [
            {"id": "ws 1.0.0", "name": "ws", "version": "1.0.0", "rust_version": "1.99"},
            {"id": "old 1.0.0", "name": "old", "version": "1.0.0", "rust_version": "1.85.0"},
            {"id": "new 2.3.0", "name": "new", "version": "2.3.0", "rust_version": "1.91"},
            {"id": "none 1.0.0", "name": "none", "version": "1.0.0", "rust_version": null},
        ]
    });
    assert_eq!(
        too_new(&metadata, "1.90").unwrap(),
        ["new 2.3.0 (rust-version 1.91)"]
    );
    assert!(too_new(&metadata, "1.91").unwrap().is_empty());
    assert!(too_new(&metadata, "1.91.1").unwrap().is_empty());
    assert!(version("1.x").is_err());
}
