//! `calc`: a command-line calculator whose every operator and function comes from a plugin.
#![forbid(unsafe_code)]

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use calc_host::cache::MetadataCache;
use calc_host::config::Settings;
use calc_host::listing::Listing;
use calc_host::trust;
use calc_host::{EvalError, LoadError, PluginManager};
use clap::{Parser, Subcommand, ValueEnum};

mod map;
mod repl;

const EXIT_OK: u8 = 0;
const EXIT_CALL_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_PLUGINS: u8 = 3;

const AFTER_HELP: &str = "\
Plugin directories:
  --plugin-dir DIR (repeatable), CALC_PLUGIN_PATH (':'-separated) and the config file's
  plugin_dirs, in that order. When none is given, the default directories: <directory of the
  calc executable>/plugins, then $XDG_DATA_HOME/calc/plugins (~/.local/share/calc/plugins);
  missing ones are skipped silently. Libraries load in file-name order; a plugin that fails to
  load is reported and skipped.

Configuration:
  --config PATH or CALC_CONFIG, else $XDG_CONFIG_HOME/calc/config.toml (~/.config/calc/config.toml)
  when it exists. It can disable plugins, require version ranges, pass values to plugins, choose
  which plugin serves an operation and roll out a candidate implementation (docs/CONFIG.md).

Exit status:
  0  success
  1  an operation failed (division by zero, domain error, error reported by a plugin)
  2  invalid command line, configuration or expression (parse error, unknown operator or
     function, wrong number of arguments)
  3  plugins: `plugins list` found plugins that failed to load, `plugins check` refused
     one or (with --conformance) found problems in one, `plugins verify` found a file unsigned
     or badly signed, or `plugins sign` could not sign one

Trust:
  Before opening a plugin file, calc refuses it when it, its directory or a directory above is
  writable by other users or owned by another user (--allow-insecure allows that), when it is a
  symbolic link (--allow-symlinks), when its directory holds a calc-plugins.lock (`calc plugins
  lock`) that does not list it with the same SHA-256, and, when the config file lists trusted
  keys ([trust] keys), when it has no valid ed25519 signature <file>.sig by one of them
  (`calc plugins keygen`, `sign`, `verify`). See docs/TRUST.md.";

const MAP_HELP: &str = "\
Input:
  One number per line when the expression uses one variable (`calc map \"x^2 + 3*x - 1\"`);
  CSV with a header row naming the columns when it uses several, or when the first line holds
  a comma or is the variable's name (`calc map \"a * b + c\" data.csv`: columns a, b and c;
  other columns are ignored). Blank lines are skipped. Fields may be quoted; a quoted field
  cannot hold a comma.

Output:
  One result per input row on standard output, formatted as by `calc eval`, written as rows are
  read: the input may be larger than memory. The expression is compiled once and evaluated
  operation by operation over batches of rows, always by the implementation serving each
  operation (no rollout, fallback or per-call statistics). A progress bar is shown on stderr
  for a large file, or standard input after a few seconds, when stderr is a terminal.

Errors:
  A missing column or a malformed number (named by line and column) exits with status 2; an
  operation that fails (e.g. division by zero) stops at that row, after printing the results
  of the rows before it, naming its line, with status 1.";

/// A calculator whose operators and functions are plugins (C, C++ or Rust) loaded at run time.
#[derive(Parser, Debug)]
#[command(name = "calc", version, about, after_help = AFTER_HELP)]
struct Cli {
    /// Load plugins from this directory (repeatable; replaces the default directories).
    #[arg(long = "plugin-dir", value_name = "DIR", global = true)]
    plugin_dirs: Vec<PathBuf>,

    /// Configuration file (default: $XDG_CONFIG_HOME/calc/config.toml when it exists).
    #[arg(long, value_name = "PATH", env = "CALC_CONFIG", global = true)]
    config: Option<PathBuf>,

    /// Do not load the plugin with this name (repeatable).
    #[arg(long, value_name = "NAME", global = true)]
    disable: Vec<String>,

    /// Let the plugin with this name win every conflict (repeatable; first is strongest).
    #[arg(long, value_name = "NAME", global = true)]
    prefer: Vec<String>,

    /// Rollout key (e.g. a user id): the same key always gets the same implementations
    /// (default: the expression itself).
    #[arg(long, value_name = "KEY", env = "CALC_ROLLOUT_KEY", global = true)]
    rollout_key: Option<String>,

    /// Run every plugin in its own runner process (`calc-plugin-runner`): a plugin that
    /// crashes, exits or hangs costs only the call in progress (docs/ISOLATION.md).
    #[arg(long, global = true)]
    isolate: bool,

    /// Do not report plugins that failed to load (they are still skipped).
    #[arg(short, long, global = true)]
    quiet: bool,

    /// Load plugin files and directories that other users can write or that another user owns
    /// (refused by default; also `[trust] allow_insecure_permissions`).
    #[arg(long, global = true)]
    allow_insecure: bool,

    /// Follow symbolic links to plugin files (refused by default; also `[trust]
    /// allow_symlinks`).
    #[arg(long, global = true)]
    allow_symlinks: bool,

