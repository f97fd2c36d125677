//! The rendering must give the same JSON values as the original `json!` version,
//! kept here as the reference (key order aside: objects are unordered).

use std::collections::BTreeMap;
use std::time::Instant;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};

use super::*;
use crate::sim::navixy::NavixySimConfig;
use crate::sim::navixy::subscribe::parse_requests;

const USER_TIME: &str = "2026-03-02 08:15:07";

fn epoch() -> DateTime<Utc> {
    "2026-03-02T08:14:41Z".parse().unwrap_or_default()
}

fn shared(seq: bool, utc_offset_secs: i32, wrap_items: WrapItems) -> Shared {
    Shared::new(NavixySimConfig {
        trackers: 8,
        epoch: Some(epoch()),
        seq,
        utc_offset_secs,
        wrap_items,
        ..NavixySimConfig::default()
    })
}

/// The original state rendering, verbatim.
fn reference_state(s: &Shared, idx: usize, k: u64, iso: bool, compact: bool) -> Value {
    let t = s.timestamp(s.state_time(k), iso);
    let t0 = s.timestamp(s.epoch, iso);
    let i = idx as u64;
    let phase = (k + i) % 4;
    let moving = phase < 2;
    let movement = ["moving", "moving", "stopped", "parked"][phase as usize];
    let step = (k % 1000) as f64;
    let gps = json!({
        "updated": t, "signal_level": 70 + (k + i) % 30,
        "location": {"lat": 48.2082 + 0.01 * i as f64 + 0.0001 * step,
                     "lng": 16.3738 + 0.01 * i as f64 + 0.00013 * step},
        "heading": (k * 7 + i * 13) % 360,
        "speed": if moving { 20 + (k * 3 + i) % 60 } else { 0 },
        "alt": 150 + (k + i) % 40,
    });
    let mut state = json!({
        "source_id": s.source_id(idx), "gps": gps,
        "connection_status": if movement == "parked" { "idle" } else { "active" },
        "movement_status": movement, "movement_status_update": t,
        "ignition": moving, "ignition_update": t, "last_update": t,
    });
    if compact {
        return state;
    }
    let mut additional = serde_json::Map::new();
    if s.cfg.seq {
        additional.insert("seq".into(), json!({"value": k, "updated": t}));
    }
    if let Value::Object(map) = &mut state {
        let full = json!({
            "gsm": {"updated": t, "signal_level": 60 + k % 40, "network_name": "SIM-NET", "roaming": false},
            "battery_level": 100 - k % 50, "battery_update": t,
            "inputs": [k.is_multiple_of(2), false], "inputs_update": t0,
            "outputs": [false], "outputs_update": t0,
            "additional": additional, "actual_track_update": t,
        });
        if let Value::Object(extra) = full {
            map.extend(extra);
        }
    }
    state
}

/// The original readings rendering, verbatim.
fn reference_readings(s: &Shared, idx: usize, k: u64, iso: bool) -> Value {
    let t = s.timestamp(s.state_time(k), iso);
    let sensor = 1000 + idx as u64 * 10;
    json!({
        "type": "readings_event", "tracker_id": s.tracker_id(idx), "timestamp": t,
        "inputs": [{"sensor_id": sensor + 1, "label": "Fuel level", "name": "fuel_level",
                    "type": "fuel", "units": "l", "units_type": "litre",
                    "value": 40.0 + (k % 20) as f64 * 0.5, "update_time": t}],
        "states": [{"field": "door_open", "value": k % 2 == 1, "update_time": t}],
        "virtual_sensors": [{"sensor_id": sensor + 2, "label": "Engine", "type": "engine_state",
                             "value": if k.is_multiple_of(2) { "on" } else { "off" }, "update_time": t}],
        "counters": [{"type": "odometer", "value": 12000.0 + k as f64 * 0.25, "update_time": t}],
    })
}

/// The original frame assembly of a chunk (`Conn::send_chunk`), as frame texts in
/// sending order.
fn reference_frames(
    s: &Shared,
    subs: &BTreeMap<String, Request>,
    iso: bool,
    chunk: &[(usize, u64)],
) -> Vec<String> {
    let selected = |kind: &str, idx: usize| {
        let id = s.tracker_id(idx);
        subs.get(kind)
            .filter(|r| r.target.contains(id) && s.status_of(id) == TrackerStatus::Normal)
    };
    let mut batch_items = Vec::new();
    let mut single = Vec::new();
    let mut readings = Vec::new();
    for &(idx, k) in chunk {
        if let Some(req) = selected("state_batch", idx) {
            let state = reference_state(s, idx, k, iso, req.compact);
            let wrapped = match s.cfg.wrap_items {
                WrapItems::Always => true,
                WrapItems::Never => false,
                WrapItems::Alternate => batch_items.len() % 2 == 0,
            };
            batch_items.push(if wrapped {
                json!({"type": "source_state_event", "state": state})
            } else {
                state
            });
        } else if let Some(req) = selected("state", idx) {
            single.push(reference_state(s, idx, k, iso, req.compact));
        }
        if s.cfg.readings && selected("readings_batch", idx).is_some() {
            readings.push(reference_readings(s, idx, k, iso));
        }
    }
    let event = |event: &str, data: Value| {
        json!({"type": "event", "event": event, "user_time": USER_TIME, "data": data}).to_string()
    };
    let mut frames = Vec::new();
    if !batch_items.is_empty() {
        frames.push(event("state_batch", Value::Array(batch_items)));
    }
    frames.extend(single.into_iter().map(|state| event("state", state)));
    if !readings.is_empty() {
        frames.push(event("readings_batch", Value::Array(readings)));
    }
    frames
}

