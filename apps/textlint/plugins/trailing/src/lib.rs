//! trailing: a textlint plugin in Rust that reports whitespace at the end of a line, in every
//! file. Written against textlint's interface crate, with no unsafe code.

use calc_sdk::{export_plugin, CalcError, Host, Interface, Operation, Plugin};
use calc_textlint_interface::{lint, Finding, Lint};

/// The plugin's instance.
pub struct Trailing;

impl Lint for Trailing {
    fn extensions(&self) -> &[&str] {
        &["*"]
    }

    fn check(&self, text: &[u8]) -> Result<Vec<Finding>, CalcError> {
        let mut findings = Vec::new();
        for (i, line) in text.split(|&b| b == b'\n').enumerate() {
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            let kept = line.trim_ascii_end().len();
            if kept < line.len() {
                findings.push(Finding {
                    line: i + 1,
                    column: kept + 1,
                    message: "trailing whitespace".into(),
                });
            }
        }
        Ok(findings)
    }
}

impl Plugin for Trailing {
    const NAME: &'static str = "trailing";
    const VERSION: &'static str = "1.0.0";
    const AUTHOR: &'static str = "calc examples";
    const DESCRIPTION: &'static str = "textlint: trailing whitespace";
    const OPERATIONS: &'static [Operation<Self>] = &[];
    const INTERFACES: &'static [Interface] = &[lint::<Self>()];

    fn init(_host: &Host) -> Result<Self, CalcError> {
        Ok(Trailing)
    }
}

export_plugin!(Trailing);
