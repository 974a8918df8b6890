//! The `calc` command line, run as a user would.

use calc_tests::{broken_corpus_dir, examples_dir, run_calc};

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn calc(args: &[&str]) -> (i32, String, String) {
    let dir = examples_dir().to_str().unwrap().to_string();
    let mut full = vec!["--plugin-dir", dir.as_str()];
    full.extend_from_slice(args);
    let out = run_calc(&full);
    (
        out.status.code().unwrap_or(-1),
        text(&out.stdout),
        text(&out.stderr),
    )
}

#[test]
fn seed_exercise_run_add() {
    assert_eq!(
        calc(&["run", "add", "10", "5"]),
        (0, "15\n".into(), String::new())
    );
}

#[test]
fn eval_prints_the_result() {
    assert_eq!(
        calc(&["eval", "2 * (3 + 4)"]),
        (0, "14\n".into(), String::new())
    );
    assert_eq!(
        calc(&["eval", "2 ^ 10 - max(3, 4) / 2"]),
        (0, "1022\n".into(), String::new())
    );
    assert_eq!(calc(&["eval", "-2 ^ 2"]).1, "-4\n");
    assert_eq!(calc(&["run", "sub", "-3", "-5"]).1, "2\n");
    assert_eq!(calc(&["run", "max", "1", "7", "3"]).1, "7\n");
}

#[test]
fn division_by_zero_exits_1_naming_operation_and_plugin() {
    let (code, out, err) = calc(&["eval", "1 / 0"]);
    assert_eq!((code, out.as_str()), (1, ""));
    assert_eq!(err, "calc: error: div (plugin div): division by zero\n");
}

#[test]
fn parse_errors_exit_2_and_point_at_the_column() {
    let (code, _, err) = calc(&["eval", "2 +* 3"]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "calc: error: expected a number, '(' or a function call, found '*' at column 4\n  2 +* 3\n     ^\n"
    );
    let (code, _, err) = calc(&["eval", "2 @ 3"]);
    assert_eq!(code, 2);
    assert!(
        err.starts_with("calc: error: unknown operator '@'"),
        "{err}"
    );
    let (code, _, err) = calc(&["run", "nope", "1"]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "calc: error: unknown operation 'nope' (no loaded plugin provides it)\n"
    );
    let (code, _, err) = calc(&["run", "add", "1"]);
    assert_eq!(code, 2);
    assert_eq!(
        err,
        "calc: error: add (plugin add): expects 2 operands, got 1\n"
    );
}

#[test]
fn plugins_list_json_describes_every_plugin() {
    let (code, out, err) = calc(&["plugins", "list", "--json"]);
    assert_eq!(code, 0, "{err}");
    let v: serde_json::Value = serde_json::from_str(&out).expect("valid JSON");
    let plugins = v["plugins"].as_array().unwrap();
    assert_eq!(plugins.len(), 8);
    let pow = plugins.iter().find(|p| p["name"] == "pow").unwrap();
    assert_eq!(pow["version"], "1.0.0");
    assert_eq!(pow["abi_version"], calc_tests::abi());
    assert_eq!(pow["author"], "calc examples");
    assert!(pow["path"].as_str().unwrap().ends_with("libpow.so"));
    let op = &pow["operations"][0];
    assert_eq!(
        (&op["name"], &op["kind"], &op["symbol"]),
        (&"pow".into(), &"infix".into(), &"^".into())
    );
    assert_eq!(
        (&op["precedence"], &op["right_associative"]),
        (&40.into(), &true.into())
    );
    let stats = plugins.iter().find(|p| p["name"] == "stats").unwrap();
    let max = stats["operations"]
        .as_array()
        .unwrap()
        .iter()
        .find(|o| o["name"] == "max")
        .unwrap();
    assert_eq!(
        (&max["kind"], &max["min_arity"], &max["max_arity"]),
        (&"function".into(), &1.into(), &serde_json::Value::Null)
    );
    assert_eq!(v["failures"].as_array().unwrap().len(), 0);
}