/// The new frame assembly of a chunk, as frame texts in sending order.
fn new_frames(
    s: &Shared,
    subs: &BTreeMap<String, Request>,
    times: &mut Times,
    chunk: &[(usize, u64)],
) -> io::Result<Vec<String>> {
    let frames = chunk_frames(s, subs, times, chunk)?;
    frames
        .state_batch
        .into_iter()
        .chain(frames.states)
        .chain(frames.readings_batch)
        .map(|f| f.finish(USER_TIME))
        .collect()
}

fn parsed(frames: &[String]) -> Vec<Value> {
    frames
        .iter()
        .map(|f| serde_json::from_str(f).unwrap_or_else(|e| panic!("{e}: {f}")))
        .collect()
}

fn subs(msg: Value) -> BTreeMap<String, Request> {
    parse_requests(&msg)
        .into_iter()
        .map(|r| (r.kind.clone(), r))
        .collect()
}

#[test]
fn states_and_readings_match_the_reference() {
    for seq in [false, true] {
        for offset in [0, 3600, -(5 * 3600 + 1800)] {
            let s = shared(seq, offset, WrapItems::default());
            for iso in [false, true] {
                let mut times = Times::new(iso);
                for idx in [0, 3, 7] {
                    for k in [0, 1, 2, 3, 5, 999, 1000, 1001, 86_400, 1_234_567] {
                        let case = format!("seq {seq} offset {offset} iso {iso} idx {idx} k {k}");
                        for compact in [false, true] {
                            let state = s.state(idx, k, compact, times.update(&s, k));
                            let new = serde_json::to_value(&state).ok();
                            let reference = reference_state(&s, idx, k, iso, compact);
                            assert_eq!(new, Some(reference), "{case} compact {compact}");
                        }
                        let readings = s.readings(idx, k, times.update(&s, k));
                        let new = serde_json::to_value(&readings).ok();
                        assert_eq!(new, Some(reference_readings(&s, idx, k, iso)), "{case}");
                    }
                }
            }
        }
    }
}

#[test]
fn chunk_frames_match_the_reference() {
    let requests = [
        json!({"requests": [{"type": "state_batch", "target": {"type": "all"}},
                            {"type": "readings_batch", "target": {"type": "all"}}]}),
        json!({"requests": [{"type": "state_batch", "target": {"type": "all"}, "format": "compact"}]}),
        json!({"requests": [
            {"type": "state_batch", "target": {"type": "selected", "tracker_ids": [501, 503]}},
            {"type": "state", "target": {"type": "selected", "tracker_ids": [502, 503, 504]}},
            {"type": "readings_batch", "target": {"type": "selected", "tracker_ids": [504, 505]}}]}),
        json!({"requests": [{"type": "readings_batch", "target": {"type": "all"}}]}),
        json!({"requests": [{"type": "state", "target": {"type": "all"}, "format": "compact"}]}),
    ];
    let chunk: Vec<(usize, u64)> = (0..30u64).map(|p| ((p % 8) as usize, 40 + p / 8)).collect();
    for wrap in [WrapItems::Alternate, WrapItems::Always, WrapItems::Never] {
        for seq in [false, true] {
            let s = shared(seq, 3600, wrap);
            for iso in [false, true] {
                let mut times = Times::new(iso);
                for msg in &requests {
                    let subs = subs(msg.clone());
                    let case = format!("{wrap:?} seq {seq} iso {iso} {msg}");
                    let new = new_frames(&s, &subs, &mut times, &chunk);
                    let reference = reference_frames(&s, &subs, iso, &chunk);
                    assert!(!reference.is_empty(), "{case}");
                    let new = new.map(|f| parsed(&f)).map_err(|e| e.to_string());
                    assert_eq!(new, Ok(parsed(&reference)), "{case}");
                }
            }
        }
    }
}

