//! Unit tests of the Navixy protocol, driven with literal frames in the shapes of
//! Navixy's public API documentation and a hand-advanced clock.

mod events;
mod links;
mod responses;
mod transport;

use super::*;
use crate::config::RawEvents;
use crate::config::{NavixyRequestType, NavixySubscription, NavixyTarget, SourceKind};
use crate::protocol::text_as_json;
use crate::record::{Event, Record, SessionEvent, TrackerReading, TrackerState};
use std::sync::Arc;
use std::time::Duration;

pub const HASH: &str = "0123456789abcdef0123456789abcdef";
pub const HANDSHAKE: &str = "7f0c2a9e-1b44-4c1e-9d6a-2f3b8c0d5e11|30000|X|";

pub fn timing() -> Timing {
    Timing {
        backoff_initial: Duration::from_millis(500),
        backoff_max: Duration::from_secs(60),
        idle_timeout: Duration::from_secs(150),
        handshake_timeout: Duration::from_secs(15),
        connect_timeout: Duration::from_secs(10),
        stable_after: Duration::from_secs(60),
        ping_interval: Duration::from_secs(30),
        subscribe_timeout: Duration::from_secs(10),
        max_message_bytes: 64 * 1024,
    }
}

pub fn sub(kind: NavixyRequestType, target: NavixyTarget) -> NavixySubscription {
    NavixySubscription {
        kind,
        target,
        rate_limit: None,
        format: None,
        sensor_type: None,
        include_components: None,
    }
}

/// The four requests of the subscribe example in navixy.md.
pub fn doc_subscriptions() -> Vec<NavixySubscription> {
    use NavixyRequestType::*;
    vec![
        NavixySubscription {
            rate_limit: Some("5s".into()),
            format: Some("full".into()),
            ..sub(StateBatch, NavixyTarget::All)
        },
        NavixySubscription {
            rate_limit: Some("5s".into()),
            ..sub(ReadingsBatch, NavixyTarget::Selected(vec![501, 502]))
        },
        NavixySubscription {
            format: Some("compact".into()),
            ..sub(State, NavixyTarget::Selected(vec![501, 502]))
        },
        NavixySubscription {
            rate_limit: Some("5s".into()),
            ..sub(IotMonitor, NavixyTarget::Selected(vec![501]))
        },
    ]
}

pub fn navixy_cfg(auth: NavixyAuth, track_message_size: bool) -> NavixyConfig {
    NavixyConfig {
        auth,
        auth_url: Url::parse("https://api.eu.navixy.com/v2/user/auth").unwrap(),
        subscriptions: doc_subscriptions(),
        track_message_size,
        iso_datetime: false,
        max_logins_per_10min: 3,
        backfill: crate::config::NavixyBackfill {
            enabled: false,
            api_url: Url::parse("https://api.eu.navixy.com/v2").unwrap(),
            rate: 10,
            max_span: std::time::Duration::from_secs(7 * 86_400),
            readings: true,
            delay: std::time::Duration::from_secs(10),
            timeout: std::time::Duration::from_secs(30),
        },
    }
}

pub fn source_cfg(cfg: &NavixyConfig) -> SourceConfig {
    SourceConfig {
        name: "fleet".into(),
        url: Url::parse("wss://api.eu.navixy.com/v2/event/subscription").unwrap(),
        timezone: chrono_tz::Europe::Vienna,
        traffic: false,
        only_if_attached: false,
        ca_file: None,
        timing: timing(),
        kind: SourceKind::Navixy(cfg.clone()),
    }
}

pub fn opts(raw_events: RawEvents) -> CommonOptions {
    CommonOptions {
        raw_events,
        timezone: chrono_tz::Europe::Vienna,
    }
}

/// A protocol with an API key hash, no framing, Vienna time, envelope mode.
pub fn proto_with(raw_events: RawEvents, track_message_size: bool) -> NavixyProtocol {
    let cfg = navixy_cfg(
        NavixyAuth::ApiKeyHash(Secret::new(HASH)),
        track_message_size,
    );
    NavixyProtocol::new(&source_cfg(&cfg), &cfg, opts(raw_events))
}

pub fn proto() -> NavixyProtocol {
    proto_with(RawEvents::Envelope, false)
}

/// A clock the test advances by hand.
pub struct Clock {
    pub t0: Instant,
    pub wall0: DateTime<Utc>,
}

impl Clock {
    pub fn new() -> Self {
        Clock {
            t0: Instant::now(),
            wall0: DateTime::parse_from_rfc3339("2026-03-02T07:20:00Z")
                .unwrap()
                .with_timezone(&Utc),
        }
    }

    /// The context `at` after the start.
    pub fn at(&self, at: Duration) -> Ctx {
        Ctx {
            source: Arc::from("fleet"),
            connection_id: 7,
            now: self.wall0 + chrono::Duration::from_std(at).unwrap(),
            mono: self.t0 + at,
        }
    }

    pub fn ctx(&self) -> Ctx {
        self.at(Duration::ZERO)
    }
}

/// Opens a connection and completes the handshake; returns the handshake outputs.
pub fn connected(p: &mut NavixyProtocol, clock: &Clock) -> Vec<Output> {
    assert!(p.on_open(&clock.ctx()).is_empty());
    p.on_text(&clock.ctx(), HANDSHAKE)
}

/// A connected, subscribed protocol (subscribe answered by a success response).
pub fn subscribed(p: &mut NavixyProtocol, clock: &Clock) {
    connected(p, clock);
    let out = p.on_text(
        &clock.ctx(),
        r#"{"type":"response","action":"subscription/subscribe","events":["state_batch"],"data":{"state_batch":{"success":true,"value":{"501":"normal"}}}}"#,
    );
    assert!(out.contains(&Output::Subscribed));
}

pub fn sends(out: &[Output]) -> Vec<&str> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(s) => Some(s.as_str()),
            _ => None,
        })
        .collect()
}

pub fn warnings(out: &[Output]) -> Vec<&str> {
    out.iter()
        .filter_map(|o| match o {
            Output::Warning(s) => Some(s.as_str()),
            _ => None,
        })
        .collect()
}

pub fn events(out: &[Output]) -> Vec<&Event> {
    out.iter()
        .filter_map(|o| match o {
            Output::Record(Record::Event(e)) => Some(e),
            _ => None,
        })
        .collect()
}

pub fn states(out: &[Output]) -> Vec<&TrackerState> {
    out.iter()
        .filter_map(|o| match o {
            Output::Record(Record::TrackerState(s)) => Some(s),
            _ => None,
        })
        .collect()
}

pub fn readings(out: &[Output]) -> Vec<&TrackerReading> {
    out.iter()
        .filter_map(|o| match o {
            Output::Record(Record::TrackerReading(r)) => Some(r),
            _ => None,
        })
        .collect()
}

pub fn session_events(out: &[Output]) -> Vec<&SessionEvent> {
    out.iter()
        .filter_map(|o| match o {
            Output::Record(Record::SessionEvent(e)) => Some(e),
            _ => None,
        })
        .collect()
}

pub fn credential_dead(out: &[Output]) -> bool {
    out.iter()
        .any(|o| matches!(o, Output::CredentialDead { .. }))
}

pub fn json(text: &str) -> Value {
    serde_json::from_str(text).unwrap()
}

pub fn utc(text: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(text)
        .unwrap()
        .with_timezone(&Utc)
}
