//! The scanner of [`super`]: strips comments and literals from Rust source, splits it
//! into tokens, and names the top-level modules a file's paths lead to.

use std::collections::BTreeSet;
use std::path::Path;

/// The top-level modules declared in `lib.rs` (`mod x;` / `pub mod x;`).
pub(super) fn top_modules(lib_rs: &str) -> BTreeSet<String> {
    let text = strip(lib_rs);
    let tokens = tokens(&text);
    let mut out = BTreeSet::new();
    for w in tokens.windows(3) {
        if w[0] == "mod" && w[2] == ";" {
            out.insert(w[1].clone());
        }
    }
    // `#[cfg(test)] mod x;` is test code, not a part of the shipped graph.
    let mut test_only = false;
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.starts_with("#[cfg(test)]") {
            test_only = true;
            continue;
        }
        if test_only && let Some(name) = line.split_whitespace().find_map(|w| w.strip_suffix(';')) {
            out.remove(name);
        }
        test_only = false;
    }
    out
}

/// `src/a/b.rs` -> `["a", "b"]`; `mod.rs` names its directory.
pub(super) fn module_path(src: &Path, file: &Path) -> Vec<String> {
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
pub(super) fn referenced(path: &[String], text: &str) -> BTreeSet<String> {
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
