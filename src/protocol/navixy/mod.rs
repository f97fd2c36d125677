//! The Navixy event subscription as a pure [`Protocol`]: Atmosphere transport
//! ([`super::atmosphere`]), subscribe after the handshake, decode responses, errors
//! and events into records.
//!
//! Owns the per-connection state machine (awaiting handshake → subscribe sent →
//! subscribed) and the mapping of every inbound message to `events` and typed rows
//! (ARCHITECTURE.md §4). It never opens a socket, never logs in (the session obtains
//! a session hash and hands it over with [`Protocol::set_credential`]), never sleeps
//! and never puts the hash anywhere but the subscribe/unsubscribe frames it returns.
//!
//! Choices worth knowing:
//! - No hash yet (login configured, not performed) when the handshake arrives:
//!   nothing is sent and [`Output::CredentialDead`] asks the session to log in, the
//!   same path as an expired hash.
//! - [`Output::Subscribed`] comes from the first successful `response`, or from the
//!   first data event (events flowing prove the subscription) if a server skips the
//!   response; at most once per connection.
//! - Warnings for unknown event names, unknown frame types and untypable items are
//!   emitted once per distinct name/kind for the life of the source; every
//!   occurrence is still kept whole in `events`.

pub mod decode;
mod fast;
mod messages;
pub mod subscribe;

use super::atmosphere::{self, Broken, Deframed, Framer, Handshake, Heartbeat, Piece, Reassembler};
use super::{CommonOptions, Ctx, Output, Protocol, event_record, session_event, text_as_json};
use crate::config::{NavixyAuth, NavixyConfig, Secret, SourceConfig, Timing};
use chrono::{DateTime, Utc};
use serde_json::Value;
use std::collections::HashSet;
use std::time::{Duration, Instant};
use url::Url;

/// Distinct names remembered for warn-once; beyond this (a misbehaving server
/// inventing names) further new names are no longer warned about.
const MAX_WARNED: usize = 1024;

/// Inbound text after the handshake: framed or not, per config.
#[derive(Debug)]
enum Stream {
    Framed(Framer),
    Unframed(Reassembler),
}

/// Everything that lives and dies with one WebSocket connection.
#[derive(Debug)]
struct Conn {
    handshake_deadline: Option<Instant>,
    handshake: Option<Handshake>,
    heartbeat: Option<Heartbeat>,
    stream: Stream,
    subscribe_sent: bool,
    subscribe_deadline: Option<Instant>,
    subscribed: bool,
    /// A frame before the handshake was already warned about on this connection:
    /// a server that skips the handshake sends every frame that way, and one log
    /// line per frame would drown the log (each frame is still kept in `events`).
    warned_pre_handshake: bool,
}

impl Conn {
    fn new(track_message_size: bool, max_message_bytes: usize) -> Self {
        Conn {
            handshake_deadline: None,
            handshake: None,
            heartbeat: None,
            stream: if track_message_size {
                Stream::Framed(Framer::new(max_message_bytes))
            } else {
                Stream::Unframed(Reassembler::new(max_message_bytes))
            },
            subscribe_sent: false,
            subscribe_deadline: None,
            subscribed: false,
            warned_pre_handshake: false,
        }
    }
}

/// One Navixy source's protocol state, alive across reconnects.
#[derive(Debug)]
pub struct NavixyProtocol {
    base_url: Url,
    cfg: NavixyConfig,
    opts: CommonOptions,
    timing: Timing,
    /// The hash sent in `subscribe`: the API key hash, or the session hash once set.
    hash: Option<Secret>,
    /// The hash replaced by the last `set_credential`, still redacted from output.
    previous_hash: Option<Secret>,
    conn: Conn,
    warned: HashSet<String>,
}

impl NavixyProtocol {
    /// Builds the protocol for one `[[sources]]` entry of kind `navixy`. With
    /// [`NavixyAuth::ApiKeyHash`] it is ready to subscribe; with
    /// [`NavixyAuth::Login`] the session must call [`Protocol::set_credential`] with
    /// the session hash before connecting.
    pub fn new(source: &SourceConfig, cfg: &NavixyConfig, opts: CommonOptions) -> NavixyProtocol {
        let hash = match &cfg.auth {
            NavixyAuth::ApiKeyHash(h) => Some(h.clone()),
            NavixyAuth::Login { .. } => None,
        };
        NavixyProtocol {
            base_url: source.url.clone(),
            cfg: cfg.clone(),
            opts,
            timing: source.timing,
            hash,
            previous_hash: None,
            conn: Conn::new(cfg.track_message_size, source.timing.max_message_bytes),
            warned: HashSet::new(),
        }
    }

    /// The Atmosphere tracking id of the current connection, once the handshake
    /// arrived (for the optional `X-Atmosphere-Transport=close` HTTP call).
    pub fn tracking_id(&self) -> Option<&str> {
        self.conn.handshake.as_ref().map(|h| h.tracking_id.as_str())
    }

