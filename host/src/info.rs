//! Metadata of loaded plugins, copied out of plugin memory at load time.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

/// What an operation is, as declared by its plugin.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum OperationKind {
    /// A binary infix operator.
    Infix {
        /// Its symbol in expressions.
        symbol: String,
        /// Binding strength; higher binds tighter.
        precedence: i32,
        /// `true` for right-associative.
        right_associative: bool,
    },
    /// A function `name(args...)`.
    Function {
        /// Fewest operands.
        min_arity: u32,
        /// Most operands; `None` when variadic.
        max_arity: Option<u32>,
    },
}

/// One operation's declaration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OperationInfo {
    /// Name, unique within its plugin.
    pub name: String,
    /// One line for humans (may be empty).
    pub description: String,
    /// Infix operator or function.
    #[serde(flatten)]
    pub kind: OperationKind,
}

impl OperationInfo {
    /// Fewest and most operands (`None`: no upper bound).
    pub fn arity(&self) -> (u32, Option<u32>) {
        match self.kind {
            OperationKind::Infix { .. } => (2, Some(2)),
            OperationKind::Function {
                min_arity,
                max_arity,
            } => (min_arity, max_arity),
        }
    }

    /// The accepted operand count in words, e.g. `"2 operands"`, `"at least 1 operand"`.
    pub fn arity_text(&self, noun: &str) -> String {
        let (min, max) = self.arity();
        let plural = |n: u32| {
            if n == 1 {
                noun.to_string()
            } else {
                format!("{noun}s")
            }
        };
        match max {
            Some(m) if m == min => format!("{min} {}", plural(min)),
            Some(m) => format!("{min} to {m} {}", plural(m)),
            None => format!("at least {min} {}", plural(min)),
        }
    }

    /// The infix symbol, if this is an operator.
    pub fn symbol(&self) -> Option<&str> {
        match &self.kind {
            OperationKind::Infix { symbol, .. } => Some(symbol),
            OperationKind::Function { .. } => None,
        }
    }
}

/// A loaded plugin's metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PluginInfo {
    /// Plugin name, unique among loaded plugins.
    pub name: String,
    /// The plugin's version.
    #[serde(serialize_with = "as_string", deserialize_with = "from_string")]
    pub version: semver::Version,
    /// Author (may be empty).
    pub author: String,
    /// One line for humans (may be empty).
    pub description: String,
    /// The file it was loaded from (absolute).
    pub path: PathBuf,
    /// The ABI version it declares, `major.minor`.
    pub abi_version: String,
    /// The SDK version it was built with.
    #[serde(serialize_with = "as_string", deserialize_with = "from_string")]
    pub sdk_version: semver::Version,
    /// Its requirement on the host API version.
    #[serde(serialize_with = "as_string", deserialize_with = "from_string")]
    pub api_requirement: semver::VersionReq,
    /// Its operations, in declaration order.
    pub operations: Vec<OperationInfo>,
    /// The application-defined interfaces it implements (ABI 1.4), in declaration order; empty
    /// for a plugin built against an older ABI.
    #[serde(default)]
    pub interfaces: Vec<InterfaceInfo>,
}

/// One application-defined interface a plugin implements (`calc_interface_t`, ABI 1.4).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceInfo {
    /// The interface's id, `"vendor.name"`.
    pub id: String,
    /// The major version of the interface the plugin's vtable was built against.
    pub major: u16,
    /// The minor version of the interface the plugin's vtable was built against.
    pub minor: u16,
    /// The size of the plugin's vtable, in bytes: fields that do not end within it are absent.
    pub vtable_size: u32,
    /// A bytes interface (`CALC_INTERFACE_FLAG_BYTES`): every field is a `calc_bytes_fn`, which
    /// hosts call by slot ([`crate::InterfaceHandle::call_bytes`]), in process or isolated.
    #[serde(default)]
    pub bytes: bool,
}

impl std::fmt::Display for InterfaceInfo {
    /// `id major.minor`, and ` (bytes)` for a bytes interface, as listings show it.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}.{}", self.id, self.major, self.minor)?;
        if self.bytes {
            f.write_str(" (bytes)")?;
        }
        Ok(())
    }
}

fn as_string<T: std::fmt::Display, S: serde::Serializer>(v: &T, s: S) -> Result<S::Ok, S::Error> {
    s.collect_str(v)
}

/// The inverse of `as_string`: parses the string form (semver versions and requirements).
fn from_string<'de, T, D>(d: D) -> Result<T, D::Error>
where
    T: std::str::FromStr,
    T::Err: std::fmt::Display,
    D: serde::Deserializer<'de>,
{
    let s = String::deserialize(d)?;
    s.parse().map_err(serde::de::Error::custom)
}
