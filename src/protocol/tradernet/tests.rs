//! Connection-level behaviour of the Tradernet protocol: auth in the URL, headers,
//! subscribe, timers, lenient parsing and the non-sessions events. Shared helpers
//! live here for `tests_sessions` too.

use super::*;
use crate::config::{RawEvents, Secret, SourceKind, Timing, TradernetAuth};
use crate::record::{Event, Record};
use chrono::TimeZone;

pub(super) const T0: i64 = 1_772_438_400; // 2026-03-02T08:00:00Z

pub(super) fn timing() -> Timing {
    Timing {
        backoff_initial: Duration::from_millis(500),
        backoff_max: Duration::from_secs(30),
        idle_timeout: Duration::from_secs(60),
        handshake_timeout: Duration::from_secs(10),
        connect_timeout: Duration::from_secs(10),
        stable_after: Duration::from_secs(60),
        ping_interval: Duration::from_secs(20),
        subscribe_timeout: Duration::from_secs(15),
        max_message_bytes: 1 << 20,
    }
}

pub(super) fn cfg(auth: TradernetAuth) -> TradernetConfig {
    TradernetConfig {
        auth,
        subscribe: DEFAULT_SUBSCRIBE.to_string(),
        sessions_timeout: Duration::from_secs(10),
        user_agent: "wsvault/test".to_string(),
    }
}

pub(super) fn build(cfg: TradernetConfig, raw: RawEvents, tz: chrono_tz::Tz) -> TradernetProtocol {
    let source = SourceConfig {
        name: "broker".to_string(),
        url: Url::parse("wss://wss.tradernet.com/").unwrap(),
        timezone: tz,
        traffic: false,
        only_if_attached: false,
        ca_file: None,
        timing: timing(),
        kind: SourceKind::Tradernet(cfg.clone()),
    };
    let opts = CommonOptions {
        raw_events: raw,
        timezone: tz,
    };
    TradernetProtocol::new(&source, &cfg, opts)
}

pub(super) fn proto(raw: RawEvents) -> TradernetProtocol {
    build(
        cfg(TradernetAuth::Sid(Secret::new("sid-abc-123"))),
        raw,
        chrono_tz::Tz::UTC,
    )
}

/// A fixed clock: `at(s)` is `s` seconds after the test's start, in both clocks.
pub(super) struct Clock {
    mono: Instant,
}

impl Clock {
    pub(super) fn new() -> Self {
        Clock {
            mono: Instant::now(),
        }
    }

    pub(super) fn at(&self, secs: f64) -> Ctx {
        let d = Duration::from_secs_f64(secs);
        Ctx {
            source: "broker".into(),
            connection_id: 77,
            now: Utc.timestamp_opt(T0, 0).unwrap() + chrono::Duration::from_std(d).unwrap(),
            mono: self.mono + d,
        }
    }
}

