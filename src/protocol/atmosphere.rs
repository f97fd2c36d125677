//! The Atmosphere transport as Navixy runs it over WebSocket: the connect URL, the
//! `uuid|interval|padding|` handshake, client heartbeats, inbound heartbeat
//! recognition, optional `length|message` framing and reassembly of JSON messages an
//! older server split across frames.
//!
//! Owns only transport concerns: it never looks inside a message (that is
//! [`super::navixy`]), never does I/O and never reads a clock (every time comes in as
//! an [`Instant`] argument). Framing and reassembly live in [`framing`].

pub mod framing;
mod json_scan;

pub use framing::{Broken, Deframed, Framer, FramingError, OversizeError, Piece, Reassembler};

use std::time::{Duration, Instant};
use url::Url;

/// The framework version a real Atmosphere JavaScript client announces. The server
/// answers versions below 2.2.1 with HTTP 501, so this must stay at or above that.
pub const FRAMEWORK_VERSION: &str = "2.3.6-javascript";

/// Response headers in which an Atmosphere server explains why it refused the
/// WebSocket upgrade (e.g. an unknown or expired session hash).
pub const REFUSAL_HEADERS: &[&str] = &["X-Atmosphere-error"];

/// Room for the `length|` prefix (at most 20 digits and the bar) and a few small
/// messages (heartbeats) the server may write into the same WebSocket frame as a
/// message of the full `max_message_bytes`; none without `length|message` framing.
pub fn frame_overhead(track_message_size: bool) -> usize {
    if track_message_size { 1024 } else { 0 }
}

/// Every query parameter [`connect_url`] owns; existing values of these are replaced
/// so a configured URL can never smuggle in a stale tracking id or a
/// `X-Heartbeat-Server=0` that would silence server heartbeats.
const OWNED_PARAMS: &[&str] = &[
    "X-Atmosphere-tracking-id",
    "X-Atmosphere-Framework",
    "X-Atmosphere-Transport",
    "X-Atmosphere-TrackMessageSize",
    "Content-Type",
    "X-atmo-protocol",
    "X-Heartbeat-Server",
];

/// The URL to open: `base` with exactly the parameters the reference Atmosphere
/// client sends, appended after the base's own parameters (which are kept, except
/// those listed in `OWNED_PARAMS`). The tracking id is always `0`, which asks for a
/// fresh handshake, so every reconnect starts clean. `X-Heartbeat-Server` is never
/// sent. `Content-Type` is written unencoded (`application/json`), as the JS client
/// does for websockets.
pub fn connect_url(base: &Url, track_message_size: bool) -> Url {
    let mut segments: Vec<String> = base
        .query()
        .unwrap_or("")
        .split('&')
        .filter(|seg| !seg.is_empty())
        .filter(|seg| {
            let name = seg.split('=').next().unwrap_or("");
            let name: String = url::form_urlencoded::parse(name.as_bytes())
                .map(|(k, _)| k.into_owned())
                .next()
                .unwrap_or_default();
            !OWNED_PARAMS.contains(&name.as_str())
        })
        .map(str::to_string)
        .collect();
    segments.push("X-Atmosphere-tracking-id=0".into());
    segments.push(format!("X-Atmosphere-Framework={FRAMEWORK_VERSION}"));
    segments.push("X-Atmosphere-Transport=websocket".into());
    if track_message_size {
        segments.push("X-Atmosphere-TrackMessageSize=true".into());
    }
    segments.push("Content-Type=application/json".into());
    segments.push("X-atmo-protocol=true".into());
    let mut url = base.clone();
    url.set_query(Some(&segments.join("&")));
    url
}

/// The first frame of an Atmosphere connection, parsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Handshake {
    /// Server-assigned tracking id (needed only for the optional HTTP close call).
    pub tracking_id: String,
    /// How often the **client** must send [`Handshake::padding`].
    pub interval: Duration,
    /// The heartbeat text (usually `X`), sent by both sides.
    pub padding: String,
    /// Whatever followed the last `|`: the start of the first real message (still
    /// `length|`-framed when framing is on), or empty.
    pub remainder: String,
}

