//! `calc repl`: an interactive calculator over the loaded plugins, with variables, line editing
//! and history, that keeps working while plugins are reloaded under it.
//!
//! The manager runs in hot-reload mode (plugins are loaded from private copies), so `:reload`
//! and `--watch` can swap rebuilt libraries in. Compiled expressions hold live slots, so the
//! manager's mutex is taken only to compile a line, never while evaluating it: a reload never
//! waits for a slow calculation, and a calculation in flight finishes on the version it started
//! on.

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::Receiver;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use calc_host::events::HostEvent;
use calc_host::manager::rollout_hash;
use calc_host::reload::{apply, spawn_auto_reload, AutoReload, Change, DirWatcher};
use calc_host::{EvalError, PluginManager};
use rustyline::error::ReadlineError;
use rustyline::{DefaultEditor, ExternalPrinter};

use crate::{format_number, report_eval_error, Cli, EXIT_CALL_FAILED, EXIT_OK, EXIT_USAGE};

/// With `--watch`: how long a plugin file must be quiet before it is reloaded.
const WATCH_DEBOUNCE: Duration = Duration::from_millis(200);

const HELP: &str = "\
Enter an expression to evaluate it, e.g. 2 ^ 10 - max(3, 4) / 2.
  NAME = EXPRESSION   assign a variable (NAME: letters, digits, '_'; not starting with a digit)
  ans                 the last result
Commands:
  :plugins            the loaded plugins and their operations
  :reload             reload every plugin file of the plugin directories, drop deleted ones
  :health             calls, failures, crashes, timeouts and latency of each plugin
  :enable NAME        load a disabled plugin, or re-enable one the circuit breaker disabled
  :vars               the variables
  :help               this help
  :quit               leave (also Ctrl-D)";

/// What to do after a line.
enum Next {
    Continue,
    Quit,
}

struct Repl {
    manager: Arc<Mutex<PluginManager>>,
    /// The plugin directories, for `:reload`.
    dirs: Vec<PathBuf>,
    /// What the event printer has printed, for `:reload` to print its summary after them.
    printed: Arc<Printed>,
    vars: BTreeMap<String, f64>,
    rollout_key: Option<String>,
}

/// How many of the manager's own events (see `PluginManager::events_sent`) the event printer
/// has printed.
#[derive(Default)]
struct Printed {
    count: Mutex<u64>,
    changed: std::sync::Condvar,
}

impl Printed {
    fn one_more(&self) {
        *self.count.lock().unwrap_or_else(PoisonError::into_inner) += 1;
        self.changed.notify_all();
    }

    /// Waits until `sent` events are printed, or `limit` passed (the printer may be gone).
    fn wait_for(&self, sent: u64, limit: std::time::Duration) {
        let count = self.count.lock().unwrap_or_else(PoisonError::into_inner);
        let _ = self
            .changed
            .wait_timeout_while(count, limit, |printed| *printed < sent);
    }
}

fn lock(manager: &Mutex<PluginManager>) -> MutexGuard<'_, PluginManager> {
    manager.lock().unwrap_or_else(PoisonError::into_inner)
}

fn is_identifier(s: &str) -> bool {
    let mut chars = s.chars();
    chars.next().is_some_and(|c| c.is_alphabetic() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || c == '_')
}

/// `NAME = EXPRESSION` as (name, expression); `None` for anything else (`x == 1` included).
fn split_assignment(line: &str) -> Option<(&str, &str)> {
    let (name, expression) = line.split_once('=')?;
    let name = name.trim();
    (is_identifier(name) && !expression.starts_with('=')).then(|| (name, expression.trim()))
}

impl Repl {
    fn handle(&mut self, line: &str) -> Next {
        let line = line.trim();
        if line.is_empty() {
            return Next::Continue;
        }
        if let Some(command) = line.strip_prefix(':') {
            return self.command(command.trim());
        }
        let (name, expression) = match split_assignment(line) {
            Some((name, expression)) => (Some(name), expression),
            None => (None, line),
        };
        match self.eval(expression) {
            Ok(value) => {
                self.vars.insert("ans".into(), value);
                match name {
                    Some(name) => {
                        self.vars.insert(name.to_string(), value);
                        println!("{name} = {}", format_number(value));
                    }
                    None => println!("{}", format_number(value)),
                }
            }
            Err(e) => {
                report_eval_error(expression, &e);
                self.hint_enable(&e);
            }
        }
        Next::Continue
    }

