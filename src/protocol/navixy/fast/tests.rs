//! The quick path must give exactly what the general path gives, or step aside.

use super::*;
use crate::protocol::navixy::decode;
use crate::protocol::navixy::tests::Clock;
use serde_json::Value;

/// A record with its JSON text columns parsed, so original text (quick path) and
/// re-serialised text (general path) compare equal when they are equal as JSON.
#[derive(Debug, PartialEq)]
pub(super) enum Row {
    State(TrackerState, Value),
    Reading(TrackerReading, Value, Value),
}

pub(super) fn rows(records: Vec<Record>) -> Vec<Row> {
    let json = |s: &str| serde_json::from_str::<Value>(s).unwrap();
    records
        .into_iter()
        .map(|r| match r {
            Record::TrackerState(mut s) => {
                let payload = json(&std::mem::take(&mut s.payload));
                Row::State(s, payload)
            }
            Record::TrackerReading(mut r) => {
                let payload = json(&std::mem::take(&mut r.payload));
                let value = json(&r.value);
                Row::Reading(r, payload, value)
            }
            other => panic!("unexpected record {other:?}"),
        })
        .collect()
}

/// The general path: parse, take `data` out, decode; the envelope is the rest.
pub(super) fn general(ctx: &Ctx, tz: Tz, text: &str) -> (Items, Value) {
    let mut v: Value = serde_json::from_str(text).unwrap();
    let data = v.as_object_mut().and_then(|o| o.remove("data"));
    (decode::items(ctx, tz, data.as_ref()), v)
}

/// Asserts the quick path takes `text` and agrees with the general path.
fn same(text: &str) {
    let clock = Clock::new();
    let ctx = clock.ctx();
    for tz in [Tz::UTC, chrono_tz::Europe::Vienna] {
        let quick = decode(&ctx, tz, text, true).expect("the quick path takes it");
        let (items, envelope) = general(&ctx, tz, text);
        assert!(items.problems.is_empty(), "{:?}", items.problems);
        assert_eq!(quick.items.item_count, items.item_count);
        assert!(quick.items.problems.is_empty());
        let quick_envelope: Value =
            serde_json::from_str(quick.envelope.as_deref().unwrap()).unwrap();
        assert_eq!(quick_envelope, envelope);
        assert_eq!(rows(quick.items.records), rows(items.records), "{text}");
    }
}

/// Asserts the quick path leaves `text` to the general path.
fn declined(text: &str) {
    let clock = Clock::new();
    assert!(
        decode(&clock.ctx(), Tz::UTC, text, true).is_none(),
        "the quick path must decline {text}"
    );
}

const FULL_STATE: &str = r#"{"source_id":90017,"gps":{"updated":"2026-03-02 08:15:04","signal_level":90,
 "location":{"lat":48.2082,"lng":16.3738},"heading":94,"speed":36,"alt":171},"connection_status":"active",
 "movement_status":"moving","movement_status_update":"2026-03-02 08:15:04","ignition":true,
 "gsm":{"updated":"2026-03-02 08:15:04","signal_level":80,"network_name":"NET","roaming":false},
 "battery_level":97,"inputs":[true,false],"outputs":[false],"additional":{"seq":{"value":7,"updated":"x"}},
 "last_update":"2026-03-02 08:15:06"}"#;

