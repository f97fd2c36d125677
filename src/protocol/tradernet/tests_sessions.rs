//! The `sessions` channel: rows, the opened/ended diff across pushes, connections
//! and restarts, and the `events` envelope.

use super::tests::{Clock, T0, build, cfg, events, proto, warnings};
use super::*;
use crate::config::{RawEvents, TradernetAuth};
use crate::record::{Record, SecuritySession};
use chrono::TimeZone;

const A: &str = r#"{"id": 8812003, "owner_login": "ops@example.com", "user_login": "ops@example.com", "safety_type_id": 4, "key_current": "Login, password", "start_datetime": "2026-03-02T07:55:10.412", "expire_datetime": "2026-03-03T07:55:10.412", "expire": 86012345, "ip": "k2x9w0qz7m1c5v8b3n6a4s0d2f7g9h1", "ip_client": "203.0.113.24"}"#;

fn obj(id: i64, expire: i64) -> String {
    format!(
        r#"{{"id": {id}, "owner_login": "u{id}", "key_current": "Key", "start_datetime": "2026-03-02T07:00:00", "expire": {expire}}}"#
    )
}

fn push(items: &[String]) -> String {
    format!(r#"["sessions", [{}]]"#, items.join(", "))
}

fn changes(out: &[Output]) -> Vec<(i64, String)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Record(Record::SecuritySessionChange(c)) => {
                Some((c.session_id, c.change.clone()))
            }
            _ => None,
        })
        .collect()
}

