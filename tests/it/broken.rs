//! The corpus of deliberately broken plugins: each yields its own clear error naming the file,
//! and the good plugins in the same directory still load and work.

use std::path::Path;

use calc_host::{EvalError, LoadError, PluginManager};
use calc_sdk::Status;
use calc_tests::{broken_corpus_dir, library_file_name};

fn manager() -> PluginManager {
    let mut m = PluginManager::new();
    m.load_dir(broken_corpus_dir())
        .expect("corpus dir is readable");
    m
}

fn failure_for<'a>(m: &'a PluginManager, file: &str) -> &'a LoadError {
    let path = broken_corpus_dir().join(library_file_name(file));
    let path = std::fs::canonicalize(&path).unwrap_or(path);
    &m.failures()
        .iter()
        .find(|f| f.path == path)
        .unwrap_or_else(|| panic!("no failure recorded for {}", path.display()))
        .error
}

#[test]
fn only_the_good_plugins_load() {
    let m = manager();
    let mut names: Vec<&str> = m.plugins().map(|p| p.name.as_str()).collect();
    names.sort();
    assert_eq!(names, ["good_c", "rust_panic"]);
    // 16 broken cases and the garbage file.
    assert_eq!(m.failures().len(), calc_tests::BROKEN_CASES.len() + 1);
}

#[test]
fn each_broken_plugin_has_its_own_clear_error() {
    let m = manager();
    let plugin_size = std::mem::size_of::<calc_sdk::abi::calc_plugin_t>();
    let minor = calc_sdk::abi::CALC_ABI_VERSION_MINOR;
    let host = calc_tests::abi();
    let expectations: Vec<(&str, String)> = vec![
        ("no_entry", "not a calc plugin: no `plugin_entry` symbol".into()),
        ("entry_null", "plugin_entry returned NULL (the plugin could not describe itself)".into()),
        ("bad_magic", "not a calc plugin: bad magic 0x0000000000001234 (expected 0x43414c43504c4731)".into()),
        ("abi_major_new", format!("incompatible ABI: plugin built for ABI 2.{minor}, host implements {host} (plugin's ABI major is newer than the host's)")),
        ("abi_major_old", format!("incompatible ABI: plugin built for ABI 0.{minor}, host implements {host} (plugin's ABI major is older than the host's)")),
        ("abi_minor_new", format!("incompatible ABI: plugin built for ABI 1.{}, host implements {host} (plugin's ABI minor is newer than the host's)", minor + 1)),
        ("size_small", format!("calc_plugin_t.struct_size is 16 bytes, smaller than the {plugin_size} bytes ABI {host} requires")),
        ("null_name", "invalid name: NULL".into()),
        ("non_utf8_name", "invalid name: not valid UTF-8 (byte 3 of \"bad\u{fffd}\u{fffd}\")".into()),
        ("bad_version", "invalid version \"not-a-version\": unexpected character 'n' while parsing major version number".into()),
        ("api_incompatible", format!("plugin requires host API >=99.0, this host is {}", calc_sdk::SDK_VERSION)),
        ("null_execute", "invalid operations[0] (twice).execute: NULL function pointer".into()),
        ("duplicate_ops", "invalid operations[1] (twice).name: duplicate operation name in this plugin".into()),
        ("bad_kind", "invalid operations[0] (twice).kind: unknown operation kind 99".into()),
        ("bad_arity", "invalid operations[0] (twice).arity: min_arity 3 is greater than max_arity 1".into()),
        ("init_fails", "plugin broken_init_fails refused to start: init refused: missing licence (error)".into()),
    ];
    assert_eq!(expectations.len(), calc_tests::BROKEN_CASES.len());
    for (case, reason) in expectations {
        let error = failure_for(&m, &format!("broken_{case}"));
        let text = error.to_string();
        let path = error.path().display().to_string();
        assert!(
            path.ends_with(&library_file_name(&format!("broken_{case}"))),
            "{case}: {path}"
        );
        assert_eq!(text, format!("{path}: {reason}"), "{case}");
        assert!(!text.contains('\n'), "{case}: one line");
    }
}

