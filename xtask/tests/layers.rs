//! The layers of `calc-host` (docs/ARCHITECTURE.md): every module imports only from its own
//! layer or lower ones, and no modules import each other in a circle. Read from the code:
//! every `crate::MODULE` path outside comments.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// Each top-level module of `host/src` and its layer (docs/ARCHITECTURE.md).
const LAYERS: &[(&str, u32)] = &[
    ("error", 1),
    ("info", 1),
    ("files", 1),
    ("signals", 1),
    ("events", 1),
    ("deadline", 1),
    ("rcu", 1),
    ("elf", 1),
    ("validate", 2),
    ("memory", 2),
    ("trust", 2),
    ("config", 2),
    ("services", 2),
    ("verdict", 2),
    ("loader", 3),
    ("slots", 4),
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

/// The top-level module each source file of `host/src` belongs to, and the modules its code
/// names (`crate::NAME`), comments left out.
fn imports() -> BTreeMap<String, BTreeSet<String>> {
    let src = xtask::workspace_root().join("host/src");
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    let mut stack = vec![src.clone()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") || path == src.join("lib.rs") {
                continue;
            }
            let module = module_of(&src, &path);
            let names = out.entry(module).or_default();
            let text = std::fs::read_to_string(&path).unwrap();
            for line in text.lines() {
                let code = line.split("//").next().unwrap_or("");
                let mut rest = code;
                while let Some(at) = rest.find("crate::") {
                    rest = &rest[at + "crate::".len()..];
                    let name: String = rest
                        .chars()
                        .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                        .collect();
                    if !name.is_empty() {
                        names.insert(name);
                    }
                }
            }
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
    let layers: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    for module in imports().keys() {
        assert!(
            layers.contains_key(module.as_str()),
            "host/src/{module}: no layer (add it to docs/ARCHITECTURE.md and this test)"
        );
    }
}

#[test]
fn no_module_imports_from_a_layer_above_its_own() {
    let layers: BTreeMap<&str, u32> = LAYERS.iter().copied().collect();
    let mut wrong = Vec::new();
    for (module, names) in imports() {
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
    assert!(wrong.is_empty(), "imports from a higher layer: {wrong:#?}");
}

#[test]
fn no_modules_import_each_other_in_a_circle() {
    let graph = imports();
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
        let found = visit(node, &graph, &mut Vec::new(), &mut done);
        assert!(
            found.is_none(),
            "import circle: {}",
            found.unwrap().join(" -> ")
        );
    }
}
