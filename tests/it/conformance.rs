//! `calc plugins check --conformance`: the example plugins conform; each way of breaking the
//! calling contract in `tests/fixtures/c/nonconforming.c` (and the Rust panic fixture) is
//! reported as its own kind on its own operation, crashes and hangs included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;
use std::time::Duration;

use calc_host::conformance::{check, ConformanceReport, FindingKind};
use calc_tests::{
    broken_corpus_dir, build_c_plugin, calc_binary, examples_dir, library_file_name, run_calc,
    scratch_dir, workspace_root,
};

/// The three variants of the nonconforming fixture: default, `-DCRASH` and `-DHANG`.
struct Fixtures {
    nonconforming: PathBuf,
    crash: PathBuf,
    hang: PathBuf,
}

fn fixtures() -> &'static Fixtures {
    static FIXTURES: OnceLock<Fixtures> = OnceLock::new();
    FIXTURES.get_or_init(|| {
        let dir = scratch_dir(&format!("conformance-{}", std::process::id()));
        let source = workspace_root().join("tests/fixtures/c/nonconforming.c");
        let build = |name: &str, flags: &[&str]| {
            let out = dir.join(library_file_name(name));
            build_c_plugin(&source, &out, flags).unwrap_or_else(|e| panic!("{e}"));
            out
        };
        Fixtures {
            nonconforming: build("nonconforming", &[]),
            crash: build("nonconforming_crash", &["-DCRASH"]),
            hang: build("nonconforming_hang", &["-DHANG"]),
        }
    })
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// `calc plugins check --conformance [--json] FILE...`: exit code, stdout.
fn check_cli(files: &[&Path], json: bool) -> (i32, String) {
    let mut args = vec!["plugins", "check", "--conformance"];
    if json {
        args.push("--json");
    }
    args.extend(files.iter().map(|f| f.to_str().unwrap()));
    let out = run_calc(&args);
    (out.status.code().unwrap_or(-1), text(&out.stdout))
}

/// The kinds found per operation, every operation listed.
fn kinds(report: &ConformanceReport) -> BTreeMap<&str, BTreeSet<FindingKind>> {
    report
        .operations
        .iter()
        .map(|op| {
            let mut kinds: BTreeSet<FindingKind> = op.findings.iter().map(|f| f.kind).collect();
            kinds.extend(op.omitted.keys());
            (op.name.as_str(), kinds)
        })
        .collect()
}

#[test]
fn every_example_plugin_conforms() {
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 8, "{files:?}");
    let files: Vec<&Path> = files.iter().map(PathBuf::as_path).collect();
    let (code, out) = check_cli(&files, false);
    assert_eq!(code, 0, "{out}");
    for name in [
        "add", "sub", "pow", "cmath", "cpp_trig", "mul", "div", "stats",
    ] {
        assert!(
            out.contains(&format!("conformance of {name} (")),
            "{name}: {out}"
        );
    }
    assert_eq!(out.matches(": ok (").count(), 8, "{out}");
    assert!(!out.contains("FAILED"), "{out}");
}

