//! The layers of the library crates (docs/ARCHITECTURE.md): in each of `calc-runtime` and
//! `calc-host`, every module imports only from its own layer or lower ones, and no modules
//! import each other in a circle; `calc-runtime` names nothing of the calculator from the ABI.
//! (Cargo itself keeps the crates in order: `calc-runtime` cannot name `calc-host`.) Read from
//! the code: every `crate::MODULE` path outside comments.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module of `runtime/src` and its layer.
const RUNTIME: &[(&str, u32)] = &[
    ("error", 1),
    ("files", 1),
    ("signals", 1),
    ("events", 1),
    ("deadline", 1),
    ("rcu", 1),
    ("elf", 1),
    ("memory", 1),
    ("process", 1),
    ("trust", 2),
];

/// Each top-level module of `host/src` and its layer.
const HOST: &[(&str, u32)] = &[
    ("error", 1),
    ("info", 1),
    ("validate", 2),
    ("config", 2),
    ("services", 2),
    ("verdict", 2),
    ("loader", 3),
    ("slots", 4),
    ("interface", 4),
    ("limit", 4),
    ("conformance", 4),
    ("expr", 5),
    ("isolation", 6),
    ("vet", 6),
    ("cache", 7),
    ("manager", 8),
    ("listing", 9),
    ("reload", 9),
    ("capi", 9),
];

/// The crates and their layer tables.
const CRATES: &[(&str, &[(&str, u32)])] = &[("runtime/src", RUNTIME), ("host/src", HOST)];

/// Code lines of every source file under `dir` (relative to the workspace), comments left
/// out, by file.
fn code(dir: &str) -> Vec<(std::path::PathBuf, Vec<String>)> {
    let src = xtask::workspace_root().join(dir);
    let mut out = Vec::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let lines = text
                .lines()
                .map(|line| line.split("//").next().unwrap_or("").to_string())
                .collect();
            out.push((path, lines));
        }
    }
    out
}

/// The names that follow `prefix` in `line`.
fn names_after(line: &str, prefix: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut rest = line;
    while let Some(at) = rest.find(prefix) {
        rest = &rest[at + prefix.len()..];
        let name: String = rest
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if !name.is_empty() {
            out.push(name);
        }
    }
    out
}

/// The top-level module each source file of `dir` belongs to, and the modules its code
/// names (`crate::NAME`), comments left out.
fn imports(dir: &str) -> BTreeMap<String, BTreeSet<String>> {
    let src = xtask::workspace_root().join(dir);
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (path, lines) in code(dir) {
        if path == src.join("lib.rs") {
            continue;
        }
        let names = out.entry(module_of(&src, &path)).or_default();
        for line in lines {
            names.extend(names_after(&line, "crate::"));
        }
    }
    out
}

fn module_of(src: &Path, file: &Path) -> String {
    let relative = file.strip_prefix(src).unwrap();
    let first = relative
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_str()
        .unwrap();
    first.trim_end_matches(".rs").to_string()
}

#[test]
fn every_module_has_a_layer() {
    for (dir, table) in CRATES {
        let layers: BTreeMap<&str, u32> = table.iter().copied().collect();
        for module in imports(dir).keys() {
            assert!(
                layers.contains_key(module.as_str()),
                "{dir}/{module}: no layer (add it to docs/ARCHITECTURE.md and this test)"
            );
        }
    }
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    for (dir, table) in CRATES {
        imports_only_downwards(dir, table);
    }
}

