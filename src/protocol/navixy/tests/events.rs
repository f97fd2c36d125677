//! Event decoding: states, readings, lifecycle, logout, unknown events, raw modes.

use super::*;

/// The example wire frame of navixy.md: one wrapped and one bare state.
const STATE_BATCH_DOC: &str = r#"{"type": "event", "event": "state_batch", "data": [
  {"type": "source_state_event", "state": {"source_id": 90017, "gps": {"updated": "2026-03-02T08:15:04+01:00", "signal_level": 90,
   "location": {"lat": 48.2082, "lng": 16.3738}, "heading": 94, "speed": 36, "alt": 171}, "connection_status": "active",
   "movement_status": "moving", "last_update": "2026-03-02T08:15:06+01:00"}},
  {"source_id": 90018, "gps": {"updated": "2026-03-02 08:14:40", "location": {"lat": 48.19, "lng": 16.4}, "heading": 0, "speed": 0, "alt": 160},
   "connection_status": "idle", "movement_status": "parked", "last_update": "2026-03-02 08:14:41"}], "user_time": "2026-03-02 08:15:07"}"#;

fn on(p: &mut NavixyProtocol, clock: &Clock, frame: &str) -> Vec<Output> {
    p.on_text(&clock.ctx(), frame)
}

fn ready(raw: RawEvents) -> (NavixyProtocol, Clock) {
    let clock = Clock::new();
    let mut p = proto_with(raw, false);
    subscribed(&mut p, &clock);
    (p, clock)
}

#[test]
fn state_batch_wrapped_and_bare_with_offset_and_naive_times() {
    let (mut p, clock) = ready(RawEvents::Envelope);
    let out = on(&mut p, &clock, STATE_BATCH_DOC);
    let st = states(&out);
    assert_eq!(st.len(), 2);
    let a = st[0];
    assert_eq!(a.source_id, 90017);
    assert_eq!(a.state_time, utc("2026-03-02T07:15:06Z"), "offset honoured");
    assert_eq!(
        (a.lat, a.lng, a.speed, a.heading),
        (Some(48.2082), Some(16.3738), Some(36.0), Some(94.0))
    );
    assert_eq!(a.connection_status.as_deref(), Some("active"));
    assert_eq!(a.movement_status.as_deref(), Some("moving"));
    assert_eq!(a.received_at, clock.ctx().now);
    assert_eq!(&*a.source, "fleet");
    let payload = json(&a.payload);
    assert_eq!(
        payload["source_id"], 90017,
        "payload is the unwrapped state"
    );
    assert!(payload.get("state").is_none());
    assert_eq!(
        payload["last_update"], "2026-03-02T08:15:06+01:00",
        "raw text kept"
    );
    let b = st[1];
    assert_eq!(b.source_id, 90018);
    // Naive times are Vienna time (UTC+1 in March).
    assert_eq!(b.state_time, utc("2026-03-02T07:14:41Z"));
    assert_eq!(json(&b.payload)["last_update"], "2026-03-02 08:14:41");
    assert_eq!(b.movement_status.as_deref(), Some("parked"));
    // Envelope: the message minus data, with the item count.
    let ev = events(&out);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, "state_batch");
    assert_eq!(ev[0].item_count, Some(2));
    assert_eq!(
        json(&ev[0].payload),
        json(r#"{"type":"event","event":"state_batch","user_time":"2026-03-02 08:15:07"}"#)
    );
    assert!(warnings(&out).is_empty());
}

#[test]
fn raw_events_full_and_off() {
    let (mut p, clock) = ready(RawEvents::Full);
    let out = on(&mut p, &clock, STATE_BATCH_DOC);
    let ev = events(&out);
    assert_eq!(
        (ev.len(), ev[0].payload.as_str(), ev[0].item_count),
        (1, STATE_BATCH_DOC, None)
    );
    assert_eq!(states(&out).len(), 2);

    let (mut p, clock) = ready(RawEvents::Off);
    let out = on(&mut p, &clock, STATE_BATCH_DOC);
    assert!(events(&out).is_empty());
    assert_eq!(states(&out).len(), 2);
    let out = on(
        &mut p,
        &clock,
        r#"{"type":"event","event":"mystery","data":1}"#,
    );
    assert!(events(&out).is_empty());
    assert_eq!(warnings(&out).len(), 1);
}

