//! Property tests of the Navixy decoders (`fuzz_navixy_*`): for any data event
//! the quick path takes, it gives exactly what the general path gives; and no
//! input, however broken, makes the protocol panic or lose a message silently.

use super::tests::{Row, general, rows};
use super::*;
use crate::config::RawEvents;
use crate::protocol::fuzz_support::{config, json, noise, number, text};
use crate::protocol::navixy::tests::{Clock, connected, proto_with};
use crate::protocol::{Output, Protocol};
use proptest::prelude::*;
use serde_json::{Map, Value, json};

/// A member that is usually of the documented type and sometimes anything else.
fn member(documented: BoxedStrategy<Value>) -> BoxedStrategy<Option<Value>> {
    prop_oneof![
        24 => documented.prop_map(Some),
        6 => Just(None),
        1 => Just(Some(Value::Null)),
        1 => json().prop_map(Some),
    ]
    .boxed()
}

fn id() -> BoxedStrategy<Value> {
    prop_oneof![
        8 => (0i64..100_000).prop_map(Value::from),
        2 => (-5i64..100_000).prop_map(|n| Value::from(format!(" {n}"))),
        1 => number(),
        1 => text().prop_map(Value::from),
    ]
    .boxed()
}

fn stamp() -> BoxedStrategy<Value> {
    prop_oneof![
        Just(json!("2026-03-02 08:15:04")),
        Just(json!("2026-03-02T08:15:06+01:00")),
        Just(json!("2026-03-29 02:30:00")),
        Just(json!(1_772_439_280)),
        Just(json!(1_772_439_280_123.0)),
        number(),
        text().prop_map(Value::from),
    ]
    .boxed()
}

fn float() -> BoxedStrategy<Value> {
    prop_oneof![
        8 => (-180.0f64..180.0).prop_map(Value::from),
        2 => number(),
        1 => Just(json!("36")),
    ]
    .boxed()
}

fn label() -> BoxedStrategy<Value> {
    prop_oneof![
        4 => prop::sample::select(vec!["fuel", "", "ignition", "odometer"]).prop_map(Value::from),
        1 => text().prop_map(Value::from),
    ]
    .boxed()
}