    /// Log more (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Evaluate expressions, e.g. `calc eval "2 ^ 10 - max(3, 4) / 2"`; one result per line.
    Eval {
        /// The expressions (each may start with '-').
        #[arg(required = true, allow_hyphen_values = true)]
        expressions: Vec<String>,
        /// After evaluating, print call and error counts per implementation to stderr.
        #[arg(long)]
        stats: bool,
    },
    /// Evaluate an expression over many rows of numbers, e.g. `calc map "x^2 + 3*x - 1" data.txt`
    /// or `calc map "a * b + c" data.csv`; one result per line.
    #[command(after_help = MAP_HELP)]
    Map {
        /// The expression; its variables (identifiers not followed by '(') are input columns.
        #[arg(allow_hyphen_values = true)]
        expression: String,
        /// Input file (default or '-': standard input).
        file: Option<PathBuf>,
    },
    /// Call one operation by name (or infix symbol), e.g. `calc run add 10 5`.
    Run {
        /// Operation name, e.g. `add`, or an infix symbol such as `+`.
        operation: String,
        /// Operands.
        #[arg(allow_negative_numbers = true)]
        args: Vec<f64>,
    },
    /// An interactive calculator: variables (`x = 3`, `ans`), line editing and history
    /// (`$XDG_STATE_HOME/calc/history`); `:help` lists its commands.
    Repl {
        /// Watch the plugin directories and reload plugins as their files change (rebuilt,
        /// added, deleted), printing each change as it happens.
        #[arg(long)]
        watch: bool,
    },
    /// Inspect plugins.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
    /// Create a plugin project that builds and loads as generated.
    NewPlugin {
        /// Language of the plugin.
        #[arg(long, value_enum)]
        lang: Lang,
        /// Plugin (and operation) name: an identifier.
        name: String,
        /// Folder to create (default: ./NAME).
        #[arg(long)]
        dir: Option<PathBuf>,
    },
}

#[derive(Subcommand, Debug)]
enum PluginsCommand {
    /// List plugins and their status: enabled, overridden (another plugin serves all its
    /// operations), disabled, failed. What validation found, and whether each plugin started,
    /// is cached per file ($XDG_CACHE_HOME/calc/plugins.json): an unchanged file that started
    /// with the same configuration is not opened again; a new or changed one is validated and
    /// started once. Exit status 3 when a file failed, its `init` included.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Do not use the cache: load and start every plugin, as `eval` does.
        #[arg(long)]
        no_cache: bool,
    },
    /// Validate plugin files without keeping them loaded; print their metadata or the exact
    /// reason each is refused. The configuration applies as when loading: the trust policy,
    /// version ranges (`[versions]`) and, with --conformance, the plugin's values
    /// ([plugins.NAME.config]) for its `init`; without --conformance `init` does not run.
    /// Exit status 0 when all pass, 3 otherwise.
    Check {
        /// Plugin libraries to check.
        #[arg(required = true)]
        files: Vec<PathBuf>,
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
        /// Also exercise every operation of each valid plugin with edge inputs (0, negative,
        /// NaN, infinities, huge values), alone and from several threads at once, in a child
        /// process; report crashes, hangs, panics, non-determinism and error messages that are
        /// empty or not UTF-8. Exit status 3 when anything is found.
        #[arg(long)]
        conformance: bool,
        /// Seconds a conformance run may go without progress before it counts as a hang.
        #[arg(long, value_name = "SECS", default_value_t = 30.0, hide = true)]
        conformance_timeout: f64,
    },
    /// Write calc-plugins.lock in DIR: the SHA-256 of each shared library in it, in the format
    /// of `sha256sum` (`sha256sum -c calc-plugins.lock` checks it too). While it exists, calc
    /// refuses a library of DIR that it does not list or whose digest differs.
    Lock {
        /// The plugin directory (default: the current directory).
        dir: Option<PathBuf>,
    },
    /// Create an ed25519 key pair for signing plugins: PREFIX.key (secret, mode 0600) and
    /// PREFIX.pub (the public key to list in `[trust] keys`).
    Keygen {
        /// Path prefix of the two files.
        #[arg(long, value_name = "PREFIX", default_value = "calc-plugin")]
        out: PathBuf,
        /// Replace existing key files.
        #[arg(long)]
        force: bool,
    },
    /// Sign plugin files: writes FILE.sig (a detached ed25519 signature) next to each. Exit
    /// status 3 when a file cannot be signed.
    Sign {
        /// The secret key file (from `calc plugins keygen`).
        #[arg(long, value_name = "SECRET")]
        key: PathBuf,
        /// Plugin libraries to sign.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Check the signatures FILE.sig of plugin files. Exit status 0 when every file is signed
    /// by one of the keys, 3 otherwise.
    Verify {
        /// A public key: a .pub file or the base64 key itself (repeatable; default: the
        /// configured `[trust] keys`).
        #[arg(long, value_name = "PUBLIC")]
        key: Vec<String>,
        /// Plugin libraries to verify.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
    /// Internal: the child process of `check --conformance`, which exercises FILE and writes
    /// JSON lines to standard output.
    #[command(hide = true)]
    ConformanceWorker {
        /// Read the plugins' configuration values from standard input (JSON: plugin name to
        /// key to value) and start the plugin with its own.
        #[arg(long)]
        config_stdin: bool,
        /// The plugin library.
        file: PathBuf,
    },
}

#[derive(ValueEnum, Clone, Copy, Debug)]
enum Lang {
    C,
    Rust,
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
    if verbose == 0 && std::env::var_os("RUST_LOG").is_none_or(|v| v.is_empty()) {
        // Quiet by default: with no subscriber every log call is a no-op, and start-up does not
        // pay for building a filter.
        return;
    }
    let default = match verbose {
        0 => "off",
        1 => "info",
        2 => "debug",
        _ => "trace",
    };
    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .try_init();
}

/// The settings: the config file (explicit, or the default one if it exists) plus CLI flags.
fn settings(cli: &Cli) -> Result<Settings, String> {
    let mut settings = match &cli.config {
        Some(path) => Settings::load(path).map_err(|e| e.to_string())?,
        None => match Settings::default_path().filter(|p| p.is_file()) {
            Some(path) => Settings::load(&path).map_err(|e| e.to_string())?,
            None => Settings::default(),
        },
    };
    use calc_host::config::MentionRole;
    for name in &cli.disable {
        settings.disabled.insert(name.clone());
        settings.mention(name, MentionRole::Disable, format!("--disable {name}"));
    }
    for name in &cli.prefer {
        settings.mention(name, MentionRole::Prefer, format!("--prefer {name}"));
    }
    if cli.isolate {
        settings.isolation.all = true;
    }
    let mut prefer = cli.prefer.clone();
    prefer.extend(
        settings
            .prefer
            .drain(..)
            .filter(|p| !cli.prefer.contains(p)),
    );
    settings.prefer = prefer;
    settings.trust.allow_insecure_permissions |= cli.allow_insecure;
    settings.trust.allow_symlinks |= cli.allow_symlinks;
    Ok(settings)
}

/// The directories to load, in order, each with whether its absence is worth reporting.
fn plugin_dirs(cli: &Cli, settings: &Settings) -> Vec<(PathBuf, bool)> {
    let mut dirs: Vec<(PathBuf, bool)> =
        cli.plugin_dirs.iter().map(|d| (d.clone(), true)).collect();
    if let Some(path) = std::env::var_os("CALC_PLUGIN_PATH") {
        dirs.extend(
            std::env::split_paths(&path)
                .filter(|p| !p.as_os_str().is_empty())
                .map(|p| (p, true)),
        );
    }
    dirs.extend(settings.plugin_dirs.iter().map(|d| (d.clone(), true)));
    if dirs.is_empty() {
        dirs = default_dirs();
    }
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|(d, _)| seen.insert(std::fs::canonicalize(d).unwrap_or_else(|_| d.clone())));
    dirs
}

