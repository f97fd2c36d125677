//! The import graph of the crate's top-level modules must be acyclic
//! (ARCHITECTURE.md §2): each module may use the ones below it, never the ones above,
//! so a module can be read, tested and changed knowing only what it stands on.
//!
//! This test scans `src/**/*.rs` with a small hand-written scanner (no tool to
//! install, and exact enough for this crate): comments, string and char literals are
//! removed; every `crate::…` path (also `$crate::…` and grouped `crate::{a, b}`) and
//! every `super::…` path that climbs to the crate root names a top-level module;
//! inline `mod x { … }` blocks are followed so `super` resolves correctly. An edge
//! `a -> b` means a file under `a` names `b`. The test prints every edge and fails
//! with the cycle it finds. Test code is not part of the graph: a file named
//! `tests.rs` or under a `tests/` directory, and the `#[cfg(test)]` modules of
//! `lib.rs`, may use any module to set a scene (a lease test starts a store and a
//! simulator). `WSVAULT_MODULE_GRAPH_SRC=/path/to/src` scans another
//! tree (to show the graph of an older checkout).

mod scan;

use scan::{module_path, referenced, top_modules};
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module -> modules it names, with one file per edge as evidence.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

fn rust_files(dir: &Path, out: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            rust_files(&p, out);
        } else if p.extension().is_some_and(|x| x == "rs") {
            out.push(p);
        }
    }
}

/// Whether `file` holds only test code (see the module comment).
fn is_test_code(src: &Path, file: &Path) -> bool {
    let rel = file.strip_prefix(src).unwrap_or(file);
    rel.components()
        .any(|c| c.as_os_str() == "tests" || c.as_os_str() == "tests.rs")
}

/// The top-level module graph of the crate whose sources are in `src`.
fn graph(src: &Path) -> Graph {
    let lib = std::fs::read_to_string(src.join("lib.rs")).expect("src/lib.rs");
    let tops = top_modules(&lib);
    let mut files = Vec::new();
    rust_files(src, &mut files);
    files.sort();
    let mut g = Graph::new();
    for file in files {
        let path = module_path(src, &file);
        if is_test_code(src, &file) {
            continue;
        }
        let Some(top) = path.first().filter(|t| tops.contains(*t)) else {
            continue; // lib.rs, main.rs, or a file no module declares
        };
        let text = std::fs::read_to_string(&file).expect("readable source");
        for target in referenced(&path, &text) {
            if tops.contains(&target) && &target != top {
                let evidence = file
                    .strip_prefix(src)
                    .unwrap_or(&file)
                    .display()
                    .to_string();
                g.entry(top.clone())
                    .or_default()
                    .entry(target)
                    .or_insert(evidence);
            }
        }
    }
    g
}

/// A cycle of `g` as a path `a -> b -> … -> a`, if there is one.
fn find_cycle(g: &Graph) -> Option<Vec<String>> {
    fn visit(
        n: &str,
        g: &Graph,
        state: &mut BTreeMap<String, u8>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        state.insert(n.to_string(), 1);
        stack.push(n.to_string());
        for m in g.get(n).into_iter().flat_map(|e| e.keys()) {
            match state.get(m.as_str()).copied().unwrap_or(0) {
                1 => {
                    let from = stack.iter().position(|s| s == m).unwrap_or(0);
                    let mut cycle = stack[from..].to_vec();
                    cycle.push(m.clone());
                    return Some(cycle);
                }
                0 => {
                    if let Some(c) = visit(m, g, state, stack) {
                        return Some(c);
                    }
                }
                _ => {}
            }
        }
        stack.pop();
        state.insert(n.to_string(), 2);
        None
    }
    let mut state = BTreeMap::new();
    for n in g.keys() {
        if state.get(n.as_str()).copied().unwrap_or(0) == 0
            && let Some(c) = visit(n, g, &mut state, &mut Vec::new())
        {
            return Some(c);
        }
    }
    None
}

/// The groups of modules that all reach each other (strongly connected components
/// with more than one module): every module of a group is in a cycle with the rest.
fn tangles(g: &Graph) -> Vec<BTreeSet<String>> {
    let reach = |from: &str| {
        let mut seen = BTreeSet::new();
        let mut todo = vec![from.to_string()];
        while let Some(n) = todo.pop() {
            for m in g.get(&n).into_iter().flat_map(|e| e.keys()) {
                if seen.insert(m.clone()) {
                    todo.push(m.clone());
                }
            }
        }
        seen
    };
    let reaches: BTreeMap<&String, BTreeSet<String>> = g.keys().map(|n| (n, reach(n))).collect();
    let mut out: Vec<BTreeSet<String>> = Vec::new();
    for (n, r) in &reaches {
        if !r.contains(*n) || out.iter().any(|t| t.contains(*n)) {
            continue;
        }
        let group: BTreeSet<String> = r
            .iter()
            .filter(|m| reaches.get(m).is_some_and(|back| back.contains(*n)))
            .cloned()
            .collect();
        out.push(group);
    }
    out
}

#[test]
fn top_level_modules_import_each_other_without_cycles() {
    let src = std::env::var_os("WSVAULT_MODULE_GRAPH_SRC")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("src"));
    let g = graph(&src);
    let mut edges = 0;
    for (from, tos) in &g {
        for (to, evidence) in tos {
            println!("{from} -> {to}  (e.g. {evidence})");
            edges += 1;
        }
    }
    assert!(
        edges > 20,
        "the scanner found almost no imports; it is broken"
    );
    if let Some(cycle) = find_cycle(&g) {
        let steps: Vec<String> = cycle
            .windows(2)
            .map(|w| format!("{} -> {} ({})", w[0], w[1], g[&w[0]][&w[1]]))
            .collect();
        let groups: Vec<String> = tangles(&g)
            .iter()
            .map(|t| t.iter().cloned().collect::<Vec<_>>().join(", "))
            .collect();
        panic!(
            "import cycle between top-level modules: {}\n  {}\nmodules caught in cycles: {{{}}}",
            cycle.join(" -> "),
            steps.join("\n  "),
            groups.join("}, {")
        );
    }
}

#[test]
fn a_cycle_is_found_and_a_tree_is_not() {
    let mut g = Graph::new();
    let edge = |g: &mut Graph, a: &str, b: &str| {
        g.entry(a.to_string())
            .or_default()
            .insert(b.to_string(), "f.rs".to_string());
    };
    edge(&mut g, "store", "record");
    edge(&mut g, "session", "store");
    edge(&mut g, "session", "telemetry");
    assert_eq!(find_cycle(&g), None);
    assert!(tangles(&g).is_empty());
    edge(&mut g, "record", "session");
    let cycle = find_cycle(&g).expect("session -> store -> record -> session");
    assert_eq!(cycle.first(), cycle.last());
    assert!(cycle.len() == 4, "{cycle:?}");
    let caught: Vec<Vec<String>> = tangles(&g).into_iter().map(Vec::from_iter).collect();
    assert_eq!(caught, [["record", "session", "store"]]);
}
