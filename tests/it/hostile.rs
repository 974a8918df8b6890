//! The corpus of hostile plugins (`tests/broken/hostile.c`): descriptors whose pointers lead
//! into unmapped memory, data that runs off the end of a mapping, sizes far past a table, and a
//! `plugin_entry` that is data. Loaded in process, each is refused with one line naming the
//! file, the host never faults, and the good plugin beside them keeps answering.

use std::path::PathBuf;
use std::process::Output;

use calc_host::{LoadError, PluginManager};
use calc_tests::{hostile_corpus_dir, library_file_name, run_calc, HOSTILE_CASES};

fn path_of(case: &str) -> PathBuf {
    let path = hostile_corpus_dir().join(library_file_name(&format!("hostile_{case}")));
    std::fs::canonicalize(&path).unwrap_or(path)
}

/// The kind and a part of the message each case must be refused with.
fn expected(case: &str) -> (&'static str, String) {
    match case {
        "entry_is_data" => (
            "entry_not_code",
            "not a calc plugin: `plugin_entry` at 0x".into(),
        ),
        "entry_wild" => (
            "unreadable_memory",
            "descriptor at 0x10 is not readable memory".into(),
        ),
        "desc_runs_off" => ("unreadable_memory", "descriptor at 0x".into()),
        "name_wild" => (
            "invalid_field",
            "invalid name: string at 0x1000 runs into unreadable memory after 0 bytes".into(),
        ),
        "name_runs_off" => ("invalid_field", "invalid name: string at 0x".into()),
        "description_runs_off" => (
            "invalid_field",
            "invalid operations[0] (twice).description: string at 0x".into(),
        ),
        "ops_wild" => (
            "unreadable_memory",
            "operations[0] at 0x2000 is not readable memory".into(),
        ),
        "ops_run_off" => ("unreadable_memory", "operations[1] at 0x".into()),
        "op_size_huge" => (
            "invalid_field",
            "invalid calc_plugin_t.operation_size: 1073741824 bytes, more than the 4096".into(),
        ),
        "struct_size_huge" => (
            "invalid_field",
            "invalid calc_plugin_t.struct_size: 4294967280 bytes, more than the 4096".into(),
        ),
        "op_count_huge" => (
            "invalid_field",
            "invalid operations: 4294967295 operations, more than the 1024 allowed".into(),
        ),
        "entry_misaligned" => ("bad_magic", "not a calc plugin: bad magic 0x".into()),
        "ifaces_wild" => (
            "unreadable_memory",
            "interfaces[0] at 0x3000 is not readable memory".into(),
        ),
        "iface_count_huge" => (
            "invalid_field",
            "invalid interfaces: 4294967295 interfaces, more than the 64 allowed".into(),
        ),
        "iface_id_runs_off" => (
            "invalid_field",
            "invalid interfaces[0].id: string at 0x".into(),
        ),
        "bytes_slot_data" => (
            "invalid_field",
            "invalid interfaces[0] (calc-tests.hostile).vtable[0]: 0x1 is not code".into(),
        ),
        "iface_flags_unknown" => (
            "invalid_field",
            "invalid interfaces[0] (calc-tests.hostile).flags: 0x80000000 has bits no ABI 1.4 \
             flag defines"
                .into(),
        ),
        "vtable_runs_off" => (
            "invalid_field",
            "invalid interfaces[0] (calc-tests.hostile).vtable: 16 bytes at 0x".into(),
        ),
        other => panic!("no expectation for hostile case {other}"),
    }
}

#[test]
fn every_hostile_plugin_is_refused_in_process_and_the_good_one_answers() {
    let mut m = PluginManager::new();
    m.load_dir(hostile_corpus_dir())
        .expect("corpus dir is readable");
    let names: Vec<&str> = m.plugins().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["good_c"]);
    assert_eq!(m.failures().len(), HOSTILE_CASES.len());
    for case in HOSTILE_CASES {
        let case = case.to_lowercase();
        let path = path_of(&case);
        let failure = m
            .failures()
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("no failure recorded for {}", path.display()));
        let (kind, message) = expected(&case);
        let error: &LoadError = &failure.error;
        let line = error.to_string();
        assert_eq!(error.kind(), kind, "{case}: {line}");
        assert!(
            line.starts_with(&format!("{}: {message}", path.display())),
            "{case}: {line}"
        );
        assert!(!line.contains('\n'), "{case}: {line}");
    }
    assert_eq!(m.eval("twice(21)").unwrap(), 42.0);
}

#[test]
fn a_string_that_runs_off_its_page_reports_how_far_it_was_read() {
    let mut m = PluginManager::new();
    m.load_dir(hostile_corpus_dir()).unwrap();
    let path = path_of("name_runs_off");
    let line = m
        .failures()
        .iter()
        .find(|f| f.path == path)
        .unwrap()
        .error
        .to_string();
    assert!(
        line.ends_with("runs into unreadable memory after 8 bytes, before its NUL"),
        "{line}"
    );
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

fn assert_exited(out: &Output, what: &str) {
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(
        out.status.signal(),
        None,
        "{what} was killed: {}",
        text(&out.stderr)
    );
}

#[test]
fn calc_eval_skips_every_hostile_plugin_naming_it() {
    let dir = hostile_corpus_dir().to_str().unwrap();
    let out = run_calc(&["--plugin-dir", dir, "eval", "twice(twice(3))"]);
    assert_exited(&out, "calc eval");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert_eq!(text(&out.stdout), "12\n");
    let err = text(&out.stderr);
    for case in HOSTILE_CASES {
        let path = path_of(&case.to_lowercase());
        let lines: Vec<&str> = err
            .lines()
            .filter(|l| l.starts_with(&format!("calc: skipped {}: ", path.display())))
            .collect();
        assert_eq!(lines.len(), 1, "{case}: {err}");
    }
    assert_eq!(err.lines().count(), HOSTILE_CASES.len(), "{err}");
}

#[test]
fn plugins_check_refuses_every_hostile_plugin_without_faulting() {
    for case in HOSTILE_CASES {
        let case = case.to_lowercase();
        let path = path_of(&case);
        let out = run_calc(&["plugins", "check", path.to_str().unwrap()]);
        assert_exited(&out, &format!("plugins check of {case}"));
        assert_eq!(out.status.code(), Some(3), "{case}: {}", text(&out.stderr));
        let all = text(&out.stdout) + &text(&out.stderr);
        assert!(all.contains(&path.display().to_string()), "{case}: {all}");
    }
}
