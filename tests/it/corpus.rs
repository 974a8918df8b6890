//! The whole hostile corpus, in every mode: the memory attacks of `tests/broken/hostile.c`
//! ([`HOSTILE_CASES`]), its load-time faults ([`LOAD_TIME_CASES`]: constructors and entry
//! points that crash, abort, exit, hang, overflow the stack, break the runner's connection,
//! fork) and hostile files ([`FILE_CASES`]: a FIFO, a directory, a symlink loop, an empty file,
//! a truncated ELF, an ELF for another machine, a library whose dependency is missing), beside
//! the example plugins. In the default mode, with `--isolate`, through `plugins check` (with and
//! without `--conformance`) and under hot reload: the host never dies, never hangs past its
//! limits, names every file, and the good plugins keep answering.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::OnceLock;
use std::time::Duration;

use calc_tests::{
    build_c_plugin, calc_binary, examples_dir, forked_pids_file, hostile_corpus_dir,
    library_file_name, load_time_corpus_dir, scratch_dir, target_dir, workspace_root,
    HOSTILE_CASES, LOAD_TIME_CASES,
};

/// The hostile files made by [`corpus`] (file names).
const FILE_CASES: &[&str] = &[
    "libfifo.so",
    "libdirectory.so",
    "libloop.so",
    "libempty.so",
    "libtruncated.so",
    "libforeign.so",
    "libmissing_dep.so",
];

/// Longest any one command of the matrix may take: every hang in the corpus is cut at the
/// vetting limit of the test's configuration (400 ms).
const BOUND: Duration = Duration::from_secs(60);

struct Corpus {
    dir: PathBuf,
    /// Every hostile file, as the directory lists it.
    hostile: Vec<PathBuf>,
    config: PathBuf,
}

/// One directory with the example plugins and every hostile file, and a configuration that
/// gives vetting and runners 400 ms to load a file.
fn corpus() -> &'static Corpus {
    static CORPUS: OnceLock<Corpus> = OnceLock::new();
    CORPUS.get_or_init(|| {
        let root = scratch_dir(&format!("corpus-{}", std::process::id()));
        let dir = root.join("plugins");
        std::fs::create_dir_all(&dir).unwrap();
        let mut hostile = Vec::new();
        for (from, cases) in [
            (hostile_corpus_dir(), HOSTILE_CASES),
            (load_time_corpus_dir(), LOAD_TIME_CASES),
        ] {
            for case in cases {
                let name = library_file_name(&format!("hostile_{}", case.to_lowercase()));
                std::fs::copy(from.join(&name), dir.join(&name)).unwrap();
                hostile.push(dir.join(name));
            }
        }
        for entry in std::fs::read_dir(examples_dir()).unwrap() {
            let from = entry.unwrap().path();
            if calc_host::manager::is_library_file(&from) {
                std::fs::copy(&from, dir.join(from.file_name().unwrap())).unwrap();
            }
        }
        hostile.extend(hostile_files(&root, &dir));
        let config = root.join("calc.toml");
        std::fs::write(&config, "[isolation]\nstart_timeout_ms = 400\n").unwrap();
        Corpus {
            dir,
            hostile,
            config,
        }
    })
}

/// Makes the [`FILE_CASES`] in `dir` (helpers in `root`); returns their paths.
fn hostile_files(root: &Path, dir: &Path) -> Vec<PathBuf> {
    let good = load_time_corpus_dir().join(library_file_name("good_c"));
    let at = |name: &str| dir.join(name);
    let made = Command::new("mkfifo")
        .arg(at("libfifo.so"))
        .status()
        .unwrap();
    assert!(made.success(), "mkfifo");
    std::fs::create_dir(at("libdirectory.so")).unwrap();
    std::os::unix::fs::symlink("libloop.so", at("libloop.so")).unwrap();
    std::fs::write(at("libempty.so"), b"").unwrap();
    let bytes = std::fs::read(&good).unwrap();
    std::fs::write(at("libtruncated.so"), &bytes[..100]).unwrap();
    // e_machine (offset 18, little-endian): AArch64 on other machines, x86-64 on AArch64.
    let mut foreign = bytes.clone();
    let machine: u16 = if cfg!(target_arch = "aarch64") {
        62
    } else {
        183
    };
    foreign[18..20].copy_from_slice(&machine.to_le_bytes());
    std::fs::write(at("libforeign.so"), foreign).unwrap();
    // Linked against a library that is gone by the time it is loaded.
    let ghost_dir = root.join("ghost");
    let ghost_src = root.join("ghost.c");
    std::fs::write(&ghost_src, "int calc_ghost(void) { return 1; }\n").unwrap();
    build_c_plugin(&ghost_src, &ghost_dir.join("libcalcghost.so"), &[]).unwrap();
    build_c_plugin(
        &workspace_root().join("tests/broken/broken.c"),
        &at("libmissing_dep.so"),
        &[
            "-DPLUGIN_NAME=\"missing_dep\"",
            &format!("-L{}", ghost_dir.display()),
            "-Wl,--no-as-needed",
            "-lcalcghost",
        ],
    )
    .unwrap();
    std::fs::remove_dir_all(&ghost_dir).unwrap();
    FILE_CASES.iter().map(|name| at(name)).collect()
}

