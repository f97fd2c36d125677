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
//! with the cycle it finds. `WSVAULT_MODULE_GRAPH_SRC=/path/to/src` scans another
//! tree (to show the graph of an older checkout).

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Top-level module -> modules it names, with one file per edge as evidence.
type Graph = BTreeMap<String, BTreeMap<String, String>>;

/// The top-level modules declared in `lib.rs` (`mod x;` / `pub mod x;`).
fn top_modules(lib_rs: &str) -> BTreeSet<String> {
    let text = strip(lib_rs);
    let tokens = tokens(&text);
    let mut out = BTreeSet::new();
    for w in tokens.windows(3) {
        if w[0] == "mod" && w[2] == ";" {
            out.insert(w[1].clone());
        }
    }
    out
}

/// `src/a/b.rs` -> `["a", "b"]`; `mod.rs` names its directory.
fn module_path(src: &Path, file: &Path) -> Vec<String> {
    let rel = file.strip_prefix(src).unwrap_or(file).with_extension("");
    let mut parts: Vec<String> = rel
        .components()
        .map(|c| c.as_os_str().to_string_lossy().into_owned())
        .collect();
    if parts.last().is_some_and(|p| p == "mod") {
        parts.pop();
    }
    parts
}

/// `text` without comments, string literals and char literals (each replaced by a
/// space), so only code remains.
fn strip(text: &str) -> String {
    let c: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < c.len() {
        if c[i] == '/' && c.get(i + 1).copied() == Some('/') {
            while i < c.len() && c[i] != '\n' {
                i += 1;
            }
        } else if c[i] == '/' && c.get(i + 1).copied() == Some('*') {
            let mut depth = 0;
            while i < c.len() {
                if c[i] == '/' && c.get(i + 1).copied() == Some('*') {
                    depth += 1;
                    i += 2;
                } else if c[i] == '*' && c.get(i + 1).copied() == Some('/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c[i] == 'r'
            && (c.get(i + 1).copied() == Some('"') || c.get(i + 1).copied() == Some('#'))
            && raw_start(&c, i)
        {
            // r"…", r#"…"#: ends at the quote followed by as many hashes.
            let mut j = i + 1;
            let mut hashes = 0;
            while c.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            j += 1;
            while j < c.len() {
                if c[j] == '"' && (1..=hashes).all(|h| c.get(j + h) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
            out.push(' ');
        } else if c[i] == '"' {
            i += 1;
            while i < c.len() && c[i] != '"' {
                i += if c[i] == '\\' { 2 } else { 1 };
            }
            i += 1;
            out.push(' ');
        } else if c[i] == '\'' {
            // A char literal ('x', '\n', '\u{1F600}'), or a lifetime/label (kept).
            if c.get(i + 1).copied() == Some('\\') {
                let mut j = i + 3;
                while j < c.len() && c[j] != '\'' {
                    j += 1;
                }
                i = j + 1;
                out.push(' ');
            } else if c.get(i + 2).copied() == Some('\'') {
                i += 3;
                out.push(' ');
            } else {
                out.push('\'');
                i += 1;
            }
        } else {
            out.push(c[i]);
            i += 1;
        }
    }
    out
}

/// Whether the `r` at `i` opens a raw string (and is not the end of an identifier).
fn raw_start(c: &[char], i: usize) -> bool {
    let ident = |k: usize| c[k].is_alphanumeric() || c[k] == '_';
    // `br"…"` is a raw byte string; any other letter before `r` makes it an identifier.
    let byte_prefix = i > 0 && c[i - 1] == 'b' && (i < 2 || !ident(i - 2));
    if i > 0 && ident(i - 1) && !byte_prefix {
        return false;
    }
    let mut j = i + 1;
    while c.get(j) == Some(&'#') {
        j += 1;
    }
    c.get(j) == Some(&'"')
}

/// Identifiers, `::` and single punctuation characters.
fn tokens(text: &str) -> Vec<String> {
    let c: Vec<char> = text.chars().collect();
    let mut out = Vec::new();
    let mut i = 0;
    while i < c.len() {
        if c[i].is_alphanumeric() || c[i] == '_' {
            let start = i;
            while i < c.len() && (c[i].is_alphanumeric() || c[i] == '_') {
                i += 1;
            }
            out.push(c[start..i].iter().collect());
        } else if c[i] == ':' && c.get(i + 1) == Some(&':') {
            out.push("::".to_string());
            i += 2;
        } else if !c[i].is_whitespace() {
            out.push(c[i].to_string());
            i += 1;
        } else {
            i += 1;
        }
    }
    out
}

/// The first segment of every path in a `{ … }` group starting at `t[open]`.
fn group_heads(t: &[String], open: usize) -> Vec<String> {
    let mut heads = Vec::new();
    let mut depth = 0;
    let mut expect_head = true;
    for tok in &t[open..] {
        match tok.as_str() {
            "{" => {
                depth += 1;
                expect_head = depth == 1;
                continue;
            }
            "}" => {
                depth -= 1;
                if depth == 0 {
                    break;
                }
            }
            "," if depth == 1 => {
                expect_head = true;
                continue;
            }
            _ => {}
        }
        if expect_head && depth == 1 {
            heads.push(tok.clone());
        }
        expect_head = false;
    }
    heads
}

/// The top-level modules that `text` (the file of module `path`) names.
fn referenced(path: &[String], text: &str) -> BTreeSet<String> {
    let t = tokens(&strip(text));
    let mut out = BTreeSet::new();
    // Inline modules open at brace depth d: (name, d).
    let mut inline: Vec<(String, usize)> = Vec::new();
    let mut depth = 0usize;
    let mut i = 0;
    while i < t.len() {
        match t[i].as_str() {
            "{" => depth += 1,
            "}" => {
                depth = depth.saturating_sub(1);
                while inline.last().is_some_and(|(_, d)| *d > depth) {
                    inline.pop();
                }
            }
            "mod" if t.get(i + 2).is_some_and(|x| x == "{") => {
                inline.push((t[i + 1].clone(), depth + 1));
            }
            _ => {}
        }
        let heads_after = |k: usize| -> Vec<String> {
            match t.get(k) {
                Some(x) if x == "{" => group_heads(&t, k),
                Some(x) => vec![x.clone()],
                None => Vec::new(),
            }
        };
        if t[i] == "crate" && t.get(i + 1).is_some_and(|x| x == "::") {
            out.extend(heads_after(i + 2));
        } else if t[i] == "super" && (i == 0 || t[i - 1] != "::") {
            let mut k = i;
            let mut ups = 0;
            while t.get(k).is_some_and(|x| x == "super") && t.get(k + 1).is_some_and(|x| x == "::")
            {
                ups += 1;
                k += 2;
            }
            let here = path.len() + inline.len();
            if ups > 0 && ups == here {
                out.extend(heads_after(k));
            }
            i = k.max(i + 1);
            continue;
        }
        i += 1;
    }
    out
}

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
fn scanner_sees_paths_and_ignores_comments_and_strings() {
    let text = r##"
        //! crate::doc_only
        use crate::{alpha, beta::X, gamma::{self, Y}};
        use super::delta::Z; // from a top-level file, super is the crate root
        const S: &str = "crate::in_string";
        const R: &str = r#"crate::in_raw "quoted" string"#;
        const C: char = '"'; const Q: char = '\''; const B: &[u8] = br"\";
        fn f<'a>(x: &'a str) { crate::epsilon::call(x) }
        /* crate::in_block /* nested */ crate::still_comment */
        mod tests { use super::*; use super::super::zeta; }
        macro_rules! m { () => { $crate::eta::go() } }
    "##;
    let got = referenced(&["top".to_string()], text);
    let want: BTreeSet<String> = ["alpha", "beta", "gamma", "delta", "epsilon", "zeta", "eta"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(got, want);
    // Deeper in the tree, one `super` stays inside the module.
    let nested = referenced(&["top".to_string(), "inner".to_string()], "use super::x;");
    assert!(nested.is_empty(), "{nested:?}");
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
