//! `calc`: a command-line calculator whose every operator and function comes from a plugin.
#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use calc_host::{EvalError, PluginManager};
use clap::{Parser, Subcommand};

const EXIT_OK: u8 = 0;
const EXIT_CALL_FAILED: u8 = 1;
const EXIT_USAGE: u8 = 2;
const EXIT_PLUGINS: u8 = 3;

const AFTER_HELP: &str = "\
Plugin directories:
  --plugin-dir DIR (repeatable) and CALC_PLUGIN_PATH (':'-separated), in that order. When
  neither is given, the default directories: <directory of the calc executable>/plugins, then
  $XDG_DATA_HOME/calc/plugins (~/.local/share/calc/plugins); missing ones are skipped silently.
  Libraries load in file-name order; a plugin that fails to load is reported and skipped.

Exit status:
  0  success
  1  an operation failed (division by zero, domain error, error reported by a plugin)
  2  invalid command line or expression (parse error, unknown operator or function,
     wrong number of arguments)
  3  plugins: `plugins list` found plugins that failed to load";

/// A calculator whose operators and functions are plugins (C, C++ or Rust) loaded at run time.
#[derive(Parser, Debug)]
#[command(name = "calc", version, about, after_help = AFTER_HELP)]
struct Cli {
    /// Load plugins from this directory (repeatable; replaces the default directories).
    #[arg(long = "plugin-dir", value_name = "DIR", global = true)]
    plugin_dirs: Vec<PathBuf>,

    /// Do not report plugins that failed to load (they are still skipped).
    #[arg(short, long, global = true)]
    quiet: bool,

    /// Log more (-v info, -vv debug, -vvv trace); RUST_LOG overrides.
    #[arg(short, long, action = clap::ArgAction::Count, global = true)]
    verbose: u8,

    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Evaluate an expression, e.g. `calc eval "2 ^ 10 - max(3, 4) / 2"`.
    Eval {
        /// The expression (may start with '-').
        #[arg(allow_hyphen_values = true)]
        expression: String,
    },
    /// Call one operation by name (or infix symbol), e.g. `calc run add 10 5`.
    Run {
        /// Operation name, e.g. `add`, or an infix symbol such as `+`.
        operation: String,
        /// Operands.
        #[arg(allow_negative_numbers = true)]
        args: Vec<f64>,
    },
    /// Inspect plugins.
    Plugins {
        #[command(subcommand)]
        command: PluginsCommand,
    },
}

#[derive(Subcommand, Debug)]
enum PluginsCommand {
    /// List loaded plugins with their operations, and the files that failed to load.
    List {
        /// Print JSON instead of text.
        #[arg(long)]
        json: bool,
    },
}

fn init_logging(verbose: u8) {
    use tracing_subscriber::EnvFilter;
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

/// The directories to load, in order, each with whether its absence is worth reporting.
fn plugin_dirs(cli: &Cli) -> Vec<(PathBuf, bool)> {
    let mut dirs: Vec<(PathBuf, bool)> =
        cli.plugin_dirs.iter().map(|d| (d.clone(), true)).collect();
    if let Some(path) = std::env::var_os("CALC_PLUGIN_PATH") {
        dirs.extend(
            std::env::split_paths(&path)
                .filter(|p| !p.as_os_str().is_empty())
                .map(|p| (p, true)),
        );
    }
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

fn load_plugins(cli: &Cli, report: bool) -> PluginManager {
    let mut manager = PluginManager::new();
    for (dir, explicit) in plugin_dirs(cli) {
        if !explicit && !dir.is_dir() {
            continue;
        }
        let _ = manager.load_dir(&dir);
    }
    if report && !cli.quiet {
        for failure in manager.failures() {
            eprintln!("calc: skipped {}", failure.error);
        }
        for conflict in manager.conflicts() {
            eprintln!("calc: warning: {conflict}");
        }
    }
    manager
}

fn format_number(x: f64) -> String {
    if x == 0.0 {
        "0".into() // also for -0
    } else {
        format!("{x}")
    }
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

fn list(manager: &PluginManager, json: bool) -> u8 {
    if json {
        let value = serde_json::json!({
            "plugins": manager.plugins().collect::<Vec<_>>(),
            "failures": manager.failures().iter().map(|f| serde_json::json!({
                "path": f.path,
                "error": f.error.to_string(),
            })).collect::<Vec<_>>(),
            "conflicts": manager.conflicts().iter().map(|c| c.to_string()).collect::<Vec<_>>(),
        });
        println!(
            "{}",
            serde_json::to_string_pretty(&value).expect("JSON of plain data")
        );
    } else {
        for p in manager.plugins() {
            println!(
                "{} {} (ABI {}) by {}",
                p.name,
                p.version,
                p.abi_version,
                if p.author.is_empty() {
                    "unknown"
                } else {
                    &p.author
                }
            );
            println!("  path: {}", p.path.display());
            if !p.description.is_empty() {
                println!("  {}", p.description);
            }
            for op in &p.operations {
                let shape = match &op.kind {
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
                };
                println!(
                    "  - {}: {shape}{}",
                    op.name,
                    if op.description.is_empty() {
                        String::new()
                    } else {
                        format!(" - {}", op.description)
                    }
                );
            }
        }
        for f in manager.failures() {
            println!("FAILED {}", f.error);
        }
        for c in manager.conflicts() {
            println!("CONFLICT {c}");
        }
        if manager.plugins().next().is_none() && manager.failures().is_empty() {
            println!("no plugins found (see `calc --help` for where calc looks)");
        }
    }
    if manager.failures().is_empty() {
        EXIT_OK
    } else {
        EXIT_PLUGINS
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging(cli.verbose);
    let code = match &cli.command {
        Command::Eval { expression } => {
            let manager = load_plugins(&cli, true);
            match manager.eval(expression) {
                Ok(x) => {
                    println!("{}", format_number(x));
                    EXIT_OK
                }
                Err(e) => report_eval_error(expression, &e),
            }
        }
        Command::Run { operation, args } => {
            let manager = load_plugins(&cli, true);
            match manager.operation(operation) {
                None => {
                    eprintln!("calc: error: unknown operation '{operation}' (no loaded plugin provides it)");
                    EXIT_USAGE
                }
                Some(op) => match op.call(args) {
                    Ok(x) => {
                        println!("{}", format_number(x));
                        EXIT_OK
                    }
                    Err(e)
                        if e.status == calc_sdk::Status::InvalidArgument
                            && e.message.starts_with("expects ") =>
                    {
                        eprintln!("calc: error: {e}");
                        EXIT_USAGE
                    }
                    Err(e) => {
                        eprintln!("calc: error: {e}");
                        EXIT_CALL_FAILED
                    }
                },
            }
        }
        Command::Plugins {
            command: PluginsCommand::List { json },
        } => {
            let manager = load_plugins(&cli, false);
            list(&manager, *json)
        }
    };
    ExitCode::from(code)
}
