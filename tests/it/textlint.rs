//! textlint, the second application on calc (`apps/textlint`): its plugins, in C and Rust,
//! implement textlint's own interface (`calc-apps.lint` 1.0, a bytes interface), and the
//! `textlint` binary checks files with them, in process and isolated, with their
//! configuration; refused plugin files are reported and skipped.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::OnceLock;

use calc_tests::{build_c_plugin, cargo_build, library_file_name, scratch_dir, workspace_root};

/// The `textlint` binary and a directory with its three plugins (`tabs` in C, `long_lines` in
/// C++, `trailing` in Rust), built once per process.
fn setup() -> &'static (PathBuf, PathBuf) {
    static SETUP: OnceLock<(PathBuf, PathBuf)> = OnceLock::new();
    SETUP.get_or_init(|| {
        let bin = cargo_build(&[
            "calc-textlint",
            "calc-textlint-trailing",
            "calc-plugin-runner",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        let dir = scratch_dir(&format!("textlint-{}", std::process::id()));
        let plugins = dir.join("plugins");
        let include = workspace_root().join("apps/textlint/include");
        build_c_plugin(
            &workspace_root().join("apps/textlint/plugins/tabs.c"),
            &plugins.join(library_file_name("tabs")),
            &["-I", include.to_str().unwrap()],
        )
        .unwrap_or_else(|e| panic!("{e}"));
        xtask::build::build_cpp_plugin_in(
            &workspace_root().join("apps/textlint/plugins/long_lines"),
            &[&include],
            &plugins.join(library_file_name("long_lines")),
        )
        .unwrap_or_else(|e| panic!("{e}"));
        let trailing = library_file_name("trailing");
        xtask::build::copy_fresh(&bin.join(&trailing), &plugins.join(&trailing))
            .unwrap_or_else(|e| panic!("{e}"));
        (bin.join("textlint"), plugins)
    })
}

fn textlint(args: &[&str]) -> Output {
    let (bin, _) = setup();
    Command::new(bin)
        .args(args)
        .output()
        .expect("textlint runs")
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// A file with a tab on line 2 and trailing spaces after it, and a clean one.
fn files(dir: &Path) -> (PathBuf, PathBuf) {
    std::fs::create_dir_all(dir).unwrap();
    let dirty = dir.join("dirty.txt");
    std::fs::write(&dirty, format!("{}\n\tindented  \nclean\n", "x".repeat(90))).unwrap();
    let clean = dir.join("clean.c");
    std::fs::write(&clean, "int x;\n").unwrap();
    (dirty, clean)
}

#[test]
fn textlint_checks_files_with_c_and_rust_plugins_in_process_and_isolated() {
    let (_, plugins) = setup();
    let dir = scratch_dir(&format!("textlint-files-{}", std::process::id()));
    let (dirty, clean) = files(&dir);
    let plugins = plugins.to_str().unwrap();
    for isolate in [false, true] {
        let mut args = vec!["--plugin-dir", plugins];
        if isolate {
            args.push("--isolate");
        }
        args.extend([
            "--set",
            "tabs.indent=4 spaces",
            "--set",
            "long_lines.max=80",
        ]);
        args.extend([dirty.to_str().unwrap(), clean.to_str().unwrap()]);
        let out = textlint(&args);
        assert_eq!(
            text(&out.stdout),
            format!(
                "{d}:1:81: line of 90 bytes, over 80 [long_lines]\n\
                 {d}:2:1: tab character #1 (use 4 spaces) [tabs]\n\
                 {d}:2:10: trailing whitespace [trailing]\n",
                d = dirty.display()
            ),
            "isolated: {isolate}; stderr: {}",
            text(&out.stderr)
        );
        assert_eq!(out.status.code(), Some(1), "findings: exit 1");
        assert_eq!(text(&out.stderr), "");

        let out = textlint(&[&args[..args.len() - 2], &[clean.to_str().unwrap()]].concat());
        assert_eq!(
            (out.status.code(), text(&out.stdout)),
            (Some(0), String::new())
        );
    }
}

#[test]
fn textlint_lists_its_plugins_and_skips_broken_files_with_one_line() {
    let (_, plugins) = setup();
    let out = textlint(&["--plugin-dir", plugins.to_str().unwrap(), "--list"]);
    let listing = text(&out.stdout);
    assert!(out.status.success(), "{listing}{}", text(&out.stderr));
    for plugin in ["long_lines", "tabs", "trailing"] {
        assert!(listing.contains(&format!("{plugin} 1.0.0 (")), "{listing}");
    }
    let out = textlint(&[
        "--plugin-dir",
        plugins.to_str().unwrap(),
        "--isolate",
        "--list",
    ]);
    assert_eq!(
        text(&out.stdout).matches(", isolated): *").count(),
        3,
        "{}",
        text(&out.stdout)
    );

    // A directory with a broken file beside a good plugin: the file is named and skipped.
    let dir = scratch_dir(&format!("textlint-broken-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let tabs = library_file_name("tabs");
    std::fs::copy(plugins.join(&tabs), dir.join(&tabs)).unwrap();
    let garbage = dir.join(library_file_name("garbage"));
    std::fs::write(&garbage, "not a library\n").unwrap();
    let (dirty, _) = files(&dir.join("files"));
    let out = textlint(&[
        "--plugin-dir",
        dir.to_str().unwrap(),
        dirty.to_str().unwrap(),
    ]);
    let stderr = text(&out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("textlint: skipped ") && stderr.contains(garbage.to_str().unwrap()),
        "{stderr}"
    );
    assert_eq!(
        text(&out.stdout),
        format!(
            "{}:2:1: tab character #1 (use spaces) [tabs]\n",
            dirty.display()
        )
    );
}

#[test]
fn a_plugin_refusing_its_configuration_is_reported() {
    let (_, plugins) = setup();
    let long = format!("tabs.indent={}", "x".repeat(100));
    let out = textlint(&[
        "--plugin-dir",
        plugins.to_str().unwrap(),
        "--set",
        &long,
        "--list",
    ]);
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("plugin tabs refused to start: indent: longer than 63 bytes"),
        "{stderr}"
    );
    assert!(
        !text(&out.stdout).contains("tabs 1.0.0"),
        "{}",
        text(&out.stdout)
    );
    // The C++ plugin, likewise, through its exception guard.
    let out = textlint(&[
        "--plugin-dir",
        plugins.to_str().unwrap(),
        "--set",
        "long_lines.max=abc",
        "--list",
    ]);
    assert!(
        text(&out.stderr).contains(
            "plugin long_lines refused to start: max: not a whole number from 1 to 100000"
        ),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn textlint_stdin_reloads_a_rebuilt_plugin_and_its_count_carries_over() {
    use std::io::{BufRead, BufReader, Write};
    use std::process::Stdio;
    let (bin, plugins) = setup();
    let dir = scratch_dir(&format!("textlint-reload-{}", std::process::id()));
    let live = dir.join("plugins");
    std::fs::create_dir_all(&live).unwrap();
    let tabs = library_file_name("tabs");
    std::fs::copy(plugins.join(&tabs), live.join(&tabs)).unwrap();
    let include = workspace_root().join("apps/textlint/include");
    let v2 = dir.join("v2").join(&tabs);
    build_c_plugin(
        &workspace_root().join("apps/textlint/plugins/tabs.c"),
        &v2,
        &["-I", include.to_str().unwrap(), "-DTABS_VERSION=\"2.0.0\""],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    let file = dir.join("one-tab.txt");
    std::fs::write(&file, "\tx\n").unwrap();

    let mut child = Command::new(bin)
        .args(["--plugin-dir", live.to_str().unwrap(), "--stdin"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("textlint starts");
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = BufReader::new(child.stdout.take().unwrap());
    let summary = format!("{}: 1 findings", file.display());
    // Checks the file once; returns its finding.
    let mut check = || {
        writeln!(stdin, "{}", file.display()).unwrap();
        stdin.flush().unwrap();
        let mut finding = String::new();
        stdout.read_line(&mut finding).unwrap();
        let mut last = String::new();
        stdout.read_line(&mut last).unwrap();
        assert_eq!(last.trim_end(), summary, "after {finding:?}");
        finding.trim_end().to_string()
    };
    let at = format!("{}:1:1: tab character", file.display());
    assert_eq!(check(), format!("{at} #1 (use spaces) [tabs]"));
    xtask::build::copy_fresh(&v2, &live.join(&tabs)).unwrap_or_else(|e| panic!("{e}"));
    // Checks go on with v1 until the watcher has seen the file quiet; then v2 answers, and its
    // numbering goes on from where v1 stopped: the count was handed over.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut checks = 1;
    let reloaded = loop {
        let finding = check();
        checks += 1;
        if finding.contains("; tabs 2.0.0") {
            break finding;
        }
        assert_eq!(finding, format!("{at} #{checks} (use spaces) [tabs]"));
        assert!(
            std::time::Instant::now() < deadline,
            "no reload within 20 s"
        );
    };
    assert_eq!(
        reloaded,
        format!("{at} #{checks} (use spaces; tabs 2.0.0) [tabs]")
    );
    drop(stdin);
    let out = child.wait_with_output().unwrap();
    let stderr = text(&out.stderr);
    assert!(
        stderr.contains("textlint: reloaded tabs 1.0.0 -> 2.0.0")
            && stderr.contains("of state handed over"),
        "{stderr}"
    );
}

/// `calc-abi`, the tool an application runs on its own interface's headers.
fn calc_abi(args: &[&std::ffi::OsStr]) -> Output {
    let dir = cargo_build(&["calc-abi"]).unwrap_or_else(|e| panic!("{e}"));
    Command::new(dir.join(format!("calc-abi{}", std::env::consts::EXE_SUFFIX)))
        .current_dir(workspace_root())
        .args(args)
        .output()
        .unwrap()
}

fn os(s: &str) -> &std::ffi::OsStr {
    s.as_ref()
}

#[test]
fn textlint_h_is_generated_from_the_rust_definition_by_calc_abi() {
    let header = "apps/textlint/include/textlint.h";
    // `calc-abi header` writing `out`, or with `--check` comparing it.
    let run = |out: &std::ffi::OsStr, check: bool| {
        let mut args = vec![
            os("header"),
            os("--config"),
            os("apps/textlint/interface/cbindgen.toml"),
            os("--out"),
            out,
        ];
        args.extend(check.then(|| os("--check")));
        args.push(os("apps/textlint/interface/src/abi.rs"));
        calc_abi(&args)
    };
    let out = run(os(header), true);
    assert!(out.status.success(), "{}", text(&out.stderr));
    // A header that differs is reported, not written.
    let stale = scratch_dir(&format!("textlint-abi-stale-{}", std::process::id())).join("t.h");
    std::fs::write(&stale, "/* old */\n").unwrap();
    let out = run(stale.as_os_str(), true);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        text(&out.stderr),
        format!(
            "calc-abi: {}: out of date (run calc-abi header without --check)\n",
            stale.display()
        )
    );
    assert_eq!(std::fs::read_to_string(&stale).unwrap(), "/* old */\n");
    // Written when asked, the same text as the checked-in header.
    let out = run(stale.as_os_str(), false);
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert_eq!(
        std::fs::read_to_string(&stale).unwrap(),
        std::fs::read_to_string(workspace_root().join(header)).unwrap()
    );
}

/// `calc-abi check` on textlint's headers: `frozen` against the headers in `today`.
fn abi_check(today: &Path) -> Output {
    calc_abi(&[
        os("check"),
        os("--frozen"),
        os("apps/textlint/abi"),
        os("--today"),
        today.as_os_str(),
        os("-I"),
        os("include"),
        os("--growing"),
        os("TEXTLINT_INTERFACE_MINOR"),
    ])
}

#[test]
fn textlint_h_only_appends_to_its_released_versions() {
    calc_tests::require_tools!(Libclang);
    let out = abi_check(&workspace_root().join("apps/textlint/include"));
    assert!(out.status.success(), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("1 frozen header(s): today's only append"),
        "{}",
        text(&out.stdout)
    );

    // Edits that break plugins built against 1.0 are refused, one line each; an appended
    // function with a new minor is not.
    let today = workspace_root().join("apps/textlint/include/textlint.h");
    let today = std::fs::read_to_string(today).unwrap();
    let dir = scratch_dir(&format!("textlint-abi-{}", std::process::id()));
    let cases = [
        (
            "check removed",
            today.replace("    calc_bytes_fn check;\n", ""),
            "field textlint_vtable_t.check was removed",
        ),
        (
            "a function inserted before check",
            today.replace(
                "    calc_bytes_fn check;\n",
                "    calc_bytes_fn fix;\n    calc_bytes_fn check;\n",
            ),
            "field textlint_vtable_t.check moved from offset 8 to 16",
        ),
        (
            "the major changed",
            today.replace(
                "#define TEXTLINT_INTERFACE_MAJOR 1",
                "#define TEXTLINT_INTERFACE_MAJOR 2",
            ),
            "constant TEXTLINT_INTERFACE_MAJOR changed from 1 to 2",
        ),
        (
            "the id changed",
            today.replace("\"calc-apps.lint\"", "\"calc-apps.lint2\""),
            "constant TEXTLINT_INTERFACE_ID changed",
        ),
        (
            "an appended function with a new minor",
            today
                .replace(
                    "    calc_bytes_fn check;\n",
                    "    calc_bytes_fn check;\n    calc_bytes_fn fix;\n",
                )
                .replace(
                    "#define TEXTLINT_INTERFACE_MINOR 0",
                    "#define TEXTLINT_INTERFACE_MINOR 1",
                ),
            "",
        ),
    ];
    for (i, (case, header, expect)) in cases.iter().enumerate() {
        assert_ne!(header, &today, "{case}: the edit applied");
        let include = dir.join(i.to_string());
        std::fs::create_dir_all(&include).unwrap();
        std::fs::write(include.join("textlint.h"), header).unwrap();
        let out = abi_check(&include);
        let stderr = text(&out.stderr);
        if expect.is_empty() {
            assert!(out.status.success(), "{case}: {stderr}");
        } else {
            assert_eq!(out.status.code(), Some(1), "{case}: {stderr}");
            assert!(
                stderr
                    .lines()
                    .any(|l| l.starts_with("calc-abi: ") && l.contains(expect)),
                "{case}: expected {expect:?} in\n{stderr}"
            );
        }
    }
}
