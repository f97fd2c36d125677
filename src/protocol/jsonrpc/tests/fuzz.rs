//! Property tests of the JSON-RPC parser (`fuzz_jsonrpc_*`): no frame, however
//! broken, panics the protocol or passes without a stored row.

use super::*;
use crate::protocol::fuzz_support::{config, json, noise, text};
use proptest::prelude::*;
use serde_json::Map;

/// One message: a response, an error, a notification or a request, each member
/// usually of its documented type; or any value.
fn message() -> impl Strategy<Value = Value> {
    let id = prop_oneof![
        3 => (0i64..6).prop_map(Value::from),
        1 => json(),
    ];
    let method = prop_oneof![
        prop::sample::select(vec!["OnConnected", "OnChange", "OpenDoc"]).prop_map(Value::from),
        text().prop_map(Value::from),
        json(),
    ];
    let member = |s: BoxedStrategy<Value>| prop::option::of(s);
    prop_oneof![
        6 => (
            member(id.boxed()),
            member(method.boxed()),
            member(json().boxed()),
            member(json().boxed()),
            member(json().boxed()),
            any::<bool>(),
        )
            .prop_map(|(id, method, params, result, error, v2)| {
                let mut o = Map::new();
                if v2 {
                    o.insert("jsonrpc".into(), Value::from("2.0"));
                }
                for (k, v) in [("id", id), ("method", method), ("params", params), ("result", result), ("error", error)] {
                    if let Some(v) = v {
                        o.insert(k.into(), v);
                    }
                }
                Value::Object(o)
            }),
        1 => json(),
    ]
}

fn frame() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => message().prop_map(|m| m.to_string()),
        2 => prop::collection::vec(message(), 0..4).prop_map(|b| Value::Array(b).to_string()),
        2 => noise(),
    ]
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_jsonrpc_every_frame_is_kept(frames in prop::collection::vec(frame(), 1..6)) {
        let clock = Clock(Instant::now());
        let mut p = build(two_requests(), RawEvents::Full);
        p.on_open(&clock.at(0, 1));
        for (i, text) in frames.iter().enumerate() {
            let out = p.on_text(&clock.at(i as u64, 1), text);
            prop_assert!(
                out.iter().any(|o| matches!(o, Output::Record(_))),
                "{text:?} left no row: {out:?}"
            );
        }
    }
}
