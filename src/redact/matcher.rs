//! One compiled set of secrets: finds and masks every one of them in a text in a
//! single pass.
//!
//! The writer runs every text field of every record through this, tens of
//! thousands of records a second, so the common case — no secret present — must
//! cost one scan and no allocation: an Aho-Corasick automaton (with its SIMD
//! prefilter) over all secrets at once answers that, and only a text that holds a
//! secret is copied.
//!
//! A secret does not always appear as typed: JSON escapes `"` and `\` (and PHP's
//! encoder, which Tradernet uses, also `/` and every non-ASCII character), Rust's
//! `Debug` escapes quotes in log lines, URLs percent-encode, and a WebSocket
//! library's frame dump prints bytes in hex. Each secret is therefore matched in
//! each of those forms too.

use super::MASK;
use aho_corasick::{AhoCorasick, MatchKind};
use std::borrow::Cow;
use std::fmt::Write as _;

/// Secrets shorter than this many characters are not masked: masking `abc`
/// everywhere would mangle ordinary data (and any JSON number holding the digits of
/// a short numeric secret) while protecting almost nothing. The README says so.
pub const MIN_SECRET_LEN: usize = 4;

/// Every form of a set of secrets, ready to search.
#[derive(Default)]
pub struct Matcher {
    /// `None` when there is nothing to mask (or, never seen in practice, the
    /// automaton could not be built: then `patterns` are searched one by one).
    ac: Option<AhoCorasick>,
    /// Every form of every secret, longest first.
    patterns: Vec<String>,
    /// Bytes of the longest pattern.
    max_len: usize,
}

impl std::fmt::Debug for Matcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Matcher({} patterns)", self.patterns.len())
    }
}

impl Matcher {
    /// A matcher for `secrets`; values shorter than [`MIN_SECRET_LEN`] are skipped.
    pub fn new<I, S>(secrets: I) -> Matcher
    where
        I: IntoIterator<Item = S>,
        S: AsRef<str>,
    {
        let mut patterns: Vec<String> = Vec::new();
        for s in secrets {
            let s = s.as_ref();
            if s.chars().count() < MIN_SECRET_LEN {
                continue;
            }
            for form in forms(s) {
                if !patterns.contains(&form) {
                    patterns.push(form);
                }
            }
        }
        patterns.sort_by_key(|p| std::cmp::Reverse(p.len()));
        let max_len = patterns.first().map_or(0, String::len);
        let ac = if patterns.is_empty() {
            None
        } else {
            AhoCorasick::builder()
                .match_kind(MatchKind::LeftmostLongest)
                .build(&patterns)
                .ok()
        };
        Matcher {
            ac,
            patterns,
            max_len,
        }
    }

    /// True when there is nothing to mask.
    pub fn is_empty(&self) -> bool {
        self.patterns.is_empty()
    }

    /// Bytes of the longest form of any secret (0 when empty).
    pub fn max_len(&self) -> usize {
        self.max_len
    }

    /// Byte ranges of the secrets found in `text`, left to right, not overlapping.
    pub fn find(&self, text: &[u8]) -> Vec<(usize, usize)> {
        match &self.ac {
            Some(ac) => ac.find_iter(text).map(|m| (m.start(), m.end())).collect(),
            None => naive_find(&self.patterns, text),
        }
    }

    /// Whether `text` holds a secret.
    fn any(&self, text: &[u8]) -> bool {
        match &self.ac {
            Some(ac) => ac.is_match(text),
            None => !self.patterns.is_empty() && !naive_find(&self.patterns, text).is_empty(),
        }
    }

    /// `text` with every secret replaced by [`MASK`]; borrowed when none is there.
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        match self.redact_bytes(text.as_bytes()) {
            Cow::Borrowed(_) => Cow::Borrowed(text),
            // Matches of valid UTF-8 patterns in valid UTF-8 text start and end on
            // character boundaries, so this never actually goes lossy.
            Cow::Owned(b) => Cow::Owned(
                String::from_utf8(b)
                    .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned()),
            ),
        }
    }

    /// [`Matcher::redact`] for bytes (a formatted log line).
    pub fn redact_bytes<'a>(&self, text: &'a [u8]) -> Cow<'a, [u8]> {
        if self.patterns.is_empty() || !self.any(text) {
            return Cow::Borrowed(text);
        }
        Cow::Owned(mask_ranges(text, &self.find(text)))
    }

    /// Where the longest tail of `text` that is a proper prefix of some secret
    /// form, at least [`MIN_SECRET_LEN`] bytes long, starts: a secret that the next
    /// frame completes. `None` when the tail cannot begin a secret.
    pub fn partial_tail(&self, text: &[u8]) -> Option<usize> {
        if text.len() < MIN_SECRET_LEN || self.max_len <= MIN_SECRET_LEN {
            return None;
        }
        let from = text.len().saturating_sub(self.max_len.saturating_sub(1));
        let to = text.len().saturating_sub(MIN_SECRET_LEN);
        (from..=to).find(|&i| {
            let tail = &text[i..];
            self.patterns
                .iter()
                .any(|p| p.len() > tail.len() && p.as_bytes().starts_with(tail))
        })
    }
}