/// `<exe dir>/plugins` and `$XDG_DATA_HOME/calc/plugins`, whose absence is not reported.
fn default_dirs() -> Vec<(PathBuf, bool)> {
    let mut dirs = Vec::new();
    if let Some(dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(|d| d.join("plugins")))
    {
        dirs.push((dir, false));
    }
    let data = std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".local/share")));
    if let Some(data) = data {
        dirs.push((data.join("calc/plugins"), false));
    }
    dirs
}

/// The vetting child for files the metadata cache has no fresh entry for, as
/// `[isolation] vet` asks (see `calc_host::vet::for_settings`): `None` validates such files in
/// this process.
fn vetting(settings: &Settings) -> Option<calc_host::vet::Vetter> {
    calc_host::vet::for_settings(settings)
}

fn load_plugins(cli: &Cli, report: bool) -> Result<PluginManager, String> {
    load_plugins_into(cli, PluginManager::new(), report).map(|(manager, _)| manager)
}

/// Loads lazily for commands that know what they will call (`eval`, `run`, `map`): plugins the
/// metadata cache already validated are only opened when `texts` (the expressions, or the
/// operation name) may use them; other files load at once, so their failures are reported.
fn load_plugins_for(cli: &Cli, texts: &[&str]) -> Result<PluginManager, String> {
    let settings = settings(cli)?;
    if settings.isolation.all {
        // The metadata cache validates new files by opening them in this process; isolating
        // every plugin means opening none here, so each starts in its runner instead.
        return load_plugins(cli, true);
    }
    let dirs = plugin_dirs(cli, &settings);
    let vetting = vetting(&settings);
    let mut manager = PluginManager::with_settings(settings);
    // One cache file per directory, so that a command reads only the entries of the
    // directories it uses (`plugins list` keeps its own, global one).
    let cache_dir = MetadataCache::default_path().and_then(|p| p.parent().map(Path::to_path_buf));
    for (dir, explicit) in dirs {
        if !explicit && !dir.is_dir() {
            continue;
        }
        let mut cache = match &cache_dir {
            Some(base) => {
                let canonical = std::fs::canonicalize(&dir).unwrap_or_else(|_| dir.clone());
                let key =
                    calc_host::manager::rollout_hash(canonical.as_os_str().as_encoded_bytes());
                MetadataCache::open(base.join(format!("dir-{key:016x}.json")))
            }
            None => MetadataCache::in_memory(),
        };
        if let Some(vetter) = &vetting {
            cache.vet_with(vetter.fresh());
        }
        let _ = manager.load_dir_lazy(&dir, &mut cache);
        if let Err(e) = cache.save() {
            tracing::debug!("cannot write the plugin cache: {e}");
        }
    }
    for text in texts {
        manager.open_for(text);
    }
    remember_failed_starts(&manager);
    report_loading(cli, &manager);
    Ok(manager)
}

/// When a plugin's `init` failed, records it (with the starts that succeeded) in the cache
/// `plugins list` reads, so that a listing never shows as enabled a plugin that just failed to
/// start. The cache is not touched when nothing failed.
fn remember_failed_starts(manager: &PluginManager) {
    if !manager
        .failures()
        .iter()
        .any(|f| f.error.kind() == "init_failed")
    {
        return;
    }
    if let Some(path) = MetadataCache::default_path() {
        let mut cache = MetadataCache::open(path);
        cache.record_starts(manager);
        if let Err(e) = cache.save() {
            tracing::debug!("cannot write the plugin cache: {e}");
        }
    }
}

fn report_loading(cli: &Cli, manager: &PluginManager) {
    if cli.quiet {
        return;
    }
    for failure in manager.failures() {
        let hint = cli_hint(failure.error.kind(), &failure.path);
        eprintln!("calc: skipped {}{hint}", failure.error);
    }
    for conflict in manager.conflicts().iter().filter(|c| !c.explicit) {
        eprintln!("calc: warning: {conflict}");
    }
    for notice in manager.notices() {
        eprintln!("calc: warning: {notice}");
    }
}

