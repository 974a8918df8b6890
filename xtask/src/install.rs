//! `cargo xtask install --prefix DIR [--debug]`: builds libcalc_host and the `calc` CLI
//! (release profile unless `--debug`) and installs them with the headers, the CMake package, the
//! pkg-config file, the Rust SDK and the guides:
//!
//! ```text
//! <prefix>/bin/calc                         the calculator CLI (and `calc new-plugin`)
//! <prefix>/lib/libcalc_host.so              the host C API, shared
//! <prefix>/lib/libcalc_host.a               the host C API, static
//! <prefix>/include/calc_plugin.h            the plugin ABI
//! <prefix>/include/calc_host.h              the host C API (includes calc_plugin.h)
//! <prefix>/lib/cmake/Calc/CalcConfig.cmake          find_package(Calc): Calc::host,
//! <prefix>/lib/cmake/Calc/CalcConfigVersion.cmake   Calc::host_static, Calc::sdk,
//! <prefix>/lib/cmake/Calc/CalcPlugin.cmake          calc_add_plugin()
//! <prefix>/lib/pkgconfig/calc.pc            pkg-config --cflags --libs calc (shared)
//! <prefix>/lib/pkgconfig/calc-static.pc     pkg-config --cflags --libs calc-static
//! <prefix>/libexec/calc-plugin-runner        the runner of isolated plugins, which
//!                                            libcalc_host finds in ../libexec from itself
//! <prefix>/share/calc/sdk/                   the calc-sdk crate, as `cargo package` makes it:
//!                                            Rust projects of `calc new-plugin` use it by path
//! <prefix>/share/doc/calc/                   the guides (docs/*.md), README.md, licenses
//! ```
//!
//! Every installed file finds the others relative to itself, so the prefix can be moved. The
//! templates in `cmake/` (`*.in`) get their `@NAME@` placeholders filled in here: the SDK
//! version from the `CALC_SDK_VERSION_*` macros of `include/calc_plugin.h`, and the system
//! libraries the static library needs, as rustc reports them (`--print native-static-libs`).

use std::path::{Path, PathBuf};
use std::process::Command;

use crate::build::{copy_fresh, library_file_name, target_dir};
use crate::workspace_root;

pub use crate::build::{CAPI_LIBRARY, CAPI_PACKAGE};

/// The installed headers, in `include/`.
pub const HEADERS: &[&str] = &["calc_plugin.h", "calc_host.h"];

/// Parses the arguments after `install`: `--prefix DIR` (or `--prefix=DIR`), and `--debug`
/// for a debug build (the default is release; `--release` is accepted and changes nothing).
/// Returns the prefix and whether to build release.
pub fn parse_args(args: &[&str]) -> Result<(PathBuf, bool), String> {
    let mut prefix = None;
    let mut release = true;
    let mut args = args.iter();
    while let Some(&arg) = args.next() {
        match arg {
            "--release" => release = true,
            "--debug" => release = false,
            "--prefix" => match args.next() {
                Some(dir) => prefix = Some(PathBuf::from(dir)),
                None => return Err("--prefix needs a directory".into()),
            },
            _ => match arg.strip_prefix("--prefix=") {
                Some(dir) => prefix = Some(PathBuf::from(dir)),
                None => return Err(format!("install: unknown argument {arg:?}")),
            },
        }
    }
    match prefix {
        Some(p) if !p.as_os_str().is_empty() => Ok((p, release)),
        _ => Err("install needs --prefix DIR".into()),
    }
}

