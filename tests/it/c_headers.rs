//! The C side of the ABI: the generated header compiles on its own in C and C++, its layout and
//! macros equal the Rust definitions, and example plugins export nothing but `plugin_entry`.

use std::collections::BTreeMap;
use std::mem::{align_of, offset_of, size_of};
use std::path::Path;
use std::process::Command;

use calc_sdk::abi::*;
use calc_tests::{examples_dir, scratch_dir, workspace_root};

fn compile(compiler: &str, args: &[&str], source: &Path, out: Option<&Path>) {
    let mut cmd = Command::new(compiler);
    cmd.args(args)
        .arg("-I")
        .arg(workspace_root().join("include"))
        .arg(source);
    match out {
        Some(o) => cmd.arg("-o").arg(o),
        None => cmd.arg("-fsyntax-only"),
    };
    let result = cmd.output().unwrap_or_else(|e| panic!("{compiler}: {e}"));
    assert!(
        result.status.success(),
        "{cmd:?} failed:\n{}",
        String::from_utf8_lossy(&result.stderr)
    );
}

#[test]
fn headers_compile_alone_as_c_and_cpp_and_twice() {
    let dir = scratch_dir(&format!("headers-{}", std::process::id()));
    let strict = ["-Wall", "-Wextra", "-Werror", "-pedantic"];
    for header in ["calc_plugin.h", "calc_host.h"] {
        // The function expands the host-table macros, which only compile when used.
        let text = format!(
            "#include \"{header}\"\n#include \"{header}\"\n\
             int calc_test_macros(const calc_host_api_t *host);\n\
             int calc_test_macros(const calc_host_api_t *host) {{\n\
             return CALC_HOST_HAS(host, get_state) + CALC_DEADLINE_EXPIRED(host);\n}}\n"
        );
        let tu = dir.join(format!("{header}.c"));
        std::fs::write(&tu, &text).unwrap();
        let tu_cpp = dir.join(format!("{header}.cpp"));
        std::fs::write(&tu_cpp, &text).unwrap();
        for std in ["-std=c99", "-std=c11", "-std=c17"] {
            let mut args = vec![std, "-Wmissing-prototypes", "-Wstrict-prototypes"];
            args.extend(strict);
            compile("cc", &args, &tu, None);
        }
        for std in ["-std=c++11", "-std=c++17"] {
            let mut args = vec![std];
            args.extend(strict);
            compile("c++", &args, &tu_cpp, None);
        }
    }
}

fn rust_layout() -> BTreeMap<String, String> {
    let mut m = BTreeMap::new();
    let mut put = |k: &str, v: String| {
        m.insert(k.to_string(), v);
    };
    macro_rules! layout {
        ($t:ident: $($f:ident),*) => {
            put(concat!("sizeof ", stringify!($t)), size_of::<$t>().to_string());
            put(concat!("alignof ", stringify!($t)), align_of::<$t>().to_string());
            $(put(concat!("offsetof ", stringify!($t), ".", stringify!($f)), offset_of!($t, $f).to_string());)*
        };
    }
    layout!(calc_abi_version_t: major, minor);
    layout!(calc_host_api_t: struct_size, abi_version, host_version, context, log, get_config, get_state,
        deadline_expired, deadline_remaining_ns);
    layout!(calc_operation_t: name, description, symbol, execute, kind, associativity, precedence, min_arity, max_arity,
        execute_batch);
    layout!(calc_plugin_t: magic, struct_size, abi_version, name, version, author, description, sdk_version,
        api_requirement, flags, init, shutdown, operations, operation_count, operation_size, save_state);
    macro_rules! num {
        ($($c:ident),*) => { $(put(stringify!($c), ($c as i64).to_string());)* };
    }
    num!(
        CALC_ABI_VERSION_MAJOR,
        CALC_ABI_VERSION_MINOR,
        CALC_ARITY_VARIADIC,
        CALC_ERROR_BUF_SIZE,
        CALC_MAX_STRING_LEN,
        CALC_MAX_OPERATIONS,
        CALC_STATUS_OK,
        CALC_STATUS_ERROR,
        CALC_STATUS_INVALID_ARGUMENT,
        CALC_STATUS_DOMAIN_ERROR,
        CALC_STATUS_DIVISION_BY_ZERO,
        CALC_STATUS_OVERFLOW,
        CALC_STATUS_PANIC,
        CALC_LOG_LEVEL_ERROR,
        CALC_LOG_LEVEL_WARN,
        CALC_LOG_LEVEL_INFO,
        CALC_LOG_LEVEL_DEBUG,
        CALC_LOG_LEVEL_TRACE,
        CALC_OPERATION_KIND_INFIX,
        CALC_OPERATION_KIND_FUNCTION,
        CALC_ASSOCIATIVITY_NONE,
        CALC_ASSOCIATIVITY_LEFT,
        CALC_ASSOCIATIVITY_RIGHT
    );
    put("CALC_PLUGIN_MAGIC", CALC_PLUGIN_MAGIC.to_string());
    put("CALC_DEADLINE_NONE", u64::MAX.to_string());
    // The host-table macros (ABI 1.3), on fake tables whose deadline services say "expired": a
    // service exists only when it ends within `struct_size` and is not NULL, and a missing one
    // is never called.
    for (table, has_expired, has_remaining) in [
        ("1.3 table", 1, 1),
        ("1.3 table, NULL services", 0, 0),
        ("1.2 table", 0, 0),
        ("cut table", 1, 0),
    ] {
        put(
            &format!("CALC_HOST_HAS({table}, deadline_expired)"),
            has_expired.to_string(),
        );
        put(
            &format!("CALC_HOST_HAS({table}, deadline_remaining_ns)"),
            has_remaining.to_string(),
        );
        put(
            &format!("CALC_DEADLINE_EXPIRED({table})"),
            has_expired.to_string(),
        );
        put(
            &format!("deadline service calls({table})"),
            has_expired.to_string(),
        );
    }
    put(
        "CALC_ABI_VERSION_INIT",
        format!("{CALC_ABI_VERSION_MAJOR}.{CALC_ABI_VERSION_MINOR}"),
    );
    let sdk = semver::Version::parse(calc_sdk::SDK_VERSION).unwrap();
    put("CALC_SDK_VERSION", calc_sdk::SDK_VERSION.to_string());
    put("CALC_SDK_VERSION_MAJOR", sdk.major.to_string());
    put("CALC_SDK_VERSION_MINOR", sdk.minor.to_string());
    put("CALC_SDK_VERSION_PATCH", sdk.patch.to_string());
    put(
        "CALC_SDK_VERSION_NUMBER",
        (sdk.major * 1_000_000 + sdk.minor * 1000 + sdk.patch).to_string(),
    );
    put(
        "CALC_API_REQUIREMENT_DEFAULT",
        calc_sdk::API_REQUIREMENT_DEFAULT.to_string(),
    );
    m
}