/// Gives `manager` (configured beforehand, e.g. for hot reload) the settings, loads the plugin
/// directories into it, and returns it with the directories it loaded.
fn load_plugins_into(
    cli: &Cli,
    mut manager: PluginManager,
    report: bool,
) -> Result<(PluginManager, Vec<PathBuf>), String> {
    let settings = settings(cli)?;
    let dirs = plugin_dirs(cli, &settings);
    // Without the metadata cache, the manager vets every file in a child before it opens it
    // here, as `[isolation] vet` says (hot reloads of `repl --watch` included).
    manager.set_settings(settings);
    let mut loaded = Vec::new();
    for (dir, explicit) in dirs {
        if !explicit && !dir.is_dir() {
            continue;
        }
        let _ = manager.load_dir(&dir);
        loaded.push(dir);
    }
    remember_failed_starts(&manager);
    if report {
        report_loading(cli, &manager);
    }
    Ok((manager, loaded))
}

/// How results are printed: shortest round-trip decimal, `0` for -0 too.
struct Number(f64);

impl std::fmt::Display for Number {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.0 == 0.0 {
            f.write_str("0") // also for -0
        } else {
            write!(f, "{}", self.0)
        }
    }
}

fn format_number(x: f64) -> String {
    Number(x).to_string()
}

fn report_eval_error(expression: &str, e: &EvalError) -> u8 {
    match e {
        EvalError::Parse { message, column } => {
            eprintln!("calc: error: {message} at column {column}");
            eprintln!("  {expression}");
            eprintln!("  {}^", " ".repeat(column.saturating_sub(1)));
            EXIT_USAGE
        }
        EvalError::Call(call) => {
            eprintln!("calc: error: {call}");
            EXIT_CALL_FAILED
        }
        _ => {
            eprintln!("calc: error: {e}");
            EXIT_CALL_FAILED
        }
    }
}

fn print_stats(manager: &PluginManager) {
    eprintln!(
        "{:<16} {:<16} {:>10} {:>10}",
        "plugin", "operation", "calls", "errors"
    );
    for (plugin, op, s) in manager.stats().filter(|(_, _, s)| s.calls() > 0) {
        eprintln!("{plugin:<16} {op:<16} {:>10} {:>10}", s.calls(), s.errors());
    }
}

fn op_shape(kind: &calc_host::OperationKind) -> String {
    match kind {
        calc_host::OperationKind::Infix {
            symbol,
            precedence,
            right_associative,
        } => format!(
            "infix '{symbol}', precedence {precedence}, {}-associative",
            if *right_associative { "right" } else { "left" }
        ),
        calc_host::OperationKind::Function {
            min_arity,
            max_arity,
        } => match max_arity {
            Some(m) if m == min_arity => format!("function of {min_arity}"),
            Some(m) => format!("function of {min_arity} to {m}"),
            None => format!("function of at least {min_arity} (variadic)"),
        },
    }
}

fn print_plugin(
    p: &calc_host::PluginInfo,
    status: &str,
    served_by: impl Fn(&str) -> Option<String>,
) {
    let _ = write_plugin(&mut std::io::stdout().lock(), p, status, served_by);
}

fn write_plugin(
    out: &mut impl Write,
    p: &calc_host::PluginInfo,
    status: &str,
    served_by: impl Fn(&str) -> Option<String>,
) -> std::io::Result<()> {
    let author = if p.author.is_empty() {
        "unknown"
    } else {
        &p.author
    };
    writeln!(
        out,
        "{} {} (ABI {}) by {author} [{status}]",
        p.name, p.version, p.abi_version
    )?;
    writeln!(out, "  path: {}", p.path.display())?;
    if !p.description.is_empty() {
        writeln!(out, "  {}", p.description)?;
    }
    for op in &p.operations {
        let description = if op.description.is_empty() {
            String::new()
        } else {
            format!(" - {}", op.description)
        };
        let overridden = served_by(&op.name)
            .map(|w| format!(" [overridden by {w}]"))
            .unwrap_or_default();
        writeln!(
            out,
            "  - {}: {}{description}{overridden}",
            op.name,
            op_shape(&op.kind)
        )?;
    }
    for interface in &p.interfaces {
        writeln!(out, "  - interface {interface}")?;
    }
    Ok(())
}

/// `plugins list`: from the metadata cache, or (`--no-cache`) from a manager that loads and
/// starts every plugin.
fn list_plugins(cli: &Cli, json: bool, no_cache: bool) -> u8 {
    let listing = list_plugins_from(cli, no_cache);
    match listing {
        Ok((listing, isolation, notices)) => {
            if !cli.quiet {
                for notice in notices {
                    eprintln!("calc: warning: {notice}");
                }
            }
            list(&listing, &isolation, json)
        }
        Err(e) => {
            eprintln!("calc: error: {e}");
            EXIT_USAGE
        }
    }
}

/// The listing, how each plugin runs, and the warnings about names in the settings.
fn list_plugins_from(cli: &Cli, no_cache: bool) -> Result<(Listing, Runtime, Vec<String>), String> {
    if no_cache {
        load_plugins(cli, false).map(|m| {
            // What starting every plugin showed replaces what the cache recorded.
            let mut cache = MetadataCache::default_path()
                .map_or_else(MetadataCache::in_memory, MetadataCache::open);
            cache.record_starts(&m);
            if let Err(e) = cache.save() {
                tracing::debug!("cannot write the plugin cache: {e}");
            }
            (Listing::from_manager(&m), isolation_of(&m), m.notices())
        })
    } else {
        settings(cli).map(|settings| {
            let dirs = plugin_dirs(cli, &settings);
            let mut cache = MetadataCache::default_path()
                .map_or_else(MetadataCache::in_memory, MetadataCache::open);
            if let Some(vetter) = vetting(&settings) {
                cache.vet_with(vetter);
            }
            let listing = Listing::scan(&dirs, &settings, &mut cache);
            tracing::debug!("plugin cache: {:?}", cache.stats());
            if let Err(e) = cache.save() {
                tracing::debug!("cannot write the plugin cache: {e}");
            }
            let isolation = planned_isolation(&listing, &settings);
            let notices = settings.notices(listing.known_plugins());
            (listing, isolation, notices)
        })
    }
}

