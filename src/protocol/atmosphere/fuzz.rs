//! Property tests of the Atmosphere framing (`fuzz_atmosphere_*`): arbitrary splits
//! give back exactly the messages sent, and arbitrary garbage never panics and
//! never swallows a message that was complete before it.

use super::*;
use crate::protocol::fuzz_support::{config, cuts, json, json_text, noise, split, text};
use proptest::prelude::*;

/// A message as Navixy sends it unframed: a JSON object or array.
fn message() -> impl Strategy<Value = String> {
    json_text(json().prop_map(|v| match v {
        serde_json::Value::Object(_) | serde_json::Value::Array(_) => v,
        leaf => serde_json::Value::Array(vec![leaf]),
    }))
}

fn framed(messages: &[String]) -> String {
    messages
        .iter()
        .map(|m| format!("{}|{m}", m.encode_utf16().count()))
        .collect()
}

/// Everything `frames` give, stopping at the first framing error (after which a
/// real caller reconnects): the messages, and the error with its unread text.
fn deframe(max: usize, frames: &[String]) -> (Vec<String>, Option<Broken>) {
    let mut f = Framer::new(max);
    let mut got = Vec::new();
    for frame in frames {
        let d = f.push(frame);
        got.extend(d.messages);
        if let Some(b) = d.broken {
            assert!(!f.is_mid_message(), "reset after an error");
            return (got, Some(b));
        }
    }
    (got, None)
}

fn is_json(text: &str) -> bool {
    serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok()
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_atmosphere_framer_gives_back_every_message(
        messages in prop::collection::vec(text(), 0..6),
        cut in cuts(),
    ) {
        let stream = framed(&messages);
        let (got, broken) = deframe(1 << 20, &split(&stream, &cut));
        prop_assert_eq!(broken, None);
        let sent: Vec<String> = messages.into_iter().filter(|m| !m.is_empty()).collect();
        prop_assert_eq!(got, sent);
    }

    #[test]
    fn fuzz_atmosphere_framer_keeps_messages_before_garbage(
        messages in prop::collection::vec(text(), 0..6),
        garbage in noise(),
        cut in cuts(),
        max in prop_oneof![Just(1usize << 20), 0usize..40],
    ) {
        let stream = format!("{}{garbage}", framed(&messages));
        let (got, broken) = deframe(max, &split(&stream, &cut));
        let sent: Vec<&String> = messages
            .iter()
            .filter(|m| !m.is_empty())
            .collect();
        if max == 1 << 20 {
            // Every message before the garbage arrives, whatever the garbage does.
            prop_assert!(got.len() >= sent.len(), "{got:?} {sent:?}");
            for (g, s) in got.iter().zip(&sent) {
                prop_assert_eq!(g, *s);
            }
        } else {
            // With a small bound: whatever arrives is a prefix of what was sent,
            // until an error; an error reports what it could not read.
            for (g, s) in got.iter().zip(&sent) {
                prop_assert_eq!(g, *s);
            }
        }
        if let Some(b) = broken {
            prop_assert!(!b.error.to_string().is_empty());
        }
    }

    #[test]
    fn fuzz_atmosphere_framer_survives_anything(
        frames in prop::collection::vec(noise(), 0..8),
        max in 0usize..200,
    ) {
        let mut f = Framer::new(max);
        for frame in &frames {
            let d = f.push(frame);
            for m in &d.messages {
                prop_assert!(!m.is_empty() && m.len() <= max.max(1) * 4);
            }
        }
    }

    #[test]
    fn fuzz_atmosphere_reassembler_gives_back_every_message(
        messages in prop::collection::vec((message(), cuts()), 1..5),
    ) {
        let mut r = Reassembler::new(1 << 20);
        let mut got = Vec::new();
        for (msg, cut) in &messages {
            for piece in split(msg, cut) {
                got.extend(r.push(&piece).unwrap());
            }
        }
        let sent: Vec<Piece> = messages
            .into_iter()
            .map(|(text, _)| Piece::Message { text })
            .collect();
        prop_assert_eq!(got, sent);
        prop_assert!(!r.is_mid_message());
    }

    #[test]
    fn fuzz_atmosphere_reassembler_loses_nothing_in_garbage(
        frames in prop::collection::vec(prop_oneof![noise(), message()], 0..8),
        max in prop_oneof![Just(1usize << 20), 1usize..64],
    ) {
        let mut r = Reassembler::new(max);
        let (mut out, mut discarded) = (0usize, 0usize);
        for frame in &frames {
            match r.push(frame) {
                Ok(pieces) => {
                    for p in pieces {
                        match p {
                            Piece::Message { text } => {
                                prop_assert!(is_json(&text), "{text:?}");
                                out += text.len();
                            }
                            Piece::Malformed { text, error } => {
                                prop_assert!(!is_json(&text), "{text:?}");
                                prop_assert!(!error.is_empty());
                                out += text.len();
                            }
                        }
                    }
                }
                Err(e) => {
                    prop_assert!(e.size > e.max);
                    discarded += e.size;
                    for p in e.before {
                        let (Piece::Message { text } | Piece::Malformed { text, .. }) = p;
                        out += text.len();
                    }
                }
            }
        }
        // Every byte is in a piece, in a reported discard or still buffered, except
        // frames of whitespace only, which carry nothing.
        let kept = out + discarded + r.buf_len();
        let total: usize = frames.iter().map(String::len).sum();
        let blank: usize = frames
            .iter()
            .filter(|f| f.trim().is_empty())
            .map(String::len)
            .sum();
        prop_assert!(kept <= total && kept + blank >= total, "{kept} {total} {blank}");
    }

    #[test]
    fn fuzz_atmosphere_scanner_agrees_with_serde(text in prop_oneof![noise(), message()]) {
        // A text serde takes whole is complete by the grammar, and a syntax error
        // by the grammar is one for serde too.
        let mut r = Reassembler::new(1 << 20);
        let pieces = r.push(&text).unwrap();
        if is_json(&text) && !text.trim().is_empty() {
            prop_assert_eq!(pieces, vec![Piece::Message { text: text.clone() }]);
        }
        if r.is_mid_message() {
            let e = serde_json::from_str::<serde::de::IgnoredAny>(&text).unwrap_err();
            prop_assert!(
                e.classify() == serde_json::error::Category::Eof
                    || text.trim_end().ends_with(['.', '-', '+', 'e', 'E']),
                "{text:?}: {e}"
            );
        }
    }
}
