//! Project scaffolding for plugin authors: `calc new-plugin --lang c|rust NAME [--dir DIR]`.
//!
//! [`scaffold`] writes a small, complete plugin project into an empty (or new) folder: a C
//! source file with a `Makefile`, or a Rust crate on the `calc-sdk` crate, each with a README.
//! The generated plugin provides one function, `NAME(x) = x * factor`, where `factor` is read
//! from the plugin's configuration (key `factor`, default 2), so `NAME(21)` is 42 out of the
//! box. It builds warning-free (C with `-Werror`) and is meant to be edited.
//!
//! The templates are plain string constants with `{name}`-style placeholders;
//! `docs/PLUGIN_GUIDE.md` quotes them.
use std::io::Write;
use std::path::{Path, PathBuf};

/// The language of the generated project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Lang {
    /// `plugin.c` and a `Makefile`, built with `make`.
    C,
    /// A Cargo crate depending on `calc-sdk`, built with `cargo build`.
    Rust,
}

/// What to generate and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scaffold {
    /// The language.
    pub lang: Lang,
    /// The plugin name, also the name of its one operation and of the library
    /// (`lib<name>.so`): `[A-Za-z_][A-Za-z0-9_]*`, at most 64 characters. Rust projects also
    /// need a snake_case name that is not a Rust keyword (it is the crate name).
    pub name: String,
    /// The project folder to create; it must not exist or be empty.
    pub dir: PathBuf,
    /// Where the calc headers and SDK are: a calc source tree (`include/calc_plugin.h`,
    /// `sdk/`, `docs/`) or an installation prefix (`include/calc_plugin.h`,
    /// `share/calc/sdk/`, `share/doc/calc/`, as `cargo xtask install` lays it out; see
    /// [`SdkLayout`]). The generated build files refer to it by absolute path.
    pub sdk_root: PathBuf,
}

/// Why nothing (or not everything) was generated. Each variant names the path or the name.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ScaffoldError {
    /// The plugin name cannot be used.
    #[error("invalid plugin name {name:?}: {reason}")]
    InvalidName {
        /// The name given.
        name: String,
        /// Which rule it breaks.
        reason: String,
    },
    /// The project folder exists and has files in it.
    #[error("{path}: directory is not empty")]
    DirNotEmpty {
        /// The folder.
        path: PathBuf,
    },
    /// The project folder's path exists but is not a directory.
    #[error("{path}: exists and is not a directory")]
    NotADirectory {
        /// The path.
        path: PathBuf,
    },
    /// `sdk_root` is not a usable calc source tree or installation prefix.
    #[error("{path}: not a usable calc source tree or install prefix: {reason}")]
    InvalidSdkRoot {
        /// The folder given as `sdk_root`.
        path: PathBuf,
        /// What is missing or wrong.
        reason: String,
    },
    /// Reading or writing a file or folder failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or folder.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

/// The longest plugin name (the ABI's limit on `calc_plugin_t.name`).
pub const MAX_NAME_LEN: usize = 64;

/// Words Rust reserves, which cannot name a crate a user may `use`, plus `_`.
const RUST_RESERVED: &[&str] = &[
    "_", "abstract", "as", "async", "await", "become", "box", "break", "const", "continue",
    "crate", "do", "dyn", "else", "enum", "extern", "false", "final", "fn", "for", "gen", "if",
    "impl", "in", "let", "loop", "macro", "match", "mod", "move", "mut", "override", "priv", "pub",
    "ref", "return", "self", "Self", "static", "struct", "super", "trait", "true", "try", "type",
    "typeof", "unsafe", "unsized", "use", "virtual", "where", "while", "yield",
];

/// Checks a plugin name for `lang`: `[A-Za-z_][A-Za-z0-9_]*` and at most 64 characters (the
/// name is both the plugin name and its operation's name); for Rust, also a snake_case crate
/// name (no upper case, no `__` inside, which rustc warns about) that is not a keyword.
pub fn validate_name(name: &str, lang: Lang) -> Result<(), ScaffoldError> {
    let invalid = |reason: &str| ScaffoldError::InvalidName {
        name: name.to_string(),
        reason: reason.to_string(),
    };
    let mut chars = name.chars();
    match chars.next() {
        None => return Err(invalid("must not be empty")),
        Some(c) if !(c.is_ascii_alphabetic() || c == '_') => {
            return Err(invalid(
                "must start with a letter or `_` ([A-Za-z_][A-Za-z0-9_]*)",
            ))
        }
        Some(_) => {}
    }
    if !chars.all(|c| c.is_ascii_alphanumeric() || c == '_') {
        return Err(invalid(
            "may contain only ASCII letters, digits and `_` ([A-Za-z_][A-Za-z0-9_]*)",
        ));
    }
    if name.len() > MAX_NAME_LEN {
        return Err(invalid("must be at most 64 characters"));
    }
    if lang == Lang::Rust {
        if RUST_RESERVED.contains(&name) {
            return Err(invalid("is a Rust keyword, which cannot name a crate"));
        }
        if name.chars().any(|c| c.is_ascii_uppercase()) || name.trim_matches('_').contains("__") {
            return Err(invalid(
                "a Rust crate name must be snake_case (lower case, single `_` between words)",
            ));
        }
    }
    Ok(())
}

