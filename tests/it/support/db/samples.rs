//! Sample records for tests: one of every variant, and small generators with
//! microsecond-precision times (what both backends store exactly).

use chrono::{DateTime, TimeZone, Utc};
use std::sync::Arc;
use wsvault::record::*;

/// A UTC time `secs` after 2024-05-01T00:00:00Z plus `micros` microseconds.
pub fn at(secs: i64, micros: i64) -> DateTime<Utc> {
    Utc.with_ymd_and_hms(2024, 5, 1, 0, 0, 0).unwrap()
        + chrono::Duration::seconds(secs)
        + chrono::Duration::microseconds(micros)
}

/// A small `events` record with a fresh id.
pub fn event(source: &str, n: i64) -> Record {
    Record::Event(Event {
        id: next_id_(),
        source: Arc::from(source),
        connection_id: Some(7),
        received_at: at(n, n % 1_000_000),
        kind: "state_batch".into(),
        payload: format!(r#"{{"n":{n}}}"#),
        item_count: Some(1),
    })
}

fn next_id_() -> i64 {
    wsvault::ids::next_id()
}

/// A `tracker_states` record, unique per (`source_id`, `n`).
pub fn tracker_state(source: &str, source_id: i64, n: i64) -> Record {
    Record::TrackerState(TrackerState {
        source: Arc::from(source),
        source_id,
        state_time: at(n, 123_456),
        received_at: at(n + 1, 654_321),
        lat: Some(52.5 + n as f64 * 1e-6),
        lng: Some(13.4),
        speed: Some(42.0),
        heading: None,
        connection_status: Some("active".into()),
        movement_status: Some("moving".into()),
        payload: format!(r#"{{"gps":{{"lat":52.5}},"n":{n},"source_id":{source_id}}}"#),
        origin: wsvault::record::Origin::Live,
        event_id: None,
        connection_id: None,
    })
}

/// A `tracker_readings` record.
pub fn tracker_reading(source: &str, kind: &str, n: i64) -> Record {
    Record::TrackerReading(TrackerReading {
        source: Arc::from(source),
        tracker_id: 10,
        reading_kind: kind.into(),
        name: "fuel".into(),
        value: format!("{}.5", n),
        value_num: Some(n as f64 + 0.5),
        units: Some("l".into()),
        update_time: at(n, 1),
        received_at: at(n, 2),
        payload: format!(r#"{{"label":"fuel","value":{n}.5}}"#),
        origin: wsvault::record::Origin::Live,
        event_id: None,
        connection_id: None,
    })
}

/// A `security_sessions` record.
pub fn security_session(source: &str, id: i64, last_seen: i64, ended: Option<i64>) -> Record {
    Record::SecuritySession(SecuritySession {
        source: Arc::from(source),
        session_id: id,
        owner_login: Some("owner".into()),
        user_login: Some("user".into()),
        safety_type_id: Some(3),
        key_current: Some("k1".into()),
        started_at: Some(at(0, 5)),
        expires_at: Some(at(86_400, 5)),
        ip: Some("10.0.0.1".into()),
        ip_client: None,
        first_seen_at: at(last_seen, 0),
        last_seen_at: at(last_seen, 0),
        ended_at: ended.map(|e| at(e, 0)),
        payload: format!(r#"{{"id":{id},"seen":{last_seen}}}"#),
    })
}

/// One record of every variant, all for `source`, with microsecond times.
pub fn one_of_each(source: &str) -> Vec<Record> {
    let s: SourceName = Arc::from(source);
    vec![
        Record::Connection(Connection {
            id: next_id_(),
            source: s.clone(),
            url: "wss://example/x?hash=***".into(),
            opened_at: at(1, 111_111),
            closed_at: Some(at(9, 999_999)),
            close_code: Some(1006),
            close_reason: Some("gone".into()),
        }),
        Record::SessionEvent(SessionEvent {
            id: next_id_(),
            source: s.clone(),
            connection_id: Some(1),
            occurred_at: at(2, 222_222),
            event: "suspended".into(),
            initiator: Some("network".into()),
            code: Some(1006),
            reason: Some("eof".into()),
            detail: Some(r#"{"attempt":1}"#.into()),
        }),
        event(source, 3),
        tracker_state(source, 77, 4),
        tracker_reading(source, "counter", 5),
        Record::TrackerLifecycle(TrackerLifecycle {
            id: next_id_(),
            source: s.clone(),
            source_id: 77,
            lifecycle_event: "block".into(),
            received_at: at(6, 666_666),
            event_id: None,
            connection_id: None,
        }),
        security_session(source, 5001, 7, None),
        Record::SecuritySessionChange(SecuritySessionChange {
            source: s.clone(),
            session_id: 5001,
            change: "opened".into(),
            observed_at: at(8, 888_888),
            event_id: None,
            connection_id: None,
        }),
        Record::Notification(Notification {
            id: next_id_(),
            source: s.clone(),
            connection_id: Some(1),
            seq: 1,
            received_at: at(9, 1),
            method: "OnChange".into(),
            params: r#"{"handle":[1,2]}"#.into(),
        }),
        Record::Traffic(Traffic {
            id: next_id_(),
            source: s.clone(),
            connection_id: Some(1),
            at: at(10, 10),
            direction: SENT.into(),
            payload: "X".into(),
        }),
        Record::Rejected(Rejected {
            id: next_id_(),
            source: s,
            kind: "events".into(),
            received_at: at(11, 11),
            error: "refused".into(),
            payload: "not json {".into(),
        }),
    ]
}