    /// After an error from a plugin the circuit breaker has disabled, how to run it again.
    fn hint_enable(&self, e: &EvalError) {
        let EvalError::Call(call) = e else { return };
        let disabled = lock(&self.manager)
            .health(&call.plugin)
            .is_some_and(|h| h.disabled.is_some());
        if disabled {
            eprintln!("calc: hint: `:enable {}` enables it again", call.plugin);
        }
    }

    /// Compiles under the lock, evaluates without it.
    fn eval(&self, expression: &str) -> Result<f64, EvalError> {
        let compiled = {
            let manager = lock(&self.manager);
            calc_host::expr::compile_with_vars(&*manager, expression, &|name| {
                self.vars.get(name).copied()
            })?
        };
        let key = self.rollout_key.as_deref().unwrap_or(expression);
        compiled.eval_with_key(rollout_hash(key.as_bytes()))
    }

    fn command(&mut self, command: &str) -> Next {
        match command {
            "quit" | "q" | "exit" => return Next::Quit,
            "help" | "h" | "?" => println!("{HELP}"),
            "vars" => {
                if self.vars.is_empty() {
                    println!("no variables");
                }
                for (name, value) in &self.vars {
                    println!("{name} = {}", format_number(*value));
                }
            }
            "plugins" => self.plugins(),
            "reload" => self.reload(),
            "health" => {
                let manager = lock(&self.manager);
                for p in manager.plugins() {
                    if let Some(h) = manager.health(&p.name) {
                        let mode = if h.isolated { "isolated" } else { "in process" };
                        println!("{} ({mode}): {h}", p.name);
                        if let Some(why) = &h.disabled {
                            println!("  {why}");
                        }
                    }
                }
            }
            other if other.starts_with("enable ") => {
                let name = other["enable ".len()..].trim();
                let mut manager = lock(&self.manager);
                match manager.enable(name) {
                    Ok(info) => println!("{} {} enabled", info.name, info.version),
                    Err(e) => eprintln!("calc: error: {e}"),
                }
            }
            other => eprintln!("calc: error: unknown command ':{other}' (:help lists them)"),
        }
        Next::Continue
    }

    fn plugins(&self) {
        let manager = lock(&self.manager);
        let mut loaded = 0;
        for p in manager.plugins() {
            loaded += 1;
            let ops: Vec<String> = p
                .operations
                .iter()
                .map(|op| match op.symbol() {
                    Some(symbol) => format!("{} ({symbol})", op.name),
                    None => op.name.clone(),
                })
                .collect();
            println!(
                "{} {} (ABI {}): {}",
                p.name,
                p.version,
                p.abi_version,
                ops.join(", ")
            );
        }
        // Files whose latest attempt failed and that no loaded plugin comes from.
        let canonical = |p: &Path| std::fs::canonicalize(p).unwrap_or_else(|_| p.to_path_buf());
        let serving: Vec<PathBuf> = manager.plugins().map(|p| p.path.clone()).collect();
        let mut failed: Vec<PathBuf> = manager
            .failures()
            .iter()
            .map(|f| canonical(&f.path))
            .filter(|p| !serving.contains(p))
            .collect();
        failed.sort();
        failed.dedup();
        println!(
            "{loaded} loaded, {} failed, {} disabled",
            failed.len(),
            manager.disabled().len()
        );
    }

    /// Reloads every library file of the plugin directories and unloads the plugins whose file
    /// is gone; the events are printed as they come.
    fn reload(&self) {
        let mut manager = lock(&self.manager);
        let mut changes: Vec<Change> = manager
            .plugins()
            .map(|p| p.path.clone())
            .filter(|p| !p.exists())
            .map(Change::Removed)
            .collect();
        for dir in &self.dirs {
            if let Ok(files) = calc_host::manager::library_files(dir) {
                changes.extend(files.into_iter().map(Change::Upserted));
            }
        }
        let (mut ok, mut failed, mut removed) = (0, 0, 0);
        for change in &changes {
            match apply(&mut manager, change) {
                Some(HostEvent::Failed { .. }) => failed += 1,
                Some(HostEvent::Removed { .. }) => removed += 1,
                Some(_) => ok += 1,
                None => {}
            }
        }
        let sent = manager.events_sent();
        drop(manager);
        // The events print on the printer's thread: the summary comes after them.
        self.printed
            .wait_for(sent, std::time::Duration::from_secs(5));
        println!("reloaded {ok} files, {failed} failed, {removed} removed");
    }
}

/// `$XDG_STATE_HOME/calc/history`, or `~/.local/state/calc/history`.
fn history_path() -> Option<PathBuf> {
    std::env::var_os("XDG_STATE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/state")))
        .map(|state| state.join("calc/history"))
}

