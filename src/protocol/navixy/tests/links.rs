//! Typed rows name the `events` row of the message they came from and the
//! connection, in every raw-events mode and on both decoding paths.

use super::*;

/// A state batch the quick path decodes (two states).
const FAST: &str = r#"{"type":"event","event":"state_batch","data":[{"source_id":1,"last_update":"2026-03-02T07:00:00Z","gps":{"location":{"lat":1.0,"lng":2.0}}},{"source_id":2,"last_update":"2026-03-02T07:00:01Z"}]}"#;
/// The same with a repeated top-level key: the general path keeps it whole.
const GENERAL: &str = r#"{"type":"event","event":"state_batch","event":"state_batch","data":[{"source_id":3,"last_update":"2026-03-02T07:00:00Z"}]}"#;
const LIFECYCLE: &str =
    r#"{"type":"event","event":"lifecycle","data":{"source_id":123,"lifecycle_event":"block"}}"#;

fn ready(raw: RawEvents) -> (NavixyProtocol, Clock) {
    let clock = Clock::new();
    let mut p = proto_with(raw, false);
    subscribed(&mut p, &clock);
    (p, clock)
}

/// (event_id, connection_id) of every typed row in `out`.
fn links(out: &[Output]) -> Vec<(Option<i64>, Option<i64>)> {
    out.iter()
        .filter_map(|o| match o {
            Output::Record(Record::TrackerState(s)) => Some((s.event_id, s.connection_id)),
            Output::Record(Record::TrackerReading(r)) => Some((r.event_id, r.connection_id)),
            Output::Record(Record::TrackerLifecycle(l)) => Some((l.event_id, l.connection_id)),
            _ => None,
        })
        .collect()
}

#[test]
fn typed_rows_carry_their_messages_event_id_and_connection() {
    for raw in [RawEvents::Envelope, RawEvents::Full] {
        for frame in [FAST, GENERAL, LIFECYCLE] {
            let (mut p, clock) = ready(raw);
            let out = p.on_text(&clock.ctx(), frame);
            let ev = events(&out);
            assert_eq!(ev.len(), 1, "{raw:?} {frame}");
            let got = links(&out);
            assert!(!got.is_empty(), "{raw:?} {frame}");
            assert!(
                got.iter().all(|l| *l == (Some(ev[0].id), Some(7))),
                "{raw:?} {frame}: {got:?}"
            );
        }
    }
}

#[test]
fn without_raw_events_rows_keep_the_connection_only() {
    for frame in [FAST, GENERAL, LIFECYCLE] {
        let (mut p, clock) = ready(RawEvents::Off);
        let out = p.on_text(&clock.ctx(), frame);
        assert!(events(&out).is_empty());
        let got = links(&out);
        assert!(!got.is_empty(), "{frame}");
        assert!(
            got.iter().all(|l| *l == (None, Some(7))),
            "{frame}: {got:?}"
        );
    }
}

#[test]
fn each_message_links_to_its_own_event() {
    let (mut p, clock) = ready(RawEvents::Envelope);
    let a = p.on_text(&clock.ctx(), FAST);
    let b = p.on_text(&clock.ctx(), FAST);
    let (ea, eb) = (events(&a)[0].id, events(&b)[0].id);
    assert_ne!(ea, eb);
    assert!(links(&a).iter().all(|l| l.0 == Some(ea)));
    assert!(links(&b).iter().all(|l| l.0 == Some(eb)));
}
