//! The Rust side of textlint's plugin interface, `calc-apps.lint` 1.0 (the C side is
//! `apps/textlint/include/textlint.h`): implement [`Lint`] and list [`lint::<Self>()`](lint) in
//! `Plugin::INTERFACES`, with no `unsafe` of your own.

use calc_sdk::abi::calc_bytes_fn;
use calc_sdk::interface::Interface;
use calc_sdk::{CalcError, Plugin};

/// The interface's id.
pub const ID: &str = "calc-apps.lint";
/// The interface's major version.
pub const MAJOR: u16 = 1;

/// `textlint_vtable_t`.
#[repr(C)]
pub struct LintVtable {
    /// Slot 0: the extensions the plugin checks.
    pub extensions: calc_bytes_fn,
    /// Slot 1: checks one file.
    pub check: calc_bytes_fn,
}

/// One finding in a file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    /// 1-based line.
    pub line: usize,
    /// 1-based column.
    pub column: usize,
    /// What is wrong.
    pub message: String,
}

/// What a textlint plugin implements.
pub trait Lint: Plugin {
    /// The file extensions it checks, without dots (`&["rs"]`), or `&["*"]` for every file.
    fn extensions(&self) -> &[&str];
    /// Checks one file's bytes.
    fn check(&self, text: &[u8]) -> Result<Vec<Finding>, CalcError>;

    /// The vtable that calls this implementation.
    const LINT_VTABLE: LintVtable = LintVtable {
        extensions: Some(extensions::<Self>),
        check: Some(check::<Self>),
    };
}

/// The entry of `Plugin::INTERFACES` for `calc-apps.lint` 1.0.
pub const fn lint<P: Lint>() -> Interface {
    Interface::bytes(c"calc-apps.lint", MAJOR, 0, &P::LINT_VTABLE)
}

calc_sdk::bytes_fn!(
    /// Slot 0: the extensions, comma-separated.
    fn extensions<P: Lint>(plugin, _input) {
        Ok(plugin.extensions().join(",").into_bytes())
    }
);

calc_sdk::bytes_fn!(
    /// Slot 1: the findings, one per line.
    fn check<P: Lint>(plugin, text) {
        let mut out = String::new();
        for f in plugin.check(text)? {
            out.push_str(&format!("{}:{}: {}\n", f.line, f.column, f.message));
        }
        Ok(out.into_bytes())
    }
);
