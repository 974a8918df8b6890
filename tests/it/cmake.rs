//! The CMake package as an outside project uses it: `cargo xtask install`, then
//! `find_package(Calc CONFIG REQUIRED)` in tests/cmake-consumer, which builds a C host (linked
//! against the shared and the static library) and a C plugin with `calc_add_plugin`, and runs
//! them under ctest. Also the pkg-config file of the same install.

use std::process::Command;

use calc_tests::{scratch_dir, workspace_root};

fn run(cmd: &mut Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed ({}):\n{}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn an_installed_prefix_is_consumed_by_cmake_and_pkg_config() {
    calc_tests::require_tools!(Cmake, PkgConfig);
    let root = scratch_dir(&format!("cmake-{}", std::process::id()));
    let prefix = root.join("prefix");
    xtask::install::install(&prefix, false).unwrap_or_else(|e| panic!("install: {e}"));
    for file in [
        "lib/libcalc_host.so",
        "lib/libcalc_host.a",
        "include/calc_plugin.h",
        "include/calc_host.h",
        "lib/cmake/Calc/CalcConfig.cmake",
        "lib/cmake/Calc/CalcConfigVersion.cmake",
        "lib/pkgconfig/calc.pc",
        "lib/pkgconfig/calc-static.pc",
        "libexec/calc-plugin-runner",
        "bin/calc",
        "share/calc/sdk/Cargo.toml",
        "share/calc/sdk/src/lib.rs",
        "share/doc/calc/PLUGIN_GUIDE.md",
        "share/doc/calc/LICENSE-MIT",
    ] {
        assert!(
            prefix.join(file).is_file(),
            "{file} missing from the install prefix"
        );
    }

    // Relocatable: configure against a copy of the prefix somewhere else.
    let moved = root.join("moved-prefix");
    run(Command::new("cp").arg("-a").arg(&prefix).arg(&moved));
    let build = root.join("build");
    run(Command::new("cmake")
        .arg("-S")
        .arg(workspace_root().join("tests/cmake-consumer"))
        .arg("-B")
        .arg(&build)
        .arg(format!("-DCMAKE_PREFIX_PATH={}", moved.display())));
    run(Command::new("cmake").arg("--build").arg(&build));
    let plugins = build.join("plugins");
    for host in ["consumer_shared", "consumer_static"] {
        let out = run(Command::new(build.join(host))
            .arg(&plugins)
            .args(["triple(2) + 1", "cbrt(27)"])
            .env_remove("LD_LIBRARY_PATH"));
        assert_eq!(out, "7\n3\n", "{host}");
    }
    // The same programs with every example plugin: C, C++ (cpp_trig) and Rust (mul, stats).
    let examples = calc_tests::examples_dir();
    let mixed = ["2 * (3 + 4)", "atan2(0, 1) + max(1, 2)"];
    for host in ["consumer_shared", "consumer_static"] {
        let out = run(Command::new(build.join(host)).arg(examples).args(mixed));
        assert_eq!(out, "14\n2\n", "{host}");
    }
    let out = run(Command::new(build.join("calc_c"))
        .arg("--plugin-dir")
        .arg(examples)
        .args(mixed));
    assert_eq!(out, "14\n2\n", "calc_c built by CMake");

    let ctest = run(Command::new("ctest")
        .arg("--test-dir")
        .arg(&build)
        .arg("--output-on-failure"));
    assert!(
        ctest.contains("100% tests passed, 0 tests failed out of 6"),
        "{ctest}"
    );

    // pkg-config sees the same install.
    let flags = run(Command::new("pkg-config")
        .args(["--cflags", "--libs", "calc"])
        .env("PKG_CONFIG_PATH", moved.join("lib/pkgconfig")));
    // The .pc file locates the prefix from its own directory (${pcfiledir}), so the include
    // path resolves into the moved copy.
    let include = flags
        .split_whitespace()
        .find_map(|f| f.strip_prefix("-I"))
        .unwrap_or_else(|| panic!("no -I in {flags}"));
    assert_eq!(
        std::fs::canonicalize(include).unwrap(),
        std::fs::canonicalize(moved.join("include")).unwrap(),
        "{flags}"
    );
    assert!(flags.contains("-lcalc_host"), "{flags}");
    let version = run(Command::new("pkg-config")
        .args(["--modversion", "calc"])
        .env("PKG_CONFIG_PATH", moved.join("lib/pkgconfig")));
    assert_eq!(version.trim(), calc_sdk::SDK_VERSION);

    // The README's two pkg-config commands, word for word but for the source and the output,
    // build hosts that run with no LD_LIBRARY_PATH: the shared one through its rpath, the
    // static one without libcalc_host.so at all.
    let commands = readme_pkg_config_commands();
    assert_eq!(commands.len(), 2, "{commands:?}");
    let source = workspace_root().join("tests/cmake-consumer/host.c");
    for (i, command) in commands.iter().enumerate() {
        let out = root.join(format!("pkg-config-host-{i}"));
        let line = command
            .replace("main.c", &source.display().to_string())
            .replace("-o myhost", &format!("-o {}", out.display()));
        run(Command::new("sh")
            .args(["-c", &line])
            .env("PKG_CONFIG_PATH", moved.join("lib/pkgconfig")));
        let result = run(Command::new(&out)
            .arg(&plugins)
            .args(["triple(2) + 1", "cbrt(27)"])
            .env_remove("LD_LIBRARY_PATH"));
        assert_eq!(result, "7\n3\n", "{command}");
        let dynamic = run(Command::new("readelf").arg("-d").arg(&out));
        let needs_so = dynamic.contains("[libcalc_host.so]");
        assert_eq!(
            needs_so,
            !command.contains("calc-static"),
            "{command}: NEEDED entries\n{dynamic}"
        );
    }
}

/// The `cc` lines of the README's pkg-config block (the ```sh block that links `calc-static`).
fn readme_pkg_config_commands() -> Vec<String> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let block = readme
        .split("```sh\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap_or_default())
        .find(|block| block.contains("pkg-config --cflags --libs calc-static"))
        .expect("README.md has a ```sh block with the pkg-config commands");
    block
        .lines()
        .filter(|line| line.starts_with("cc "))
        .map(str::to_string)
        .collect()
}

#[test]
fn the_c_examples_build_with_cmake_from_the_source_tree() {
    calc_tests::require_tools!(Cmake);
    let build = scratch_dir(&format!("cmake-examples-{}", std::process::id()));
    run(Command::new("cmake")
        .arg("-S")
        .arg(workspace_root().join("examples-c"))
        .arg("-B")
        .arg(&build));
    run(Command::new("cmake").arg("--build").arg(&build));
    let mut m = calc_host::PluginManager::new();
    assert_eq!(
        m.load_dir(&build.join("plugins")).unwrap(),
        4,
        "{:?}",
        m.failures()
    );
    assert_eq!(m.eval("2 ^ 10 - sqrt(16) + 1"), Ok(1021.0));
}
