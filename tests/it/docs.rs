//! What the docs show works as shown: the README's C++ build command exports `plugin_entry`
//! alone, and every C snippet of README.md and docs/*.md compiles (the Rust snippets are doc
//! tests of `calc-tests`, see `tests/src/lib.rs`).

use std::path::{Path, PathBuf};
use std::process::Command;

use calc_host::PluginManager;
use calc_tests::{library_file_name, scratch_dir, workspace_root};

/// A fenced code block of a markdown file.
#[derive(Debug)]
struct Block {
    /// The info string after the opening fence, e.g. `c` or `c fragment`.
    info: String,
    /// The text between the fences.
    body: String,
    /// The line of the opening fence, from 1.
    line: usize,
    /// The line right before the opening fence, trimmed (e.g. `<!-- scaffold:c -->`).
    before: String,
}

/// Every fenced (```) code block of `text`, in order. Indented fences (in list items) count too.
fn blocks(text: &str) -> Vec<Block> {
    let mut found = Vec::new();
    let mut open: Option<(String, usize, String, Vec<&str>)> = None;
    let mut previous = "";
    let mut before = String::new();
    for (i, line) in text.lines().enumerate() {
        let trimmed = line.trim_start();
        match open.take() {
            None => {
                if let Some(info) = trimmed.strip_prefix("```") {
                    let indent = line[..line.len() - trimmed.len()].to_string();
                    before = previous.trim().to_string();
                    open = Some((info.trim().to_string(), i + 1, indent, Vec::new()));
                }
            }
            Some((info, start, indent, mut body)) => {
                if trimmed.starts_with("```") {
                    let body = body
                        .iter()
                        .map(|l| l.strip_prefix(indent.as_str()).unwrap_or(l))
                        .collect::<Vec<_>>()
                        .join("\n");
                    found.push(Block {
                        info,
                        body: body + "\n",
                        line: start,
                        before: std::mem::take(&mut before),
                    });
                } else {
                    body.push(line);
                    open = Some((info, start, indent, body));
                }
            }
        }
        previous = line;
    }
    found
}