#[test]
fn each_contract_violation_is_reported_on_its_operation() {
    let report = check(
        calc_binary(),
        &fixtures().nonconforming,
        Duration::from_secs(30),
    );
    assert_eq!(report.plugin.as_deref(), Some("nonconforming"));
    assert_eq!(report.fatal, None, "{report}");
    assert!(!report.ok());
    let expected: BTreeMap<&str, BTreeSet<FindingKind>> = [
        ("good", BTreeSet::new()),
        ("nomsg", [FindingKind::EmptyMessage].into()),
        ("badutf8", [FindingKind::NonUtf8Message].into()),
        ("flaky", [FindingKind::Nondeterministic].into()),
    ]
    .into();
    assert_eq!(kinds(&report), expected, "{report}");
    assert!(report
        .operations
        .iter()
        .all(|op| op.completed && op.calls > 0));

    let op = |name: &str| report.operations.iter().find(|o| o.name == name).unwrap();
    // nomsg fails exactly on the negative inputs (-0 is not negative).
    let negative: Vec<Vec<String>> = op("nomsg")
        .findings
        .iter()
        .map(|f| f.args.clone())
        .collect();
    assert_eq!(negative, [["-1"], ["-2.5"], ["-1e308"], ["-inf"]]);
    let badutf8 = &op("badutf8").findings;
    assert_eq!(badutf8.len(), 1);
    assert_eq!(badutf8[0].args, ["NaN"]);
    assert!(
        badutf8[0].detail.contains(r#""bad \xff""#),
        "{}",
        badutf8[0].detail
    );
    // 12 inputs, each nondeterministic: 5 listed, the rest counted.
    let flaky = op("flaky");
    assert_eq!(flaky.findings.len(), 5);
    assert_eq!(flaky.omitted, [(FindingKind::Nondeterministic, 7)].into());

    let text = report.to_string();
    assert!(text.starts_with("conformance of nonconforming ("), "{text}");
    assert!(
        text.contains("  nomsg(-1): empty_message: status 1 (error) with an empty message\n"),
        "{text}"
    );
    assert!(
        text.contains("  flaky: 7 more nondeterministic not shown\n"),
        "{text}"
    );
    assert!(!text.contains("good("), "{text}");
}

#[test]
fn cli_text_and_json_report_the_same_findings() {
    let file = fixtures().nonconforming.as_path();
    let (code, out) = check_cli(&[file], false);
    assert_eq!(code, 3, "{out}");
    let (code, json) = check_cli(&[file], true);
    assert_eq!(code, 3, "{json}");
    let v: serde_json::Value =
        serde_json::from_str(&json).unwrap_or_else(|e| panic!("{e}: {json}"));
    let entry = &v[0];
    assert_eq!(entry["ok"], false);
    assert_eq!(entry["plugin"]["name"], "nonconforming");
    let conformance = &entry["conformance"];
    assert_eq!(conformance["plugin"], "nonconforming");
    assert!(conformance["fatal"].is_null());
    let mut listed = 0;
    for op in conformance["operations"].as_array().unwrap() {
        for finding in op["findings"].as_array().unwrap() {
            let args: Vec<&str> = finding["args"]
                .as_array()
                .unwrap()
                .iter()
                .map(|a| a.as_str().unwrap())
                .collect();
            let line = format!(
                "  {}({}): {}: {}\n",
                op["name"].as_str().unwrap(),
                args.join(", "),
                finding["kind"].as_str().unwrap(),
                finding["detail"].as_str().unwrap()
            );
            assert_eq!(finding["op"], op["name"]);
            assert!(out.contains(&line), "{line:?} not in\n{out}");
            listed += 1;
        }
    }
    assert_eq!(
        listed,
        out.lines()
            .skip_while(|l| !l.starts_with("conformance of "))
            .skip(1)
            .filter(|l| l.contains("): "))
            .count()
    );
    assert_eq!(listed, 4 + 1 + 5);
    assert_eq!(
        conformance["operations"][3]["omitted"],
        serde_json::json!({ "nondeterministic": 7 })
    );
}

#[test]
fn a_crash_is_reported_with_the_signal_and_the_input() {
    let report = check(calc_binary(), &fixtures().crash, Duration::from_secs(30));
    let fatal = report.fatal.as_ref().unwrap_or_else(|| panic!("{report}"));
    assert_eq!(fatal.kind, FindingKind::Crash, "{report}");
    assert_eq!(fatal.op.as_deref(), Some("boom"));
    assert_eq!(fatal.args, ["inf"], "the first infinite input");
    assert_eq!(fatal.detail, "killed by SIGSEGV");
    assert!(!report.ok());
    // good ran to the end before boom crashed, with nothing found.
    assert!(report.operations[0].completed && report.operations[0].findings.is_empty());
    assert!(!report.operations[1].completed);
    assert!(
        report
            .to_string()
            .contains("  boom(inf): crash: killed by SIGSEGV\n"),
        "{report}"
    );
}

#[test]
fn a_hang_is_killed_after_the_timeout_and_reported_with_the_input() {
    let started = std::time::Instant::now();
    let report = check(calc_binary(), &fixtures().hang, Duration::from_secs(2));
    assert!(started.elapsed() < Duration::from_secs(20));
    let fatal = report.fatal.as_ref().unwrap_or_else(|| panic!("{report}"));
    assert_eq!(fatal.kind, FindingKind::Hang, "{report}");
    assert_eq!(fatal.op.as_deref(), Some("spin"));
    assert_eq!(fatal.args, ["-1"]);

    // The same through the CLI, with its hidden timeout option.
    let out = run_calc(&[
        "plugins",
        "check",
        "--conformance",
        "--conformance-timeout",
        "2",
        fixtures().hang.to_str().unwrap(),
    ]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3), "{stdout}");
    assert!(
        stdout.contains("  spin(-1): hang: no progress for 2.0 s; killed\n"),
        "{stdout}"
    );
}

#[test]
fn a_rust_panic_is_reported_with_its_message() {
    let file = broken_corpus_dir().join(library_file_name("rust_panic"));
    let report = check(calc_binary(), &file, Duration::from_secs(30));
    assert_eq!(report.fatal, None, "{report}");
    let expected: BTreeMap<&str, BTreeSet<FindingKind>> = [
        ("boom", [FindingKind::Panic].into()),
        ("fine", BTreeSet::new()),
    ]
    .into();
    assert_eq!(kinds(&report), expected, "{report}");
    for finding in &report.operations[0].findings {
        assert!(
            finding.detail.contains("deliberate panic for testing"),
            "{}",
            finding.detail
        );
    }
}

