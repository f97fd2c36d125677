//! Tradernet's WebSocket protocol, security sessions channel: authentication in the
//! connect URL, the subscribe frame, WebSocket ping scheduling, lenient frame parsing,
//! and the opened/ended diff of session pushes (in `sessions.rs`).
//!
//! Pure: no sockets, no tasks, no clock of its own (time comes from [`Ctx`] and the
//! `now` given to [`Protocol::connect_url`]). It must never put a SID, key or
//! signature anywhere but the connect URL, and [`Protocol::secrets`] must name every
//! one of them so the session can redact traffic, stored URLs and logs. A secret the
//! server echoes back (an error quoting the SID) is masked before it is stored.
//!
//! Frames are `[event, data, …]` arrays; any array of length ≥ 2 whose first element
//! is a string is accepted (one SDK reads a third element). Events:
//! - `sessions`: the full list of security sessions (`[]` = none). Every listed
//!   session is upserted on every push (`last_seen_at` and `expires_at` move), new ids
//!   are `opened`, known ids missing are `ended`. The `events` row keeps the envelope
//!   `["sessions", <count>, …]` with `item_count` (or the whole frame with
//!   `raw_events = "full"`, or the whole frame whenever an item could not be stored).
//! - `userData`: stored whole; a demo payload means the SID is missing or dead.
//! - `error`: stored whole and recorded as a `notification` lifecycle row.
//! - anything else (`q`, `b`, `portfolio`, …): stored whole under its own name; a
//!   name outside the documented channels is also logged, once.
//! - anything unreadable (not JSON, not an array, shorter than 2, no string event
//!   name): a `malformed` event (non-JSON text stored as a JSON string) + a warning.
//!
//! A `sessions` frame that does not arrive within `sessions_timeout` after the
//! subscribe gives one warning and one `warning` lifecycle row per connection; the
//! connection stays. Pings are due every `ping_interval` after the last one; the
//! idle deadline (no inbound frame) is the session runtime's.
//!
//! Tradernet has no unsubscribe for sessions, so [`Protocol::on_close`] sends nothing.

mod auth;
#[cfg(test)]
mod fuzz;
mod sessions;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_auth;
#[cfg(test)]
mod tests_sessions;

pub use sessions::{ENDED, OPENED};

use crate::config::{SourceConfig, TradernetConfig};
use crate::protocol::{
    CommonOptions, Ctx, Output, Protocol, event_record, link_message, session_event, text_as_json,
};
use crate::record::SecuritySession;
use crate::redact::Redactor;
use auth::UrlAuth;
use chrono::{DateTime, Utc};
use serde_json::Value;
use sessions::ActiveSet;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use url::Url;

/// The subscribe frame used when the config leaves it empty: the documented form.
/// (The docs also show `["session"]` and one SDK sends `["sessions", []]`.)
pub const DEFAULT_SUBSCRIBE: &str = r#"["sessions"]"#;

/// The User-Agent used when the config leaves it empty. Tradernet's edge answers
/// well-known library agents with HTTP 403, so the product sends its own.
pub const DEFAULT_USER_AGENT: &str = crate::config::USER_AGENT;

/// Reason given with [`Output::CredentialDead`] for a demo `userData` payload.
pub const DEMO_USERDATA_REASON: &str = "demo userData: SID missing or dead";

/// Channels Tradernet documents; other event names are stored too, but logged once.
const KNOWN_EVENTS: &[&str] = &[
    "sessions",
    "userData",
    "error",
    "q",
    "b",
    "portfolio",
    "orders",
    "markets",
];

/// At most this many unknown event names are remembered for "log once"; past it
/// every further unknown name is stored silently rather than growing memory.
const MAX_WARNED_EVENTS: usize = 64;

/// Longest error text copied into a lifecycle row's reason.
const MAX_REASON_CHARS: usize = 300;

/// Tradernet's security-sessions protocol. One value lives for the whole life of a
/// source: the active set survives reconnects so each push is diffed against the
/// last known state, while per-connection state resets in `on_open`.
pub struct TradernetProtocol {
    base_url: Url,
    auth: UrlAuth,
    subscribe: String,
    user_agent: String,
    sessions_timeout: Duration,
    ping_interval: Duration,
    opts: CommonOptions,
    active: ActiveSet,
    warned_events: HashSet<String>,
    // Per connection.
    next_ping: Option<Instant>,
    sessions_deadline: Option<Instant>,
    subscribed: bool,
}