/// `text` with each of the sorted, non-overlapping `ranges` replaced by [`MASK`]
/// (touching or overlapping ranges make one mask).
pub(super) fn mask_ranges(text: &[u8], ranges: &[(usize, usize)]) -> Vec<u8> {
    let mut out = Vec::with_capacity(text.len());
    let mut last = 0;
    for &(start, end) in ranges {
        let (start, end) = (start.max(last).min(text.len()), end.min(text.len()));
        if end <= start {
            continue;
        }
        out.extend_from_slice(&text[last..start]);
        if !out.ends_with(MASK.as_bytes()) || start > last {
            out.extend_from_slice(MASK.as_bytes());
        }
        last = end;
    }
    out.extend_from_slice(&text[last..]);
    out
}

fn naive_find(patterns: &[String], text: &[u8]) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut i = 0;
    while i < text.len() {
        // Longest first, like the automaton's leftmost-longest.
        match patterns
            .iter()
            .find(|p| !p.is_empty() && text[i..].starts_with(p.as_bytes()))
        {
            Some(p) => {
                out.push((i, i + p.len()));
                i += p.len();
            }
            None => i += 1,
        }
    }
    out
}

/// The forms in which `s` may appear in stored or printed text (see the module doc).
fn forms(s: &str) -> Vec<String> {
    let mut out = vec![s.to_string()];
    if let Ok(json) = serde_json::to_string(s) {
        out.push(unquote(&json));
    }
    out.push(unquote(&format!("{s:?}")));
    out.push(php_json(s));
    out.push(url::form_urlencoded::byte_serialize(s.as_bytes()).collect());
    out.push(hex::encode(s.as_bytes()));
    out.dedup();
    out
}

fn unquote(quoted: &str) -> String {
    quoted
        .strip_prefix('"')
        .and_then(|q| q.strip_suffix('"'))
        .unwrap_or(quoted)
        .to_string()
}

/// PHP's `json_encode` default: JSON escapes plus `\/` and `\uXXXX` for non-ASCII.
fn php_json(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '/' => out.push_str("\\/"),
            c if c.is_ascii() && !c.is_ascii_control() => out.push(c),
            c => {
                let mut units = [0u16; 2];
                for u in c.encode_utf16(&mut units) {
                    let _ = write!(out, "\\u{u:04x}");
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masks_every_form_and_borrows_when_clean() {
        let m = Matcher::new([r#"pa"ss/wörd\x"#, "abc", ""]);
        let clean = "nothing secret, abc stays (too short)";
        assert!(matches!(m.redact(clean), Cow::Borrowed(_)));
        for text in [
            r#"raw pa"ss/wörd\x end"#,
            r#"json "pa\"ss/wörd\\x" end"#,
            r#"php "pa\"ss\/w\u00f6rd\\x" end"#,
            "url pa%22ss%2Fw%C3%B6rd%5Cx end",
            &format!("hex 0x{} end", hex::encode(r#"pa"ss/wörd\x"#)),
        ] {
            let out = m.redact(text);
            assert!(
                out.contains("***") && out.ends_with(" end"),
                "{text} -> {out}"
            );
            assert!(!out.contains("rd"), "{text} -> {out}");
        }
    }

    #[test]
    fn a_secret_inside_another_is_masked_whole() {
        let m = Matcher::new(["0123", "0123456789abcdef"]);
        assert_eq!(m.redact("x0123456789abcdefy 0123"), "x***y ***");
    }

    #[test]
    fn partial_tail_finds_the_start_of_a_secret_of_at_least_min_len() {
        let m = Matcher::new(["0123456789abcdef"]);
        assert_eq!(m.partial_tail(b"{\"hash\":\"01234"), Some(9));
        assert_eq!(
            m.partial_tail(b"{\"hash\":\"012"),
            None,
            "shorter than the minimum"
        );
        assert_eq!(
            m.partial_tail(b"{\"hash\":\"0123456789abcdef"),
            None,
            "complete"
        );
        assert_eq!(m.partial_tail(b"xyz9abc"), None);
    }
}
