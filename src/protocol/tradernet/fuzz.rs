//! Property tests of the Tradernet frame parser (`fuzz_tradernet_*`): no frame,
//! however broken, panics the protocol or passes without a stored row.

use super::tests::{Clock, proto};
use super::*;
use crate::config::RawEvents;
use crate::protocol::fuzz_support::{config, json, noise, number, text};
use proptest::prelude::*;
use serde_json::{Map, json};

/// A session object with each documented member usually of its documented type.
fn session() -> impl Strategy<Value = Value> {
    let any_or = |v: BoxedStrategy<Value>| prop_oneof![4 => v, 1 => json()];
    (
        any_or(prop_oneof![(0i64..50).prop_map(Value::from), number()].boxed()),
        any_or(prop_oneof![(0i64..2_000_000_000).prop_map(Value::from), number()].boxed()),
        any_or(text().prop_map(Value::from).boxed()),
        any_or(
            prop_oneof![
                Just(json!("2026-03-02 08:00:00")),
                text().prop_map(Value::from)
            ]
            .boxed(),
        ),
        prop::collection::vec((text(), json()), 0..2),
    )
        .prop_map(|(id, expire, key, start, extra)| {
            let mut o: Map<String, Value> = extra.into_iter().collect();
            o.insert("id".into(), id);
            o.insert("expire".into(), expire);
            o.insert("key_current".into(), key);
            o.insert("start_datetime".into(), start);
            Value::Object(o)
        })
}

/// A frame: `[event, data, …]` of the kinds Tradernet sends, or anything else.
fn frame() -> impl Strategy<Value = String> {
    let data = prop_oneof![
        3 => prop::collection::vec(session(), 0..4).prop_map(Value::Array),
        1 => session(),
        1 => json(),
        1 => Just(json!({"isDemo": true, "mode": "demo"})),
    ];
    let event = prop_oneof![
        prop::sample::select(vec!["sessions", "userData", "error", "q", "portfolio"])
            .prop_map(Value::from),
        json(),
    ];
    prop_oneof![
        6 => (event, data, prop::collection::vec(json(), 0..2)).prop_map(|(e, d, rest)| {
            let mut a = vec![e, d];
            a.extend(rest);
            Value::Array(a).to_string()
        }),
        1 => json().prop_map(|v| v.to_string()),
        2 => noise(),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_tradernet_every_frame_is_kept(frames in prop::collection::vec(frame(), 1..6)) {
        let clock = Clock::new();
        let mut p = proto(RawEvents::Full);
        p.on_open(&clock.at(0.0));
        for (i, text) in frames.iter().enumerate() {
            let out = p.on_text(&clock.at(i as f64), text);
            prop_assert!(
                out.iter().any(|o| matches!(o, Output::Record(_))),
                "{text:?} left no row: {out:?}"
            );
        }
    }
}