/// Builds `calc-host-capi` and the executables `calc` and `calc-plugin-runner` (release profile if `release`, else
/// debug) and installs them under `prefix` (relative to the current directory unless
/// absolute), with the headers, the CMake and pkg-config files, the SDK crate and the guides.
/// See the module docs for the layout.
pub fn install(prefix: &Path, release: bool) -> Result<(), String> {
    let root = workspace_root();
    let prefix = std::path::absolute(prefix).map_err(|e| format!("{}: {e}", prefix.display()))?;

    // Check the inputs before the (slow) build.
    let include = root.join("include");
    for header in HEADERS {
        let path = include.join(header);
        if !path.is_file() {
            return Err(format!("{} does not exist", path.display()));
        }
    }
    let (major, minor, patch) = sdk_version(&read(&include.join("calc_plugin.h"))?)?;
    let version = format!("{major}.{minor}.{patch}");

    let native_libs = build_capi(release)?;
    let artifacts = target_dir().join(if release { "release" } else { "debug" });

    // Libraries.
    let lib = prefix.join("lib");
    create_dir(&lib)?;
    // Rust names a staticlib lib<name>.a on every Unix.
    for file in [
        library_file_name(CAPI_LIBRARY),
        format!("lib{CAPI_LIBRARY}.a"),
    ] {
        copy_fresh(&artifacts.join(&file), &lib.join(&file))?;
    }

    // The CLI, and the plugin runner (process isolation), found by libcalc_host and calc in
    // ../libexec.
    build_executables(release)?;
    let bin = prefix.join("bin");
    create_dir(&bin)?;
    let calc = format!("{CLI}{}", std::env::consts::EXE_SUFFIX);
    copy_fresh(&artifacts.join(&calc), &bin.join(&calc))?;
    let libexec = prefix.join("libexec");
    create_dir(&libexec)?;
    let runner = format!("{RUNNER}{}", std::env::consts::EXE_SUFFIX);
    copy_fresh(&artifacts.join(&runner), &libexec.join(&runner))?;

    // The Rust SDK, for `calc new-plugin --lang rust`, and the guides the scaffolds point at.
    install_sdk_crate(&prefix.join(SDK_DIR))?;
    let doc = prefix.join(DOC_DIR);
    create_dir(&doc)?;
    let mut docs: Vec<PathBuf> = ["README.md", "LICENSE-MIT", "LICENSE-APACHE"]
        .iter()
        .map(|f| root.join(f))
        .collect();
    for entry in std::fs::read_dir(root.join("docs")).map_err(|e| format!("docs/: {e}"))? {
        let path = entry.map_err(|e| format!("docs/: {e}"))?.path();
        if path.extension().is_some_and(|e| e == "md") {
            docs.push(path);
        }
    }
    for file in docs {
        let name = file.file_name().expect("a file name");
        copy(&file, &doc.join(name))?;
    }

    // Headers.
    let dest_include = prefix.join("include");
    create_dir(&dest_include)?;
    for header in HEADERS {
        copy(&include.join(header), &dest_include.join(header))?;
    }

    // CMake package and pkg-config file.
    let cmake_src = root.join("cmake");
    let cmake_dest = lib.join("cmake").join("Calc");
    create_dir(&cmake_dest)?;
    let cmake_libs: Vec<&str> = native_libs
        .iter()
        .map(|flag| flag.strip_prefix("-l").unwrap_or(flag))
        .collect();
    let vars = [
        ("CALC_VERSION", version.clone()),
        ("CALC_VERSION_MAJOR", major.to_string()),
        (
            "CALC_SIZEOF_VOID_P",
            std::mem::size_of::<usize>().to_string(),
        ),
        // A CMake list (`gcc_s;util;...`) and a linker command line (`-lgcc_s -lutil ...`).
        ("CALC_NATIVE_STATIC_LIBS", cmake_libs.join(";")),
        ("CALC_NATIVE_STATIC_LIBS_FLAGS", native_libs.join(" ")),
    ];
    for name in ["CalcConfig.cmake", "CalcConfigVersion.cmake"] {
        let template = cmake_src.join(format!("{name}.in"));
        write(
            &cmake_dest.join(name),
            &configure(&template, &read(&template)?, &vars)?,
        )?;
    }
    copy(
        &cmake_src.join("CalcPlugin.cmake"),
        &cmake_dest.join("CalcPlugin.cmake"),
    )?;
    let pkgconfig = lib.join("pkgconfig");
    create_dir(&pkgconfig)?;
    for name in ["calc.pc", "calc-static.pc"] {
        let template = cmake_src.join(format!("{name}.in"));
        write(
            &pkgconfig.join(name),
            &configure(&template, &read(&template)?, &vars)?,
        )?;
    }

    println!(
        "installed calc {version} ({} build) into {}\n  \
         CMake:      find_package(Calc CONFIG REQUIRED) with -DCMAKE_PREFIX_PATH={}\n  \
         pkg-config: PKG_CONFIG_PATH={} pkg-config --cflags --libs calc (or calc-static)\n  \
         libcalc_host.a needs: {}",
        if release { "release" } else { "debug" },
        prefix.display(),
        prefix.display(),
        pkgconfig.display(),
        native_libs.join(" ")
    );
    Ok(())
}