/// Prints every host event as it comes, until `quitting`: above the prompt through rustyline's
/// external printer on a terminal, plainly on standard output otherwise.
fn print_events(
    events: Receiver<HostEvent>,
    mut print: Box<dyn FnMut(String) + Send>,
    quitting: Arc<AtomicBool>,
    printed: Arc<Printed>,
) {
    let spawned = std::thread::Builder::new()
        .name("calc-events".into())
        .spawn(move || {
            for event in events {
                if quitting.load(Ordering::Relaxed) {
                    break;
                }
                // The manager logs the others when it reports them.
                let unloaded = matches!(event, HostEvent::Unloaded { .. });
                if unloaded {
                    tracing::info!("{event}");
                }
                print(format!("calc: {event}"));
                if !unloaded {
                    printed.one_more();
                }
            }
        });
    if let Err(e) = spawned {
        eprintln!("calc: warning: cannot start the event printer: {e}");
    }
}

fn plain_printer() -> Box<dyn FnMut(String) + Send> {
    Box::new(|line| {
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{line}");
        let _ = out.flush();
    })
}

/// Runs the REPL until `:quit` or end of input.
pub(crate) fn run(cli: &Cli, watch: bool) -> u8 {
    let (events, received) = std::sync::mpsc::channel();
    let mut manager = PluginManager::new();
    manager.enable_hot_reload(PluginManager::default_copy_dir());
    manager.report_events_to(events);
    let (manager, dirs) = match crate::load_plugins_into(cli, manager, true) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("calc: error: {e}");
            return EXIT_USAGE;
        }
    };
    let manager = Arc::new(Mutex::new(manager));

    let interactive = std::io::stdin().is_terminal() && std::io::stdout().is_terminal();
    let config = rustyline::Config::builder()
        .max_history_size(1000)
        .map(|b| b.auto_add_history(true).build())
        .unwrap_or_default();
    let mut editor = match DefaultEditor::with_config(config) {
        Ok(editor) => editor,
        Err(e) => {
            eprintln!("calc: error: cannot read input: {e}");
            return EXIT_CALL_FAILED;
        }
    };
    // History only for people: piped input is not worth remembering.
    let history = history_path().filter(|_| interactive);
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }

    let quitting = Arc::new(AtomicBool::new(false));
    let printer = if interactive {
        match editor.create_external_printer() {
            Ok(mut p) => Box::new(move |line: String| {
                let _ = p.print(line);
            }) as Box<dyn FnMut(String) + Send>,
            Err(_) => plain_printer(),
        }
    } else {
        plain_printer()
    };
    let printed = Arc::new(Printed::default());
    print_events(
        received,
        printer,
        Arc::clone(&quitting),
        Arc::clone(&printed),
    );

    let auto_reload: Option<AutoReload> = watch
        .then(|| {
            let existing: Vec<PathBuf> = dirs.iter().filter(|d| d.is_dir()).cloned().collect();
            match DirWatcher::new(&existing, WATCH_DEBOUNCE) {
                Ok(watcher) => Some(spawn_auto_reload(Arc::clone(&manager), watcher, |_| {})),
                Err(e) => {
                    eprintln!("calc: warning: {e}; use :reload to pick up changes");
                    None
                }
            }
        })
        .flatten();

    if interactive {
        let n = lock(&manager).plugins().count();
        println!(
            "calc {}: {n} plugins loaded{}; :help for help, :quit or Ctrl-D to leave",
            env!("CARGO_PKG_VERSION"),
            if auto_reload.is_some() {
                ", reloaded as they change"
            } else {
                ""
            }
        );
    }

    let mut repl = Repl {
        manager,
        dirs,
        printed,
        vars: BTreeMap::new(),
        rollout_key: cli.rollout_key.clone(),
    };
    let code = loop {
        match editor.readline("calc> ") {
            Ok(line) => {
                if let Next::Quit = repl.handle(&line) {
                    break EXIT_OK;
                }
            }
            Err(ReadlineError::Interrupted) => continue,
            Err(ReadlineError::Eof) => break EXIT_OK,
            Err(e) => {
                eprintln!("calc: error: cannot read input: {e}");
                break EXIT_CALL_FAILED;
            }
        }
    };
    if let Some(path) = &history {
        if let Some(dir) = path.parent() {
            let _ = std::fs::create_dir_all(dir);
        }
        if let Err(e) = editor.save_history(path) {
            tracing::debug!("cannot save the history to {}: {e}", path.display());
        }
    }
    // Unloading everything at exit is not news.
    quitting.store(true, Ordering::Relaxed);
    drop(auto_reload);
    drop(repl);
    code
}
