//! Shared pieces of the parsers' property tests (`fuzz_*`): the case count and
//! input generators.
//!
//! The normal suite runs a few dozen cases per property so it stays quick; a long
//! run sets the standard `PROPTEST_CASES`, e.g.
//! `PROPTEST_CASES=1000000 cargo test --release --lib fuzz_atmosphere`.

use proptest::prelude::*;
use serde_json::{Map, Value};

/// Cases per property when `PROPTEST_CASES` is not set.
const DEFAULT_CASES: u32 = 48;

/// proptest's configuration with this suite's default case count; the
/// `PROPTEST_CASES` environment variable overrides it.
pub(crate) fn config() -> ProptestConfig {
    let mut config = ProptestConfig::default();
    if std::env::var_os("PROPTEST_CASES").is_none() {
        config.cases = DEFAULT_CASES;
    }
    config
}

/// Short strings that exercise escaping and UTF-8: quotes, backslashes, control
/// characters, multi-byte and non-BMP characters.
pub(crate) fn text() -> impl Strategy<Value = String> {
    let chars = prop_oneof![
        4 => prop::char::range('a', 'z'),
        1 => prop::sample::select(vec!['"', '\\', '\n', '\u{1}', 'ü', '€', '🚚', ' ', '|', '{', ']']),
        1 => any::<char>(),
    ];
    prop::collection::vec(chars, 0..12).prop_map(|v| v.into_iter().collect())
}

/// Numbers as JSON has them: integers of any size, fractions, exponents.
pub(crate) fn number() -> impl Strategy<Value = Value> {
    prop_oneof![
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        (-1000i64..1000).prop_map(Value::from),
        any::<f64>().prop_map(Value::from),
        (-1.0e3f64..1.0e3).prop_map(Value::from),
    ]
}

/// Any JSON value, a few levels deep.
pub(crate) fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        number(),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((text(), inner), 0..6)
                .prop_map(|members| Value::Object(members.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// A JSON value as text: compact or pretty-printed (whitespace between tokens).
pub(crate) fn json_text(value: impl Strategy<Value = Value>) -> impl Strategy<Value = String> {
    (value, any::<bool>()).prop_map(|(v, pretty)| {
        if pretty {
            serde_json::to_string_pretty(&v).unwrap_or_default()
        } else {
            v.to_string()
        }
    })
}

/// Text that is mostly JSON's alphabet, so it gets past the first byte of a
/// parser more often than uniformly random text does.
pub(crate) fn noise() -> impl Strategy<Value = String> {
    let chars = prop_oneof![
        6 => prop::sample::select(
            "{}[]\",:.-+eE0123456789 \n\\utrfalsn|X".chars().collect::<Vec<_>>()
        ),
        1 => any::<char>(),
    ];
    prop::collection::vec(chars, 0..64).prop_map(|v| v.into_iter().collect())
}

/// `text` cut into pieces at the given fractions of its length (moved to the
/// nearest earlier character boundary); pieces are never empty.
pub(crate) fn split(text: &str, cuts: &[f64]) -> Vec<String> {
    let mut at: Vec<usize> = cuts
        .iter()
        .map(|f| {
            let mut i = ((text.len() as f64) * f.clamp(0.0, 1.0)) as usize;
            while !text.is_char_boundary(i) {
                i -= 1;
            }
            i
        })
        .filter(|&i| i > 0 && i < text.len())
        .collect();
    at.sort_unstable();
    at.dedup();
    let mut pieces = Vec::with_capacity(at.len() + 1);
    let mut start = 0;
    for i in at.into_iter().chain([text.len()]) {
        if i > start {
            pieces.push(text[start..i].to_string());
            start = i;
        }
    }
    pieces
}

/// Fractions to cut at, for [`split`].
pub(crate) fn cuts() -> impl Strategy<Value = Vec<f64>> {
    prop::collection::vec(0.0f64..1.0, 0..6)
}
