//! `cargo xtask demo`: build everything and run the calculator on the example plugins.

use std::io::Write;
use std::process::Command;

use xtask::build;

/// Expressions the demo evaluates: C operators (+ - ^ sqrt) mixed with Rust ones (* / max).
const EXPRESSIONS: &[&str] = &[
    "atan2(1, 1) * 4", // C++
    "2 * (3 + 4)",
    "2 ^ 10 - max(3, 4) / 2",
    "sqrt(16) + hypot(3, 4) * -2",
    "avg(1, 2, 3, 4) % 2",
    "1 / 0",
];

pub fn run() -> Result<(), String> {
    // The `calc` CLI, the plugin runner, and libcalc_host.so and .a, the host's C API (the
    // README's C host links against them).
    let debug = build::cargo_build(&[
        build::CLI_PACKAGE,
        build::RUNNER_PACKAGE,
        build::CAPI_PACKAGE,
    ])?;
    let plugins = debug.join("plugins");
    build::build_examples(&plugins)?;
    let calc = debug.join(format!("calc{}", std::env::consts::EXE_SUFFIX));
    let capi = [
        debug.join(build::library_file_name(build::CAPI_LIBRARY)),
        debug.join(format!("lib{}.a", build::CAPI_LIBRARY)),
    ];
    for lib in &capi {
        if !lib.is_file() {
            return Err(format!("{} was not built", lib.display()));
        }
    }
    println!(
        "built {}, {} and {} (the C API) and the example plugins in {}\n",
        calc.display(),
        capi[0].display(),
        capi[1].display(),
        plugins.display()
    );
    let status = Command::new(&calc)
        .args(["plugins", "list"])
        .status()
        .map_err(|e| format!("{}: {e}", calc.display()))?;
    if !status.success() {
        return Err("`calc plugins list` reported failures".into());
    }
    println!("\n$ calc run add 10 5");
    let _ = std::io::stdout().flush();
    Command::new(&calc)
        .args(["run", "add", "10", "5"])
        .status()
        .map_err(|e| e.to_string())?;
    for expr in EXPRESSIONS {
        println!("$ calc eval \"{expr}\"");
        let _ = std::io::stdout().flush();
        // The last one fails on purpose (division by zero): show its message and exit status.
        let status = Command::new(&calc)
            .args(["eval", expr])
            .status()
            .map_err(|e| e.to_string())?;
        if !status.success() {
            println!("(exit status {})", status.code().unwrap_or(-1));
        }
    }
    textlint(&debug)?;
    println!(
        "\nTry it: {} eval \"2 ^ 10 - max(3, 4) / 2\"",
        calc.display()
    );
    Ok(())
}

/// The second application on the same runtime: textlint and its plugins (C, C++ and Rust), in
/// `target/debug/textlint-plugins`, run on a sample file in process and isolated.
fn textlint(debug: &std::path::Path) -> Result<(), String> {
    build::cargo_build(&["calc-textlint", "calc-textlint-trailing"])?;
    let root = xtask::workspace_root();
    let plugins = debug.join("textlint-plugins");
    let include = root.join("apps/textlint/include");
    build::build_c_plugin(
        &root.join("apps/textlint/plugins/tabs.c"),
        &plugins.join(build::library_file_name("tabs")),
        &["-I", &include.to_string_lossy()],
    )?;
    build::build_cpp_plugin_in(
        &root.join("apps/textlint/plugins/long_lines"),
        &[&include],
        &plugins.join(build::library_file_name("long_lines")),
    )?;
    let trailing = build::library_file_name("trailing");
    build::copy_fresh(&debug.join(&trailing), &plugins.join(&trailing))?;
    let sample = debug.join("textlint-sample.txt");
    std::fs::write(&sample, "fine\n\tindented with a tab \n")
        .map_err(|e| format!("{}: {e}", sample.display()))?;
    let textlint = debug.join(format!("textlint{}", std::env::consts::EXE_SUFFIX));
    for isolate in [false, true] {
        let mut args = vec!["--plugin-dir".to_string(), plugins.display().to_string()];
        if isolate {
            args.push("--isolate".into());
        }
        args.push(sample.display().to_string());
        println!("\n$ textlint {}", args.join(" "));
        let _ = std::io::stdout().flush();
        let status = Command::new(&textlint)
            .args(&args)
            .status()
            .map_err(|e| format!("{}: {e}", textlint.display()))?;
        // 1: findings, as this sample has; anything else is a failure.
        if status.code() != Some(1) {
            return Err(format!("textlint exited with {status}"));
        }
    }
    Ok(())
}
