//! Pure protocol state machines: inbound text and the clock in, outbound frames and
//! records out.
//!
//! Nothing in `protocol/` opens a socket, touches the database, spawns a task or
//! sleeps; the session runtime (`session/`) does all I/O and calls into a
//! [`Protocol`]. That split lets every wire quirk be unit-tested with literal frames
//! and keeps the transport identical for every source.

pub mod atmosphere;
#[cfg(test)]
pub(crate) mod fuzz_support;
pub mod jsonrpc;
pub mod navixy;
pub mod time;
pub mod tradernet;

use crate::config::RawEvents;
use crate::record::{Record, SourceName};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use std::time::{Duration, Instant};

/// What a protocol call may read about "now" and the connection it runs on.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub source: SourceName,
    /// The `connections.id` of the current socket.
    pub connection_id: i64,
    /// Wall-clock time of the call: the `received_at` of whatever it emits.
    pub now: DateTime<Utc>,
    /// Monotonic time of the call, for schedules (heartbeats, timeouts).
    pub mono: Instant,
}

/// Settings every protocol shares.
#[derive(Debug, Clone)]
pub struct CommonOptions {
    pub raw_events: RawEvents,
    /// Zone for naive upstream timestamps.
    pub timezone: Tz,
}

/// One thing the session runtime must do on the protocol's behalf.
///
/// `Record` dominates the size; boxing it would cost an allocation per record on the
/// hot path to shrink a value that lives only inside a short `Vec`.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq)]
pub enum Output {
    /// Send this text frame.
    Send(String),
    /// Send a WebSocket Ping (protocols without an application-level heartbeat).
    Ping,
    /// Hand this record to the writer.
    Record(Record),
    /// The subscription is confirmed: the session becomes `Subscribed`.
    Subscribed,
    /// The credential is dead (Navixy `logout`, error 3/4; Tradernet demo userData).
    /// The session records `auth_failed`, drops the connection, and re-authenticates
    /// if it can (login configured, rate limit permitting) or backs off to the cap.
    CredentialDead { reason: String },
    /// The connection is unusable (e.g. no handshake in time): drop it and resume
    /// with backoff, recorded as a network suspension with this reason.
    Reconnect { reason: String },
    /// Worth one log line at warn level (already recorded where it belongs).
    Warning(String),
}

/// A pure protocol driven by the session runtime. One value lives for the whole life
/// of a source, across reconnects; `on_open` starts each connection afresh.
pub trait Protocol: Send + Sync {
    /// The URL to connect to, credentials included. Called before every connect (a
    /// signature may depend on the time).
    fn connect_url(&self, now: DateTime<Utc>) -> url::Url;

    /// Hands the protocol a credential the session obtained out of band (the Navixy
    /// session hash from `user/auth`). Protocols configured with a static credential
    /// ignore it.
    fn set_credential(&mut self, _credential: crate::config::Secret) {}

    /// Extra HTTP headers for the upgrade request (values may be secrets).
    fn connect_headers(&self) -> Vec<(String, String)> {
        Vec::new()
    }

    /// Bytes a WebSocket message may carry beyond `max_message_bytes`, where the
    /// protocol frames its messages inside WebSocket messages and enforces the exact
    /// limit itself (Atmosphere's `length|message`). Default: none, the WebSocket
    /// message is the upstream message.
    fn frame_overhead(&self) -> usize {
        0
    }

    /// Response headers in which this upstream explains a refused upgrade; quoted
    /// in the `socket_error` row so the operator sees the server's reason.
    fn refusal_headers(&self) -> &'static [&'static str] {
        &[]
    }

    /// Called once the WebSocket is open. Per-connection state resets here.
    fn on_open(&mut self, ctx: &Ctx) -> Vec<Output>;

    /// Called for every inbound text frame (binary frames are passed as lossy UTF-8).
    fn on_text(&mut self, ctx: &Ctx, text: &str) -> Vec<Output>;

    /// Called at (or soon after) [`Protocol::next_deadline`], and after every frame.
    fn on_tick(&mut self, ctx: &Ctx) -> Vec<Output>;

    /// When `on_tick` next needs to run (heartbeat due, handshake deadline…).
    fn next_deadline(&self) -> Option<Instant>;

    /// Keep-alive frames (heartbeats, pings) due by `ctx`. Called *instead of*
    /// [`Protocol::on_tick`] while the session has stopped reading the socket
    /// because the writer's queue is full: the upstream must keep seeing a live
    /// client through a database stall, but deadlines that wait for the server
    /// cannot be judged while its frames sit unread. Default: none.
    fn keepalive(&mut self, _ctx: &Ctx) -> Vec<Output> {
        Vec::new()
    }

    /// When [`Protocol::keepalive`] next has something to send.
    fn next_keepalive(&self) -> Option<Instant> {
        None
    }

    /// Moves every deadline that waits for the server `by` later, after the session
    /// spent that long not reading (see [`Protocol::keepalive`]): the server's answer
    /// may be among the unread frames. Default: no such deadlines.
    fn postpone(&mut self, _by: Duration) {}

    /// Frames to send before a deliberate close (unsubscribe).
    fn on_close(&mut self, ctx: &Ctx) -> Vec<Output>;

    /// Every secret this protocol may put on the wire, for redaction of traffic,
    /// stored URLs and logs.
    fn secrets(&self) -> Vec<String>;
}

/// Builds the `events` row for an inbound message; shared so every protocol applies
/// `raw_events` the same way.
pub fn event_record(
    ctx: &Ctx,
    opts: &CommonOptions,
    kind: &str,
    payload: String,
    item_count: Option<i64>,
) -> Option<Record> {
    if opts.raw_events == RawEvents::Off {
        return None;
    }
    Some(Record::Event(crate::record::Event {
        id: crate::ids::next_id(),
        source: ctx.source.clone(),
        connection_id: Some(ctx.connection_id),
        received_at: ctx.now,
        kind: kind.to_string(),
        payload,
        item_count,
    }))
}

/// Links the typed rows among `outputs` (everything one inbound message produced)
/// to that message's `events` row, if `raw_events` kept one, and to the connection:
/// the ids exist before anything is written, so "the raw message behind a typed row"
/// is one join on `event_id` instead of a guess by source and time.
pub fn link_message(ctx: &Ctx, outputs: &mut [Output]) {
    let event_id = outputs.iter().find_map(|o| match o {
        Output::Record(Record::Event(e)) => Some(e.id),
        _ => None,
    });
    for o in outputs {
        if let Output::Record(r) = o {
            r.link_to(event_id, Some(ctx.connection_id));
        }
    }
}

/// Builds a `session_events` row emitted by a protocol (subscribe_status,
/// subscribe_error, …).
pub fn session_event(
    ctx: &Ctx,
    event: &str,
    code: Option<i64>,
    reason: Option<String>,
    detail: Option<String>,
) -> Record {
    Record::SessionEvent(crate::record::SessionEvent {
        id: crate::ids::next_id(),
        source: ctx.source.clone(),
        connection_id: Some(ctx.connection_id),
        occurred_at: ctx.now,
        event: event.to_string(),
        initiator: None,
        code,
        reason,
        detail,
    })
}

/// A frame that is not JSON, stored as a JSON string so the `events.payload` column
/// can stay typed JSON on both backends.
pub fn text_as_json(text: &str) -> String {
    serde_json::Value::String(text.to_string()).to_string()
}
