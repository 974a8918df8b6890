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