fn rows(out: &[Output]) -> Vec<SecuritySession> {
    out.iter()
        .filter_map(|o| match o {
            Output::Record(Record::SecuritySession(s)) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

fn subscribed(out: &[Output]) -> usize {
    out.iter().filter(|o| **o == Output::Subscribed).count()
}

fn ts(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

#[test]
fn documented_session_object_maps_to_a_row() {
    let clock = Clock::new();
    let mut p = proto(RawEvents::Envelope);
    p.on_open(&clock.at(0.0));
    let frame = format!(r#"["sessions", [{A}]]"#);
    let out = p.on_text(&clock.at(2.0), &frame);
    assert_eq!(out[0], Output::Subscribed);
    let r = rows(&out);
    assert_eq!(r.len(), 1);
    let now = clock.at(2.0).now;
    let s = &r[0];
    assert_eq!(&*s.source, "broker");
    assert_eq!(s.session_id, 8812003);
    assert_eq!(s.owner_login.as_deref(), Some("ops@example.com"));
    assert_eq!(s.user_login.as_deref(), Some("ops@example.com"));
    assert_eq!(s.safety_type_id, Some(4));
    assert_eq!(s.key_current.as_deref(), Some("Login, password"));
    assert_eq!(s.started_at, Some(ts("2026-03-02T07:55:10.412Z")));
    assert_eq!(
        s.expires_at,
        Some(now + chrono::Duration::milliseconds(86_012_345))
    );
    assert_eq!(s.ip.as_deref(), Some("k2x9w0qz7m1c5v8b3n6a4s0d2f7g9h1"));
    assert_eq!(s.ip_client.as_deref(), Some("203.0.113.24"));
    assert_eq!(
        (s.first_seen_at, s.last_seen_at, s.ended_at),
        (now, now, None)
    );
    let payload: Value = serde_json::from_str(&s.payload).unwrap();
    assert_eq!(payload, serde_json::from_str::<Value>(A).unwrap());
    assert_eq!(changes(&out), vec![(8812003, OPENED.to_string())]);
}

#[test]
fn naive_start_time_is_read_in_the_source_zone() {
    let clock = Clock::new();
    let mut p = build(
        cfg(TradernetAuth::None),
        RawEvents::Envelope,
        chrono_tz::Europe::Vienna,
    );
    let out = p.on_text(&clock.at(0.0), &push(&[obj(1, 1000)]));
    assert_eq!(rows(&out)[0].started_at, Some(ts("2026-03-02T06:00:00Z")));
}

#[test]
fn key_current_accepts_string_or_number() {
    let clock = Clock::new();
    let mut p = proto(RawEvents::Envelope);
    let out = p.on_text(
        &clock.at(0.0),
        r#"["sessions", [{"id": 1, "key_current": 2}, {"id": "2", "key_current": "SMS", "safety_type_id": "3"}, {"id": 3, "key_current": null}]]"#,
    );
    let r = rows(&out);
    assert_eq!(r[0].key_current.as_deref(), Some("2"));
    assert_eq!(
        (r[1].session_id, r[1].key_current.as_deref()),
        (2, Some("SMS"))
    );
    assert_eq!(r[1].safety_type_id, Some(3));
    assert_eq!(r[2].key_current, None);
    assert_eq!(r[2].expires_at, None, "no expire, no expire_datetime");
}

#[test]
fn pushes_are_diffed_into_opened_and_ended() {
    let clock = Clock::new();
    let mut p = proto(RawEvents::Envelope);
    p.on_open(&clock.at(0.0));

    let out = p.on_text(&clock.at(1.0), &push(&[obj(1, 5000), obj(2, 5000)]));
    assert_eq!(subscribed(&out), 1);
    assert_eq!(
        changes(&out),
        vec![(1, "opened".into()), (2, "opened".into())]
    );
    assert_eq!(rows(&out).len(), 2);

    let out = p.on_text(&clock.at(2.0), &push(&[obj(2, 4000), obj(3, 5000)]));
    assert_eq!(subscribed(&out), 0, "Subscribed once per connection");
    assert_eq!(
        changes(&out),
        vec![(3, "opened".into()), (1, "ended".into())]
    );
    let r = rows(&out);
    assert_eq!(r.len(), 3, "2 and 3 upserted, 1 closed");
    let two = r.iter().find(|s| s.session_id == 2).unwrap();
    assert_eq!(
        two.first_seen_at,
        clock.at(1.0).now,
        "first_seen_at is kept"
    );
    assert_eq!(two.last_seen_at, clock.at(2.0).now);
    let one = r.iter().find(|s| s.session_id == 1).unwrap();
    assert_eq!(one.ended_at, Some(clock.at(2.0).now));
    assert_eq!(one.last_seen_at, clock.at(1.0).now, "last known fields");
    assert_eq!(one.owner_login.as_deref(), Some("u1"));

    let out = p.on_text(&clock.at(3.0), r#"["sessions", []]"#);
    assert_eq!(
        changes(&out),
        vec![(2, "ended".into()), (3, "ended".into())]
    );
    assert!(
        rows(&out)
            .iter()
            .all(|s| s.ended_at == Some(clock.at(3.0).now))
    );
    let ev = events(&out);
    assert_eq!(
        (ev[0].payload.as_str(), ev[0].item_count),
        (r#"["sessions",0]"#, Some(0))
    );
    assert!(p.active.ids().is_empty());

    let out = p.on_text(&clock.at(4.0), r#"["sessions", []]"#);
    assert!(changes(&out).is_empty() && rows(&out).is_empty());
    // A session that comes back after ending opens again with a fresh first_seen_at.
    let out = p.on_text(&clock.at(5.0), &push(&[obj(1, 5000)]));
    assert_eq!(changes(&out), vec![(1, "opened".into())]);
    assert_eq!(rows(&out)[0].first_seen_at, clock.at(5.0).now);
}

#[test]
fn expire_alone_changes_nothing_but_the_upsert() {
    let clock = Clock::new();
    let mut p = proto(RawEvents::Envelope);
    p.on_text(&clock.at(0.0), &push(&[obj(7, 10_000)]));
    let out = p.on_text(&clock.at(1.0), &push(&[obj(7, 8_500)]));
    assert!(changes(&out).is_empty());
    let r = rows(&out);
    assert_eq!(r.len(), 1, "re-emitted on every push so last_seen_at moves");
    assert_eq!(r[0].expires_at, Some(clock.at(9.5).now));
    assert_eq!(r[0].last_seen_at, clock.at(1.0).now);
    assert_eq!(r[0].first_seen_at, clock.at(0.0).now);
}

#[test]
fn the_active_set_survives_reconnects() {
    let clock = Clock::new();
    let mut p = proto(RawEvents::Envelope);
    p.on_open(&clock.at(0.0));
    p.on_text(&clock.at(1.0), &push(&[obj(1, 5000), obj(2, 5000)]));
    p.on_open(&clock.at(60.0));
    let out = p.on_text(&clock.at(61.0), &push(&[obj(2, 5000)]));
    assert_eq!(
        subscribed(&out),
        1,
        "the new connection is subscribed again"
    );
    assert_eq!(changes(&out), vec![(1, "ended".into())]);
}

#[test]
fn seeded_sessions_are_diffed_after_a_restart() {
    let clock = Clock::new();
    let seeded_at = Utc.timestamp_opt(T0 - 86_400, 0).unwrap();
    let seed = |id: i64, ended: Option<DateTime<Utc>>| SecuritySession {
        source: "broker".into(),
        session_id: id,
        owner_login: Some(format!("stored{id}")),
        user_login: None,
        safety_type_id: Some(4),
        key_current: Some("Login, password".into()),
        started_at: None,
        expires_at: None,
        ip: None,
        ip_client: None,
        first_seen_at: seeded_at,
        last_seen_at: seeded_at,
        ended_at: ended,
        payload: "{}".into(),
    };
    let mut p = proto(RawEvents::Envelope);
    p.seed_active(vec![
        seed(10, None),
        seed(11, None),
        seed(12, Some(seeded_at)),
    ]);
    assert_eq!(p.active.ids(), vec![10, 11], "ended rows are not active");
    p.on_open(&clock.at(0.0));
    let out = p.on_text(&clock.at(1.0), &push(&[obj(11, 5000), obj(20, 5000)]));
    assert_eq!(
        changes(&out),
        vec![(20, "opened".into()), (10, "ended".into())]
    );
    let r = rows(&out);
    let eleven = r.iter().find(|s| s.session_id == 11).unwrap();
    assert_eq!(
        eleven.first_seen_at, seeded_at,
        "first_seen_at from the database"
    );
    let ten = r.iter().find(|s| s.session_id == 10).unwrap();
    assert_eq!(ten.ended_at, Some(clock.at(1.0).now));
    assert_eq!(ten.owner_login.as_deref(), Some("stored10"));
    assert_eq!(ten.last_seen_at, seeded_at);
}

#[test]
fn events_row_keeps_the_envelope_or_the_whole_frame() {
    let clock = Clock::new();
    let frame = format!(
        r#"["sessions", [{}, {}], {{"seq": 9}}]"#,
        obj(1, 1),
        obj(2, 1)
    );
    let mut p = proto(RawEvents::Envelope);
    let ev = events(&p.on_text(&clock.at(0.0), &frame));
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, "sessions");
    assert_eq!(ev[0].payload, r#"["sessions",2,{"seq":9}]"#);
    assert_eq!(ev[0].item_count, Some(2));

    let mut p = proto(RawEvents::Full);
    let ev = events(&p.on_text(&clock.at(0.0), &frame));
    assert_eq!(
        (ev[0].payload.as_str(), ev[0].item_count),
        (frame.as_str(), Some(2))
    );

    let mut p = proto(RawEvents::Off);
    let out = p.on_text(&clock.at(0.0), &frame);
    assert!(events(&out).is_empty());
    assert_eq!(
        rows(&out).len(),
        2,
        "typed rows do not depend on raw_events"
    );
}

#[test]
fn items_without_an_id_keep_the_frame_whole() {
    let clock = Clock::new();
    let mut p = proto(RawEvents::Envelope);
    let frame = format!(
        r#"["sessions", [{}, {{"owner_login": "x"}}, 5]]"#,
        obj(1, 1)
    );
    let out = p.on_text(&clock.at(0.0), &frame);
    assert_eq!(rows(&out).len(), 1);
    let ev = events(&out);
    assert_eq!(
        (ev[0].payload.as_str(), ev[0].item_count),
        (frame.as_str(), Some(3))
    );
    assert_eq!(warnings(&out).len(), 1);
}

#[test]
fn duplicate_ids_in_one_push_give_one_row() {
    let clock = Clock::new();
    let mut p = proto(RawEvents::Envelope);
    let out = p.on_text(&clock.at(0.0), &push(&[obj(1, 1000), obj(1, 2000)]));
    assert_eq!(changes(&out).len(), 1);
    let r = rows(&out);
    assert_eq!(r.len(), 1);
    assert_eq!(
        r[0].expires_at,
        Some(clock.at(2.0).now),
        "the later object wins"
    );
}

#[test]
fn sessions_data_that_is_not_a_list_changes_nothing() {
    let clock = Clock::new();
    let mut p = proto(RawEvents::Envelope);
    p.on_open(&clock.at(0.0));
    p.on_text(&clock.at(1.0), &push(&[obj(1, 1000)]));
    p.on_open(&clock.at(2.0));
    let frame = r#"["sessions", {"id": 1}]"#;
    let out = p.on_text(&clock.at(3.0), frame);
    assert_eq!(subscribed(&out), 0);
    assert!(changes(&out).is_empty() && rows(&out).is_empty());
    assert_eq!(events(&out)[0].payload, frame);
    assert_eq!(warnings(&out).len(), 1);
    assert_eq!(p.active.ids(), vec![1]);
    assert!(
        p.on_tick(&clock.at(12.5)).is_empty(),
        "it still answered the subscribe"
    );
}

#[test]
fn session_changes_link_to_their_sessions_frame_and_connection() {
    for raw in [RawEvents::Envelope, RawEvents::Full, RawEvents::Off] {
        let clock = Clock::new();
        let mut p = proto(raw);
        let ctx = clock.at(0.0);
        p.on_open(&ctx);
        let out = p.on_text(&clock.at(1.0), &push(&[obj(1, 600_000), obj(2, 600_000)]));
        let event = events(&out).first().map(|e| e.id);
        assert_eq!(event.is_some(), raw != RawEvents::Off, "{raw:?}");
        let links: Vec<(Option<i64>, Option<i64>)> = out
            .iter()
            .filter_map(|o| match o {
                Output::Record(Record::SecuritySessionChange(c)) => {
                    Some((c.event_id, c.connection_id))
                }
                _ => None,
            })
            .collect();
        assert_eq!(links.len(), 2, "{raw:?}");
        assert!(
            links.iter().all(|l| *l == (event, Some(ctx.connection_id))),
            "{raw:?}: {links:?}"
        );
    }
}
