//! `cargo xtask <task>`: see `cargo xtask help`.

use std::process::ExitCode;

mod demo;

const HELP: &str = "usage: cargo xtask <task>

tasks:
  demo            build the calc CLI, libcalc_host (.so and .a, the C API) and every example
                  plugin (C, C++ and Rust) into target/debug/, put the plugins in
                  target/debug/plugins/ and run the calculator on them
  headers         regenerate include/*.h and apps/textlint/include/textlint.h from their Rust
                  definitions
  headers --check fail if those headers differ from what the Rust definitions generate
  install --prefix DIR [--debug]
                  build libcalc_host (shared and static) and the calc CLI (release, or debug
                  with --debug) and install them with the headers, the CMake package
                  (find_package(Calc)), calc.pc, the plugin runner, the Rust SDK and the guides
                  into DIR/{bin,lib,include,libexec,share}";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let result = match args.as_slice() {
        ["headers"] => headers(false),
        ["headers", "--check"] => headers(true),
        ["demo"] => demo::run(),
        ["install", rest @ ..] => xtask::install::parse_args(rest)
            .and_then(|(prefix, release)| xtask::install::install(&prefix, release)),
        ["help"] | ["--help"] | ["-h"] | [] => {
            println!("{HELP}");
            Ok(())
        }
        _ => Err(format!("unknown task {:?}\n\n{HELP}", args.join(" "))),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("xtask: {e}");
            ExitCode::FAILURE
        }
    }
}

fn headers(check: bool) -> Result<(), String> {
    let root = xtask::workspace_root();
    let mut stale = Vec::new();
    for (rel, text) in xtask::generated_headers(&root)? {
        let path = root.join(&rel);
        let current = std::fs::read_to_string(&path).unwrap_or_default();
        if current == text {
            continue;
        }
        if check {
            stale.push(rel.display().to_string());
        } else {
            std::fs::write(&path, text).map_err(|e| format!("{}: {e}", path.display()))?;
            println!("wrote {}", rel.display());
        }
    }
    if stale.is_empty() {
        Ok(())
    } else {
        Err(format!(
            "out of date (run `cargo xtask headers`): {}",
            stale.join(", ")
        ))
    }
}