/// Per enabled plugin: how it runs, as one line of text and as JSON fields.
type Runtime = std::collections::BTreeMap<String, (String, serde_json::Value)>;

fn timeout_text(t: Option<std::time::Duration>) -> String {
    t.map_or_else(
        || "no timeout".into(),
        |t| format!("timeout {} ms", t.as_millis()),
    )
}

/// The resource limits of isolated plugin `name`, for its listing line: `""`, or
/// `", CPU limit 60 s, memory limit 512 MB (cgroup v1 memory.limit_in_bytes)"` with the
/// mechanism this host would use for the memory limit.
fn limits_text(iso: &calc_host::config::IsolationSettings, name: &str) -> String {
    let mut text = String::new();
    if let Some(cpu) = iso.cpu_limit(name) {
        text += &format!(", CPU limit {} s", cpu.as_secs());
    }
    if let Some(mb) = iso.memory_limit_mb(name) {
        let mechanism = calc_host::isolation::memory_limit::mechanism();
        text += &format!(", memory limit {mb} MB ({mechanism})");
    }
    text
}

/// How plugin `name` runs, for its listing line: `in process`, or `isolated (runner process,
/// timeout 1000 ms, ...)` with its limits.
fn mode_text(iso: &calc_host::config::IsolationSettings, name: &str, isolated: bool) -> String {
    if !isolated {
        return "in process".to_string();
    }
    format!(
        "isolated (runner process, {}{})",
        timeout_text(iso.call_timeout(name, true)),
        limits_text(iso, name)
    )
}

/// Isolation and health of the plugins `manager` loaded (`plugins list --no-cache`).
fn isolation_of(manager: &PluginManager) -> Runtime {
    let settings = &manager.settings().isolation;
    manager
        .plugins()
        .filter_map(|p| {
            let health = manager.health(&p.name)?;
            let isolated = manager.is_isolated(&p.name);
            let timeout = settings.call_timeout(&p.name, isolated);
            let mode = mode_text(settings, &p.name, isolated);
            let mut line = format!("{mode}; health: {health}");
            if let Some(why) = &health.disabled {
                line = format!("{line}; {why}");
            }
            let mut json = serde_json::json!({
                "isolated": isolated,
                "timeout_ms": timeout.map(|t| t.as_millis() as u64),
            });
            // Only isolated plugins have figures beyond what the cached listing shows, so an
            // in-process listing reads the same with and without the cache.
            if isolated {
                json["health"] = health.to_json();
            }
            Some((p.name.clone(), (line, json)))
        })
        .collect()
}

/// How the settings would run the listed plugins (`plugins list` from the cache: nothing is
/// started, so there are no health figures).
fn planned_isolation(listing: &Listing, settings: &Settings) -> Runtime {
    let iso = &settings.isolation;
    listing
        .plugins
        .iter()
        .map(|p| {
            let isolated = iso.isolates(&p.name);
            let timeout = iso.call_timeout(&p.name, isolated);
            let line = mode_text(iso, &p.name, isolated);
            let json = serde_json::json!({
                "isolated": isolated,
                "timeout_ms": timeout.map(|t| t.as_millis() as u64),
            });
            (p.name.clone(), (line, json))
        })
        .collect()
}

/// The status of a listed plugin, the same word in text (`[overridden]`) and JSON
/// (`"status": "overridden"`): `enabled`, `overridden` (enabled, but another plugin serves every
/// one of its operations), `disabled`; files that failed are listed apart with the status
/// `failed`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Status {
    Enabled,
    Overridden,
    Disabled,
}

impl Status {
    fn as_str(self) -> &'static str {
        match self {
            Status::Enabled => "enabled",
            Status::Overridden => "overridden",
            Status::Disabled => "disabled",
        }
    }

    /// The status of the enabled plugin `p`: overridden when another plugin serves all its
    /// operations.
    fn of_enabled(p: &calc_host::PluginInfo, listing: &Listing) -> Status {
        let overridden = !p.operations.is_empty()
            && p.operations
                .iter()
                .all(|op| listing.serving(&op.name).is_some_and(|w| w != p.name));
        if overridden {
            Status::Overridden
        } else {
            Status::Enabled
        }
    }
}

/// The status of files that failed, in the JSON `failures` (the text's `FAILED` lines).
const FAILED: &str = "failed";

fn list(listing: &Listing, runtime: &Runtime, json: bool) -> u8 {
    // The plugin serving `op` when it is not `me`.
    let other = |me: &str, op: &str| listing.serving(op).filter(|w| *w != me).map(str::to_string);
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    // Write errors (a closed pipe) end the listing early; the exit status stays the same.
    let _ = if json {
        let plugin_json = |p: &calc_host::PluginInfo, status: Status| {
            let mut v = serde_json::to_value(p).expect("plain data");
            v["status"] = status.as_str().into();
            let enabled = status != Status::Disabled;
            if let (Some((_, extra)), true) = (runtime.get(&p.name), enabled) {
                for (k, x) in extra.as_object().into_iter().flatten() {
                    v[k] = x.clone();
                }
            }
            for op in v["operations"].as_array_mut().into_iter().flatten() {
                let name = op["name"].as_str().unwrap_or_default().to_string();
                op["served_by"] = match enabled {
                    true => listing.serving(&name).into(),
                    false => serde_json::Value::Null,
                };
            }
            v
        };
        let value = serde_json::json!({
            "plugins": listing.plugins.iter().map(|p| plugin_json(p, Status::of_enabled(p, listing)))
                .chain(listing.disabled.iter().map(|p| plugin_json(p, Status::Disabled)))
                .collect::<Vec<_>>(),
            "failures": listing.failures.iter().map(|f| serde_json::json!({
                "status": FAILED,
                "plugin": f.plugin,
                "path": f.path,
                "kind": f.kind,
                "error": f.error,
            })).collect::<Vec<_>>(),
            "conflicts": listing.conflicts.iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        });
        writeln!(
            out,
            "{}",
            serde_json::to_string_pretty(&value).expect("JSON of plain data")
        )
    } else {
        write_listing(&mut out, listing, runtime, other)
    }
    .and_then(|()| out.flush());
    if listing.failures.is_empty() {
        EXIT_OK
    } else {
        EXIT_PLUGINS
    }
}

