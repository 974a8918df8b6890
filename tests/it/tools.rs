//! The optional-tool helper (`calc_tests::tools`) end to end: a test whose tool is missing skips
//! with one line on a normal run and fails under `CALC_TEST_REQUIRE_TOOLS=1`; and every tool a
//! test needs is in the README's install line and installed by `.ci/run`.

use std::collections::BTreeSet;
use std::io::Write;
use std::path::Path;
use std::process::{Command, Output};

use calc_tests::tools::{Tool, REQUIRE_TOOLS_ENV};
use calc_tests::{require_tools, scratch_dir, workspace_root};

/// What [`fixture_needs_cmake`] prints once `require_tools!` let it through.
const PAST: &str = "fixture_needs_cmake: ran past require_tools";

/// Not a test of its own: [`a_missing_tool_skips_with_one_line_or_fails_when_required`] runs it
/// in a child process with a `PATH` it controls.
#[test]
#[ignore = "a fixture, run by a_missing_tool_skips_with_one_line_or_fails_when_required"]
fn fixture_needs_cmake() {
    require_tools!(Cmake);
    // Past libtest's capture of `eprintln!`, as the skip line is written.
    let _ = writeln!(std::io::stderr().lock(), "{PAST}");
}

/// Runs [`fixture_needs_cmake`] in this test binary with `PATH=path` and, when `require`,
/// `CALC_TEST_REQUIRE_TOOLS=1`.
fn run_fixture(path: &Path, require: bool) -> Output {
    let mut cmd = Command::new(std::env::current_exe().expect("own path"));
    cmd.args(["--ignored", "--exact", "fixture_needs_cmake"])
        .env("PATH", path)
        .env_remove(REQUIRE_TOOLS_ENV);
    if require {
        cmd.env(REQUIRE_TOOLS_ENV, "1");
    }
    cmd.output().expect("the test binary runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn a_missing_tool_skips_with_one_line_or_fails_when_required() {
    let dir = scratch_dir(&format!("tools-path-{}", std::process::id()));
    let empty = dir.join("empty");
    let with_cmake = dir.join("with-cmake");
    for d in [&empty, &with_cmake] {
        std::fs::create_dir_all(d).unwrap();
    }
    let fake = with_cmake.join("cmake");
    std::fs::write(&fake, "#!/bin/sh\nexit 0\n").unwrap();
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&fake, std::fs::Permissions::from_mode(0o755)).unwrap();
    }
    let line = "skipped fixture_needs_cmake: needs cmake (apt-get install cmake)";

    // Present: the test runs on, with no skip line, even when tools are required.
    for require in [false, true] {
        let out = run_fixture(&with_cmake, require);
        let stderr = text(&out.stderr);
        assert!(out.status.success(), "require={require}: {stderr}");
        assert!(stderr.contains(PAST), "require={require}: {stderr}");
        assert!(!stderr.contains("skipped"), "require={require}: {stderr}");
    }

    // Missing: one line, shown although libtest captures a passing test's output, and a pass.
    let out = run_fixture(&empty, false);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(out.status.success(), "{stdout}{stderr}");
    assert!(!stderr.contains(PAST), "{stderr}");
    let skips: Vec<&str> = stdout
        .lines()
        .chain(stderr.lines())
        .filter(|l| l.contains("skipped"))
        .collect();
    assert_eq!(skips, [line], "{stdout}{stderr}");
    assert!(stdout.contains("test result: ok. 1 passed"), "{stdout}");

    // Missing under CALC_TEST_REQUIRE_TOOLS=1: a failure that says why.
    let out = run_fixture(&empty, true);
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert!(!out.status.success(), "{stdout}{stderr}");
    assert!(!stderr.contains(PAST), "{stderr}");
    assert!(
        stdout.contains(line) || stderr.contains(line),
        "{stdout}{stderr}"
    );
    assert!(stdout.contains("test result: FAILED"), "{stdout}");
}

/// The tools named in `require_tools!(...)` invocations of the `.rs` files under `dir`.
fn required_tools(dir: &Path, found: &mut BTreeSet<String>) {
    for entry in std::fs::read_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display())) {
        let path = entry.unwrap().path();
        if path.is_dir() {
            required_tools(&path, found);
            continue;
        }
        if path.extension().and_then(|e| e.to_str()) != Some("rs") {
            continue;
        }
        let source = std::fs::read_to_string(&path).unwrap();
        for call in source.split("require_tools!(").skip(1) {
            let args = call.split(')').next().unwrap_or_default();
            let names: Vec<&str> = args.split(',').map(str::trim).collect();
            // A real invocation lists identifiers (this file also mentions the macro in text).
            if names
                .iter()
                .all(|n| n.chars().all(|c| c.is_ascii_alphanumeric()))
            {
                found.extend(
                    names
                        .into_iter()
                        .filter(|n| !n.is_empty())
                        .map(String::from),
                );
            }
        }
    }
}

#[test]
fn every_tool_a_test_needs_is_in_the_readme_install_line_and_installed_by_ci() {
    let root = workspace_root();
    let mut used = BTreeSet::new();
    required_tools(&root.join("tests/it"), &mut used);
    let tools: Vec<Tool> = used
        .iter()
        .map(|name| {
            *Tool::ALL
                .iter()
                .find(|t| format!("{t:?}") == *name)
                .unwrap_or_else(|| panic!("require_tools!({name}): no such Tool"))
        })
        .collect();
    // Guards the scan itself.
    for expected in [Tool::Libclang, Tool::Clang, Tool::Valgrind] {
        assert!(
            tools.contains(&expected),
            "{expected:?} not found in {used:?}"
        );
    }

    let readme = std::fs::read_to_string(root.join("README.md")).unwrap();
    let install = readme
        .lines()
        .find(|l| l.starts_with("apt-get install ") && l.contains(Tool::Libclang.package()))
        .unwrap_or_else(|| panic!("README.md has no `apt-get install` line for the tools"));
    let listed: Vec<&str> = install.split_whitespace().collect();
    assert!(
        readme.contains(&format!("{REQUIRE_TOOLS_ENV}=1")),
        "README.md does not mention {REQUIRE_TOOLS_ENV}=1"
    );
    let ci = std::fs::read_to_string(root.join(".ci/run")).unwrap();
    assert!(
        ci.lines()
            .any(|l| l.trim() == format!("export {REQUIRE_TOOLS_ENV}=1")),
        ".ci/run does not export {REQUIRE_TOOLS_ENV}=1"
    );
    for tool in tools {
        for package in tool.package().split_whitespace() {
            assert!(
                listed.contains(&package),
                "README.md's `{install}` lacks {package}"
            );
        }
        assert!(
            ci.contains(&format!("need_apt+=({})", tool.package())),
            ".ci/run does not install {}",
            tool.package()
        );
    }
}
