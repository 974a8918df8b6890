//! ABI stability over time: every header frozen in `tests/abi/v<MAJOR>.<MINOR>/` at a release
//! is compared with today's `include/` by clang (through bindgen); today's may only append to it.
//! A plugin compiled against a frozen header still loads in today's host. See `tests/abi/README.md`.

use std::path::{Path, PathBuf};

use calc_abi::c_header::{self, Header};
use calc_abi::compat::Rules;
use calc_host::PluginManager;
use calc_tests::{build_c_plugin_with, c_compiler, library_file_name, scratch_dir, workspace_root};

/// Version macros: they must still exist, but their values move with every release; the ABI
/// minor may only grow.
fn rules() -> Rules {
    let free = [
        "CALC_SDK_VERSION",
        "CALC_SDK_VERSION_MAJOR",
        "CALC_SDK_VERSION_MINOR",
        "CALC_SDK_VERSION_PATCH",
        "CALC_SDK_VERSION_NUMBER",
        "CALC_API_REQUIREMENT_DEFAULT",
        "CALC_ABI_VERSION_MINOR",
    ];
    Rules {
        free: free.map(String::from).to_vec(),
        growing: vec!["CALC_ABI_VERSION_MINOR".into()],
    }
}

fn breaking_changes(frozen: &Header, today: &Header) -> Vec<String> {
    calc_abi::compat::breaking_changes(frozen, today, &rules())
}

/// The frozen folders `tests/abi/v*/`, sorted by version.
fn frozen_dirs() -> Vec<PathBuf> {
    calc_abi::compat::release_dirs(&workspace_root().join("tests/abi"))
        .unwrap_or_else(|e| panic!("{e}"))
}

fn parse(path: &Path) -> Header {
    c_header::parse_header(path).unwrap_or_else(|e| panic!("{e}"))
}

#[test]
fn todays_headers_only_append_to_every_frozen_header() {
    calc_tests::require_tools!(Libclang);
    let (breaks, compared) = calc_abi::compat::check_frozen(
        &workspace_root().join("tests/abi"),
        &workspace_root().join("include"),
        &rules(),
        &[],
    )
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(
        breaks.is_empty(),
        "the ABI broke:\n  {}",
        breaks.join("\n  ")
    );
    assert!(compared >= 8, "{compared} frozen headers compared");
}

#[test]
fn frozen_folders_are_named_after_their_abi_version() {
    calc_tests::require_tools!(Libclang);
    for dir in frozen_dirs() {
        let plugin_h = dir.join("calc_plugin.h");
        assert!(plugin_h.is_file(), "{} is missing", plugin_h.display());
        let h = parse(&plugin_h);
        let version = format!(
            "v{}.{}",
            h.constants["CALC_ABI_VERSION_MAJOR"], h.constants["CALC_ABI_VERSION_MINOR"]
        );
        assert_eq!(
            dir.file_name().unwrap().to_string_lossy(),
            version,
            "{}",
            plugin_h.display()
        );
    }
}

#[test]
fn plugins_built_against_frozen_and_current_headers_both_load() {
    let out = scratch_dir(&format!("abi-stability-{}", std::process::id()));
    let source = workspace_root().join("examples-c/add/plugin.c");
    let mut builds = vec![("today".to_string(), workspace_root().join("include"))];
    for dir in frozen_dirs() {
        let version = dir.file_name().unwrap().to_string_lossy().replace('.', "_");
        builds.push((format!("frozen_{version}"), dir));
    }
    for (label, include) in builds {
        let lib = out.join(library_file_name(&format!("add_{label}")));
        build_c_plugin_with(&c_compiler(), &include, &source, &lib)
            .unwrap_or_else(|e| panic!("{e}"));
        // Both libraries declare the plugin name "add": one manager each.
        let mut m = PluginManager::new();
        let info = m
            .load_file(&lib)
            .unwrap_or_else(|e| panic!("{label}: {e}"))
            .clone();
        assert_eq!(info.name, "add", "{label}");
        if let Some(v) = label.strip_prefix("frozen_v") {
            assert_eq!(info.abi_version, v.replace('_', "."), "{label}");
        }
        assert_eq!(m.eval("2 + 3"), Ok(5.0), "{label}");
    }
}