#[test]
fn state_batches_of_every_documented_shape() {
    same(&format!(
        r#"{{"type":"event","event":"state_batch","data":[{FULL_STATE},{FULL_STATE}],"user_time":"2026-03-02 08:15:07"}}"#
    ));
    same(&format!(
        r#"{{"type":"event","event":"state","data":{FULL_STATE}}}"#
    ));
    same(&format!(
        r#"{{"event":"state_batch","type":"event","data":[{{"type":"source_state_event","state":{FULL_STATE}}}]}}"#
    ));
    // Compact, string id, offset and numeric times, nulls, escapes, no gps at all.
    same(
        r#"{"type":"event","event":"state_batch","data":[
        {"source_id":"90018","gps":{"updated":1772439280,"location":null,"speed":null},"last_update":null,
         "connection_status":"id\u006ce","movement_status":"parked \"P\""},
        {"source_id":90019,"last_update":"2026-03-02T08:15:06+01:00"},
        {"source_id":90020,"gps":{"updated":1772439280123.0}},
        {"source_id":90021,"gps":{"location":{"lat":1,"lng":-2}},"last_update":"not a time"}]}"#,
    );
    same(r#"{"type":"event","event":"state_batch","data":[]}"#);
}

#[test]
fn readings_batches_agree_with_the_general_path() {
    same(
        r#"{"type":"event","event":"readings_batch","data":[{"type":"readings_event","tracker_id":501,
        "timestamp":"2026-03-02 08:10:00",
        "inputs":[{"sensor_id":1001,"label":"Fuel tank","name":"fuel_level","units":"l","value":41.50,"update_time":"2026-03-02 08:09:58"},
                  {"sensor_id":1002,"label":"","name":"","value":"12.5"},
                  {"sensor_id":"s-3","value":false,"units":""}],
        "states":[{"field":"ignition","value":true,"update_time":"2026-03-02 08:09:59"}],
        "virtual_sensors":[{"sensor_id":7,"label":"","value":"open"},{"label":"Load","value":{"a":[1,2]}}],
        "counters":[{"type":"odometer","value":123456.7},{"type":"hours"}]},
        {"tracker_id":"502","inputs":[{"label":"Temp","value":-4,"units":"°C"}],"states":null}]}"#,
    );
    // Readings mislabelled as a state batch are still readings.
    same(
        r#"{"type":"event","event":"state_batch","data":[{"tracker_id":502,"counters":[{"type":"c","value":1}]}]}"#,
    );
}

#[test]
fn anything_unusual_is_left_to_the_general_path() {
    for text in [
        // Not a data event, or not an event at all.
        r#"{"type":"event","event":"lifecycle","data":{"source_id":1}}"#,
        r#"{"type":"response","event":"state_batch","data":[]}"#,
        r#"{"type":"event","event":"sim_unknown","data":[]}"#,
        r#"{"type":"event","event":5,"data":[]}"#,
        r#"[{"type":"event"}]"#,
        "not json",
        // Data the general path reports as a problem.
        r#"{"type":"event","event":"state_batch"}"#,
        r#"{"type":"event","event":"state_batch","data":null}"#,
        r#"{"type":"event","event":"state_batch","data":"x"}"#,
        r#"{"type":"event","event":"state_batch","data":[5]}"#,
        r#"{"type":"event","event":"state_batch","data":[{"gps":{}}]}"#,
        r#"{"type":"event","event":"state_batch","data":[{"source_id":null}]}"#,
        r#"{"type":"event","event":"state_batch","data":[{"source_id":1.5}]}"#,
        r#"{"type":"event","event":"state_batch","data":[{"source_id":"x1"}]}"#,
        r#"{"type":"event","event":"state_batch","data":[{"type":"source_state_event"}]}"#,
        r#"{"type":"event","event":"state_batch","data":[{"type":"source_state_event","state":null}]}"#,
        r#"{"type":"event","event":"readings_batch","data":[{"type":"readings_event","tracker_id":1,"inputs":{}}]}"#,
        r#"{"type":"event","event":"readings_batch","data":[{"type":"readings_event","tracker_id":1,"states":[{"value":1}]}]}"#,
        r#"{"type":"event","event":"readings_batch","data":[{"type":"readings_event","inputs":[]}]}"#,
        // Shapes the general path reads leniently: it decides.
        r#"{"type":"event","event":"state_batch","data":[{"source_id":1,"gps":"none"}]}"#,
        r#"{"type":"event","event":"state_batch","data":[{"source_id":1,"gps":{"speed":"36"}}]}"#,
        r#"{"type":"event","event":"state_batch","data":[{"source_id":1,"last_update":true}]}"#,
        r#"{"type":"event","event":"state_batch","data":[{"source_id":1,"connection_status":1}]}"#,
        r#"{"type":"event","event":"state_batch","data":[{"source_id":1,"source_id":2}]}"#,
        r#"{"type":"event","event":"state_batch","type":"event","data":[]}"#,
        // Arrays where objects belong: serde would read them as fields in order.
        r#"{"type":"event","event":"state","data":[{"state":["",null,0],"type":"source_state_event"}]}"#,
        r#"{"type":"event","event":"state_batch","data":[["source_state_event",null,7]]}"#,
        r#"{"type":"event","event":"state_batch","data":[{"source_id":1,"gps":[null,[1,2]]}]}"#,
        r#"{"type":"event","event":"state_batch","data":[{"source_id":1,"gps":{"location":[1,2]}}]}"#,
        r#"{"type":"event","event":"readings_batch","data":[{"tracker_id":1,"inputs":[["fuel"]]}]}"#,
    ] {
        declined(text);
    }
}