#[test]
fn state_event_compact_format_and_time_fallbacks() {
    let (mut p, clock) = ready(RawEvents::Envelope);
    // Compact: no last_update, no movement_status; gps.updated with an offset.
    let out = on(
        &mut p,
        &clock,
        r#"{"type":"event","event":"state","data":{"source_id":"77","gps":{"updated":"2026-03-02T09:00:00+02:00","location":{"lat":1.25,"lng":-3.5}},"connection_status":"active"}}"#,
    );
    let st = states(&out);
    assert_eq!(st.len(), 1);
    assert_eq!(st[0].source_id, 77);
    assert_eq!(st[0].state_time, utc("2026-03-02T07:00:00Z"));
    assert_eq!(
        (st[0].lat, st[0].lng, st[0].speed, st[0].heading),
        (Some(1.25), Some(-3.5), None, None)
    );
    assert_eq!(st[0].movement_status, None);
    assert_eq!(events(&out)[0].item_count, Some(1));
    // No time at all: receipt time.
    let out = on(
        &mut p,
        &clock,
        r#"{"type":"event","event":"state","data":{"source_id":78}}"#,
    );
    assert_eq!(states(&out)[0].state_time, clock.ctx().now);
    // Unparseable last_update falls back to gps.updated.
    let out = on(
        &mut p,
        &clock,
        r#"{"type":"event","event":"state","data":{"source_id":79,"last_update":"soon","gps":{"updated":"2026-03-02 08:00:00"}}}"#,
    );
    assert_eq!(states(&out)[0].state_time, utc("2026-03-02T07:00:00Z"));
}

#[test]
fn state_without_source_id_is_kept_whole_and_warned() {
    let (mut p, clock) = ready(RawEvents::Envelope);
    let frame =
        r#"{"type":"event","event":"state_batch","data":[{"source_id":1},{"gps":{"speed":3}}]}"#;
    let out = on(&mut p, &clock, frame);
    assert_eq!(states(&out).len(), 1);
    let ev = events(&out);
    assert_eq!((ev[0].payload.as_str(), ev[0].item_count), (frame, None));
    assert_eq!(warnings(&out).len(), 1);
    assert!(warnings(&out)[0].contains("source_id"));
    // Same problem again: kept again, not warned again.
    let out = on(&mut p, &clock, frame);
    assert_eq!(events(&out)[0].payload, frame);
    assert!(warnings(&out).is_empty());
}

const READINGS: &str = r#"{"type":"event","event":"readings_batch","data":[{"type":"readings_event","tracker_id":501,"timestamp":"2026-03-02 08:10:00",
 "inputs":[{"sensor_id":11,"label":"Fuel tank","name":"fuel_level","type":"fuel","units":"l","units_type":"litre","value":41.5,"update_time":"2026-03-02 08:09:58"}],
 "states":[{"field":"ignition","value":true,"update_time":"2026-03-02T08:09:59+01:00"}],
 "virtual_sensors":[{"sensor_id":12,"label":"Load","type":"virtual","value":"12.5","update_time":"2026-03-02 08:09:57"},{"sensor_id":13,"label":"Door","type":"virtual","value":"open"}],
 "counters":[{"type":"odometer","value":123456.7,"update_time":"2026-03-02 08:09:56"}]}]}"#;