impl TradernetProtocol {
    /// Builds the protocol from validated config. An empty `subscribe` or
    /// `user_agent` falls back to [`DEFAULT_SUBSCRIBE`] / [`DEFAULT_USER_AGENT`]; a
    /// zero `sessions_timeout` disables the missing-sessions warning and a zero
    /// `ping_interval` disables pings.
    pub fn new(source: &SourceConfig, cfg: &TradernetConfig, opts: CommonOptions) -> Self {
        let subscribe = match cfg.subscribe.trim() {
            "" => DEFAULT_SUBSCRIBE.to_string(),
            s => s.to_string(),
        };
        let user_agent = match cfg.user_agent.trim() {
            "" => DEFAULT_USER_AGENT.to_string(),
            s => s.to_string(),
        };
        TradernetProtocol {
            base_url: source.url.clone(),
            auth: UrlAuth::new(cfg.auth.clone()),
            subscribe,
            user_agent,
            sessions_timeout: cfg.sessions_timeout,
            ping_interval: source.timing.ping_interval,
            opts,
            active: ActiveSet::default(),
            warned_events: HashSet::new(),
            next_ping: None,
            sessions_deadline: None,
            subscribed: false,
        }
    }

    /// Seeds the active set with the sessions stored as active (`ended_at IS NULL`),
    /// so the first push after a daemon restart ends those that vanished meanwhile
    /// and keeps `first_seen_at` of those still there. Call before the first
    /// `on_open`; rows with `ended_at` set are ignored.
    pub fn seed_active(&mut self, sessions: Vec<SecuritySession>) {
        self.active.seed(sessions);
    }

    /// `text` with every known secret masked: the server may echo a SID or key back
    /// (in an error, say), and `events` must never store one.
    fn scrub(&self, text: String) -> String {
        let secrets = self.secrets();
        if secrets.iter().any(|s| text.contains(s.as_str())) {
            Redactor::new(secrets).redact(&text)
        } else {
            text
        }
    }

    fn record(
        &self,
        out: &mut Vec<Output>,
        ctx: &Ctx,
        kind: &str,
        payload: String,
        n: Option<i64>,
    ) {
        if self.opts.raw_events == crate::config::RawEvents::Off {
            return;
        }
        if let Some(r) = event_record(ctx, &self.opts, kind, self.scrub(payload), n) {
            out.push(Output::Record(r));
        }
    }

    fn malformed(&self, ctx: &Ctx, text: &str, is_json: bool, why: &str) -> Vec<Output> {
        let payload = if is_json {
            text.to_string()
        } else {
            text_as_json(text)
        };
        let mut out = Vec::with_capacity(2);
        self.record(&mut out, ctx, "malformed", payload, None);
        out.push(Output::Warning(format!(
            "tradernet: malformed frame ({} bytes): {why}; kept as a malformed event",
            text.len()
        )));
        out
    }

    fn on_sessions(&mut self, ctx: &Ctx, text: &str, frame: &[Value]) -> Vec<Output> {
        // Any `sessions` frame answers the subscribe, even one we cannot read.
        self.sessions_deadline = None;
        let mut out = Vec::new();
        let Some(items) = frame.get(1).and_then(Value::as_array) else {
            self.record(&mut out, ctx, "sessions", text.to_string(), None);
            out.push(Output::Warning(
                "tradernet: sessions frame whose data is not a list; kept raw, active set unchanged"
                    .to_string(),
            ));
            return out;
        };
        if !self.subscribed {
            self.subscribed = true;
            out.push(Output::Subscribed);
        }
        let outcome = self.active.apply(ctx, self.opts.timezone, items);
        let count = Some(items.len() as i64);
        if outcome.unusable > 0 {
            self.record(&mut out, ctx, "sessions", text.to_string(), count);
            out.push(Output::Warning(format!(
                "tradernet: {} of {} session objects lack a usable id; frame kept whole",
                outcome.unusable,
                items.len()
            )));
        } else if self.opts.raw_events == crate::config::RawEvents::Full {
            self.record(&mut out, ctx, "sessions", text.to_string(), count);
        } else {
            let envelope: Vec<Value> = frame
                .iter()
                .enumerate()
                .map(|(i, v)| {
                    if i == 1 {
                        Value::from(items.len())
                    } else {
                        v.clone()
                    }
                })
                .collect();
            self.record(
                &mut out,
                ctx,
                "sessions",
                Value::Array(envelope).to_string(),
                count,
            );
        }
        out.extend(outcome.records.into_iter().map(Output::Record));
        link_message(ctx, &mut out);
        out
    }

