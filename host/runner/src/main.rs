//! `calc-plugin-runner`: the child process an isolated plugin runs in. Started by the host (the
//! `calc` CLI, `libcalc_host`, or any `PluginManager` with isolation on), never by hand; see
//! `calc_host::isolation::runner` and `docs/ISOLATION.md`.
#![forbid(unsafe_code)]

fn main() {
    if std::env::var_os("RUST_LOG").is_some_and(|v| !v.is_empty()) {
        let _ = tracing_subscriber::fmt()
            .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
            .with_writer(std::io::stderr)
            .with_target(false)
            .try_init();
    }
    std::process::exit(calc_host::isolation::runner::main());
}