/// An object from optional members, plus possibly an unknown one.
fn object(members: Vec<(&'static str, BoxedStrategy<Option<Value>>)>) -> BoxedStrategy<Value> {
    let (names, values): (Vec<_>, Vec<_>) = members.into_iter().unzip();
    (values, prop::option::weighted(0.1, (text(), json())))
        .prop_map(move |(values, extra)| {
            let mut o = Map::new();
            for (name, value) in names.iter().zip(values) {
                if let Some(v) = value {
                    o.insert(name.to_string(), v);
                }
            }
            if let Some((k, v)) = extra {
                o.entry(k).or_insert(v);
            }
            Value::Object(o)
        })
        .boxed()
}

fn state() -> BoxedStrategy<Value> {
    let location = object(vec![("lat", member(float())), ("lng", member(float()))]);
    let gps = object(vec![
        ("updated", member(stamp())),
        ("location", member(location)),
        ("speed", member(float())),
        ("heading", member(float())),
    ]);
    object(vec![
        ("source_id", member(id())),
        ("gps", member(gps)),
        ("last_update", member(stamp())),
        ("connection_status", member(label())),
        ("movement_status", member(label())),
    ])
}

fn readings() -> BoxedStrategy<Value> {
    let entry = object(vec![
        ("name", member(label())),
        ("label", member(label())),
        (
            "sensor_id",
            member(prop_oneof![id(), Just(json!(""))].boxed()),
        ),
        ("field", member(label())),
        ("type", member(label())),
        ("value", member(json().boxed())),
        ("units", member(label())),
        ("update_time", member(stamp())),
    ]);
    let list = || {
        member(
            prop::collection::vec(entry.clone(), 0..3)
                .prop_map(Value::Array)
                .boxed(),
        )
    };
    object(vec![
        ("type", member(Just(json!("readings_event")).boxed())),
        ("tracker_id", member(id())),
        ("timestamp", member(stamp())),
        ("inputs", list()),
        ("states", list()),
        ("virtual_sensors", list()),
        ("counters", list()),
    ])
}

fn item() -> BoxedStrategy<Value> {
    prop_oneof![
        6 => state(),
        6 => readings(),
        4 => member(state()).prop_map(|s| {
            let mut o = Map::new();
            o.insert("type".into(), json!("source_state_event"));
            if let Some(s) = s {
                o.insert("state".into(), s);
            }
            Value::Object(o)
        }),
        1 => json(),
    ]
    .boxed()
}

/// A data event, usually well formed, as text; sometimes with a repeated key.
fn data_event() -> impl Strategy<Value = String> {
    let data = prop_oneof![
        8 => prop::collection::vec(item(), 0..4).prop_map(Value::Array),
        4 => item(),
        1 => json(),
    ];
    let name = prop::sample::select(vec![
        "state",
        "state_batch",
        "readings_batch",
        "state_batch",
        "readings_batch",
        "lifecycle",
    ]);
    let extra = prop::option::weighted(0.3, (text(), json()));
    (name, member(data.boxed()), extra, any::<u8>()).prop_map(|(name, data, extra, dup)| {
        let mut members = vec![
            (String::from("type"), json!("event")),
            (String::from("event"), json!(name)),
        ];
        if let Some(d) = data {
            members.push(("data".into(), d));
        }
        if let Some((k, v)) = extra {
            members.push((k, v));
        }
        // Repeat one member now and then (text: a `Value` cannot hold two).
        if dup < 32 && !members.is_empty() {
            let (k, v) = members[usize::from(dup) % members.len()].clone();
            members.push((k, v));
        }
        let body: Vec<String> = members
            .iter()
            .map(|(k, v)| format!("{}:{v}", Value::from(k.as_str())))
            .collect();
        format!("{{{}}}", body.join(","))
    })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn fuzz_navixy_quick_path_agrees_with_the_general_path(text in data_event()) {
        let clock = Clock::new();
        let ctx = clock.ctx();
        for tz in [Tz::UTC, chrono_tz::Europe::Vienna] {
            let Some(quick) = decode(&ctx, tz, &text, true) else {
                continue;
            };
            prop_assert!(duplicate_key(&text).is_none());
            let (items, envelope) = general(&ctx, tz, &text);
            prop_assert!(items.problems.is_empty(), "{:?} for {}", items.problems, text);
            prop_assert_eq!(quick.items.item_count, items.item_count);
            let quick_envelope: Value =
                serde_json::from_str(quick.envelope.as_deref().unwrap_or("")).unwrap();
            prop_assert_eq!(quick_envelope, envelope);
            let (quick, general) = (rows(quick.items.records), rows(items.records));
            prop_assert_eq!(quick.len(), general.len());
            for pair in quick.iter().zip(&general) {
                let same = match pair {
                    (Row::State(a, pa), Row::State(b, pb)) => a == b && same_json(pa, pb),
                    (Row::Reading(a, pa, va), Row::Reading(b, pb, vb)) => {
                        a == b && same_json(pa, pb) && same_json(va, vb)
                    }
                    _ => false,
                };
                prop_assert!(same, "{:?} for {}", pair, text);
            }
        }
    }

    #[test]
    fn fuzz_navixy_every_message_is_kept(
        frames in prop::collection::vec(prop_oneof![data_event(), noise()], 1..4),
        framed in any::<bool>(),
    ) {
        let clock = Clock::new();
        let mut p = proto_with(RawEvents::Full, framed);
        connected(&mut p, &clock);
        for content in &frames {
            let frame = if framed {
                format!("{}|{content}", content.encode_utf16().count())
            } else {
                content.clone()
            };
            let out = p.on_text(&clock.ctx(), &frame);
            let heartbeat = content.trim().is_empty() || content.trim() == "X";
            if !heartbeat && !p_mid_message(&p) {
                // Nothing left waiting: the frame reached `events`, whatever it held.
                prop_assert!(
                    out.iter().any(|o| matches!(o, Output::Record(crate::record::Record::Event(_)))),
                    "{frame:?} left no events row: {out:?}"
                );
            }
        }
    }
}

/// Equal as JSON, floats within a few units in the last place: the general path
/// stores an item re-serialised from its parsed value, and serde_json's default
/// float parsing (without `float_roundtrip`) may move the last digit of an extreme
/// exponent on the way; the quick path stores the original text.
fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) if x != y => match (x.as_f64(), y.as_f64()) {
            (Some(x), Some(y)) => {
                x.is_sign_negative() == y.is_sign_negative()
                    && x.to_bits().abs_diff(y.to_bits()) <= 4
            }
            _ => false,
        },
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(x, y)| same_json(x, y))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}

fn p_mid_message(p: &crate::protocol::navixy::NavixyProtocol) -> bool {
    match &p.conn.stream {
        crate::protocol::navixy::Stream::Framed(f) => f.is_mid_message(),
        crate::protocol::navixy::Stream::Unframed(r) => r.is_mid_message(),
    }
}