/// Runs `command`, failing the test if it takes longer than [`BOUND`] (it is killed).
fn bounded(mut command: Command) -> Output {
    let shown = format!("{command:?}");
    let child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("runs");
    let pid = child.id();
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(BOUND) {
        Ok(output) => output.expect("waited for"),
        Err(_) => {
            let _ = Command::new("kill").args(["-9", &pid.to_string()]).status();
            panic!("{shown} hung for more than {BOUND:?}");
        }
    }
}

fn calc(args: &[&str]) -> Command {
    let mut command = Command::new(calc_binary());
    command
        .args(["--config", corpus().config.to_str().unwrap()])
        .args(args)
        .env(
            "XDG_CACHE_HOME",
            target_dir().join(format!("calc-tests/corpus-cache-{}", std::process::id())),
        )
        .env_remove("CALC_PLUGIN_PATH")
        .env_remove("RUST_LOG");
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

/// The process `pid` is gone (or a zombie nobody reaps: dead all the same).
fn dead(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Err(_) => true,
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state == "Z" || state == "X"),
    }
}

/// Every process the forking constructor made while loading in a run has died with it.
fn no_forked_child_survives() {
    let pids = std::fs::read_to_string(forked_pids_file()).unwrap_or_default();
    for pid in pids.lines().filter_map(|l| l.parse::<u32>().ok()) {
        assert!(
            dead(pid),
            "process {pid}, forked while loading a plugin, outlived the run"
        );
    }
}

/// A successful evaluation whose standard error names every hostile file.
fn assert_answers_and_names_everything(mode: &str, out: &Output) {
    use std::os::unix::process::ExitStatusExt;
    let err = text(&out.stderr);
    assert_eq!(out.status.signal(), None, "{mode}: calc was killed\n{err}");
    assert_eq!(out.status.code(), Some(0), "{mode}: {err}");
    assert_eq!(text(&out.stdout), "14\n", "{mode}: {err}");
    for file in &corpus().hostile {
        let name = file.display().to_string();
        assert!(
            err.lines()
                .any(|l| l.starts_with("calc: skipped ") && l.contains(&name)),
            "{mode}: {name} is not named\n{err}"
        );
    }
}

/// The whole matrix, one mode after the other: every forked process is checked after each
/// (the modes share the corpus, and with it the file its forking constructor writes to).
#[test]
fn every_mode_survives_the_corpus_and_names_every_file() {
    assert!(corpus().hostile.len() >= 25, "{}", corpus().hostile.len());
    default_mode();
    isolate();
    plugins_check();
    hot_reload();
}

fn default_mode() {
    let dir = corpus().dir.to_str().unwrap();
    for round in ["first sight", "cached"] {
        let out = bounded(calc(&["--plugin-dir", dir, "eval", "2 * (3 + 4)"]));
        assert_answers_and_names_everything(&format!("default, {round}"), &out);
    }
    no_forked_child_survives();
}

fn isolate() {
    let dir = corpus().dir.to_str().unwrap();
    let out = bounded(calc(&[
        "--isolate",
        "--plugin-dir",
        dir,
        "eval",
        "2 * (3 + 4)",
    ]));
    assert_answers_and_names_everything("--isolate", &out);
    no_forked_child_survives();
}

fn plugins_check() {
    use std::os::unix::process::ExitStatusExt;
    for extra in [None, Some("--conformance")] {
        for file in &corpus().hostile {
            let name = file.display().to_string();
            let mut args = vec!["plugins", "check"];
            args.extend(extra);
            args.push(&name);
            let out = bounded(calc(&args));
            let all = text(&out.stdout) + &text(&out.stderr);
            assert_eq!(out.status.signal(), None, "{args:?}: killed\n{all}");
            assert!(
                !out.status.success() && out.status.code().is_some(),
                "{args:?}: passed\n{all}"
            );
            assert!(all.contains(&name), "{args:?}: file not named\n{all}");
        }
    }
    no_forked_child_survives();
}

fn hot_reload() {
    use calc_host::config::Settings;
    use calc_host::PluginManager;
    let root = scratch_dir(&format!("corpus-reload-{}", std::process::id()));
    let watched = root.join("plugins");
    std::fs::create_dir_all(&watched).unwrap();
    let target = watched.join(library_file_name("good_c"));
    std::fs::copy(
        load_time_corpus_dir().join(library_file_name("good_c")),
        &target,
    )
    .unwrap();
    let mut settings = Settings::default();
    settings.isolation.runner = Some(calc_tests::runner_binary().to_path_buf());
    settings.isolation.start_timeout = Duration::from_millis(400);
    let mut manager = PluginManager::with_settings(settings);
    manager.enable_hot_reload(root.join("copies"));
    manager.load_file(&target).expect("the good plugin loads");
    let twice = manager.live_operation("twice").expect("twice");
    let regular = corpus()
        .hostile
        .iter()
        .filter(|f| std::fs::symlink_metadata(f).is_ok_and(|m| m.file_type().is_file()));
    let mut tried = 0;
    for file in regular {
        // A new build: the hostile file takes the good one's place.
        std::fs::remove_file(&target).unwrap();
        std::fs::copy(file, &target).unwrap();
        let refused = manager.reload_file(&target);
        assert!(refused.is_err(), "{}: reloaded", file.display());
        let message = refused.unwrap_err().to_string();
        assert!(
            message.contains(&target.display().to_string()),
            "{}: {message}",
            file.display()
        );
        assert_eq!(twice.call(&[21.0]).unwrap(), 42.0, "{}", file.display());
        tried += 1;
    }
    assert!(tried >= 25, "only {tried} hostile builds");
    no_forked_child_survives();
}