#[test]
fn payloads_keep_the_original_text() {
    let clock = Clock::new();
    let text = format!(r#"{{"type":"event","event":"state","data":{FULL_STATE},"user_time":"t"}}"#);
    let d = decode(&clock.ctx(), Tz::UTC, &text, true).unwrap();
    let Record::TrackerState(s) = &d.items.records[0] else {
        panic!("{:?}", d.items.records)
    };
    assert_eq!(s.payload, FULL_STATE);
    assert_eq!(
        d.envelope.as_deref(),
        Some(r#"{"type":"event","event":"state","user_time":"t"}"#)
    );
    assert_eq!(d.name, "state");
    assert!(
        decode(&clock.ctx(), Tz::UTC, &text, false)
            .unwrap()
            .envelope
            .is_none()
    );
}

/// A data event with `n` extra top-level keys (`k0`…), optionally repeating `k0`.
fn many_keys(n: usize, repeat_first: bool) -> String {
    let mut text = String::from(r#"{"type":"event","event":"state","data":{"source_id":9}"#);
    for i in 0..n {
        text.push_str(&format!(r#","k{i}":{i}"#));
    }
    if repeat_first {
        text.push_str(r#","k0":-1"#);
    }
    text.push('}');
    text
}

#[test]
fn a_message_with_200_000_keys_decodes() {
    // Comparing every key with every earlier one made this take minutes.
    let clock = Clock::new();
    let text = many_keys(200_000, false);
    let d = decode(&clock.ctx(), Tz::UTC, &text, true).expect("the quick path takes it");
    assert_eq!(d.items.item_count, 1);
    let envelope: Value = serde_json::from_str(d.envelope.as_deref().unwrap()).unwrap();
    assert_eq!(envelope.as_object().unwrap().len(), 200_002);
    assert_eq!(envelope["k199999"], 199_999);
    // One repeat among them, at the very end: found, and declined.
    let text = many_keys(200_000, true);
    assert_eq!(super::duplicate_key(&text).as_deref(), Some("k0"));
    declined(&text);
}

/// Not a test of speed (that would depend on the machine): prints the time to
/// decode 100 000 and 200 000 keys, which grows about twice, not four times, with
/// a linear decoder. `cargo test --release --lib many_keys_timing -- --ignored --nocapture`
#[test]
#[ignore]
fn many_keys_timing() {
    let clock = Clock::new();
    for n in [100_000, 200_000, 400_000] {
        let text = many_keys(n, false);
        let start = std::time::Instant::now();
        assert!(decode(&clock.ctx(), Tz::UTC, &text, true).is_some());
        println!("{n} keys ({} bytes): {:?}", text.len(), start.elapsed());
    }
}