/// The comparison itself, on small headers written to a scratch directory.
mod comparison {
    use super::*;

    fn changes(case: &str, frozen: &str, today: &str) -> Vec<String> {
        let dir = scratch_dir(&format!("abi-compare-{}-{case}", std::process::id()));
        let mut models = Vec::new();
        for (sub, text) in [("frozen", frozen), ("today", today)] {
            let path = dir.join(sub).join("api.h");
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, format!("#include <stdint.h>\n{text}\n")).unwrap();
            models.push(parse(&path));
        }
        breaking_changes(&models[0], &models[1])
    }

    fn assert_breaks(case: &str, frozen: &str, today: &str, expect: &str) {
        let found = changes(case, frozen, today);
        assert!(
            found.iter().any(|c| c.contains(expect)),
            "{case}: expected a change mentioning {expect:?}, got {found:?}"
        );
    }

    fn assert_compatible(case: &str, frozen: &str, today: &str) {
        let found = changes(case, frozen, today);
        assert!(found.is_empty(), "{case}: {found:?}");
    }

    const AB: &str = "typedef struct s { int32_t a; int32_t b; } s;";

    #[test]
    fn reordered_fields_break() {
        calc_tests::require_tools!(Libclang);
        let today = "typedef struct s { int32_t b; int32_t a; } s;";
        assert_breaks("reorder", AB, today, "field s.a moved from offset 0 to 4");
        assert_breaks("reorder2", AB, today, "field s.b moved");
    }

    #[test]
    fn appended_fields_are_compatible() {
        calc_tests::require_tools!(Libclang);
        let today = "typedef struct s { int32_t a; int32_t b; int32_t c; } s;";
        assert_compatible("append", AB, today);
    }

    #[test]
    fn removed_or_retyped_fields_and_structs_break() {
        calc_tests::require_tools!(Libclang);
        assert_breaks(
            "remove-field",
            AB,
            "typedef struct s { int32_t a; } s;",
            "field s.b was removed",
        );
        assert_breaks(
            "retype",
            AB,
            "typedef struct s { int32_t a; uint32_t b; } s;",
            "field s.b: type changed",
        );
        assert_breaks(
            "remove-struct",
            AB,
            "typedef int32_t t;",
            "struct s was removed",
        );
    }

    #[test]
    fn appends_that_change_alignment_or_reuse_padding_break() {
        calc_tests::require_tools!(Libclang);
        assert_breaks(
            "align",
            AB,
            "typedef struct s { int32_t a; int32_t b; double c; } s;",
            "alignment changed",
        );
        assert_breaks(
            "padding",
            "typedef struct s { int32_t a; char b; } s;",
            "typedef struct s { int32_t a; char b; char c; } s;",
            "new field s.c at offset 5 is inside the frozen 8 bytes",
        );
    }

    #[test]
    fn changed_or_removed_constants_break_new_ones_do_not() {
        calc_tests::require_tools!(Libclang);
        let frozen = "#define LIMIT 10\n#define NAME \"x\"";
        assert_breaks(
            "const-value",
            frozen,
            "#define LIMIT 11\n#define NAME \"x\"",
            "constant LIMIT changed from 10 to 11",
        );
        assert_breaks(
            "const-string",
            frozen,
            "#define LIMIT 10\n#define NAME \"y\"",
            "constant NAME changed",
        );
        assert_breaks(
            "const-removed",
            frozen,
            "#define LIMIT 10",
            "constant NAME was removed",
        );
        assert_compatible(
            "const-added",
            frozen,
            "#define LIMIT 10\n#define NAME \"x\"\n#define MORE 1",
        );
    }

    #[test]
    fn version_constants_may_grow_but_not_the_major() {
        calc_tests::require_tools!(Libclang);
        let frozen = "#define CALC_ABI_VERSION_MAJOR 1\n#define CALC_ABI_VERSION_MINOR 1\n\
                      #define CALC_SDK_VERSION \"1.1.0\"";
        assert_compatible(
            "minor-up",
            frozen,
            "#define CALC_ABI_VERSION_MAJOR 1\n#define CALC_ABI_VERSION_MINOR 2\n\
             #define CALC_SDK_VERSION \"1.2.0\"",
        );
        assert_breaks(
            "minor-down",
            frozen,
            "#define CALC_ABI_VERSION_MAJOR 1\n#define CALC_ABI_VERSION_MINOR 0\n\
             #define CALC_SDK_VERSION \"1.0.0\"",
            "constant CALC_ABI_VERSION_MINOR went from 1 to 0",
        );
        assert_breaks(
            "major",
            frozen,
            "#define CALC_ABI_VERSION_MAJOR 2\n#define CALC_ABI_VERSION_MINOR 1\n\
             #define CALC_SDK_VERSION \"2.0.0\"",
            "constant CALC_ABI_VERSION_MAJOR changed",
        );
    }

    #[test]
    fn function_pointer_and_function_signatures_must_not_change() {
        calc_tests::require_tools!(Libclang);
        let frozen = "typedef int32_t (*f)(int32_t x, double y);\nint32_t g(const char *s);";
        assert_compatible(
            "fn-renamed-params",
            frozen,
            "typedef int32_t (*f)(int32_t count, double value);\nint32_t g(const char *name);",
        );
        assert_breaks(
            "fn-swapped",
            frozen,
            "typedef int32_t (*f)(double y, int32_t x);\nint32_t g(const char *s);",
            "typedef f changed",
        );
        assert_breaks(
            "fn-return",
            frozen,
            "typedef int64_t (*f)(int32_t x, double y);\nint32_t g(const char *s);",
            "typedef f changed",
        );
        assert_breaks(
            "fn-decl",
            frozen,
            "typedef int32_t (*f)(int32_t x, double y);\nint32_t g(char *s);",
            "function g changed",
        );
        assert_breaks(
            "fn-removed",
            frozen,
            "typedef int32_t (*f)(int32_t x, double y);",
            "function g was removed",
        );
    }

    #[test]
    fn an_edited_copy_of_the_real_v1_0_header_is_caught() {
        calc_tests::require_tools!(Libclang);
        let frozen_path = workspace_root().join("tests/abi/v1.0/calc_plugin.h");
        let text = std::fs::read_to_string(&frozen_path).unwrap();
        let edited = text
            .replacen(
                "    const char *author;\n",
                "    const char *author;\n    const char *homepage;\n",
                1,
            )
            .replacen(
                "#define CALC_ERROR_BUF_SIZE 256",
                "#define CALC_ERROR_BUF_SIZE 128",
                1,
            );
        assert_ne!(edited, text);
        let dir = scratch_dir(&format!("abi-edited-{}", std::process::id()));
        let path = dir.join("calc_plugin.h");
        std::fs::write(&path, edited).unwrap();
        let found = breaking_changes(&parse(&frozen_path), &parse(&path));
        for expect in [
            "field calc_plugin_t.description moved from offset 40 to 48",
            "constant CALC_ERROR_BUF_SIZE changed from 256 to 128",
        ] {
            assert!(
                found.iter().any(|c| c == expect),
                "{expect:?} not in {found:?}"
            );
        }
    }

    #[test]
    fn the_frozen_v1_0_header_is_compatible_with_itself() {
        calc_tests::require_tools!(Libclang);
        let h = parse(&workspace_root().join("tests/abi/v1.0/calc_plugin.h"));
        assert_eq!(breaking_changes(&h, &h), Vec::<String>::new());
        assert_eq!(h.structs.len(), 4);
        assert!(h.constants.len() > 20, "{:?}", h.constants.keys());
        assert!(h.typedefs.contains_key("calc_execute_fn"));
    }
}
