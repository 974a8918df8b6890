//! The Rust side of textlint's plugin interface, `calc-apps.lint` 1.0 (the C side,
//! `apps/textlint/include/textlint.h`, is generated from [`abi`]): implement [`Lint`] and list [`lint::<Self>()`](lint) in
//! `Plugin::INTERFACES`, with no `unsafe` of your own.

use calc_sdk::interface::Interface;
use calc_sdk::{CalcError, Plugin};

pub mod abi;
pub use abi::{LintVtable, ID, ID_C, MAJOR, MINOR};

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
    Interface::bytes(ID_C, MAJOR, MINOR, &P::LINT_VTABLE)
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

#[cfg(test)]
mod tests {
    /// The header's id is written in its cbindgen configuration (cbindgen writes no string
    /// constants): it must be [`super::ID`], as the C string the SDK entry uses is.
    #[test]
    fn the_c_header_and_the_entry_name_the_interface_id() {
        let header = include_str!("../../include/textlint.h");
        let define = format!("#define TEXTLINT_INTERFACE_ID \"{}\"\n", super::ID);
        assert!(header.contains(&define), "textlint.h lacks {define:?}");
        assert_eq!(super::ID_C.to_str(), Ok(super::ID));
    }
}