#[test]
fn c_layout_and_macros_equal_the_rust_definitions() {
    let dir = scratch_dir(&format!("layout-{}", std::process::id()));
    let exe = dir.join("abi_layout");
    compile(
        "cc",
        &["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic"],
        &workspace_root().join("tests/c/abi_layout.c"),
        Some(&exe),
    );
    let out = Command::new(&exe).output().unwrap();
    assert!(out.status.success());
    let c: BTreeMap<String, String> = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|l| {
            let (k, v) = l.rsplit_once(' ').unwrap();
            (k.to_string(), v.to_string())
        })
        .collect();
    assert_eq!(c, rust_layout());
}

#[test]
fn example_plugins_export_only_plugin_entry() {
    for entry in std::fs::read_dir(examples_dir()).unwrap() {
        let path = entry.unwrap().path();
        let out = Command::new("nm")
            .args(["-D", "--defined-only"])
            .arg(&path)
            .output()
            .expect("nm runs");
        assert!(out.status.success(), "nm {}", path.display());
        let symbols: Vec<String> = String::from_utf8_lossy(&out.stdout)
            .lines()
            .filter_map(|l| l.split_whitespace().last().map(str::to_string))
            .collect();
        assert_eq!(symbols, ["plugin_entry"], "{}", path.display());
    }
}

#[test]
fn the_readme_c_plugin_builds_and_loads() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let start = readme.find("```c\n").expect("README has a C example") + "```c\n".len();
    let source = &readme[start..start + readme[start..].find("```").unwrap()];
    let dir = scratch_dir(&format!("readme-{}", std::process::id()));
    let src = dir.join("plugin.c");
    std::fs::write(&src, source).unwrap();
    let lib = dir.join(calc_tests::library_file_name("readme_add"));
    calc_tests::build_c_plugin(&src, &lib, &[]).unwrap_or_else(|e| panic!("{e}"));
    let mut m = calc_host::PluginManager::new();
    m.load_file(&lib).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(m.eval("40 + 2"), Ok(42.0));
}

#[test]
fn the_readme_c_host_builds_and_runs() {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let source = readme
        .split("```c\n")
        .skip(1)
        .map(|b| &b[..b.find("```").unwrap()])
        .find(|b| b.contains("int main"))
        .expect("README has a C host example");
    // The snippet loads target/debug/plugins; point it at this test's example build instead.
    let source = source.replace("target/debug/plugins", examples_dir().to_str().unwrap());
    let dir = scratch_dir(&format!("readme-host-{}", std::process::id()));
    let src = dir.join("main.c");
    std::fs::write(&src, source).unwrap();
    let lib_dir = calc_tests::cargo_build(&["calc-host-capi"]).unwrap_or_else(|e| panic!("{e}"));
    let exe = dir.join("readme_host");
    let rpath = format!("-Wl,-rpath,{}", lib_dir.display());
    let libs = format!("-L{}", lib_dir.display());
    // The library must come after the source on the link line.
    let out = Command::new("cc")
        .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
        .arg(workspace_root().join("include"))
        .arg(&src)
        .args([libs.as_str(), "-lcalc_host", rpath.as_str(), "-o"])
        .arg(&exe)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let run = Command::new(&exe).output().unwrap();
    assert_eq!(String::from_utf8_lossy(&run.stdout), "14\n");
    assert!(run.status.success());
}