/// Generates the project described by `s` and returns the files written, in order.
///
/// Everything is checked before anything is written: the name, the source tree
/// (`include/calc_plugin.h` for C, `sdk/Cargo.toml` for Rust) and the folder, which is created
/// if needed. Files are created exclusively, never overwritten.
pub fn scaffold(s: &Scaffold) -> Result<Vec<PathBuf>, ScaffoldError> {
    validate_name(&s.name, s.lang)?;
    let sdk_root = resolve_sdk_root(&s.sdk_root, s.lang)?;
    check_dir(&s.dir)?;

    let name = s.name.as_str();
    let layout = SdkLayout::of(&sdk_root);
    let include_dir = sdk_root.join("include");
    let docs_dir = sdk_root.join(layout.docs_dir());
    let docs = docs_dir.to_string_lossy();
    let files: Vec<(&str, String)> = match s.lang {
        Lang::C => {
            let include = make_value(&include_dir, &s.sdk_root)?;
            let vars = [
                ("{name}", name),
                ("{include_dir}", include.as_str()),
                ("{docs_dir}", docs.as_ref()),
            ];
            vec![
                ("plugin.c", render(C_PLUGIN_TEMPLATE, &vars)),
                ("Makefile", render(C_MAKEFILE_TEMPLATE, &vars)),
                ("README.md", render(C_README_TEMPLATE, &vars)),
            ]
        }
        Lang::Rust => {
            let sdk_dir = toml_string(&sdk_root.join(layout.sdk_dir()).to_string_lossy());
            let type_name = rust_type_name(name);
            let vars = [
                ("{name}", name),
                ("{type_name}", type_name.as_str()),
                ("{sdk_dir}", sdk_dir.as_str()),
                ("{docs_dir}", docs.as_ref()),
            ];
            vec![
                ("Cargo.toml", render(RUST_CARGO_TEMPLATE, &vars)),
                ("src/lib.rs", render(RUST_LIB_TEMPLATE, &vars)),
                ("README.md", render(RUST_README_TEMPLATE, &vars)),
            ]
        }
    };

    create_dir(&s.dir)?;
    let mut written = Vec::with_capacity(files.len());
    for (relative, contents) in files {
        let path = s.dir.join(relative);
        if let Some(parent) = path.parent() {
            create_dir(parent)?;
        }
        write_new(&path, &contents)?;
        written.push(path);
    }
    Ok(written)
}

/// Replaces each placeholder with its value.
fn render(template: &str, vars: &[(&str, &str)]) -> String {
    vars.iter()
        .fold(template.to_string(), |text, (key, value)| {
            text.replace(key, value)
        })
}

/// The two places the headers and the SDK crate can come from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SdkLayout {
    /// A calc source tree: `include/`, `sdk/`, `docs/`.
    SourceTree,
    /// An installation prefix (`cargo xtask install --prefix DIR`): `include/`,
    /// `share/calc/sdk/` (the `calc-sdk` crate as packaged), `share/doc/calc/`.
    Prefix,
}

impl SdkLayout {
    /// The layout of `root`: [`SdkLayout::Prefix`] when it has `share/calc/sdk/`, otherwise a
    /// source tree.
    pub fn of(root: &Path) -> SdkLayout {
        if root.join(PREFIX_SDK_DIR).is_dir() {
            SdkLayout::Prefix
        } else {
            SdkLayout::SourceTree
        }
    }

    /// The folder of the `calc-sdk` crate, relative to the root.
    pub fn sdk_dir(self) -> &'static str {
        match self {
            SdkLayout::SourceTree => "sdk",
            SdkLayout::Prefix => PREFIX_SDK_DIR,
        }
    }

    /// The folder of `PLUGIN_GUIDE.md` and `ABI.md`, relative to the root.
    pub fn docs_dir(self) -> &'static str {
        match self {
            SdkLayout::SourceTree => "docs",
            SdkLayout::Prefix => PREFIX_DOCS_DIR,
        }
    }
}

/// Where an installation prefix keeps the `calc-sdk` crate.
pub const PREFIX_SDK_DIR: &str = "share/calc/sdk";

/// Where an installation prefix keeps the guides.
pub const PREFIX_DOCS_DIR: &str = "share/doc/calc";