    /// True once this connection's subscription was confirmed.
    pub fn is_subscribed(&self) -> bool {
        self.conn.subscribed
    }

    fn subscribe(&mut self, ctx: &Ctx, out: &mut Vec<Output>) {
        let Some(hash) = &self.hash else {
            out.push(Output::CredentialDead {
                reason: "navixy: no session hash to subscribe with; log in (user/auth) \
                         before connecting"
                    .into(),
            });
            return;
        };
        let msg = subscribe::request_message("subscribe", hash.expose(), &self.cfg);
        out.push(Output::Send(msg));
        self.conn.subscribe_sent = true;
        self.conn.subscribe_deadline = Some(ctx.mono + self.timing.subscribe_timeout);
    }

    fn mark_subscribed(&mut self, out: &mut Vec<Output>) {
        self.conn.subscribe_deadline = None;
        if self.conn.subscribe_sent && !self.conn.subscribed {
            self.conn.subscribed = true;
            out.push(Output::Subscribed);
        }
    }

    fn on_handshake(&mut self, ctx: &Ctx, mut h: Handshake, out: &mut Vec<Output>) {
        self.conn.handshake_deadline = None;
        self.conn.heartbeat = Some(Heartbeat::start(h.interval, &h.padding, ctx.mono));
        let remainder = std::mem::take(&mut h.remainder);
        self.conn.handshake = Some(h);
        self.subscribe(ctx, out);
        if !remainder.is_empty() {
            self.feed(ctx, &remainder, out);
        }
    }

    /// Post-handshake transport: heartbeats, framing or reassembly, then messages.
    fn feed(&mut self, ctx: &Ctx, frame: &str, out: &mut Vec<Output>) {
        let padding = self
            .conn
            .handshake
            .as_ref()
            .map(|h| h.padding.as_str())
            .unwrap_or("X");
        let (pieces, error): (Vec<Piece>, Option<String>) = match &mut self.conn.stream {
            Stream::Framed(f) => {
                let Deframed { messages, broken } = f.push(frame);
                let messages: Vec<String> = messages
                    .into_iter()
                    .filter(|m| !atmosphere::is_heartbeat(m, padding))
                    .collect();
                for m in messages {
                    self.message(ctx, &m, out);
                }
                let Some(Broken { error, unread }) = broken else {
                    return;
                };
                // Whatever the framer could not read is kept, not dropped: there is
                // no boundary to find in it any more.
                if unread.is_empty() {
                    (Vec::new(), Some(error.to_string()))
                } else {
                    let row =
                        event_record(ctx, &self.opts, "malformed", text_as_json(&unread), None);
                    let fate = if row.is_some() {
                        "are kept as kind \"malformed\" in events"
                    } else {
                        "are not stored (raw_events = \"off\")"
                    };
                    out.extend(row.map(Output::Record));
                    let error =
                        format!("{error}; the {} bytes it left unread {fate}", unread.len());
                    (Vec::new(), Some(error))
                }
            }
            Stream::Unframed(r) => {
                // Mid-message only the exact padding is a heartbeat: whitespace may
                // be part of the split message.
                let beat = if r.is_mid_message() {
                    frame == padding
                } else {
                    atmosphere::is_heartbeat(frame, padding)
                };
                if beat {
                    return;
                }
                match r.push(frame) {
                    Ok(pieces) => (pieces, None),
                    Err(mut e) => (std::mem::take(&mut e.before), Some(e.to_string())),
                }
            }
        };
        for p in pieces {
            match p {
                Piece::Message { text } => self.message(ctx, &text, out),
                Piece::Malformed { text, error } => self.malformed(ctx, &text, &error, out),
            }
        }
        if let Some(e) = error {
            out.push(Output::Warning(format!("navixy: {e}")));
            out.push(Output::Reconnect { reason: e });
        }
    }
}

impl NavixyProtocol {
    /// One whole message: the quick path for data events, else parsed and dispatched.
    fn message(&mut self, ctx: &Ctx, text: &str, out: &mut Vec<Output>) {
        let envelope = self.opts.raw_events == crate::config::RawEvents::Envelope;
        if let Some(d) = fast::decode(ctx, self.opts.timezone, text, envelope) {
            self.on_data_event(ctx, text, d, out);
            return;
        }
        match serde_json::from_str(text) {
            Ok(value) => self.dispatch(ctx, text, value, out),
            Err(e) => self.malformed(ctx, text, &e.to_string(), out),
        }
    }
}

impl Protocol for NavixyProtocol {
    /// The configured URL plus the Atmosphere parameters; the hash never goes here.
    fn connect_url(&self, _now: DateTime<Utc>) -> Url {
        atmosphere::connect_url(&self.base_url, self.cfg.track_message_size)
    }

    fn frame_overhead(&self) -> usize {
        atmosphere::frame_overhead(self.cfg.track_message_size)
    }