fn write_listing(
    out: &mut impl Write,
    listing: &Listing,
    runtime: &Runtime,
    other: impl Fn(&str, &str) -> Option<String>,
) -> std::io::Result<()> {
    for p in &listing.plugins {
        let status = Status::of_enabled(p, listing).as_str();
        write_plugin(out, p, status, |op| other(&p.name, op))?;
        // In-process plugins, the usual case, get no extra line.
        if let Some((line, json)) = runtime.get(&p.name) {
            if json["isolated"] == true {
                writeln!(out, "  {line}")?;
            }
        }
    }
    for p in &listing.disabled {
        write_plugin(out, p, Status::Disabled.as_str(), |_| None)?;
    }
    for f in &listing.failures {
        let hint = cli_hint(&f.kind, &f.path);
        writeln!(out, "{} {}{hint}", FAILED.to_uppercase(), f.error)?;
    }
    for c in &listing.conflicts {
        writeln!(out, "CONFLICT {c}")?;
    }
    if listing.plugins.is_empty() && listing.failures.is_empty() && listing.disabled.is_empty() {
        writeln!(
            out,
            "no plugins found (see `calc --help` for where calc looks)"
        )?;
    }
    Ok(())
}

/// `plugins check`: each file is judged as loading it under `settings` would judge it (trust
/// policy, version ranges); with `conformance`, its `init` gets the configured values.
fn check(
    settings: &Settings,
    files: &[PathBuf],
    json: bool,
    conformance: Option<std::time::Duration>,
) -> u8 {
    let mut all_ok = true;
    let mut reports = Vec::new();
    let exe = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("calc"));
    // No code of a checked file runs in this process: each is opened and validated in a
    // vetting child (one for all the files, replaced when a file kills it).
    let mut vetter = None;
    let mut runner = None;
    for file in files {
        // The trust policy first: nothing is opened before it passes.
        let mut blockers = Vec::new();
        let result = settings.trust.check_file(file).and_then(|verified| {
            // Read from the file, before anything of it is loaded.
            blockers = calc_runtime::elf::unload_blockers(verified.path()).unwrap_or_default();
            if vetter.is_none() {
                let found = calc_host::isolation::find_runner(
                    settings.isolation.runner.as_deref(),
                    verified.path(),
                )?;
                vetter = Some(calc_host::vet::Vetter::new(
                    &found,
                    settings.isolation.start_timeout,
                ));
                runner = Some(found);
            }
            let vetter = vetter.as_mut().expect("started just above");
            let info = match vetter.vet(verified.path()) {
                calc_host::cache::Verdict::Valid(info) => info,
                calc_host::cache::Verdict::Refused(refusal) => return Err(refusal.into()),
            };
            verified.confirm()?;
            match settings.versions.get(&info.name) {
                Some(range) if !range.matches(&info.version) => {
                    Err(LoadError::VersionRequirement {
                        path: info.path.clone(),
                        plugin: info.name.clone(),
                        version: info.version.clone(),
                        requirement: range.clone(),
                    })
                }
                _ => Ok(info),
            }
        });
        all_ok &= result.is_ok();
        // A trial load, init, shutdown and close in a child: what keeps the library loaded
        // that only running it shows (thread-local destructors).
        if let (Ok(info), Some(runner)) = (&result, &runner) {
            match calc_host::vet::trial_unload(runner, &info.path, settings.isolation.start_timeout)
            {
                // What the ELF scan explains already (never unloaded) is not said twice.
                Ok(trial) => match trial.blocker() {
                    Some(calc_runtime::elf::UnloadBlocker::StaysLoaded) if !blockers.is_empty() => {
                    }
                    found => blockers.extend(found),
                },
                Err(reason) => {
                    blockers.push(calc_runtime::elf::UnloadBlocker::TrialFailed { reason })
                }
            }
        }
        let conformance = match (&result, conformance) {
            (Ok(_), Some(timeout)) => Some(calc_host::conformance::check_with_config(
                &exe,
                file,
                timeout,
                &settings.plugin_config,
            )),
            _ => None,
        };
        all_ok &= conformance.as_ref().is_none_or(|r| r.ok());
        if json {
            reports.push(match &result {
                Ok(info) => match &conformance {
                    Some(c) => serde_json::json!({ "path": file, "ok": c.ok(), "plugin": info, "conformance": c, "unload_blockers": blockers }),
                    None => serde_json::json!({ "path": file, "ok": true, "plugin": info, "unload_blockers": blockers }),
                },
                Err(e) => serde_json::json!({
                    "path": file,
                    "ok": false,
                    "kind": e.kind(),
                    "error": e.to_string(),
                    "mismatches": e.mismatches(),
                }),
            });
            continue;
        }
        match &result {
            Ok(info) => print_plugin(info, "ok", |_| None),
            Err(e) => print_refusal(e),
        }
        for blocker in &blockers {
            println!("  warning: {}: {blocker}", file.display());
        }
        if let Some(c) = &conformance {
            print!("{c}");
        }
    }
    if json {
        println!(
            "{}",
            serde_json::to_string_pretty(&reports).expect("JSON of plain data")
        );
    }
    if all_ok {
        EXIT_OK
    } else {
        EXIT_PLUGINS
    }
}