/// The root `calc new-plugin` uses when `CALC_SDK_ROOT` is not set: the installation prefix of
/// `exe` (the running `calc`, in `<prefix>/bin/`) when that prefix has the SDK
/// (`share/calc/sdk/Cargo.toml`), otherwise the source tree this crate was built from.
pub fn default_sdk_root(exe: Option<&Path>) -> PathBuf {
    let prefix = exe
        .and_then(Path::parent)
        .filter(|bin| bin.file_name().is_some_and(|n| n == "bin"))
        .and_then(Path::parent);
    match prefix {
        Some(prefix) if prefix.join(PREFIX_SDK_DIR).join("Cargo.toml").is_file() => {
            prefix.to_path_buf()
        }
        _ => Path::new(env!("CARGO_MANIFEST_DIR"))
            .parent()
            .map_or_else(|| PathBuf::from("."), Path::to_path_buf),
    }
}

/// The absolute, canonical root, after checking it has what `lang` needs and that its path is
/// UTF-8 (it is written into build files).
fn resolve_sdk_root(root: &Path, lang: Lang) -> Result<PathBuf, ScaffoldError> {
    let invalid = |reason: String| ScaffoldError::InvalidSdkRoot {
        path: root.to_path_buf(),
        reason,
    };
    let abs = std::fs::canonicalize(root).map_err(|e| invalid(e.to_string()))?;
    if abs.to_str().is_none() {
        return Err(invalid("the path is not valid UTF-8".into()));
    }
    let needed = match lang {
        Lang::C => "include/calc_plugin.h".to_string(),
        Lang::Rust => format!("{}/Cargo.toml", SdkLayout::of(&abs).sdk_dir()),
    };
    if !abs.join(&needed).is_file() {
        return Err(invalid(format!(
            "{needed} is missing (set CALC_SDK_ROOT to a calc source tree or install prefix)"
        )));
    }
    Ok(abs)
}

/// Refuses a folder that exists and is not empty (or is not a folder).
fn check_dir(dir: &Path) -> Result<(), ScaffoldError> {
    let io = |source| ScaffoldError::Io {
        path: dir.to_path_buf(),
        source,
    };
    match std::fs::metadata(dir) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(io(e)),
        Ok(m) if !m.is_dir() => Err(ScaffoldError::NotADirectory {
            path: dir.to_path_buf(),
        }),
        Ok(_) => match std::fs::read_dir(dir).map_err(io)?.next() {
            None => Ok(()),
            Some(Ok(_)) => Err(ScaffoldError::DirNotEmpty {
                path: dir.to_path_buf(),
            }),
            Some(Err(e)) => Err(io(e)),
        },
    }
}

fn create_dir(dir: &Path) -> Result<(), ScaffoldError> {
    std::fs::create_dir_all(dir).map_err(|source| ScaffoldError::Io {
        path: dir.to_path_buf(),
        source,
    })
}

/// Writes a file that must not exist yet.
fn write_new(path: &Path, contents: &str) -> Result<(), ScaffoldError> {
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .and_then(|mut f| f.write_all(contents.as_bytes()))
        .map_err(|source| ScaffoldError::Io {
            path: path.to_path_buf(),
            source,
        })
}

/// A path as the value of a Makefile variable used inside double quotes in a shell command:
/// `$` doubled and `#` escaped for make; characters the shell would interpret are refused.
fn make_value(path: &Path, root: &Path) -> Result<String, ScaffoldError> {
    let text = path.to_string_lossy();
    if text.contains(['"', '\\', '`', '\n', '\r']) {
        return Err(ScaffoldError::InvalidSdkRoot {
            path: root.to_path_buf(),
            reason: "the path contains a quote, backslash, backquote or newline, which a Makefile \
                     cannot hold"
                .into(),
        });
    }
    Ok(text.replace('$', "$$").replace('#', "\\#"))
}