pub(super) fn events(out: &[Output]) -> Vec<Event> {
    out.iter()
        .filter_map(|o| match o {
            Output::Record(Record::Event(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

pub(super) fn warnings(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::Warning(w) => Some(w.clone()),
            _ => None,
        })
        .collect()
}

fn session_events(out: &[Output]) -> Vec<crate::record::SessionEvent> {
    out.iter()
        .filter_map(|o| match o {
            Output::Record(Record::SessionEvent(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

#[test]
fn subscribe_frame_default_and_custom() {
    let clock = Clock::new();
    let mut p = proto(RawEvents::Envelope);
    assert_eq!(
        p.on_open(&clock.at(0.0)),
        vec![Output::Send(r#"["sessions"]"#.into())]
    );

    let mut c = cfg(TradernetAuth::None);
    c.subscribe = r#"["sessions", []]"#.to_string();
    let mut p = build(c.clone(), RawEvents::Envelope, chrono_tz::Tz::UTC);
    assert_eq!(
        p.on_open(&clock.at(0.0)),
        vec![Output::Send(r#"["sessions", []]"#.into())]
    );
    // Re-sent on every open (= every resume).
    assert_eq!(
        p.on_open(&clock.at(9.0)),
        vec![Output::Send(r#"["sessions", []]"#.into())]
    );

    c.subscribe = "  ".to_string();
    let mut p = build(c, RawEvents::Envelope, chrono_tz::Tz::UTC);
    assert_eq!(
        p.on_open(&clock.at(0.0)),
        vec![Output::Send(DEFAULT_SUBSCRIBE.into())]
    );
}

#[test]
fn missing_sessions_frame_warns_exactly_once_per_connection() {
    let clock = Clock::new();
    let mut p = proto(RawEvents::Envelope);
    assert_eq!(
        p.next_deadline(),
        None,
        "nothing is scheduled before the first open"
    );
    p.on_open(&clock.at(0.0));
    assert_eq!(p.next_deadline(), Some(clock.at(10.0).mono));
    assert!(p.on_tick(&clock.at(9.9)).is_empty());

    let out = p.on_tick(&clock.at(10.0));
    let w = warnings(&out);
    assert_eq!(w.len(), 1);
    assert!(
        w[0].contains("no sessions frame within 10s after subscribing"),
        "{w:?}"
    );
    let rows = session_events(&out);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event, "warning");
    assert_eq!(rows[0].connection_id, Some(77));
    assert_eq!(
        rows[0].reason.as_deref(),
        Some("no sessions frame within 10s after subscribing")
    );
    assert!(
        !out.iter().any(|o| matches!(o, Output::Reconnect { .. })),
        "the connection stays"
    );

    for t in [11.0, 19.0, 20.0, 45.0] {
        let out = p.on_tick(&clock.at(t));
        assert!(
            warnings(&out).is_empty() && session_events(&out).is_empty(),
            "t={t}"
        );
    }

    // A new connection gets its own deadline; a timely sessions frame cancels it.
    p.on_open(&clock.at(100.0));
    p.on_text(&clock.at(101.0), r#"["sessions", []]"#);
    assert_eq!(
        p.next_deadline(),
        Some(clock.at(120.0).mono),
        "only the ping remains"
    );
    assert!(warnings(&p.on_tick(&clock.at(150.0))).is_empty());
}

#[test]
fn pings_follow_the_interval_from_the_last_tick() {
    let clock = Clock::new();
    let mut c = cfg(TradernetAuth::None);
    c.sessions_timeout = Duration::ZERO; // disabled: only pings are scheduled
    let mut p = build(c, RawEvents::Envelope, chrono_tz::Tz::UTC);
    p.on_open(&clock.at(0.0));
    assert_eq!(p.next_deadline(), Some(clock.at(20.0).mono));
    assert!(p.on_tick(&clock.at(19.0)).is_empty());
    assert_eq!(p.on_tick(&clock.at(20.0)), vec![Output::Ping]);
    assert_eq!(p.next_deadline(), Some(clock.at(40.0).mono));
    // A late tick sends one ping, not a burst, and the schedule restarts from it.
    assert_eq!(p.on_tick(&clock.at(95.0)), vec![Output::Ping]);
    assert_eq!(p.next_deadline(), Some(clock.at(115.0).mono));
    assert!(p.on_tick(&clock.at(96.0)).is_empty());

    assert!(
        p.on_close(&clock.at(97.0)).is_empty(),
        "no unsubscribe for sessions"
    );
    assert_eq!(p.next_deadline(), None);
    assert!(p.on_tick(&clock.at(200.0)).is_empty());
    // A reopen restarts the schedule.
    p.on_open(&clock.at(300.0));
    assert_eq!(p.next_deadline(), Some(clock.at(320.0).mono));
}

#[test]
fn malformed_frames_are_stored_and_warned_once_each() {
    let clock = Clock::new();
    let mut p = proto(RawEvents::Envelope);
    p.on_open(&clock.at(0.0));
    let cases = [
        ("not json at all", r#""not json at all""#),
        (
            r#"{"event":"sessions","data":[]}"#,
            r#"{"event":"sessions","data":[]}"#,
        ),
        (r#"["sessions"]"#, r#"["sessions"]"#),
        ("[]", "[]"),
        ("[1, 2]", "[1, 2]"),
        ("42", "42"),
    ];
    for (frame, payload) in cases {
        let out = p.on_text(&clock.at(1.0), frame);
        let ev = events(&out);
        assert_eq!(ev.len(), 1, "{frame}");
        assert_eq!(ev[0].kind, "malformed");
        assert_eq!(ev[0].payload, payload);
        assert_eq!(warnings(&out).len(), 1, "{frame}");
        assert!(!out.contains(&Output::Subscribed));
    }
    // Off keeps no events row but still warns.
    let mut p = proto(RawEvents::Off);
    let out = p.on_text(&clock.at(1.0), "garbage");
    assert!(events(&out).is_empty());
    assert_eq!(warnings(&out).len(), 1);
}

#[test]
fn longer_arrays_and_other_channels_are_accepted() {
    let clock = Clock::new();
    let mut p = proto(RawEvents::Envelope);
    p.on_open(&clock.at(0.0));
    let out = p.on_text(
        &clock.at(1.0),
        r#"["q", {"c":"AAPL.US","ltp":187.2}, "extra"]"#,
    );
    let ev = events(&out);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, "q");
    assert_eq!(
        ev[0].payload,
        r#"["q", {"c":"AAPL.US","ltp":187.2}, "extra"]"#
    );
    assert!(
        warnings(&out).is_empty(),
        "documented channels are not surprising"
    );

    let first = p.on_text(&clock.at(2.0), r#"["brandNew", 1]"#);
    assert_eq!(events(&first)[0].kind, "brandNew");
    assert_eq!(warnings(&first).len(), 1);
    let second = p.on_text(&clock.at(3.0), r#"["brandNew", 2]"#);
    assert_eq!(events(&second).len(), 1, "still stored");
    assert!(warnings(&second).is_empty(), "logged once");
}

#[test]
fn demo_user_data_means_a_dead_credential() {
    let clock = Clock::new();
    for frame in [
        r#"["userData", {"login":"demo","isDemo":true}]"#,
        r#"["userData", {"login":"demo","mode":"demo"}]"#,
    ] {
        let mut p = proto(RawEvents::Envelope);
        p.on_open(&clock.at(0.0));
        let out = p.on_text(&clock.at(1.0), frame);
        assert!(out.contains(&Output::CredentialDead {
            reason: "demo userData: SID missing or dead".to_string()
        }));
        let ev = events(&out);
        assert_eq!(
            (ev[0].kind.as_str(), ev[0].payload.as_str()),
            ("userData", frame)
        );
    }
    let mut p = proto(RawEvents::Envelope);
    let frame = r#"["userData", {"login":"ops@example.com","isDemo":false,"mode":"prod"}]"#;
    let out = p.on_text(&clock.at(1.0), frame);
    assert_eq!(out.len(), 1);
    assert_eq!(events(&out)[0].payload, frame);
}

#[test]
fn error_frames_are_stored_whole_and_noted() {
    let clock = Clock::new();
    let mut p = proto(RawEvents::Envelope);
    p.on_open(&clock.at(0.0));
    let frame = r#"["error", "Bad SID sid-abc-123"]"#;
    let out = p.on_text(&clock.at(1.0), frame);
    let ev = events(&out);
    assert_eq!(ev[0].kind, "error");
    assert_eq!(
        ev[0].payload, r#"["error", "Bad SID ***"]"#,
        "an echoed SID is masked"
    );
    let rows = session_events(&out);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event, "notification");
    assert_eq!(
        rows[0].reason.as_deref(),
        Some("error: Bad SID ***"),
        "secrets masked"
    );
    assert!(
        !out.iter()
            .any(|o| matches!(o, Output::CredentialDead { .. }))
    );

    let out = p.on_text(&clock.at(2.0), r#"["error", {"code": 3, "text": "x"}]"#);
    let reason = session_events(&out)[0].reason.clone().unwrap();
    assert_eq!(reason, r#"error: {"code":3,"text":"x"}"#);
}

#[test]
fn protocol_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<TradernetProtocol>();
}