/// README.md and every docs/*.md, as (path relative to the root, text).
fn markdown_files() -> Vec<(PathBuf, String)> {
    let root = workspace_root();
    let mut files = vec![PathBuf::from("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .expect("docs/ is readable")
        .map(|e| e.expect("docs/ entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .map(|p| p.strip_prefix(&root).unwrap().to_path_buf())
        .collect();
    docs.sort();
    files.extend(docs);
    files
        .into_iter()
        .map(|rel| {
            let text = std::fs::read_to_string(root.join(&rel))
                .unwrap_or_else(|e| panic!("{}: {e}", rel.display()));
            (rel, text)
        })
        .collect()
}

/// The words of the README's C++ build command (the ```sh block of "Writing a plugin in C++"),
/// its `\` continuations joined.
fn documented_cpp_command() -> Vec<String> {
    let readme = std::fs::read_to_string(workspace_root().join("README.md")).unwrap();
    let section = readme
        .split("\n## ")
        .find(|s| s.starts_with("Writing a plugin in C++"))
        .expect("README has a section \"Writing a plugin in C++\"");
    let block = blocks(section)
        .into_iter()
        .find(|b| b.info == "sh")
        .expect("the C++ section has a ```sh block");
    let command = block.body.replace("\\\n", " ");
    let words: Vec<String> = command.split_whitespace().map(str::to_string).collect();
    assert_eq!(words.first().map(String::as_str), Some("c++"), "{command}");
    words
}

/// The names `nm -D --defined-only` lists for `lib`.
fn exported_symbols(lib: &Path) -> Vec<String> {
    let out = Command::new("nm")
        .args(["-D", "--defined-only"])
        .arg(lib)
        .output()
        .expect("nm runs (binutils)");
    assert!(out.status.success(), "nm {}", lib.display());
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(2).map(str::to_string))
        .collect()
}

#[test]
fn the_readme_cpp_command_exports_only_plugin_entry_with_the_standard_library() {
    let documented = documented_cpp_command();
    let source = "examples-c/cpp_trig/plugin.cpp";
    let out_at = documented
        .iter()
        .position(|w| w == "-o")
        .expect("the command names its output with -o")
        + 1;
    assert!(documented.iter().any(|w| w == source), "{documented:?}");

    // The flags are those the test suite builds cpp_trig with (xtask::build::CPP_PLUGIN_FLAGS),
    // plus the version script it links with.
    let flags: Vec<&str> = documented[1..]
        .iter()
        .map(String::as_str)
        .filter(|w| w.starts_with('-') && *w != "-o" && !w.starts_with("-I"))
        .collect();
    let mut expected = xtask::build::CPP_PLUGIN_FLAGS.to_vec();
    expected.push("-Wl,--version-script=examples-c/cpp_trig/plugin.map");
    assert_eq!(flags, expected);

    let dir = scratch_dir(&format!("docs-cpp-{}", std::process::id()));
    let mut compilers = vec!["c++"];
    // clang++ comes with clang: a missing one skips that half with one line (a failure under
    // CALC_TEST_REQUIRE_TOOLS=1).
    if calc_tests::tools::available(&[calc_tests::tools::Tool::Clang]) {
        compilers.push("clang++");
    }
    let cases = [
        (source, "cpp_trig", "atan2(0, cos(0))", 0.0),
        (
            "tests/fixtures/cpp/vector_sum.cpp",
            "vector_sum",
            "vsum(1, 2, 3.5)",
            6.5,
        ),
    ];
    for compiler in compilers {
        for (file, name, expr, value) in cases {
            let lib = dir.join(compiler).join(library_file_name(name));
            std::fs::create_dir_all(lib.parent().unwrap()).unwrap();
            // The documented command word for word, but for the compiler, the source and the
            // output file.
            let mut args = documented.clone();
            args[0] = compiler.to_string();
            for word in &mut args {
                if word == source {
                    *word = file.to_string();
                }
            }
            args[out_at] = lib.display().to_string();
            let out = Command::new(&args[0])
                .args(&args[1..])
                .current_dir(workspace_root())
                .output()
                .unwrap_or_else(|e| panic!("{args:?}: {e}"));
            assert!(
                out.status.success(),
                "{args:?} failed:\n{}",
                String::from_utf8_lossy(&out.stderr)
            );
            assert_eq!(
                exported_symbols(&lib),
                ["plugin_entry"],
                "{compiler} {file}: only plugin_entry may be exported"
            );
            let mut m = PluginManager::new();
            m.load_file(&lib).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(m.eval(expr), Ok(value), "{compiler} {file}: {expr}");
        }
    }
}

/// Every ```` ```c ```` block of README.md and docs/*.md compiles on its own with
/// `cc -std=c99 -Wall -Wextra -Werror -Iinclude -c`. Exempt: quotes of the `calc new-plugin`
/// template (`<!-- scaffold:c -->`, built whole by `tests/it/scaffold.rs`) and blocks marked
/// ```` ```c fragment ````, which must stay rare.
#[test]
fn every_c_snippet_compiles() {
    let dir = scratch_dir(&format!("docs-c-{}", std::process::id()));
    let compiler = calc_tests::c_compiler();
    let (mut compiled, mut fragments, mut quoted) = (0, Vec::new(), 0);
    for (file, text) in markdown_files() {
        for block in blocks(&text) {
            let lang = block.info.split([' ', ',']).next().unwrap_or_default();
            if lang != "c" {
                continue;
            }
            let place = format!("{}:{}", file.display(), block.line);
            if block.before == "<!-- scaffold:c -->" {
                quoted += 1;
                continue;
            }
            match block.info.as_str() {
                "c" => {}
                "c fragment" => {
                    fragments.push(place);
                    continue;
                }
                other => panic!("{place}: unknown info string {other:?} (c or c fragment)"),
            }
            let source = dir.join(format!("snippet{compiled}.c"));
            std::fs::write(&source, &block.body).unwrap();
            let out = Command::new(&compiler)
                .args(["-std=c99", "-Wall", "-Wextra", "-Werror", "-Iinclude", "-c"])
                .arg(&source)
                .arg("-o")
                .arg(source.with_extension("o"))
                .current_dir(workspace_root())
                .output()
                .unwrap_or_else(|e| panic!("{compiler}: {e}"));
            assert!(
                out.status.success(),
                "{place}: the C snippet does not compile:\n{}\n{}",
                block.body,
                String::from_utf8_lossy(&out.stderr)
            );
            compiled += 1;
        }
    }
    assert!(compiled >= 5, "compiled {compiled} C snippets");
    assert!(quoted >= 2, "{quoted} quoted C snippets");
    assert!(
        fragments.len() <= 1,
        "C fragments should be rare; make these compile: {fragments:?}"
    );
}

/// The Rust snippets are doc tests of `calc-tests` (the `docs` module of `tests/src/lib.rs`):
/// every docs/*.md is included there, and only quotes of the scaffold template are `ignore`d.
#[test]
fn every_rust_snippet_is_a_doc_test() {
    let lib = std::fs::read_to_string(workspace_root().join("tests/src/lib.rs")).unwrap();
    let mut rust = 0;
    for (file, text) in markdown_files() {
        let include = format!("include_str!(\"../../{}\")", file.display());
        assert!(
            lib.contains(&include),
            "tests/src/lib.rs does not compile the snippets of {} ({include})",
            file.display()
        );
        for block in blocks(&text) {
            // rustdoc tests untagged blocks as Rust too.
            let words: Vec<&str> = block.info.split([',', ' ']).collect();
            if !(block.info.is_empty() || words[0] == "rust") {
                continue;
            }
            let place = format!("{}:{}", file.display(), block.line);
            assert!(
                !block.info.is_empty(),
                "{place}: tag the block (```text, ```sh, ...), or rustdoc compiles it as Rust"
            );
            if words.contains(&"ignore") {
                assert_eq!(
                    block.before, "<!-- scaffold:rust -->",
                    "{place}: only quotes of the scaffold template may be ignored"
                );
            }
            rust += 1;
        }
    }
    assert!(rust >= 6, "found {rust} Rust snippets");
}