fn imports_only_downwards(dir: &str, table: &[(&str, u32)]) {
    let layers: BTreeMap<&str, u32> = table.iter().copied().collect();
    let mut wrong = Vec::new();
    for (module, names) in imports(dir) {
        let Some(&own) = layers.get(module.as_str()) else {
            continue;
        };
        for name in names {
            if name == module {
                continue;
            }
            if let Some(&theirs) = layers.get(name.as_str()) {
                if theirs > own {
                    wrong.push(format!("{module} ({own}) -> {name} ({theirs})"));
                }
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{dir}: imports from a higher layer: {wrong:#?}"
    );
}

#[test]
fn no_modules_import_each_other_in_a_circle() {
    for (dir, _) in CRATES {
        no_circle(dir);
    }
}

/// The same inside each folder module (`host/src/isolation/`, `host/src/capi/`, ...): its files
/// name each other through `super::NAME` or `crate::FOLDER::NAME`, and no circle is allowed
/// there either.
#[test]
fn no_files_of_a_folder_module_import_each_other_in_a_circle() {
    for (dir, _) in CRATES {
        let src = xtask::workspace_root().join(dir);
        let mut folders: BTreeMap<std::path::PathBuf, BTreeMap<String, BTreeSet<String>>> =
            BTreeMap::new();
        let files = code(dir);
        for (path, _) in &files {
            let parent = path.parent().unwrap().to_path_buf();
            let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
            if parent != src && stem != "mod" {
                folders
                    .entry(parent)
                    .or_default()
                    .insert(stem, BTreeSet::new());
            }
        }
        for (path, lines) in &files {
            let parent = path.parent().unwrap().to_path_buf();
            let stem = path.file_stem().unwrap().to_str().unwrap().to_string();
            let Some(graph) = folders.get_mut(&parent) else {
                continue;
            };
            if stem == "mod" {
                continue;
            }
            let folder = parent.strip_prefix(&src).unwrap().to_str().unwrap();
            let full = format!("crate::{}::", folder.replace('/', "::"));
            let names: BTreeSet<String> = lines
                .iter()
                .flat_map(|line| {
                    let mut names = names_after(line, "super::");
                    names.extend(names_after(line, &full));
                    names
                })
                .collect();
            graph.get_mut(&stem).unwrap().extend(names);
        }
        assert!(!folders.is_empty(), "{dir}: no folder modules found");
        for (folder, graph) in &folders {
            let folder = folder.strip_prefix(&src).unwrap();
            find_circle(&format!("{dir}/{}", folder.display()), graph);
        }
    }
}

fn no_circle(dir: &str) {
    find_circle(dir, &imports(dir));
}

/// Fails, naming it, on a circle in `graph` (module -> the names it imports; names that are
/// not modules of the graph are ignored).
fn find_circle(dir: &str, graph: &BTreeMap<String, BTreeSet<String>>) {
    // Depth-first search for a back edge.
    fn visit<'a>(
        node: &'a str,
        graph: &'a BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<&'a str>,
        done: &mut BTreeSet<&'a str>,
    ) -> Option<Vec<String>> {
        if let Some(at) = path.iter().position(|n| *n == node) {
            let mut circle: Vec<String> = path[at..].iter().map(|s| s.to_string()).collect();
            circle.push(node.to_string());
            return Some(circle);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node);
        for next in graph.get(node).into_iter().flatten() {
            if next != node && graph.contains_key(next) {
                if let Some(circle) = visit(next, graph, path, done) {
                    return Some(circle);
                }
            }
        }
        path.pop();
        done.insert(node);
        None
    }
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        let found = visit(node, graph, &mut Vec::new(), &mut done);
        assert!(
            found.is_none(),
            "{dir}: import circle: {}",
            found.unwrap().join(" -> ")
        );
    }
}

/// The ABI items the runtime may name: versions, status codes and the string bound, which
/// every plugin interface shares. Anything else of `calc_sdk` (operations, the calculator's
/// descriptor) belongs to `calc-host`.
const RUNTIME_ABI: &[&str] = &["abi", "calc_abi_version_t", "Status", "CALC_MAX_STRING_LEN"];

#[test]
fn the_runtime_names_nothing_of_the_calculator() {
    let mut named = BTreeSet::new();
    for (path, lines) in code("runtime/src") {
        for line in lines {
            for name in names_after(&line, "calc_sdk::")
                .into_iter()
                .chain(names_after(&line, "abi::"))
            {
                named.insert((name, path.display().to_string()));
            }
        }
    }
    assert!(
        !named.is_empty(),
        "the scan found no use of calc_sdk at all"
    );
    let wrong: Vec<_> = named
        .iter()
        .filter(|(name, _)| !RUNTIME_ABI.contains(&name.as_str()))
        .collect();
    assert!(
        wrong.is_empty(),
        "calc-runtime names calculator items: {wrong:#?}"
    );
}