/// Builds the C API libraries and returns the system libraries the static one needs, as linker
/// flags (`-lgcc_s`, `-lutil`, ...), in rustc's order.
///
/// The build is `cargo rustc -p calc-host-capi --lib -- --print native-static-libs`: a normal
/// build of the package (both crate types, into the usual `target/<profile>/`) that also makes
/// rustc report the list. Cargo replays the report when the crate is already up to date.
fn build_capi(release: bool) -> Result<Vec<String>, String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()).args([
        "rustc",
        "--quiet",
        "--color",
        "never",
        "--package",
        CAPI_PACKAGE,
        "--lib",
    ]);
    if release {
        cmd.arg("--release");
    }
    cmd.args(["--", "--print", "native-static-libs"]);
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    if !out.status.success() {
        return Err(format!("{shown} failed ({}):\n{stderr}", out.status));
    }
    parse_native_static_libs(&stderr)
        .ok_or_else(|| format!("{shown} printed no `native-static-libs:` note:\n{stderr}"))
}

/// The runner executable of isolated plugins, from the `calc-plugin-runner` package.
pub const RUNNER: &str = "calc-plugin-runner";

/// The calculator CLI, from the `calc-cli` package.
pub const CLI: &str = "calc";

/// Where the `calc-sdk` crate is installed, relative to the prefix (`calc new-plugin` looks
/// there, see `calc_cli::scaffold::SdkLayout`).
pub const SDK_DIR: &str = "share/calc/sdk";

/// Where the guides are installed, relative to the prefix.
pub const DOC_DIR: &str = "share/doc/calc";

/// Builds [`CLI`] and [`RUNNER`] with the same profile as the libraries.
fn build_executables(release: bool) -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()).args([
        "build",
        "--quiet",
        "--package",
        crate::build::CLI_PACKAGE,
        "--bin",
        CLI,
        "--package",
        crate::build::RUNNER_PACKAGE,
        "--bin",
        RUNNER,
    ]);
    if release {
        cmd.arg("--release");
    }
    let shown = format!("{cmd:?}");
    let status = cmd
        .status()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if status.success() {
        Ok(())
    } else {
        Err(format!("{shown} failed ({status})"))
    }
}