#[test]
fn refused_and_unloadable_files_are_not_exercised() {
    let bad = broken_corpus_dir().join(library_file_name("broken_bad_magic"));
    let (code, out) = check_cli(&[&bad], false);
    assert_eq!(code, 3);
    assert!(out.starts_with("REFUSED "), "{out}");
    assert!(!out.contains("conformance"), "{out}");

    // The worker itself reports a plugin that does not load.
    let report = check(calc_binary(), &bad, Duration::from_secs(30));
    let fatal = report.fatal.as_ref().unwrap_or_else(|| panic!("{report}"));
    assert_eq!(fatal.kind, FindingKind::Load);
    assert!(fatal.detail.contains("bad magic"), "{}", fatal.detail);
    assert_eq!(report.plugin, None);
}

/// `calc plugins check` under a configuration (`--config F` or `CALC_CONFIG`), with no default
/// configuration file in the way: exit code, stdout.
fn check_configured(args: &[&str], calc_config: Option<&Path>) -> (i32, String) {
    let home = scratch_dir(&format!("conformance-home-{}", std::process::id()));
    let mut cmd = std::process::Command::new(calc_binary());
    cmd.args(["plugins", "check"])
        .args(args)
        .env("XDG_CONFIG_HOME", &home)
        .env("XDG_CACHE_HOME", home.join("cache"))
        .env_remove("CALC_CONFIG")
        .env_remove("RUST_LOG");
    if let Some(config) = calc_config {
        cmd.env("CALC_CONFIG", config);
    }
    let out = cmd.output().expect("calc runs");
    (out.status.code().unwrap_or(-1), text(&out.stdout))
}

/// The conformance worker starts the plugin with the configured values, from `--config` or
/// `CALC_CONFIG`: a plugin whose `init` refuses them fails, as it would fail to load, and
/// passes without them or with values it accepts. Without `--conformance`, `init` does not run,
/// but the configured version range applies.
#[test]
fn conformance_starts_the_plugin_with_the_configured_values() {
    let dir = scratch_dir(&format!("conformance-config-{}", std::process::id()));
    let lib = dir.join(library_file_name("lifecycle"));
    build_c_plugin(
        &workspace_root().join("tests/fixtures/c/lifecycle.c"),
        &lib,
        &[],
    )
    .unwrap();
    let (bad, good, range) = (
        dir.join("bad.toml"),
        dir.join("good.toml"),
        dir.join("range.toml"),
    );
    std::fs::write(&bad, "[plugins.lifecycle.config]\nvalue = \"abc\"\n").unwrap();
    std::fs::write(&good, "[plugins.lifecycle.config]\nvalue = \"4\"\n").unwrap();
    std::fs::write(&range, "[versions]\nlifecycle = \">=2\"\n").unwrap();
    let l = lib.to_str().unwrap();
    let refusal = "load: ";
    let reason = "plugin lifecycle refused to start: value: 'abc' is not a number";

    let (code, out) = check_configured(&["--conformance", l], None);
    assert_eq!(code, 0, "{out}");
    assert!(out.contains("conformance of lifecycle"), "{out}");
    let (code, out) = check_configured(
        &["--conformance", l, "--config", good.to_str().unwrap()],
        None,
    );
    assert_eq!(code, 0, "{out}");
    for (args, env) in [
        (
            vec!["--conformance", l, "--config", bad.to_str().unwrap()],
            None,
        ),
        (vec!["--conformance", l], Some(bad.as_path())),
    ] {
        let (code, out) = check_configured(&args, env);
        assert_eq!(code, 3, "{args:?} {env:?}: {out}");
        assert!(
            out.contains(refusal) && out.contains(reason),
            "{args:?} {env:?}: {out}"
        );
    }
    let (code, out) = check_configured(&["--conformance", "--json", l], Some(&bad));
    assert_eq!(code, 3);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v[0]["ok"], false);
    assert_eq!(v[0]["conformance"]["fatal"]["kind"], "load");
    assert!(
        v[0]["conformance"]["fatal"]["detail"]
            .as_str()
            .unwrap()
            .contains(reason),
        "{out}"
    );

    // Without --conformance nothing of the plugin but `plugin_entry` runs: the values do not
    // matter, the version range does.
    let (code, out) = check_configured(&[l, "--config", bad.to_str().unwrap()], None);
    assert_eq!(code, 0, "{out}");
    let (code, out) = check_configured(&[l, "--config", range.to_str().unwrap()], None);
    assert_eq!(code, 3, "{out}");
    assert!(
        out.contains("REFUSED ")
            && out.contains("plugin lifecycle 1.0.0 is outside the configured version range >=2"),
        "{out}"
    );

    // The library call takes the values by plugin name.
    let config = BTreeMap::from([(
        "lifecycle".to_string(),
        BTreeMap::from([("value".to_string(), "abc".to_string())]),
    )]);
    let timeout = Duration::from_secs(30);
    let report = calc_host::conformance::check_with_config(calc_binary(), &lib, timeout, &config);
    let fatal = report.fatal.as_ref().unwrap_or_else(|| panic!("{report}"));
    assert_eq!(fatal.kind, FindingKind::Load);
    assert!(fatal.detail.contains(reason), "{}", fatal.detail);
    assert!(check(calc_binary(), &lib, timeout).ok());
}