/// A TOML basic string (with its quotes) holding `text`.
fn toml_string(text: &str) -> String {
    let mut out = String::with_capacity(text.len() + 2);
    out.push('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// The Rust type of the generated plugin: the name in CamelCase followed by `Plugin`
/// (`my_calc` gives `MyCalcPlugin`), which cannot clash with the prelude or the SDK's names.
fn rust_type_name(name: &str) -> String {
    let mut out: String = name
        .split('_')
        .filter(|w| !w.is_empty())
        .map(|w| {
            let mut cs = w.chars();
            cs.next()
                .map(|c| c.to_ascii_uppercase().to_string() + cs.as_str())
                .unwrap_or_default()
        })
        .collect();
    if !out.starts_with(|c: char| c.is_ascii_alphabetic()) {
        out.insert_str(0, "My");
    }
    out + "Plugin"
}

/// `<dir>/plugin.c`. Placeholders: `{name}`, `{docs_dir}`.
pub const C_PLUGIN_TEMPLATE: &str = r#"/*
 * {name}: a calc plugin in C99, generated by `calc new-plugin --lang c {name}`.
 *
 * It provides one function, {name}(x), which returns x * factor. The factor is read from the
 * plugin's configuration when calc loads it (key "factor", default 2), so {name}(21) is 42.
 *
 * Make it yours:
 *   - replace scale_execute and the entry of `operations` with your own operations
 *     (CALC_OPERATION_KIND_INFIX for an operator such as `a # b`, CALC_OPERATION_KIND_FUNCTION
 *     for a function);
 *   - keep in `struct instance` whatever init should compute once; execute may run on several
 *     threads at once, so it only reads the instance (synchronise anything it writes);
 *   - fill in author and description, and bump version following semver.
 *
 * Build: `make` (see Makefile and README.md). The rules every plugin follows (who owns which
 * memory, which thread calls what, how to report errors) are in {docs_dir}/PLUGIN_GUIDE.md
 * and {docs_dir}/ABI.md.
 *
 * Everything here is static except plugin_entry, the one exported symbol.
 */
#include <math.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>

#include "calc_plugin.h"

/* The plugin's name, which is also the name of its one operation. */
#define PLUGIN_NAME "{name}"

/* The factor used when the configuration does not set one. */
#define DEFAULT_FACTOR 2.0

/* Instance state: created by instance_init, passed to every execute, freed by
 * instance_shutdown. */
struct instance {
    double factor;
    const calc_host_api_t *host; /* owned by calc, valid until shutdown returns */
};

/* Writes a message into the host's error buffer, truncated to error_buf_size bytes. */
static void set_error(char *error_buf, size_t error_buf_size, const char *message)
{
    if (error_buf != NULL && error_buf_size > 0) {
        (void)snprintf(error_buf, error_buf_size, "%s", message);
    }
}

/* Called once, on the main thread, after calc has validated the descriptor and before any
 * execute. On failure: return a status other than CALC_STATUS_OK with a message in error_buf;
 * calc then refuses the plugin and never calls shutdown. */
static calc_status_t instance_init(const calc_host_api_t *host, void **out_instance,
                                   char *error_buf, size_t error_buf_size)
{
    struct instance *self;
    double factor = DEFAULT_FACTOR;
    char message[256];
    /* Configuration values are strings owned by calc: read or copy them, never free them. */
    const char *text = host->get_config(host->context, "factor");

    if (text != NULL) {
        char *end;
        factor = strtod(text, &end);
        if (end == text || *end != '\0' || !isfinite(factor)) {
            if (error_buf != NULL && error_buf_size > 0) {
                (void)snprintf(error_buf, error_buf_size,
                               PLUGIN_NAME ": config value factor = \"%.64s\" is not a "
                               "finite number", text);
            }
            return CALC_STATUS_INVALID_ARGUMENT;
        }
    }
    self = (struct instance *)malloc(sizeof *self);
    if (self == NULL) {
        set_error(error_buf, error_buf_size, PLUGIN_NAME ": out of memory");
        return CALC_STATUS_ERROR;
    }
    self->factor = factor;
    self->host = host;
    /* calc copies the message before log returns (and tags it with the plugin's name), so a
     * stack buffer is fine. */
    (void)snprintf(message, sizeof message, "initialised (factor %g, host %.32s)", factor,
                   host->host_version);
    host->log(host->context, CALC_LOG_LEVEL_INFO, message);
    *out_instance = self;
    return CALC_STATUS_OK;
}

/* Called exactly once, on the main thread, after the last execute has returned. Must not fail. */
static void instance_shutdown(void *instance)
{
    struct instance *self = (struct instance *)instance;
    if (self != NULL) {
        self->host->log(self->host->context, CALC_LOG_LEVEL_DEBUG, "shutting down");
        free(self);
    }
}

/* {name}(x): x times the configured factor. May be called from any thread, several at once.
 * args holds arg_count operands owned by calc, valid during the call; calc guarantees the
 * arity declared in `operations` (exactly 1 here), the check below is belt and braces. */
static calc_status_t scale_execute(void *instance, const double *args, size_t arg_count,
                                   double *out_result, char *error_buf, size_t error_buf_size)
{
    const struct instance *self = (const struct instance *)instance;
    double result;

    if (self == NULL || args == NULL || out_result == NULL || arg_count != 1) {
        set_error(error_buf, error_buf_size, PLUGIN_NAME " takes exactly 1 operand");
        return CALC_STATUS_INVALID_ARGUMENT;
    }
    result = args[0] * self->factor;
    if (isfinite(args[0]) && !isfinite(result)) {
        set_error(error_buf, error_buf_size, PLUGIN_NAME ": the result overflows a double");
        return CALC_STATUS_OVERFLOW;
    }
    *out_result = result;
    return CALC_STATUS_OK;
}

/* The operations and the descriptor set their fields by name (C99 designated initializers),
 * never by position: a later ABI minor appends fields, and a field left out is 0 / NULL,
 * which means "absent", so this file keeps compiling (with -Werror) across minor versions. */

/* The operations. Owned by the plugin: static, never modified, valid until unload. */
static const calc_operation_t operations[] = {
    {
        .name = PLUGIN_NAME,                      /* how expressions call it */
        .description = "x times the configured factor (default 2)",
        .symbol = NULL,                           /* NULL for a function */
        .execute = scale_execute,
        .kind = CALC_OPERATION_KIND_FUNCTION,
        .associativity = CALC_ASSOCIATIVITY_NONE, /* NONE for a function */
        .precedence = 0,                          /* 0 for a function */
        .min_arity = 1,
        .max_arity = 1,                           /* or CALC_ARITY_VARIADIC */
    },
};

static const calc_plugin_t descriptor = {
    .magic = CALC_PLUGIN_MAGIC,
    .struct_size = sizeof(calc_plugin_t),
    .abi_version = CALC_ABI_VERSION_INIT,         /* set by the headers */
    .name = PLUGIN_NAME,                          /* unique among loaded plugins */
    .version = "0.1.0",                           /* semver, yours to bump */
    .author = NULL,                               /* may be NULL */
    .description = "multiplies by a configured factor", /* may be NULL */
    .sdk_version = CALC_SDK_VERSION,
    .api_requirement = CALC_API_REQUIREMENT_DEFAULT, /* "^1.0" */
    .flags = 0,                                   /* must be 0 */
    .init = instance_init,                        /* may be NULL */
    .shutdown = instance_shutdown,                /* may be NULL */
    .operations = operations,
    .operation_count = sizeof(operations) / sizeof(operations[0]),
    .operation_size = sizeof(calc_operation_t),
};

/* The one exported symbol: a pure function returning the descriptor. */
CALC_PLUGIN_ENTRY
{
    return &descriptor;
}
"#;

/// `<dir>/Makefile`. Placeholders: `{name}`, `{include_dir}`.
pub const C_MAKEFILE_TEMPLATE: &str =
    "# Builds lib{name}.so, the calc plugin, from plugin.c: `make`, then `make clean`.
# CALC_INCLUDE is the folder holding calc_plugin.h: `make CALC_INCLUDE=/path/to/calc/include`.
CALC_INCLUDE ?= {include_dir}

# The flags every calc plugin is built with. -fvisibility=hidden leaves plugin_entry (marked
# CALC_PLUGIN_EXPORT) the only exported symbol. Add your own flags with `make CFLAGS=-O2`.
PLUGIN_CFLAGS = -std=c99 -Wall -Wextra -Werror -pedantic -fPIC -fvisibility=hidden -shared
LDLIBS = -lm

.PHONY: all clean
.DELETE_ON_ERROR:

all: lib{name}.so

lib{name}.so: plugin.c
\t$(CC) $(PLUGIN_CFLAGS) $(CFLAGS) -I\"$(CALC_INCLUDE)\" plugin.c -o $@ $(LDLIBS)

clean:
\trm -f lib{name}.so
";

/// `<dir>/README.md` of a C project. Placeholders: `{name}`, `{include_dir}`, `{docs_dir}`.
pub const C_README_TEMPLATE: &str = r#"# {name}

A calc plugin in C, generated by `calc new-plugin --lang c {name}`. It provides one function,
`{name}(x)`, which returns `x * factor`; `factor` comes from the plugin's configuration
(default 2).

## Build

```sh
make
```

builds `lib{name}.so` with the calc headers in `{include_dir}`
(another copy: `make CALC_INCLUDE=/path/to/calc/include`). `make clean` removes it.

## Load

```sh
calc --plugin-dir . eval "{name}(21)"     # 42
calc --plugin-dir . plugins list          # {name} 0.1.0, and any load failure with its reason
```

## Configure

In the calc configuration file (`~/.config/calc/config.toml`):

```toml
[plugins.{name}.config]
factor = "3"          # now {name}(21) is 63
```

## Read more

- `{docs_dir}/PLUGIN_GUIDE.md`: writing plugins (memory, threads, errors, configuration,
  versioning).
- `{docs_dir}/ABI.md`: the binary rules.
"#;

/// `<dir>/Cargo.toml`. Placeholders: `{name}`, `{sdk_dir}` (a TOML string).
pub const RUST_CARGO_TEMPLATE: &str = r#"[package]
name = "{name}"
version = "0.1.0"
edition = "2021"
publish = false

[lib]
# cdylib: the plugin calc loads, target/debug/lib{name}.so;
# rlib: lets the unit tests call the operations directly.
crate-type = ["cdylib", "rlib"]

[dependencies]
calc-sdk = { path = {sdk_dir} }

# An empty workspace: this project is its own workspace, not part of an enclosing one.
[workspace]

# Never set `panic = "abort"` in any profile. The SDK catches a panic in your code and reports
# it as CALC_STATUS_PANIC; that needs the default `panic = "unwind"`. With "abort", the first
# panic kills the whole calc process.
"#;

/// `<dir>/src/lib.rs`. Placeholders: `{name}`, `{type_name}`, `{docs_dir}`.
pub const RUST_LIB_TEMPLATE: &str = r#"//! `{name}`: a calc plugin in Rust, generated by `calc new-plugin --lang rust {name}`.
//!
//! It provides one function, `{name}(x)`, which returns `x * factor`. The factor is read from
//! the plugin's configuration when calc loads it (key `factor`, default 2), so `{name}(21)` is
//! 42.
//!
//! Make it yours:
//! - replace `scale` and the entry of `OPERATIONS` with your own operations
//!   (`Operation::infix` for an operator such as `a # b`, `Operation::unary` or
//!   `Operation::function` for functions);
//! - keep in the plugin struct whatever `init` should compute once; calc may call operations
//!   from several threads at once, so they get `&self` only;
//! - bump `version` in `Cargo.toml` following semver.
//!
//! Build with `cargo build`; calc loads `target/debug/lib{name}.so`. The rules every plugin
//! follows are in `{docs_dir}/PLUGIN_GUIDE.md`.
#![warn(missing_docs)]

use calc_sdk::{export_plugin, CalcError, Host, LogLevel, Operation, Plugin};

/// The plugin's name, which is also the name of its one operation.
pub const PLUGIN_NAME: &str = "{name}";

/// The factor used when the configuration does not set one.
pub const DEFAULT_FACTOR: f64 = 2.0;

/// The plugin's instance: created once by `init`, shared by every call, dropped when calc
/// unloads the plugin.
#[derive(Debug)]
pub struct {type_name} {
    /// What `{name}(x)` multiplies by.
    pub factor: f64,
}

impl {type_name} {
    /// `{name}(x)`: `x` times the configured factor; an overflow is an error, not infinity.
    fn scale(&self, x: f64) -> Result<f64, CalcError> {
        let result = x * self.factor;
        if x.is_finite() && !result.is_finite() {
            return Err(CalcError::overflow(format!(
                "{PLUGIN_NAME}: the result overflows a double"
            )));
        }
        Ok(result)
    }
}

/// Reads the `factor` configuration value; not set means [`DEFAULT_FACTOR`].
pub fn parse_factor(value: Option<&str>) -> Result<f64, CalcError> {
    let Some(text) = value else {
        return Ok(DEFAULT_FACTOR);
    };
    match text.trim().parse::<f64>() {
        Ok(factor) if factor.is_finite() => Ok(factor),
        _ => Err(CalcError::invalid_argument(format!(
            "{PLUGIN_NAME}: config value factor = {text:?} is not a finite number"
        ))),
    }
}

impl Plugin for {type_name} {
    const NAME: &'static str = PLUGIN_NAME;
    const VERSION: &'static str = env!("CARGO_PKG_VERSION");
    const DESCRIPTION: &'static str = "multiplies by a configured factor (a starting point)";
    const OPERATIONS: &'static [Operation<Self>] = &[Operation::unary(
        PLUGIN_NAME,
        "x times the configured factor (default 2)",
        Self::scale,
    )];

    fn init(host: &Host) -> Result<Self, CalcError> {
        let factor = parse_factor(host.config("factor").as_deref())?;
        let message = format!("initialised (factor {factor}, host {})", host.version());
        host.log(LogLevel::Info, &message);
        Ok(Self { factor })
    }
}