#[test]
fn plugins_list_shows_failures_and_exits_3() {
    let dir = broken_corpus_dir().to_str().unwrap();
    let out = run_calc(&["--plugin-dir", dir, "plugins", "list"]);
    let stdout = text(&out.stdout);
    assert_eq!(out.status.code(), Some(3));
    assert!(
        stdout.contains(&format!("good_c 1.0.0 (ABI {})", calc_tests::abi())),
        "{stdout}"
    );
    assert!(
        stdout.contains("libbroken_bad_magic.so: not a calc plugin: bad magic"),
        "{stdout}"
    );
    // Every case, INIT_FAILS included (the cached listing starts what it has no record of),
    // and the garbage file.
    assert_eq!(
        stdout.matches("FAILED ").count(),
        calc_tests::BROKEN_CASES.len() + 1
    );
    assert!(
        stdout.contains("plugin broken_init_fails refused to start: init refused: missing licence")
            && !stdout.contains("broken_init_fails 1.0.0"),
        "{stdout}"
    );
    let out = run_calc(&["--plugin-dir", dir, "plugins", "list", "--json"]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["failures"].as_array().unwrap().len(),
        calc_tests::BROKEN_CASES.len() + 1
    );
    let out = run_calc(&[
        "--plugin-dir",
        dir,
        "plugins",
        "list",
        "--json",
        "--no-cache",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    assert_eq!(
        v["failures"].as_array().unwrap().len(),
        calc_tests::BROKEN_CASES.len() + 1
    );
}

#[test]
fn broken_plugins_are_reported_and_the_rest_keeps_working() {
    let examples = examples_dir().to_str().unwrap();
    let broken = broken_corpus_dir().to_str().unwrap();
    let out = run_calc(&[
        "--plugin-dir",
        examples,
        "--plugin-dir",
        broken,
        "eval",
        "twice(2) + 1",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "5\n");
    let err = text(&out.stderr);
    assert_eq!(
        err.lines().count(),
        calc_tests::BROKEN_CASES.len() + 1,
        "{err}"
    );
    assert!(
        err.lines().all(|l| l.starts_with("calc: skipped /")),
        "{err}"
    );
    let quiet = run_calc(&[
        "-q",
        "--plugin-dir",
        examples,
        "--plugin-dir",
        broken,
        "eval",
        "1 + 1",
    ]);
    assert_eq!(
        (text(&quiet.stdout), text(&quiet.stderr)),
        ("2\n".into(), String::new())
    );
}

#[test]
fn a_missing_plugin_directory_is_reported_and_calc_keeps_going() {
    let examples = examples_dir().to_str().unwrap();
    let out = run_calc(&[
        "--plugin-dir",
        "/nonexistent-calc-dir",
        "--plugin-dir",
        examples,
        "eval",
        "1 + 1",
    ]);
    assert_eq!(out.status.code(), Some(0));
    assert_eq!(text(&out.stdout), "2\n");
    assert!(
        text(&out.stderr)
            .starts_with("calc: skipped /nonexistent-calc-dir: cannot read plugin directory: "),
        "{}",
        text(&out.stderr)
    );
}

#[test]
fn calc_plugin_path_is_searched() {
    let out = std::process::Command::new(calc_tests::calc_binary())
        .args(["eval", "3 * 3"])
        .env(
            "CALC_PLUGIN_PATH",
            format!("/nonexistent-a:{}", examples_dir().display()),
        )
        .output()
        .unwrap();
    assert_eq!(text(&out.stdout), "9\n");
}

#[test]
fn the_default_directory_is_next_to_the_executable() {
    // Lay out a private copy of calc with a plugins/ folder beside it, as the README's build does.
    let dir = calc_tests::scratch_dir(&format!("default-dir-{}", std::process::id()));
    let exe = dir.join("calc");
    std::fs::copy(calc_tests::calc_binary(), &exe).unwrap();
    let plugins = dir.join("plugins");
    std::fs::create_dir(&plugins).unwrap();
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let p = entry.unwrap().path();
        std::fs::copy(&p, plugins.join(p.file_name().unwrap())).unwrap();
    }
    let out = std::process::Command::new(&exe)
        .args(["eval", "2 ^ 10 - max(3, 4) / 2"])
        .env_remove("CALC_PLUGIN_PATH")
        .env("XDG_DATA_HOME", &dir)
        .output()
        .unwrap();
    assert_eq!(
        (text(&out.stdout), text(&out.stderr)),
        ("1022\n".into(), String::new())
    );
}

#[test]
fn help_documents_exit_codes() {
    let out = run_calc(&["--help"]);
    let help = text(&out.stdout);
    for line in [
        "Exit status:",
        "1  an operation failed",
        "2  invalid command line, configuration or expression",
        "CALC_PLUGIN_PATH",
    ] {
        assert!(help.contains(line), "{line:?} missing from --help");
    }
}

/// Text and JSON `plugins list` use one vocabulary: for every plugin the text's `[status]` is
/// the JSON `status` (enabled, overridden, disabled), and every `FAILED` line is a JSON failure
/// with the status `failed` (a refused file, and a plugin whose `init` fails); from the cache
/// and without it.
#[test]
fn plugins_list_text_and_json_agree_on_every_status() {
    use calc_tests::{build_c_plugin, library_file_name, scratch_dir, workspace_root};
    use std::collections::BTreeMap;
    let dir = scratch_dir(&format!("list-statuses-{}", std::process::id()));
    for name in ["add", "sub", "pow"] {
        let file = library_file_name(name);
        std::fs::copy(examples_dir().join(&file), dir.join(&file)).unwrap();
    }
    build_c_plugin(
        &workspace_root().join("tests/fixtures/c/alt_add.c"),
        &dir.join(library_file_name("alt_add")),
        &[],
    )
    .unwrap();
    let init_fails = library_file_name("broken_init_fails");
    std::fs::copy(broken_corpus_dir().join(&init_fails), dir.join(&init_fails)).unwrap();
    std::fs::write(dir.join(library_file_name("zz_garbage")), "not a library").unwrap();
    let d = dir.to_str().unwrap();
    let base = ["--plugin-dir", d, "--disable", "sub", "--prefer", "alt_add"];

    let mut seen = BTreeMap::new();
    for extra in [&[][..], &["--no-cache"]] {
        let run = |json: bool| {
            let mut args = base.to_vec();
            args.extend(["plugins", "list"]);
            args.extend(extra);
            if json {
                args.push("--json");
            }
            run_calc(&args)
        };
        let (text_out, json_out) = (run(false), run(true));
        assert_eq!(text_out.status.code(), Some(3), "{extra:?}");
        assert_eq!(json_out.status.code(), Some(3), "{extra:?}");
        // name (or failed file) -> status, from the text ...
        let mut from_text = BTreeMap::new();
        for line in text(&text_out.stdout).lines() {
            if let Some(failed) = line.strip_prefix("FAILED ") {
                let path = failed.split(": ").next().unwrap();
                from_text.insert(path.to_string(), "failed".to_string());
            } else if !line.starts_with(' ') && !line.starts_with("CONFLICT ") {
                let name = line.split(' ').next().unwrap();
                let status = line.rsplit_once('[').unwrap().1.trim_end_matches(']');
                from_text.insert(name.to_string(), status.to_string());
            }
        }
        // ... and from the JSON.
        let v: serde_json::Value = serde_json::from_slice(&json_out.stdout).unwrap();
        let mut from_json = BTreeMap::new();
        for p in v["plugins"].as_array().unwrap() {
            from_json.insert(
                p["name"].as_str().unwrap().to_string(),
                p["status"].as_str().unwrap().to_string(),
            );
        }
        for f in v["failures"].as_array().unwrap() {
            from_json.insert(
                f["path"].as_str().unwrap().to_string(),
                f["status"].as_str().unwrap().to_string(),
            );
        }
        assert_eq!(from_text, from_json, "{extra:?}");
        seen = from_json;
    }
    let canonical = std::fs::canonicalize(&dir).unwrap();
    let path = |name: &str| {
        canonical
            .join(library_file_name(name))
            .to_str()
            .unwrap()
            .to_string()
    };
    let expected: BTreeMap<String, String> = [
        ("add".to_string(), "overridden"),
        ("alt_add".to_string(), "enabled"),
        ("pow".to_string(), "enabled"),
        ("sub".to_string(), "disabled"),
        (path("broken_init_fails"), "failed"),
        (path("zz_garbage"), "failed"),
    ]
    .into_iter()
    .map(|(k, v)| (k, v.to_string()))
    .collect();
    assert_eq!(seen, expected);
}

/// Every name in a flag or the config file that matches no plugin (or, for `[operations.X]`,
/// no operation) gets one warning naming it and where it came from, in every command that loads
/// plugins; names that match get none.
#[test]
fn every_name_that_matches_no_plugin_is_warned_about_naming_where_it_came_from() {
    use std::collections::BTreeSet;
    let dir = calc_tests::scratch_dir(&format!("unknown-names-{}", std::process::id()));
    let config = dir.join("calc.toml");
    std::fs::write(
        &config,
        "prefer = [\"fastpow\"]\n\
         [plugins.sbu]\nenabled = false\n\
         [plugins.nosuch.config]\nx = 1\n\
         [plugins.pow.config]\nprecision = 3\n\
         [versions]\nmull = \">=1\"\nmul = \">=1\"\n\
         [operations.pow]\nprovider = \"fastpow\"\n\
         [operations.pwo]\nrollout = { candidate = \"mul\", percent = 5 }\n\
         [operations.\"+\"]\nrollout = { candidate = \"add2\", percent = 5 }\n",
    )
    .unwrap();
    let c = config.display().to_string();
    let expected: BTreeSet<String> = [
        format!("{c}: prefer: no plugin named fastpow"),
        format!("{c}: [plugins.sbu]: no plugin named sbu (did you mean sub?)"),
        format!("{c}: [plugins.nosuch]: no plugin named nosuch"),
        format!("{c}: [versions] mull: no plugin named mull (did you mean mul?)"),
        format!("{c}: [operations.pow] provider: no plugin named fastpow; pow is served by pow"),
        format!("{c}: [operations.pwo]: no plugin provides an operation named pwo"),
        format!(
            "{c}: [operations.+] rollout candidate: no plugin named add2 (did you mean add?); \
             + is served by add"
        ),
        "--disable sbu: no plugin named sbu (did you mean sub?)".to_string(),
        "--prefer sbu: no plugin named sbu (did you mean sub?)".to_string(),
    ]
    .into_iter()
    .map(|w| format!("calc: warning: {w}"))
    .collect();
    let flags = ["--disable", "sbu", "--prefer", "sbu", "--disable", "sub"];
    for command in [
        &["eval", "2 ^ 3 + 1"][..],
        &["plugins", "list"],
        &["plugins", "list", "--no-cache"],
    ] {
        for by_env in [false, true] {
            let mut args = vec!["--plugin-dir", examples_dir().to_str().unwrap()];
            if !by_env {
                args.extend(["--config", c.as_str()]);
            }
            args.extend(flags);
            args.extend(command);
            let mut cmd = std::process::Command::new(calc_tests::calc_binary());
            cmd.args(&args)
                .env("XDG_CACHE_HOME", dir.join("cache"))
                .env_remove("CALC_PLUGIN_PATH")
                .env_remove("RUST_LOG");
            if by_env {
                cmd.env("CALC_CONFIG", &config);
            } else {
                cmd.env_remove("CALC_CONFIG");
            }
            let out = cmd.output().unwrap();
            assert_eq!(out.status.code(), Some(0), "{args:?}");
            let err = text(&out.stderr);
            let warnings: BTreeSet<String> = err.lines().map(str::to_string).collect();
            assert_eq!(warnings, expected, "{args:?}");
            assert_eq!(err.lines().count(), expected.len(), "one line each: {err}");
        }
    }
    // Names that match plugins: no warning; -q: none either.
    let (code, _, err) = calc(&["--disable", "sub", "--prefer", "mul", "eval", "2 * 3"]);
    assert_eq!((code, err.as_str()), (0, ""));
    let (code, _, err) = calc(&["-q", "--disable", "sbu", "eval", "2 * 3"]);
    assert_eq!((code, err.as_str()), (0, ""));
}