/// Installs the `calc-sdk` crate into `dest` as `cargo package` makes it (a self-contained
/// `Cargo.toml`, without the workspace's inheritance), replacing what was there.
fn install_sdk_crate(dest: &Path) -> Result<(), String> {
    let version = crate::workspace_version(&workspace_root())?;
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root()).args([
        "package",
        "--quiet",
        "--package",
        "calc-sdk",
        "--no-verify",
        "--allow-dirty",
    ]);
    let shown = format!("{cmd:?}");
    let out = cmd
        .output()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if !out.status.success() {
        return Err(format!(
            "{shown} failed ({}):\n{}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        ));
    }
    let archive = target_dir()
        .join("package")
        .join(format!("calc-sdk-{version}.crate"));
    // The archive holds one folder, calc-sdk-<version>/; unpack it next to dest, then swap.
    let parent = dest.parent().ok_or("the SDK folder has no parent")?;
    create_dir(parent)?;
    let unpacked = parent.join(format!("calc-sdk-{version}"));
    let _ = std::fs::remove_dir_all(&unpacked);
    let mut tar = Command::new("tar");
    tar.arg("-xzf").arg(&archive).arg("-C").arg(parent);
    let shown = format!("{tar:?}");
    let status = tar
        .status()
        .map_err(|e| format!("cannot run {shown}: {e}"))?;
    if !status.success() {
        return Err(format!("{shown} failed ({status})"));
    }
    for extra in ["Cargo.toml.orig", ".cargo_vcs_info.json"] {
        let _ = std::fs::remove_file(unpacked.join(extra));
    }
    if dest.exists() {
        std::fs::remove_dir_all(dest).map_err(|e| format!("{}: {e}", dest.display()))?;
    }
    std::fs::rename(&unpacked, dest)
        .map_err(|e| format!("rename {} -> {}: {e}", unpacked.display(), dest.display()))
}

/// Finds rustc's `note: native-static-libs: -lgcc_s -lutil ...` line and splits it.
pub fn parse_native_static_libs(rustc_output: &str) -> Option<Vec<String>> {
    rustc_output.lines().find_map(|line| {
        let (_, libs) = line.split_once("native-static-libs:")?;
        Some(libs.split_whitespace().map(str::to_string).collect())
    })
}

/// Reads `CALC_SDK_VERSION_MAJOR`, `_MINOR` and `_PATCH` from the text of `calc_plugin.h`.
pub fn sdk_version(header: &str) -> Result<(u32, u32, u32), String> {
    let get = |part: &str| -> Result<u32, String> {
        let name = format!("CALC_SDK_VERSION_{part}");
        header
            .lines()
            .find_map(|line| {
                let mut words = line.split_whitespace();
                match (words.next(), words.next(), words.next()) {
                    (Some("#define"), Some(n), Some(value)) if n == name => value.parse().ok(),
                    _ => None,
                }
            })
            .ok_or_else(|| format!("calc_plugin.h has no numeric #define {name}"))
    };
    Ok((get("MAJOR")?, get("MINOR")?, get("PATCH")?))
}

/// Replaces every `@NAME@` of `vars` in `text`, and fails if any `@NAME@` remains (a template
/// that uses a variable this function does not know about).
pub fn configure(template: &Path, text: &str, vars: &[(&str, String)]) -> Result<String, String> {
    let mut out = text.to_string();
    for (name, value) in vars {
        out = out.replace(&format!("@{name}@"), value);
    }
    // Every text between two `@`s, e.g. `B` in `x @B@ y`.
    let parts: Vec<&str> = out.split('@').collect();
    let inner = parts
        .get(1..parts.len().saturating_sub(1))
        .unwrap_or_default();
    let leftover = inner.iter().find(|word| {
        !word.is_empty()
            && word
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
    });
    match leftover {
        Some(word) => Err(format!(
            "{}: unknown placeholder @{word}@",
            template.display()
        )),
        None => Ok(out),
    }
}

fn read(path: &Path) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))
}

fn write(path: &Path, text: &str) -> Result<(), String> {
    std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
}

fn copy(from: &Path, to: &Path) -> Result<(), String> {
    std::fs::copy(from, to)
        .map(drop)
        .map_err(|e| format!("copy {} -> {}: {e}", from.display(), to.display()))
}

fn create_dir(dir: &Path) -> Result<(), String> {
    std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rustc_note() {
        let out = "warning: x\nnote: native-static-libs: -lgcc_s -lutil -lc\n";
        assert_eq!(
            parse_native_static_libs(out).unwrap(),
            ["-lgcc_s", "-lutil", "-lc"]
        );
        assert_eq!(parse_native_static_libs("nothing"), None);
    }

    #[test]
    fn reads_version_of_the_real_header() {
        let header = read(&workspace_root().join("include/calc_plugin.h")).unwrap();
        let (major, minor, patch) = sdk_version(&header).unwrap();
        assert_eq!(
            format!("{major}.{minor}.{patch}"),
            crate::workspace_version(&workspace_root()).unwrap()
        );
    }

    #[test]
    fn configure_fills_and_rejects_unknown() {
        let vars = [("A", "1".to_string())];
        let t = Path::new("t");
        assert_eq!(configure(t, "x @A@ a@b.c", &vars).unwrap(), "x 1 a@b.c");
        assert!(configure(t, "@A@ @B@", &vars).is_err());
        assert!(configure(t, "a@b @C@", &vars).is_err());
    }

    #[test]
    fn args() {
        assert_eq!(
            parse_args(&["--prefix", "p", "--release"]).unwrap(),
            (PathBuf::from("p"), true)
        );
        assert_eq!(
            parse_args(&["--prefix=q"]).unwrap(),
            (PathBuf::from("q"), true),
            "release by default"
        );
        assert_eq!(
            parse_args(&["--debug", "--prefix=q"]).unwrap(),
            (PathBuf::from("q"), false)
        );
        assert!(parse_args(&[]).is_err());
        assert!(parse_args(&["--prefix"]).is_err());
        assert!(parse_args(&["--bogus"]).is_err());
    }
}