#[test]
fn errors_are_typed() {
    let m = manager();
    assert!(matches!(
        failure_for(&m, "broken_no_entry"),
        LoadError::MissingEntry { .. }
    ));
    assert!(matches!(
        failure_for(&m, "broken_bad_magic"),
        LoadError::BadMagic { found: 0x1234, .. }
    ));
    assert!(matches!(
        failure_for(&m, "broken_abi_minor_new"),
        LoadError::AbiVersion { .. }
    ));
    assert!(matches!(
        failure_for(&m, "broken_size_small"),
        LoadError::StructSize { found: 16, .. }
    ));
    assert!(matches!(
        failure_for(&m, "broken_bad_version"),
        LoadError::Semver {
            field: "version",
            ..
        }
    ));
    assert!(matches!(
        failure_for(&m, "broken_api_incompatible"),
        LoadError::ApiRequirement { .. }
    ));
    assert!(matches!(
        failure_for(&m, "broken_init_fails"),
        LoadError::InitFailed {
            status: Status::Error,
            ..
        }
    ));
    // Refused from its header, before the dynamic loader sees it.
    let garbage = failure_for(&m, "garbage");
    assert!(matches!(garbage, LoadError::NotALibrary { .. }));
    assert!(
        garbage
            .to_string()
            .ends_with(": is a text file, not a shared library"),
        "{garbage}"
    );
}

#[test]
fn good_plugins_beside_broken_ones_still_work() {
    let m = manager();
    assert_eq!(m.eval("twice(21)"), Ok(42.0));
    assert_eq!(m.eval("fine(41)"), Ok(42.0));
}

#[test]
fn a_rust_panic_becomes_an_error_and_the_plugin_keeps_working() {
    let m = manager();
    let Err(EvalError::Call(e)) = m.eval("boom(1)") else {
        panic!("expected the panic to come back as an error")
    };
    assert_eq!(e.status, Status::Panic);
    assert_eq!(
        (e.operation.as_str(), e.plugin.as_str()),
        ("boom", "rust_panic")
    );
    assert!(
        e.message.contains("deliberate panic for testing"),
        "{}",
        e.message
    );
    assert_eq!(m.eval("fine(1)"), Ok(2.0));
    assert!(matches!(m.eval("boom(2)"), Err(EvalError::Call(_))));
}

#[test]
fn missing_files_and_directories_are_reported() {
    let mut m = PluginManager::new();
    let err = m
        .load_file(Path::new("/nonexistent/libnope.so"))
        .unwrap_err();
    assert_eq!(err.to_string(), "/nonexistent/libnope.so: no such file");
    let err = m.load_dir(Path::new("/nonexistent-dir")).unwrap_err();
    assert!(
        err.to_string()
            .starts_with("/nonexistent-dir: cannot read plugin directory: "),
        "{err}"
    );
    let err = m.load_file(broken_corpus_dir()).unwrap_err();
    assert!(matches!(err, LoadError::NotAFile { .. }), "{err}");
    assert_eq!(m.failures().len(), 3);
}

#[test]
fn a_second_plugin_with_the_same_name_is_refused() {
    let dir = calc_tests::scratch_dir(&format!("dup-{}", std::process::id()));
    let good = broken_corpus_dir().join(library_file_name("good_c"));
    for copy in ["good_a", "good_b"] {
        std::fs::copy(&good, dir.join(library_file_name(copy))).unwrap();
    }
    let mut m = PluginManager::new();
    assert_eq!(m.load_dir(&dir).unwrap(), 1);
    let err = &m.failures()[0].error;
    assert!(matches!(err, LoadError::DuplicatePlugin { .. }));
    assert!(
        err.to_string()
            .contains("a plugin named \"good_c\" is already loaded from"),
        "{err}"
    );
    assert_eq!(m.eval("twice(2)"), Ok(4.0));
}