#[test]
fn readings_batch_all_four_lists() {
    let (mut p, clock) = ready(RawEvents::Envelope);
    let out = on(&mut p, &clock, READINGS);
    let r = readings(&out);
    type Row<'a> = (&'a str, &'a str, &'a str, Option<f64>, Option<&'a str>);
    let got: Vec<Row> = r
        .iter()
        .map(|x| {
            (
                x.reading_kind.as_str(),
                x.name.as_str(),
                x.value.as_str(),
                x.value_num,
                x.units.as_deref(),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![
            ("input", "fuel_level", "41.5", Some(41.5), Some("l")),
            ("state", "ignition", "true", None, None),
            ("virtual_sensor", "Load", "\"12.5\"", Some(12.5), None),
            ("virtual_sensor", "Door", "\"open\"", None, None),
            ("counter", "odometer", "123456.7", Some(123456.7), None),
        ]
    );
    assert!(
        r.iter()
            .all(|x| x.tracker_id == 501 && &*x.source == "fleet")
    );
    assert_eq!(r[0].update_time, utc("2026-03-02T07:09:58Z"));
    assert_eq!(r[1].update_time, utc("2026-03-02T07:09:59Z"));
    // No update_time: the item's timestamp.
    assert_eq!(r[3].update_time, utc("2026-03-02T07:10:00Z"));
    assert_eq!(json(&r[0].payload)["label"], "Fuel tank");
    assert_eq!(
        json(&r[4].payload),
        json(r#"{"type":"odometer","value":123456.7,"update_time":"2026-03-02 08:09:56"}"#)
    );
    let ev = events(&out);
    assert_eq!(
        (ev[0].kind.as_str(), ev[0].item_count),
        ("readings_batch", Some(1))
    );
    assert!(states(&out).is_empty());
}

#[test]
fn readings_mislabelled_as_state_batch_are_readings() {
    let (mut p, clock) = ready(RawEvents::Envelope);
    let frame = r#"{"type":"event","event":"state_batch","data":[{"tracker_id":502,"inputs":[{"label":"Temp","value":-4,"units":"°C","update_time":"2026-03-02 08:00:00"}]}]}"#;
    let out = on(&mut p, &clock, frame);
    let r = readings(&out);
    assert_eq!(r.len(), 1);
    assert_eq!(
        (r[0].name.as_str(), r[0].value_num, r[0].units.as_deref()),
        ("Temp", Some(-4.0), Some("°C"))
    );
    assert!(states(&out).is_empty());
    assert_eq!(events(&out)[0].item_count, Some(1));
}

#[test]
fn numeric_string_rule() {
    use super::super::decode::numeric;
    assert_eq!(numeric(&json("3")), Some(3.0));
    assert_eq!(numeric(&json(r#""-1.5e2""#)), Some(-150.0));
    assert_eq!(numeric(&json(r#"" 7 ""#)), Some(7.0));
    for v in [
        r#""NaN""#,
        r#""inf""#,
        r#""12 km""#,
        r#""""#,
        "true",
        "null",
        r#""e""#,
    ] {
        assert_eq!(numeric(&json(v)), None, "{v}");
    }
}

#[test]
fn iot_monitor_is_kept_whole_without_warning() {
    let (mut p, clock) = ready(RawEvents::Envelope);
    let frame = r#"{"type":"event","event":"iot_monitor","data":{"iot_last_values":[{"tracker_id":501,"nonnull_fields":{"speed":[{"value":5,"msg_time":"2026-03-02 08:00:00","srv_time":"2026-03-02 08:00:01"}]},"all_fields":{}}]}}"#;
    let out = on(&mut p, &clock, frame);
    let ev = events(&out);
    assert_eq!(
        (
            ev.len(),
            ev[0].kind.as_str(),
            ev[0].payload.as_str(),
            ev[0].item_count
        ),
        (1, "iot_monitor", frame, None)
    );
    assert!(warnings(&out).is_empty());
    assert_eq!(out.len(), 1);
}

#[test]
fn lifecycle_row_and_whole_event() {
    let (mut p, clock) = ready(RawEvents::Envelope);
    let frame = r#"{"type":"event","event":"lifecycle","data":{"source_id":123,"lifecycle_event":"unblock"}}"#;
    let out = on(&mut p, &clock, frame);
    assert_eq!(events(&out)[0].payload, frame);
    let rows: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Record(Record::TrackerLifecycle(l)) => Some(l),
            _ => None,
        })
        .collect();
    assert_eq!(rows.len(), 1);
    assert_eq!(
        (rows[0].source_id, rows[0].lifecycle_event.as_str()),
        (123, "unblock")
    );
    assert_eq!(rows[0].received_at, clock.ctx().now);
    // Without a source_id: kept, warned, no row.
    let out = on(
        &mut p,
        &clock,
        r#"{"type":"event","event":"lifecycle","data":{"lifecycle_event":"block"}}"#,
    );
    assert_eq!(events(&out).len(), 1);
    assert_eq!(warnings(&out).len(), 1);
}

#[test]
fn logout_kills_the_credential() {
    let (mut p, clock) = ready(RawEvents::Envelope);
    let frame = r#"{"type":"event","event":"logout","data":"session closed"}"#;
    let out = on(&mut p, &clock, frame);
    assert_eq!(events(&out)[0].payload, frame);
    let se = session_events(&out);
    assert_eq!(se[0].event, "notification");
    assert_eq!(se[0].reason.as_deref(), Some("logout: session closed"));
    assert!(credential_dead(&out));
}

#[test]
fn unknown_events_and_frame_types_are_kept_and_warned_once_per_name() {
    let (mut p, clock) = ready(RawEvents::Envelope);
    let a = r#"{"type":"event","event":"geofence","data":{"x":1}}"#;
    let out1 = on(&mut p, &clock, a);
    let out2 = on(&mut p, &clock, a);
    assert_eq!(warnings(&out1).len(), 1);
    assert!(warnings(&out2).is_empty());
    assert_eq!(
        (
            events(&out1)[0].kind.as_str(),
            events(&out1)[0].payload.as_str()
        ),
        ("geofence", a)
    );
    assert_eq!(events(&out2)[0].payload, a);
    let out3 = on(
        &mut p,
        &clock,
        r#"{"type":"event","event":"alarm","data":{}}"#,
    );
    assert_eq!(warnings(&out3).len(), 1);
    let t = r#"{"type":"notice","text":"maintenance"}"#;
    let out4 = on(&mut p, &clock, t);
    let out5 = on(&mut p, &clock, t);
    assert_eq!((warnings(&out4).len(), warnings(&out5).len()), (1, 0));
    assert_eq!(events(&out5)[0].kind, "notice");
    // Still once after a reconnect.
    subscribed(&mut p, &clock);
    assert!(warnings(&on(&mut p, &clock, a)).is_empty());
}

#[test]
fn first_data_event_confirms_a_subscription_without_response() {
    let clock = Clock::new();
    let mut p = proto();
    connected(&mut p, &clock);
    let out = on(&mut p, &clock, STATE_BATCH_DOC);
    assert_eq!(out.iter().filter(|o| **o == Output::Subscribed).count(), 1);
    assert!(!on(&mut p, &clock, STATE_BATCH_DOC).contains(&Output::Subscribed));
    // A logout is no proof of a subscription.
    let mut p = proto();
    connected(&mut p, &clock);
    assert!(
        !on(
            &mut p,
            &clock,
            r#"{"type":"event","event":"logout","data":"session closed"}"#
        )
        .contains(&Output::Subscribed)
    );
}

#[test]
fn a_repeated_data_key_keeps_the_message_whole() {
    for raw in [RawEvents::Envelope, RawEvents::Full] {
        let (mut p, clock) = ready(raw);
        let text = r#"{"type":"event","event":"state_batch","data":[{"source_id":1}],"data":[{"source_id":2}]}"#;
        let out = on(&mut p, &clock, text);
        let ev = events(&out);
        assert_eq!(ev.len(), 1);
        assert_eq!(
            (ev[0].kind.as_str(), ev[0].payload.as_str()),
            ("state_batch", text)
        );
        assert_eq!(ev[0].item_count, None, "kept whole, not as an envelope");
        // Typed rows as a JSON reader takes the message: the last `data`.
        let ids: Vec<i64> = states(&out).iter().map(|s| s.source_id).collect();
        assert_eq!(ids, vec![2]);
        let w = warnings(&out);
        assert_eq!(w.len(), 1);
        assert!(w[0].contains("`data` more than once"), "{}", w[0]);
        // Warned once, kept whole every time.
        let out = on(&mut p, &clock, text);
        assert!(warnings(&out).is_empty());
        assert_eq!(events(&out)[0].payload, text);
    }
    // Any repeated top-level key: the envelope would have hidden the first value.
    let (mut p, clock) = ready(RawEvents::Envelope);
    let text = r#"{"type":"event","event":"state","user_time":"a","data":{"source_id":3},"user_time":"b"}"#;
    let out = on(&mut p, &clock, text);
    assert_eq!(events(&out)[0].payload, text);
    assert_eq!(states(&out).len(), 1);
}