export_plugin!({type_name});

#[cfg(test)]
mod tests {
    use super::*;
    use calc_sdk::Status;

    type P = {type_name};

    /// Calls the operation as calc does: the operand count is checked, then `scale` runs.
    fn call(factor: f64, args: &[f64]) -> Result<f64, CalcError> {
        P::OPERATIONS[0].call(&P { factor }, args)
    }

    #[test]
    fn doubles_by_default() {
        let factor = parse_factor(None).unwrap();
        assert_eq!(call(factor, &[21.0]), Ok(42.0));
    }

    #[test]
    fn uses_the_configured_factor() {
        let factor = parse_factor(Some("3")).unwrap();
        assert_eq!(call(factor, &[21.0]), Ok(63.0));
    }

    #[test]
    fn reports_errors_with_a_status() {
        let e = parse_factor(Some("lots")).unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument);
        assert_eq!(call(2.0, &[f64::MAX]).unwrap_err().status, Status::Overflow);
        let e = call(2.0, &[1.0, 2.0]).unwrap_err();
        assert_eq!(e.status, Status::InvalidArgument);
    }
}
"#;

/// `<dir>/README.md` of a Rust project. Placeholders: `{name}`, `{docs_dir}`.
pub const RUST_README_TEMPLATE: &str = r#"# {name}