#[test]
fn symlinks_are_refused_unless_allowed_and_directories_named_like_libraries_are_reported() {
    let dir = calc_tests::scratch_dir(&format!("links-{}", std::process::id()));
    let target = calc_tests::examples_dir().join(library_file_name("add"));
    let link = dir.join(library_file_name("linked_add"));
    std::os::unix::fs::symlink(&target, &link).unwrap();
    let not_a_lib = dir.join(library_file_name("not_a_lib"));
    std::fs::create_dir(&not_a_lib).unwrap();
    let canonical = std::fs::canonicalize(&dir).unwrap();

    let mut m = PluginManager::new();
    assert_eq!(m.load_dir(&dir).unwrap(), 0);
    let mut errors: Vec<String> = m.failures().iter().map(|f| f.error.to_string()).collect();
    errors.sort();
    assert_eq!(
        errors,
        [
            format!(
                "{}: is a symbolic link to {}; plugins must be regular files (allow links with [trust] allow_symlinks = true)",
                canonical.join(library_file_name("linked_add")).display(),
                target.display()
            ),
            format!(
                "{}: is a directory named like a shared library",
                canonical.join(library_file_name("not_a_lib")).display()
            ),
        ]
    );
    assert!(matches!(
        m.load_file(&link).unwrap_err(),
        LoadError::Symlink { .. }
    ));

    // Allowed: the link is followed, and the plugin reported by its real path.
    let mut settings = calc_host::config::Settings::default();
    settings.trust.allow_symlinks = true;
    let mut m = PluginManager::with_settings(settings);
    assert_eq!(m.load_dir(&dir).unwrap(), 1);
    let add = m.plugins().next().unwrap();
    assert_eq!(
        add.path,
        std::fs::canonicalize(&target).unwrap(),
        "reported by its real path"
    );
    assert_eq!(m.eval("1 + 2"), Ok(3.0));
    assert_eq!(m.failures().len(), 1);
    assert!(
        matches!(m.failures()[0].error, LoadError::NotALibrary { .. }),
        "{}",
        m.failures()[0].error
    );
}