/// `plugins conformance-worker [--config-stdin] FILE` (internal, see `calc_host::conformance`).
fn conformance_worker(file: &Path, config_stdin: bool) -> u8 {
    let mut config = calc_host::conformance::PluginConfig::new();
    if config_stdin {
        let read = std::io::read_to_string(std::io::stdin())
            .map_err(|e| e.to_string())
            .and_then(|text| serde_json::from_str(&text).map_err(|e| e.to_string()));
        match read {
            Ok(c) => config = c,
            Err(e) => {
                eprintln!("calc: error: conformance worker: cannot read the configuration from standard input: {e}");
                return EXIT_USAGE;
            }
        }
    }
    calc_host::conformance::worker_with_config(file, &config)
}

/// What the command line offers for a refusal of this `kind` (the library's messages name only
/// settings), appended to the message; empty for most kinds.
fn cli_hint(kind: &str, path: &Path) -> String {
    match kind {
        "symlink" => "; on the command line: --allow-symlinks".into(),
        "insecure_permissions" => "; on the command line: --allow-insecure".into(),
        "not_in_lock" => {
            let dir = path.parent().unwrap_or(Path::new("."));
            format!("; `calc plugins lock {}` adds it", dir.display())
        }
        _ => String::new(),
    }
}

fn print_refusal(e: &LoadError) {
    println!("REFUSED {e}{}", cli_hint(e.kind(), e.path()));
    let mismatches = e.mismatches();
    if mismatches.is_empty() {
        return;
    }
    let w = mismatches
        .iter()
        .map(|m| m.field.len())
        .max()
        .unwrap_or(0)
        .max("field".len());
    let x = mismatches
        .iter()
        .map(|m| m.expected.len())
        .max()
        .unwrap_or(0)
        .max("host expects".len());
    println!("  {:<w$}  {:<x$}  plugin declares", "field", "host expects");
    for m in mismatches {
        println!("  {:<w$}  {:<x$}  {}", m.field, m.expected, m.found);
    }
}

/// `plugins lock [DIR]`.
fn lock(dir: Option<&Path>) -> u8 {
    let dir = dir.unwrap_or(Path::new("."));
    match trust::write_lock(dir) {
        Ok((lock, names)) => {
            for name in &names {
                println!("locked {name}");
            }
            println!("wrote {} ({} plugins)", lock.display(), names.len());
            EXIT_OK
        }
        Err(e) => {
            eprintln!("calc: error: {e}");
            EXIT_USAGE
        }
    }
}

/// `plugins keygen`.
fn keygen(out: &Path, force: bool) -> u8 {
    use std::os::unix::fs::OpenOptionsExt;
    let with_suffix = |suffix: &str| {
        let mut path = out.as_os_str().to_os_string();
        path.push(suffix);
        PathBuf::from(path)
    };
    let (secret_path, public_path) = (with_suffix(".key"), with_suffix(".pub"));
    if let Some(existing) = [&secret_path, &public_path]
        .into_iter()
        .find(|p| !force && p.symlink_metadata().is_ok())
    {
        eprintln!(
            "calc: error: {}: already exists (pass --force to replace it, or --out another prefix)",
            existing.display()
        );
        return EXIT_USAGE;
    }
    let key = match trust::SecretKey::generate() {
        Ok(key) => key,
        Err(e) => {
            eprintln!("calc: error: cannot read random bytes from /dev/urandom: {e}");
            return EXIT_USAGE;
        }
    };
    let write = |path: &Path, mode: u32, text: &str| {
        let mut options = std::fs::OpenOptions::new();
        options.write(true).mode(mode);
        if force {
            options.create(true).truncate(true);
        } else {
            options.create_new(true);
        }
        options
            .open(path)
            .and_then(|mut f| f.write_all(text.as_bytes()))
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::AlreadyExists => format!(
                    "{}: already exists (pass --force to replace it, or --out another prefix)",
                    path.display()
                ),
                _ => format!("{}: {e}", path.display()),
            })
    };
    let public = key.public().to_string();
    let written = write(&secret_path, 0o600, &key.to_file_text())
        .and_then(|()| write(&public_path, 0o644, &format!("{public}\n")));
    match written {
        Ok(()) => {
            println!("wrote {} (secret: keep it private)", secret_path.display());
            println!("wrote {}", public_path.display());
            println!("trust it with, in the config file:\n[trust]\nkeys = [\"{public}\"]");
            EXIT_OK
        }
        Err(e) => {
            eprintln!("calc: error: {e}");
            EXIT_USAGE
        }
    }
}

/// `plugins sign --key SECRET FILE...`.
fn sign(key: &Path, files: &[PathBuf]) -> u8 {
    let key = match std::fs::read_to_string(key)
        .map_err(|e| e.to_string())
        .and_then(|text| trust::SecretKey::parse(&text))
    {
        Ok(key) => key,
        Err(e) => {
            eprintln!("calc: error: {}: {e}", key.display());
            return EXIT_USAGE;
        }
    };
    let mut code = EXIT_OK;
    for file in files {
        let signature = trust::signature_path(file);
        let signed = trust::sha256_file(file)
            .and_then(|digest| std::fs::write(&signature, key.sign_digest(&digest)));
        match signed {
            Ok(()) => println!("signed {} -> {}", file.display(), signature.display()),
            Err(e) => {
                eprintln!("calc: error: {}: cannot sign: {e}", file.display());
                code = EXIT_PLUGINS;
            }
        }
    }
    code
}