    fn on_error(&self, ctx: &Ctx, text: &str, data: &Value) -> Vec<Output> {
        let mut out = Vec::with_capacity(2);
        self.record(&mut out, ctx, "error", text.to_string(), None);
        let described = match data {
            Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        let described = self.scrub(described);
        let reason = format!("error: {}", truncate(&described, MAX_REASON_CHARS));
        out.push(Output::Record(session_event(
            ctx,
            "notification",
            None,
            Some(reason),
            None,
        )));
        out
    }

    fn on_other(&mut self, ctx: &Ctx, text: &str, event: &str) -> Vec<Output> {
        let mut out = Vec::with_capacity(2);
        self.record(&mut out, ctx, event, text.to_string(), None);
        if !KNOWN_EVENTS.contains(&event)
            && self.warned_events.len() < MAX_WARNED_EVENTS
            && self.warned_events.insert(event.to_string())
        {
            out.push(Output::Warning(format!(
                "tradernet: unexpected event {:?}; stored raw (logged once)",
                truncate(event, 64)
            )));
        }
        out
    }
}

impl Protocol for TradernetProtocol {
    fn connect_url(&self, now: DateTime<Utc>) -> Url {
        let mut url = self.base_url.clone();
        self.auth.apply(&mut url, now);
        url
    }

    fn connect_headers(&self) -> Vec<(String, String)> {
        vec![("User-Agent".to_string(), self.user_agent.clone())]
    }

    fn on_open(&mut self, ctx: &Ctx) -> Vec<Output> {
        self.subscribed = false;
        self.next_ping = (!self.ping_interval.is_zero()).then(|| ctx.mono + self.ping_interval);
        self.sessions_deadline =
            (!self.sessions_timeout.is_zero()).then(|| ctx.mono + self.sessions_timeout);
        vec![Output::Send(self.subscribe.clone())]
    }

    fn on_text(&mut self, ctx: &Ctx, text: &str) -> Vec<Output> {
        let parsed: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => return self.malformed(ctx, text, false, "not JSON"),
        };
        let Value::Array(frame) = parsed else {
            return self.malformed(ctx, text, true, "not a JSON array");
        };
        if frame.len() < 2 {
            return self.malformed(ctx, text, true, "array shorter than [event, data]");
        }
        let Some(event) = frame[0].as_str() else {
            return self.malformed(ctx, text, true, "event name is not a string");
        };
        match event {
            "sessions" => self.on_sessions(ctx, text, &frame),
            "userData" => {
                let mut out = Vec::with_capacity(2);
                self.record(&mut out, ctx, "userData", text.to_string(), None);
                if is_demo(&frame[1]) {
                    out.push(Output::CredentialDead {
                        reason: DEMO_USERDATA_REASON.to_string(),
                    });
                }
                out
            }
            "error" => self.on_error(ctx, text, &frame[1]),
            other => {
                let other = other.to_string();
                self.on_other(ctx, text, &other)
            }
        }
    }

    fn on_tick(&mut self, ctx: &Ctx) -> Vec<Output> {
        let mut out = Vec::new();
        if let Some(deadline) = self.sessions_deadline
            && ctx.mono >= deadline
        {
            self.sessions_deadline = None;
            let msg = format!(
                "no sessions frame within {} after subscribing",
                humantime::format_duration(self.sessions_timeout)
            );
            out.push(Output::Warning(format!("tradernet: {msg}")));
            out.push(Output::Record(session_event(
                ctx,
                "warning",
                None,
                Some(msg),
                None,
            )));
        }
        out.extend(self.keepalive(ctx));
        out
    }

    fn keepalive(&mut self, ctx: &Ctx) -> Vec<Output> {
        match self.next_ping {
            Some(due) if ctx.mono >= due => {
                // From the actual tick, so a late tick never causes a burst of pings.
                self.next_ping = Some(ctx.mono + self.ping_interval);
                vec![Output::Ping]
            }
            _ => Vec::new(),
        }
    }

    fn next_keepalive(&self) -> Option<Instant> {
        self.next_ping
    }

    fn postpone(&mut self, by: Duration) {
        if let Some(d) = self.sessions_deadline.as_mut() {
            *d += by;
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        match (self.next_ping, self.sessions_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn on_close(&mut self, _ctx: &Ctx) -> Vec<Output> {
        // No unsubscribe exists for sessions; just stop this connection's schedule.
        self.next_ping = None;
        self.sessions_deadline = None;
        Vec::new()
    }

    fn secrets(&self) -> Vec<String> {
        self.auth.secrets()
    }
}

/// A `userData` payload of the demo account: what Tradernet sends when the SID is
/// missing or dead. Lenient about how `isDemo` is spelled.
fn is_demo(data: &Value) -> bool {
    let demo_flag = match data.get("isDemo") {
        Some(Value::Bool(b)) => *b,
        Some(Value::Number(n)) => n.as_i64() == Some(1),
        Some(Value::String(s)) => s.eq_ignore_ascii_case("true") || s == "1",
        _ => false,
    };
    let demo_mode = data
        .get("mode")
        .and_then(Value::as_str)
        .is_some_and(|m| m.eq_ignore_ascii_case("demo"));
    demo_flag || demo_mode
}

/// At most `max` characters of `s`, cut on a character boundary.
fn truncate(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((i, _)) => &s[..i],
        None => s,
    }
}
