//! The library half of the `calc` command-line tool (the `calc-cli` package): what the CLI
//! needs that is worth testing on its own. The command-line parsing, the REPL and `calc map`
//! live in the `calc` binary of this package; the plugin machinery they drive is the
//! `calc-host` library.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod scaffold;