#[test]
fn chunk_frames_count_what_they_carry() {
    let s = shared(false, 0, WrapItems::default());
    let subs = subs(json!({"requests": [
        {"type": "state_batch", "target": {"type": "selected", "tracker_ids": [501]}},
        {"type": "state", "target": {"type": "selected", "tracker_ids": [501, 502]}},
        {"type": "readings_batch", "target": {"type": "selected", "tracker_ids": [503]}}]}));
    let chunk = [(0, 1), (1, 1), (2, 1), (3, 1)];
    let frames = chunk_frames(&s, &subs, &mut Times::new(false), &chunk);
    let frames = frames.map_err(|e| e.to_string());
    let Ok(frames) = frames else {
        panic!("{frames:?}");
    };
    assert_eq!(frames.states_sent(), 2);
    assert_eq!(frames.readings_sent(), 1);
    assert_eq!(frames.state_keys, [(0, 1), (1, 1)]);
    assert_eq!(frames.reading_keys, [(2, 1)]);
    assert_eq!(frames.state_batch.as_ref().map(EventFrame::len), Some(1));
    assert_eq!(frames.states.len(), 1);

    let none = chunk_frames(&s, &subs, &mut Times::new(false), &[(4, 1)]);
    let none = none.map(|f| {
        (
            f.state_batch.is_none(),
            f.states.len(),
            f.readings_batch.is_none(),
        )
    });
    assert_eq!(none.map_err(|e| e.to_string()), Ok((true, 0, true)));
}

#[test]
fn times_are_cached_per_update_and_format() {
    let s = shared(false, 3600, WrapItems::default());
    let mut times = Times::new(false);
    // Updates sharing a slot replace each other and come back right.
    for k in [7, 7 + UPDATE_SLOTS as u64, 7, 8, 7] {
        let got = times.update(&s, k);
        assert_eq!(got.t, s.timestamp(s.state_time(k), false), "k {k}");
        assert_eq!(got.t0, "2026-03-02 09:14:41");
    }
    times.set_iso(true);
    let got = times.update(&s, 7);
    assert_eq!(got.t, "2026-03-02T09:14:48+01:00");
    assert_eq!(got.t0, "2026-03-02T09:14:41+01:00");

    let now = epoch();
    assert_eq!(times.user_time_at(&s, now), "2026-03-02T09:14:41+01:00");
    let later = now + chrono::TimeDelta::milliseconds(999);
    assert_eq!(times.user_time_at(&s, later), "2026-03-02T09:14:41+01:00");
    let next = now + chrono::TimeDelta::seconds(1);
    assert_eq!(times.user_time_at(&s, next), "2026-03-02T09:14:42+01:00");
    times.set_iso(false);
    assert_eq!(times.user_time_at(&s, next), "2026-03-02 09:14:42");
}

#[test]
fn a_single_frame_takes_no_more_items() {
    let frame = EventFrame::single("state", &json!({"a": 1}));
    let pushed = frame.map(|mut f| f.push(&1).is_err());
    assert_eq!(pushed.map_err(|e| e.to_string()), Ok(true));
}

/// CPU per state of the original and the new rendering, frames and Atmosphere
/// length prefix included. Prints only; run in release:
/// `cargo test --release --lib render::tests::cpu_per_state -- --ignored --nocapture`
#[test]
#[ignore = "timing, run by hand in release mode"]
fn cpu_per_state() {
    const STATES: u64 = 100_000;
    const CHUNK: u64 = 100;
    let s = Shared::new(NavixySimConfig {
        trackers: 1000,
        epoch: Some(epoch()),
        ..NavixySimConfig::default()
    });
    let with_readings = subs(json!({"requests": [
        {"type": "state_batch", "target": {"type": "all"}},
        {"type": "readings_batch", "target": {"type": "all"}}]}));
    let states_only =
        subs(json!({"requests": [{"type": "state_batch", "target": {"type": "all"}}]}));
    let cases = [
        ("1000 trackers, states + readings", 1000, &with_readings),
        ("1000 trackers, states only      ", 1000, &states_only),
        ("   1 tracker,  states + readings", 1, &with_readings),
    ];
    for (label, trackers, subs) in cases {
        let chunks = (0..STATES / CHUNK).map(|c| -> Vec<(usize, u64)> {
            (0..CHUNK)
                .map(|j| {
                    let p = c * CHUNK + j;
                    ((p % trackers) as usize, p / trackers)
                })
                .collect()
        });
        let chunks: Vec<_> = chunks.collect();
        let start = Instant::now();
        let mut old_bytes = 0;
        for chunk in &chunks {
            for frame in reference_frames(&s, subs, false, chunk) {
                let framed = format!("{}|{frame}", frame.encode_utf16().count());
                old_bytes += framed.len();
            }
        }
        let old = start.elapsed();
        let start = Instant::now();
        let mut new_bytes = 0;
        let mut times = Times::new(false);
        for chunk in &chunks {
            let frames = chunk_frames(&s, subs, &mut times, chunk);
            let frames = frames.map(|f| f.state_batch.into_iter().chain(f.readings_batch));
            for frame in frames.into_iter().flatten() {
                let Ok(text) = frame.finish(times.user_time(&s)) else {
                    panic!("frame not finished");
                };
                let framed = format!("{}|{text}", super::super::atmosphere::utf16_len(&text));
                new_bytes += framed.len();
            }
        }
        let new = start.elapsed();
        let per_state = |d: std::time::Duration| d.as_secs_f64() * 1e6 / STATES as f64;
        println!(
            "{label}: before {:.2} µs/state, after {:.2} µs/state ({:.1}x); {old_bytes} / {new_bytes} bytes",
            per_state(old),
            per_state(new),
            old.as_secs_f64() / new.as_secs_f64(),
        );
    }
}