/// However a plugin's path is spelled (redundant slashes, `.` and `..` components, a linked
/// directory on the way), the loader and the manager report the one canonical path: the fast
/// path that proves a path canonical by opening it without following links must not accept a
/// path that is not.
#[test]
fn every_spelling_of_a_plugin_path_is_reported_by_its_canonical_path() {
    use std::path::PathBuf;
    let root = calc_tests::scratch_dir(&format!("spellings-{}", std::process::id()));
    let root = std::fs::canonicalize(&root).unwrap();
    let dir = root.join("plugins");
    std::fs::create_dir_all(dir.join("sub")).unwrap();
    let name = library_file_name("good_c");
    std::fs::copy(broken_corpus_dir().join(&name), dir.join(&name)).unwrap();
    std::os::unix::fs::symlink(&dir, root.join("linked")).unwrap();
    // `alias/..` is `plugins` for the kernel, but `root` to a lexical clean-up.
    std::os::unix::fs::symlink(dir.join("sub"), root.join("alias")).unwrap();
    let canonical = dir.join(&name);
    let spell = |s: String| PathBuf::from(s);
    let d = dir.display();
    let spellings = [
        canonical.clone(),
        spell(format!("{d}//{name}")),
        spell(format!("{d}/./{name}")),
        spell(format!("{d}/sub/../{name}")),
        root.join("linked").join(&name),
        spell(format!("{}/linked/sub/../{name}", root.display())),
        spell(format!("{}/alias/../{name}", root.display())),
    ];
    for path in &spellings {
        let info = calc_host::loader::inspect(path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(info.path, canonical, "inspect {}", path.display());
        let mut m = PluginManager::new();
        let info = m.load_file(path).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(info.path, canonical, "load_file {}", path.display());
        assert_eq!(m.eval("twice(2)"), Ok(4.0));
    }
}

/// Files that are no shared library at all, named like one, next to a good plugin: each kind
/// gets its own message (before `dlopen` where that is possible: a truncated library would crash
/// it with SIGBUS rather than fail).
#[test]
fn each_file_that_is_not_a_shared_library_has_its_own_clear_error() {
    let dir = calc_tests::scratch_dir(&format!("files-{}", std::process::id()));
    let dir = std::fs::canonicalize(&dir).unwrap();
    let good = broken_corpus_dir().join(library_file_name("good_c"));
    std::fs::copy(&good, dir.join(library_file_name("good_c"))).unwrap();
    let bytes = std::fs::read(&good).unwrap();
    let file = |name: &str| dir.join(library_file_name(name));
    std::fs::write(file("empty"), b"").unwrap();
    std::fs::write(file("text"), "#!/bin/sh\necho not a library\n").unwrap();
    std::fs::write(file("zip"), b"PK\x03\x04\x14\x00\x00\x00\x08\x00").unwrap();
    for (name, len) in [
        ("truncated_half", bytes.len() / 2),
        ("truncated_header", 40),
    ] {
        std::fs::write(file(name), &bytes[..len]).unwrap();
    }
    let root = calc_tests::workspace_root();
    let cc = |args: &[&str], out: &Path| {
        let status = std::process::Command::new(calc_tests::c_compiler())
            .args(args)
            .arg("-o")
            .arg(out)
            .status()
            .unwrap();
        assert!(status.success(), "{args:?}");
    };
    let program = root.join("tests/broken/not_a_library.c");
    let program = program.to_str().unwrap();
    cc(&["-no-pie", program], &file("executable"));
    cc(&["-pie", "-fPIE", program], &file("pie"));
    let include = root.join("include");
    let plugin = root.join("tests/broken/broken.c");
    cc(
        &[
            "-c",
            "-fPIC",
            "-I",
            include.to_str().unwrap(),
            plugin.to_str().unwrap(),
        ],
        &file("object"),
    );

    let mut m = PluginManager::new();
    assert_eq!(m.load_dir(&dir).unwrap(), 1, "the good plugin still loads");
    assert_eq!(m.eval("twice(21)"), Ok(42.0));
    let size = bytes.len();
    let expectations = [
        (
            "empty",
            "is empty (0 bytes), not a shared library".to_string(),
        ),
        (
            "executable",
            "is an ELF executable, not a shared library (build it with -shared)".into(),
        ),
        (
            "object",
            "is an ELF relocatable object (.o), not a shared library (link it with -shared)".into(),
        ),
        (
            "pie",
            "is a position-independent executable, not a shared library (build it with -shared)"
                .into(),
        ),
        ("text", "is a text file, not a shared library".into()),
        (
            "truncated_half",
            format!(
                "is a truncated shared library: {} bytes, but its ELF headers need ",
                size / 2
            ),
        ),
        (
            "truncated_header",
            "is a truncated shared library: 40 bytes, but its ELF headers need 64".into(),
        ),
        (
            "zip",
            "is not a shared library (not an ELF file: starts with 50 4b 03 04)".into(),
        ),
    ];
    assert_eq!(m.failures().len(), expectations.len());
    for (name, reason) in expectations {
        let path = file(name);
        let failure = m
            .failures()
            .iter()
            .find(|f| f.path == path)
            .unwrap_or_else(|| panic!("no failure for {name}"));
        assert!(
            matches!(failure.error, LoadError::NotALibrary { .. }),
            "{name}: {}",
            failure.error
        );
        let text = failure.error.to_string();
        let expected = format!("{}: {reason}", path.display());
        if name == "truncated_half" {
            assert!(text.starts_with(&expected), "{text}");
        } else {
            assert_eq!(text, expected);
        }
        // The loader used directly (no manager, no trust policy) says the same, and does not
        // crash on the truncated library.
        let direct = calc_host::loader::open(&path).unwrap_err();
        assert_eq!(direct.to_string(), text, "{name}");
    }
}
