//! textlint: checks text files with plugins. Every check is a calc plugin implementing
//! textlint's own interface, `calc-apps.lint` 1.0 (`include/textlint.h`), a bytes interface:
//! textlint asks each plugin which file extensions it checks, and hands it every such file.
//!
//! ```text
//! textlint --plugin-dir DIR [--isolate] [--set PLUGIN.KEY=VALUE]... FILE...
//! textlint --plugin-dir DIR [--isolate] --stdin     (paths on standard input; hot reload)
//! textlint --plugin-dir DIR --list
//! ```
//!
//! Findings go to standard output as `FILE:LINE:COLUMN: message [plugin]`, in line order; plugin files that
//! were refused, and checks that failed, to standard error. Exit status: 0 when no finding, 1
//! when there are findings, 2 when a file, a plugin directory or a check failed.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use std::io::Write;
use std::time::Duration;

use calc_host::config::Settings;
use calc_host::reload::{apply, DirWatcher};
use calc_host::{InterfaceHandle, PluginManager};
use clap::Parser;

/// The interface textlint's plugins implement.
const INTERFACE: &str = "calc-apps.lint";
const MAJOR: u16 = 1;
/// Slots of `textlint_vtable_t`.
const EXTENSIONS: usize = 0;
const CHECK: usize = 1;
/// How long a changed plugin file must be quiet before `--stdin` reloads it.
const WATCH_DEBOUNCE: Duration = Duration::from_millis(200);

#[derive(Parser, Debug)]
#[command(name = "textlint", version, about = "Checks text files with plugins")]
struct Cli {
    /// A directory of textlint plugins (repeatable).
    #[arg(long = "plugin-dir", value_name = "DIR", required = true)]
    plugin_dirs: Vec<PathBuf>,
    /// Run every plugin in a runner process of its own: a plugin that crashes or hangs is
    /// reported, and textlint goes on.
    #[arg(long)]
    isolate: bool,
    /// A configuration value for a plugin, as PLUGIN.KEY=VALUE (repeatable).
    #[arg(long = "set", value_name = "PLUGIN.KEY=VALUE")]
    settings: Vec<String>,
    /// List the plugins and the extensions each checks, instead of checking files.
    #[arg(long)]
    list: bool,
    /// Read the files to check from standard input, one path per line, and follow the plugin
    /// directories meanwhile: a plugin rebuilt, added or deleted is reloaded (its state handed
    /// to the new version) before the next file. After each file, prints `FILE: N findings`.
    #[arg(long)]
    stdin: bool,
    /// The files to check.
    files: Vec<PathBuf>,
}

/// A loaded checker: its handle and the extensions it checks (`*`: all).
struct Checker {
    handle: InterfaceHandle,
    extensions: Vec<String>,
}

impl Checker {
    fn checks(&self, file: &Path) -> bool {
        let ext = file.extension().and_then(|e| e.to_str()).unwrap_or("");
        self.extensions.iter().any(|e| e == "*" || e == ext)
    }