/// A first frame that is not an Atmosphere handshake.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "not an Atmosphere handshake ({0}); expected `uuid|interval-ms|padding|`: check that the \
     URL points at an Atmosphere endpoint such as …/event/subscription"
)]
pub struct HandshakeError(pub &'static str);

/// Parses the handshake `uuid|interval|padding|` (remainder allowed after the last
/// `|`). With framing on the server may prefix it with its length
/// (`N|uuid|interval|padding|`), as the reference client expects; both forms are
/// accepted either way, and `track_message_size` only decides which reading is tried
/// first when a frame fits both.
pub fn parse_handshake(frame: &str, track_message_size: bool) -> Result<Handshake, HandshakeError> {
    if track_message_size {
        parse_framed_handshake(frame).or_else(|_| parse_bare_handshake(frame))
    } else {
        parse_bare_handshake(frame).or_else(|e| parse_framed_handshake(frame).map_err(|_| e))
    }
}

fn parse_bare_handshake(frame: &str) -> Result<Handshake, HandshakeError> {
    let parts: Vec<&str> = frame.splitn(4, '|').collect();
    let [uuid, interval, padding, remainder] = parts[..] else {
        return Err(HandshakeError("fewer than three `|` separators"));
    };
    let uuid = uuid.trim();
    if uuid.is_empty()
        || !uuid
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | ':'))
    {
        return Err(HandshakeError("tracking id is empty or not an identifier"));
    }
    let interval = interval.trim();
    if interval.is_empty() || !interval.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HandshakeError("interval is not a number of milliseconds"));
    }
    let millis: u64 = interval
        .parse()
        .map_err(|_| HandshakeError("interval does not fit in 64 bits"))?;
    Ok(Handshake {
        tracking_id: uuid.to_string(),
        interval: Duration::from_millis(millis),
        padding: padding.to_string(),
        remainder: remainder.to_string(),
    })
}

fn parse_framed_handshake(frame: &str) -> Result<Handshake, HandshakeError> {
    let (len, rest) = frame
        .split_once('|')
        .ok_or(HandshakeError("no `|` separator"))?;
    if len.is_empty() || !len.bytes().all(|b| b.is_ascii_digit()) {
        return Err(HandshakeError("no length prefix"));
    }
    parse_bare_handshake(rest)
}

/// True when an inbound message carries nothing but a heartbeat: the padding text
/// (surrounding whitespace ignored), or a blank message. With framing on, pass the
/// unframed message (`1|X` arrives as `X` from the [`Framer`]).
pub fn is_heartbeat(message: &str, padding: &str) -> bool {
    let m = message.trim();
    m.is_empty() || message == padding || (!padding.trim().is_empty() && m == padding.trim())
}

/// The client heartbeat schedule: the padding is due every `interval` after the
/// handshake, regardless of other traffic (the server counts only heartbeats). An
/// interval of zero means the server asked for none.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Heartbeat {
    interval: Duration,
    padding: String,
    next: Option<Instant>,
}

impl Heartbeat {
    /// Starts the schedule at the moment the handshake arrived.
    pub fn start(interval: Duration, padding: &str, now: Instant) -> Self {
        Heartbeat {
            interval,
            padding: padding.to_string(),
            next: (!interval.is_zero()).then(|| now + interval),
        }
    }

    /// When the next heartbeat is due (`None`: heartbeats disabled).
    pub fn due(&self) -> Option<Instant> {
        self.next
    }

    /// The frame to send if a heartbeat is due at `now`. A late call sends one
    /// heartbeat, not a burst: the schedule then restarts from `now`.
    pub fn poll(&mut self, now: Instant) -> Option<String> {
        let next = self.next?;
        if now < next {
            return None;
        }
        let mut following = next + self.interval;
        if following <= now {
            following = now + self.interval;
        }
        self.next = Some(following);
        Some(self.padding.clone())
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