/// `plugins verify [--key PUBLIC]... FILE...`.
fn verify(cli: &Cli, keys: &[String], files: &[PathBuf]) -> u8 {
    let keys: Result<Vec<trust::PublicKey>, String> = if keys.is_empty() {
        settings(cli).and_then(|s| {
            if s.trust.keys.is_empty() {
                Err("no key to verify with: pass --key PUBLIC or list keys in [trust] keys".into())
            } else {
                Ok(s.trust.keys)
            }
        })
    } else {
        keys.iter()
            .map(|k| {
                let path = Path::new(k);
                if path.is_file() {
                    std::fs::read_to_string(path)
                        .map_err(|e| e.to_string())
                        .and_then(|text| trust::PublicKey::parse(&text))
                        .map_err(|e| format!("{k}: {e}"))
                } else {
                    trust::PublicKey::parse(k)
                        .map_err(|e| format!("{k}: no such key file, and not a key either ({e})"))
                }
            })
            .collect()
    };
    let keys = match keys {
        Ok(keys) => keys,
        Err(e) => {
            eprintln!("calc: error: {e}");
            return EXIT_USAGE;
        }
    };
    let mut code = EXIT_OK;
    for file in files {
        let result = trust::sha256_file(file)
            .map_err(|source| LoadError::Unreadable {
                path: file.clone(),
                source: source.into(),
            })
            .and_then(|digest| {
                trust::verify_signature(file, &digest, &trust::signature_path(file), &keys)
            });
        match result {
            Ok(key) => println!("{}: good signature by {key}", file.display()),
            Err(e) => {
                println!("BAD {e}");
                code = EXIT_PLUGINS;
            }
        }
    }
    code
}

fn new_plugin(lang: Lang, name: &str, dir: Option<&Path>) -> u8 {
    use calc_cli::scaffold::{scaffold, Lang as L, Scaffold};
    let s = Scaffold {
        lang: match lang {
            Lang::C => L::C,
            Lang::Rust => L::Rust,
        },
        name: name.to_string(),
        dir: dir.map_or_else(|| PathBuf::from(name), Path::to_path_buf),
        sdk_root: sdk_root(),
    };
    match scaffold(&s) {
        Ok(files) => {
            for f in files {
                println!("created {}", f.display());
            }
            println!("next: see {}/README.md", s.dir.display());
            EXIT_OK
        }
        Err(e) => {
            eprintln!("calc: error: {e}");
            EXIT_USAGE
        }
    }
}

/// Where the scaffolds find the headers and the SDK: `$CALC_SDK_ROOT`, else the prefix this
/// binary is installed in (`<prefix>/bin/calc` with `<prefix>/share/calc/sdk/`), else the source
/// tree it was built from.
fn sdk_root() -> PathBuf {
    std::env::var_os("CALC_SDK_ROOT")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            calc_cli::scaffold::default_sdk_root(std::env::current_exe().ok().as_deref())
        })
}

fn run(cli: &Cli) -> u8 {
    let manager = match &cli.command {
        Command::Plugins {
            command:
                PluginsCommand::Check {
                    files,
                    json,
                    conformance,
                    conformance_timeout,
                },
        } => {
            let timeout = std::time::Duration::try_from_secs_f64(conformance_timeout.max(0.1))
                .unwrap_or(std::time::Duration::MAX);
            return match settings(cli) {
                Ok(s) => check(&s, files, *json, conformance.then_some(timeout)),
                Err(e) => {
                    eprintln!("calc: error: {e}");
                    EXIT_USAGE
                }
            };
        }
        Command::Plugins {
            command: PluginsCommand::Lock { dir },
        } => return lock(dir.as_deref()),
        Command::Plugins {
            command: PluginsCommand::Keygen { out, force },
        } => return keygen(out, *force),
        Command::Plugins {
            command: PluginsCommand::Sign { key, files },
        } => return sign(key, files),
        Command::Plugins {
            command: PluginsCommand::Verify { key, files },
        } => return verify(cli, key, files),
        Command::Plugins {
            command: PluginsCommand::ConformanceWorker { file, config_stdin },
        } => return conformance_worker(file, *config_stdin),
        Command::NewPlugin { lang, name, dir } => return new_plugin(*lang, name, dir.as_deref()),
        Command::Repl { watch } => return repl::run(cli, *watch),
        Command::Plugins {
            command: PluginsCommand::List { json, no_cache },
        } => return list_plugins(cli, *json, *no_cache),
        Command::Eval { expressions, .. } => load_plugins_for(
            cli,
            &expressions.iter().map(String::as_str).collect::<Vec<_>>(),
        ),
        Command::Map { expression, .. } => load_plugins_for(cli, &[expression.as_str()]),
        Command::Run { operation, .. } => load_plugins_for(cli, &[operation.as_str()]),
    };
    let manager = match manager {
        Ok(m) => m,
        Err(e) => {
            eprintln!("calc: error: {e}");
            return EXIT_USAGE;
        }
    };
    match &cli.command {
        Command::Eval { expressions, stats } => {
            let mut code = EXIT_OK;
            for expression in expressions {
                let key = cli.rollout_key.as_deref().unwrap_or(expression);
                match manager.eval_with_key(expression, key) {
                    Ok(x) => println!("{}", format_number(x)),
                    Err(e) => code = code.max(report_eval_error(expression, &e)),
                }
            }
            if *stats {
                print_stats(&manager);
            }
            code
        }
        Command::Map { expression, file } => map::run(&manager, expression, file.as_deref()),
        Command::Run { operation, args } => {
            let key = cli.rollout_key.clone().unwrap_or_else(|| operation.clone());
            match manager.call(operation, args, &key) {
                None => {
                    eprintln!("calc: error: unknown operation '{operation}' (no loaded plugin provides it)");
                    EXIT_USAGE
                }
                Some(Ok(x)) => {
                    println!("{}", format_number(x));
                    EXIT_OK
                }
                Some(Err(e)) => {
                    eprintln!("calc: error: {e}");
                    if e.status == calc_sdk::Status::InvalidArgument
                        && e.message.starts_with("expects ")
                    {
                        EXIT_USAGE
                    } else {
                        EXIT_CALL_FAILED
                    }
                }
            }
        }
        Command::Plugins { .. } | Command::NewPlugin { .. } | Command::Repl { .. } => {
            unreachable!("handled above")
        }
    }
    // `manager` drops here, before the process exits: every plugin is shut down, in reverse
    // load order, whatever the exit status.
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    ExitCode::from(run(&cli))
}