    fn name(&self) -> &str {
        &self.handle.plugin().name
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let mut settings = Settings::default();
    settings.isolation.all = cli.isolate;
    let mut manager = PluginManager::with_settings(settings);
    for setting in &cli.settings {
        let parsed = setting
            .split_once('=')
            .and_then(|(k, v)| k.split_once('.').map(|(p, k)| (p, k, v)));
        let Some((plugin, key, value)) = parsed else {
            eprintln!("textlint: --set {setting:?}: expected PLUGIN.KEY=VALUE");
            return ExitCode::from(2);
        };
        manager.set_plugin_config(plugin, key, value);
    }
    // With --stdin: plugins loaded from private copies, so that a rebuilt file can be
    // reloaded, and the directories watched from before they are read.
    let watcher = if cli.stdin {
        manager.enable_hot_reload(PluginManager::default_copy_dir());
        match DirWatcher::new(&cli.plugin_dirs, WATCH_DEBOUNCE) {
            Ok(w) => Some(w),
            Err(e) => {
                eprintln!("textlint: {e}");
                return ExitCode::from(2);
            }
        }
    } else {
        None
    };
    let mut failed = false;
    for dir in &cli.plugin_dirs {
        if let Err(e) = manager.load_dir(dir) {
            eprintln!("textlint: {e}");
            failed = true;
        }
    }
    for failure in manager.failures() {
        eprintln!("textlint: skipped {}", failure.error);
    }
    let mut checkers = checkers_of(&manager, &mut failed);
    if cli.list {
        for c in &checkers {
            let p = c.handle.plugin();
            let mode = if c.handle.is_isolated() {
                ", isolated"
            } else {
                ""
            };
            println!(
                "{} {} ({}{mode}): {}",
                p.name,
                p.version,
                p.path.display(),
                c.extensions.join(",")
            );
        }
        return ExitCode::from(if failed { 2 } else { 0 });
    }
    let mut findings = 0usize;
    for file in &cli.files {
        findings += check_file(&checkers, file, &mut failed);
    }
    if let Some(watcher) = watcher {
        for line in std::io::stdin().lines() {
            let Ok(line) = line else { break };
            let changes = watcher.try_changes();
            if !changes.is_empty() {
                // Handles pin the versions they came from: let go before reloading.
                drop(checkers);
                for change in &changes {
                    if let Some(event) = apply(&mut manager, change) {
                        eprintln!("textlint: {event}");
                    }
                }
                checkers = checkers_of(&manager, &mut failed);
            }
            let file = PathBuf::from(line);
            let n = check_file(&checkers, &file, &mut failed);
            findings += n;
            println!("{}: {n} findings", file.display());
            let _ = std::io::stdout().flush();
        }
    }
    ExitCode::from(if failed {
        2
    } else if findings > 0 {
        1
    } else {
        0
    })
}

/// The `(line, column)` a finding starts with (`LINE:COLUMN: message`); findings without one
/// sort first.
fn position(finding: &str) -> (usize, usize) {
    let mut parts = finding.splitn(3, ':');
    let mut number = || {
        parts
            .next()
            .and_then(|p| p.trim().parse().ok())
            .unwrap_or(0)
    };
    (number(), number())
}

/// The loaded checkers, each with the extensions it checks; a plugin whose `extensions` fails
/// is reported and left out.
fn checkers_of(manager: &PluginManager, failed: &mut bool) -> Vec<Checker> {
    let mut checkers = Vec::new();
    for handle in manager.interface_providers(INTERFACE, MAJOR) {
        match handle.call_bytes(EXTENSIONS, b"") {
            Ok(list) => {
                let list = String::from_utf8_lossy(&list);
                let extensions = list.split(',').map(|e| e.trim().to_string()).collect();
                checkers.push(Checker { handle, extensions });
            }
            Err(e) => {
                eprintln!("textlint: skipped plugin {}: {e}", handle.plugin().name);
                *failed = true;
            }
        }
    }
    checkers
}

/// Checks `file` with every checker of its extension and prints the findings in line order;
/// returns how many there were.
fn check_file(checkers: &[Checker], file: &Path, failed: &mut bool) -> usize {
    let text = match std::fs::read(file) {
        Ok(t) => t,
        Err(e) => {
            eprintln!("textlint: {}: {e}", file.display());
            *failed = true;
            return 0;
        }
    };
    let mut found: Vec<((usize, usize), String)> = Vec::new();
    for checker in checkers.iter().filter(|c| c.checks(file)) {
        match checker.handle.call_bytes(CHECK, &text) {
            Ok(out) => {
                for line in String::from_utf8_lossy(&out).lines() {
                    found.push((position(line), format!("{line} [{}]", checker.name())));
                }
            }
            Err(e) => {
                eprintln!("textlint: {}: {e}", file.display());
                *failed = true;
            }
        }
    }
    found.sort_by_key(|(at, _)| *at);
    for (_, finding) in &found {
        println!("{}:{finding}", file.display());
    }
    found.len()
}