    fn refusal_headers(&self) -> &'static [&'static str] {
        atmosphere::REFUSAL_HEADERS
    }

    /// Takes the session hash from `user/auth` (login sources only; an API key hash
    /// is fixed). The previous hash stays in [`Protocol::secrets`] for redaction.
    fn set_credential(&mut self, credential: Secret) {
        if matches!(self.cfg.auth, NavixyAuth::Login { .. })
            && self.hash.as_ref() != Some(&credential)
        {
            self.previous_hash = self.hash.replace(credential);
        }
    }

    /// Resets per-connection state and arms the handshake deadline. The server speaks
    /// first, so nothing is sent.
    fn on_open(&mut self, ctx: &Ctx) -> Vec<Output> {
        self.conn = Conn::new(self.cfg.track_message_size, self.timing.max_message_bytes);
        self.conn.handshake_deadline = Some(ctx.mono + self.timing.handshake_timeout);
        Vec::new()
    }

    fn on_text(&mut self, ctx: &Ctx, text: &str) -> Vec<Output> {
        let mut out = Vec::new();
        if self.conn.handshake.is_some() {
            self.feed(ctx, text, &mut out);
            return out;
        }
        match atmosphere::parse_handshake(text, self.cfg.track_message_size) {
            Ok(h) => self.on_handshake(ctx, h, &mut out),
            Err(e) => {
                if !self.conn.warned_pre_handshake {
                    self.conn.warned_pre_handshake = true;
                    out.push(Output::Warning(format!(
                        "navixy: frame before the handshake: {e} (warned once per \
                         connection; every such frame is kept in events)"
                    )));
                }
                if !text.trim().is_empty() {
                    match serde_json::from_str::<Value>(text) {
                        Ok(v) => self.dispatch(ctx, text, v, &mut out),
                        Err(err) => self.malformed(ctx, text, &err.to_string(), &mut out),
                    }
                }
            }
        }
        out
    }

    /// Handshake timeout, client heartbeats, and the subscribe-unanswered warning.
    fn on_tick(&mut self, ctx: &Ctx) -> Vec<Output> {
        let mut out = Vec::new();
        if let Some(deadline) = self.conn.handshake_deadline
            && ctx.mono >= deadline
        {
            self.conn.handshake_deadline = None;
            out.push(Output::Reconnect {
                reason: format!(
                    "no Atmosphere handshake within {}",
                    humantime::format_duration(self.timing.handshake_timeout)
                ),
            });
            return out;
        }
        out.extend(self.keepalive(ctx));
        if let Some(deadline) = self.conn.subscribe_deadline
            && ctx.mono >= deadline
        {
            self.conn.subscribe_deadline = None;
            let text = format!(
                "navixy: subscribe unanswered after {}",
                humantime::format_duration(self.timing.subscribe_timeout)
            );
            out.push(Output::Record(session_event(
                ctx,
                "warning",
                None,
                Some(text.clone()),
                None,
            )));
            out.push(Output::Warning(text));
        }
        out
    }

    fn keepalive(&mut self, ctx: &Ctx) -> Vec<Output> {
        let beat = self.conn.heartbeat.as_mut().and_then(|h| h.poll(ctx.mono));
        beat.map(Output::Send).into_iter().collect()
    }

    fn next_keepalive(&self) -> Option<Instant> {
        self.conn.heartbeat.as_ref().and_then(Heartbeat::due)
    }

    fn postpone(&mut self, by: Duration) {
        for deadline in [
            &mut self.conn.handshake_deadline,
            &mut self.conn.subscribe_deadline,
        ]
        .into_iter()
        .flatten()
        {
            *deadline += by;
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        [
            self.conn.handshake_deadline,
            self.conn.heartbeat.as_ref().and_then(Heartbeat::due),
            self.conn.subscribe_deadline,
        ]
        .into_iter()
        .flatten()
        .min()
    }

    /// The `unsubscribe` for this connection's subscribe (sent or confirmed), once;
    /// afterwards no deadline remains.
    fn on_close(&mut self, _ctx: &Ctx) -> Vec<Output> {
        let mut out = Vec::new();
        if self.conn.subscribe_sent
            && let Some(hash) = &self.hash
        {
            out.push(Output::Send(subscribe::request_message(
                "unsubscribe",
                hash.expose(),
                &self.cfg,
            )));
        }
        // The handshake and the framing state stay: frames the server sent before it
        // saw our close are still decoded (and kept) by the session. `on_open`
        // starts the next connection afresh.
        self.conn.handshake_deadline = None;
        self.conn.heartbeat = None;
        self.conn.subscribe_sent = false;
        self.conn.subscribe_deadline = None;
        out
    }

    fn secrets(&self) -> Vec<String> {
        [&self.hash, &self.previous_hash]
            .into_iter()
            .flatten()
            .map(|s| s.expose().to_string())
            .filter(|s| !s.is_empty())
            .collect()
    }
}

#[cfg(test)]
pub(crate) mod tests;