A calc plugin in Rust, generated by `calc new-plugin --lang rust {name}`. It provides one
function, `{name}(x)`, which returns `x * factor`; `factor` comes from the plugin's
configuration (default 2).

## Build and test

```sh
cargo build
cargo test
```

The plugin is `target/debug/lib{name}.so` (`cargo build --release`:
`target/release/lib{name}.so`).

## Load

```sh
calc --plugin-dir target/debug eval "{name}(21)"     # 42
calc --plugin-dir target/debug plugins list          # {name} 0.1.0, and any load failure
```

## Configure

In the calc configuration file (`~/.config/calc/config.toml`):

```toml
[plugins.{name}.config]
factor = "3"          # now {name}(21) is 63
```

## Read more

- `{docs_dir}/PLUGIN_GUIDE.md`: writing plugins (memory, threads, errors, configuration,
  versioning).
- `{docs_dir}/ABI.md`: the binary rules.
- Never set `panic = "abort"`: the SDK turns panics into `CALC_STATUS_PANIC` only with the
  default `panic = "unwind"`.
"#;

#[cfg(test)]
mod tests {
    use super::*;

    fn temp(name: &str) -> PathBuf {
        let dir = std::env::temp_dir().join(format!("calc-scaffold-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        dir
    }

    fn sdk_root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn reason(name: &str, lang: Lang) -> String {
        match validate_name(name, lang) {
            Err(ScaffoldError::InvalidName { reason, .. }) => reason,
            other => panic!("{name:?}: expected InvalidName, got {other:?}"),
        }
    }

    #[test]
    fn accepts_identifiers_up_to_64_characters() {
        for name in [
            "x",
            "my_plugin",
            "_private",
            "Scale2",
            "a1_b2",
            &"a".repeat(64),
        ] {
            assert!(validate_name(name, Lang::C).is_ok(), "{name}");
        }
        for name in ["x", "my_plugin", "_private", "a1_b2", "s2__"] {
            assert!(validate_name(name, Lang::Rust).is_ok(), "{name}");
        }
    }

    #[test]
    fn rejects_names_that_are_not_identifiers() {
        assert!(reason("", Lang::C).contains("empty"));
        assert!(reason("1abc", Lang::C).contains("start with"));
        assert!(reason("../x", Lang::C).contains("start with"));
        for name in ["my-plugin", "a.b", "a b", "café", "a/b", "x/../y"] {
            assert!(reason(name, Lang::C).contains("only ASCII"), "{name}");
            assert!(reason(name, Lang::Rust).contains("only ASCII"), "{name}");
        }
        assert!(reason(&"a".repeat(65), Lang::C).contains("at most 64"));
    }

    #[test]
    fn rust_names_must_be_snake_case_and_not_keywords() {
        assert!(reason("fn", Lang::Rust).contains("keyword"));
        assert!(reason("_", Lang::Rust).contains("keyword"));
        assert!(reason("MyPlugin", Lang::Rust).contains("snake_case"));
        assert!(reason("a__b", Lang::Rust).contains("snake_case"));
        assert!(
            validate_name("fn", Lang::C).is_ok(),
            "C identifiers are prefixed"
        );
    }

    #[test]
    fn the_error_names_the_name_and_the_reason() {
        let e = validate_name("my-plugin", Lang::C).unwrap_err();
        assert_eq!(
            e.to_string(),
            "invalid plugin name \"my-plugin\": may contain only ASCII letters, digits and `_` \
             ([A-Za-z_][A-Za-z0-9_]*)"
        );
    }

    #[test]
    fn refuses_a_non_empty_directory_and_writes_nothing() {
        let dir = temp("nonempty");
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("keep.txt"), "mine").unwrap();
        for lang in [Lang::C, Lang::Rust] {
            let s = Scaffold {
                lang,
                name: "demo".into(),
                dir: dir.clone(),
                sdk_root: sdk_root(),
            };
            match scaffold(&s) {
                Err(ScaffoldError::DirNotEmpty { path }) => assert_eq!(path, dir),
                other => panic!("expected DirNotEmpty, got {other:?}"),
            }
        }
        let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
        assert_eq!(left.len(), 1, "only the user's file remains");
        assert_eq!(
            std::fs::read_to_string(dir.join("keep.txt")).unwrap(),
            "mine"
        );
        let e = scaffold(&Scaffold {
            lang: Lang::C,
            name: "demo".into(),
            dir: dir.join("keep.txt"),
            sdk_root: sdk_root(),
        })
        .unwrap_err();
        assert!(matches!(e, ScaffoldError::NotADirectory { .. }), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_invalid_name_or_sdk_root_writes_nothing() {
        let dir = temp("invalid");
        let mut s = Scaffold {
            lang: Lang::C,
            name: "bad name".into(),
            dir: dir.clone(),
            sdk_root: sdk_root(),
        };
        assert!(matches!(
            scaffold(&s),
            Err(ScaffoldError::InvalidName { .. })
        ));
        s.name = "good".into();
        s.sdk_root = dir.join("nowhere");
        let e = scaffold(&s).unwrap_err();
        assert!(matches!(e, ScaffoldError::InvalidSdkRoot { .. }), "{e}");
        assert!(!dir.exists());
    }

    #[test]
    fn writes_every_file_into_an_empty_directory() {
        let dir = temp("ok");
        std::fs::create_dir_all(&dir).unwrap();
        let c = scaffold(&Scaffold {
            lang: Lang::C,
            name: "demo".into(),
            dir: dir.join("c"),
            sdk_root: sdk_root(),
        })
        .unwrap();
        assert_eq!(
            c,
            ["plugin.c", "Makefile", "README.md"].map(|f| dir.join("c").join(f))
        );
        let rust = scaffold(&Scaffold {
            lang: Lang::Rust,
            name: "my_demo".into(),
            dir: dir.join("rust"),
            sdk_root: sdk_root(),
        })
        .unwrap();
        assert_eq!(
            rust,
            ["Cargo.toml", "src/lib.rs", "README.md"].map(|f| dir.join("rust").join(f))
        );
        for file in c.iter().chain(&rust) {
            let text = std::fs::read_to_string(file).unwrap();
            assert!(
                !text.contains("{name}") && !text.contains("{type_name}"),
                "{}: unreplaced placeholder",
                file.display()
            );
        }
        let lib = std::fs::read_to_string(&rust[1]).unwrap();
        assert!(lib.contains("pub struct MyDemoPlugin {"));
        let makefile = std::fs::read_to_string(&c[1]).unwrap();
        let include = std::fs::canonicalize(sdk_root()).unwrap().join("include");
        assert!(makefile.contains(&format!("CALC_INCLUDE ?= {}\n", include.display())));
        assert!(makefile.contains("\n\t$(CC) "), "recipes are tab-indented");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The snippets of `docs/PLUGIN_GUIDE.md` marked `<!-- scaffold:c -->` or
    /// `<!-- scaffold:rust -->` are copied verbatim from the templates (rendered for `demo`).
    #[test]
    fn the_guide_quotes_the_templates() {
        let guide_path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../docs/PLUGIN_GUIDE.md");
        let guide = std::fs::read_to_string(&guide_path).unwrap();
        let vars = [("{name}", "demo"), ("{type_name}", "DemoPlugin")];
        let c = render(C_PLUGIN_TEMPLATE, &vars);
        let rust = render(RUST_LIB_TEMPLATE, &vars);
        let mut checked = 0;
        let mut lines = guide.lines();
        while let Some(line) = lines.next() {
            let source = match line.trim() {
                "<!-- scaffold:c -->" => &c,
                "<!-- scaffold:rust -->" => &rust,
                _ => continue,
            };
            assert!(lines.next().is_some_and(|l| l.starts_with("```")));
            let snippet: String = lines
                .by_ref()
                .take_while(|l| !l.starts_with("```"))
                .map(|l| format!("{l}\n"))
                .collect();
            assert!(
                source.contains(&snippet),
                "docs/PLUGIN_GUIDE.md snippet no longer matches the template:\n{snippet}"
            );
            checked += 1;
        }
        assert!(checked >= 3, "found {checked} marked snippets");
    }

    #[test]
    fn an_installed_calc_uses_its_prefix_and_falls_back_to_the_source_tree() {
        let dir = temp("default-root");
        let source_tree = std::fs::canonicalize(sdk_root()).unwrap();
        let built_from = |p: PathBuf| std::fs::canonicalize(p).unwrap();
        // No SDK in the prefix yet: the tree calc was built from.
        let exe = dir.join("bin/calc");
        assert_eq!(built_from(default_sdk_root(Some(&exe))), source_tree);
        assert_eq!(built_from(default_sdk_root(None)), source_tree);
        std::fs::create_dir_all(dir.join(PREFIX_SDK_DIR)).unwrap();
        std::fs::write(dir.join(PREFIX_SDK_DIR).join("Cargo.toml"), "").unwrap();
        assert_eq!(default_sdk_root(Some(&exe)), dir);
        assert_eq!(SdkLayout::of(&dir), SdkLayout::Prefix);
        assert_eq!(SdkLayout::of(&source_tree), SdkLayout::SourceTree);
        // Only an executable in a `bin/` folder has a prefix.
        let elsewhere = dir.join("calc");
        assert_eq!(built_from(default_sdk_root(Some(&elsewhere))), source_tree);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn type_names_and_escaping() {
        assert_eq!(rust_type_name("my_calc"), "MyCalcPlugin");
        assert_eq!(rust_type_name("host"), "HostPlugin");
        assert_eq!(rust_type_name("_1x"), "My1xPlugin");
        assert_eq!(toml_string(r#"/a "b"\c"#), r#""/a \"b\"\\c""#);
        assert_eq!(
            make_value(Path::new("/a$b#c d"), Path::new("/")).unwrap(),
            "/a$$b\\#c d"
        );
        assert!(make_value(Path::new("/a\"b"), Path::new("/")).is_err());
    }
}
