//! One open WebSocket: its two halves, its idle deadline and its traffic masks.
//!
//! [`Connection::next`] waits for whatever needs the runner next: a command, a
//! protocol deadline, room in the writer's queue, a frame, or the end of the socket
//! (a close, an error, the idle deadline), told in the lifecycle's words
//! ([`Input`]). The idle deadline restarts after every inbound frame has been fully
//! handled ([`Connection::heard`]). While records wait for room the socket is not
//! read (back-pressure) but commands and keep-alives are still served, and the time
//! paused that way counts neither as upstream silence nor against the protocol's
//! deadlines ([`Connection::track_pause`]). It never decides what an ending means:
//! that is the lifecycle's.

use super::Command;
use super::lifecycle::Input;
use crate::record::{Record, SourceName, Traffic};
use crate::redact::{Redactor, StreamRedactor};
use crate::store::{RecordSink, SinkPermit, WriterClosed};
use chrono::Utc;
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The socket type every source uses.
pub(super) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// How long a close waits for the server's answer.
const CLOSE_WAIT: Duration = Duration::from_secs(1);
/// A deadline that never comes.
const FAR: Duration = Duration::from_secs(3600 * 24 * 365);

/// What woke the connection up.
pub(super) enum Wake<'a> {
    /// The supervisor's command changed (or was repeated).
    Command(Command),
    /// The protocol's deadline passed.
    Tick,
    /// Room in the writer's queue, for the oldest waiting record.
    Room(Result<SinkPermit<'a>, WriterClosed>),
    /// A text frame (a binary one as lossy UTF-8).
    Text(String),
    /// A ping, pong or raw frame: liveness only.
    Alive,
    /// The socket is gone.
    Ended(Input),
}

/// An open WebSocket and what lives exactly as long as it.
pub(super) struct Connection {
    id: i64,
    tx: SplitSink<Socket, Message>,
    rx: SplitStream<Socket>,
    idle: Duration,
    idle_deadline: tokio::time::Instant,
    /// Since when the socket is not read because records wait for room.
    paused_since: Option<tokio::time::Instant>,
    /// Masking state of `traffic`, sent and received: a secret cut by a frame
    /// boundary is masked across it.
    masks: [StreamRedactor; 2],
    /// The protocol has not been told about this connection yet.
    fresh: bool,
}

impl Connection {
    pub(super) fn new(ws: Socket, id: i64, idle: Duration) -> Self {
        let (tx, rx) = ws.split();
        Connection {
            id,
            tx,
            rx,
            idle,
            idle_deadline: tokio::time::Instant::now() + idle,
            paused_since: None,
            masks: Default::default(),
            fresh: true,
        }
    }

    /// The `connections.id`.
    pub(super) fn id(&self) -> i64 {
        self.id
    }

    /// True exactly once: the protocol's `on_open` is due.
    pub(super) fn take_fresh(&mut self) -> bool {
        std::mem::replace(&mut self.fresh, false)
    }

    /// Notes whether the socket is read now; returns how long it was paused when
    /// reading resumes, so the idle deadline (here) and the protocol's deadlines (by
    /// the caller) move by as much.
    pub(super) fn track_pause(&mut self, reading: bool) -> Option<Duration> {
        if reading {
            let paused = self.paused_since.take()?.elapsed();
            self.idle_deadline += paused;
            Some(paused)
        } else {
            self.paused_since
                .get_or_insert_with(tokio::time::Instant::now);
            None
        }
    }

    /// An inbound frame has been handled: the idle deadline starts over.
    pub(super) fn heard(&mut self) {
        self.idle_deadline = tokio::time::Instant::now() + self.idle;
    }

    /// Waits for the next thing to handle. `tick_at` is the protocol's deadline;
    /// `room` is given while records wait, and then no frame is read.
    pub(super) async fn next<'a>(
        &mut self,
        commands: &mut watch::Receiver<Command>,
        tick_at: Option<Instant>,
        room: Option<&'a RecordSink>,
    ) -> Wake<'a> {
        let reading = room.is_none();
        let tick_at = tick_at
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + FAR);
        tokio::select! {
            biased;
            changed = commands.changed() => Wake::Command(match changed {
                Ok(()) => *commands.borrow_and_update(),
                Err(_) => Command::Stop,
            }),
            // Before the socket: a stream that always has a frame waiting (the
            // writer lagging behind a flood) must not starve heartbeats.
            _ = tokio::time::sleep_until(tick_at) => Wake::Tick,
            permit = reserve(room), if !reading => Wake::Room(permit),
            msg = self.rx.next(), if reading => match msg {
                Some(Ok(Message::Text(t))) => Wake::Text(t.as_str().to_owned()),
                Some(Ok(Message::Binary(b))) => Wake::Text(String::from_utf8_lossy(&b).into_owned()),
                Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                    self.heard();
                    Wake::Alive
                }
                Some(Ok(Message::Close(frame))) => Wake::Ended(Input::CloseReceived {
                    code: frame.as_ref().map(|f| u16::from(f.code)),
                    reason: frame.map(|f| f.reason.to_string()).unwrap_or_default(),
                }),
                Some(Err(e)) => Wake::Ended(Input::SocketError { reason: describe_error(&e) }),
                None => Wake::Ended(Input::SocketError {
                    reason: "connection closed without a close frame".into(),
                }),
            },
            _ = tokio::time::sleep_until(self.idle_deadline), if reading => {
                Wake::Ended(Input::IdleDeadline { idle: self.idle })
            }
        }
    }

    /// Sends a text frame; the error says what failed, for the lifecycle.
    pub(super) async fn send(&mut self, text: String) -> Result<(), Input> {
        self.tx
            .send(Message::text(text))
            .await
            .map_err(|e| Input::SocketError {
                reason: format!("send failed: {}", describe_error(&e)),
            })
    }

    /// Sends a WebSocket ping.
    pub(super) async fn ping(&mut self) -> Result<(), Input> {
        let ping = Message::Ping(Vec::new().into());
        self.tx.send(ping).await.map_err(|e| Input::SocketError {
            reason: format!("ping failed: {}", describe_error(&e)),
        })
    }

    /// Sends a close frame and waits briefly for the server's answer, so a clean
    /// close is seen as clean upstream; never waits longer than a second. Returns the
    /// text frames that arrived meanwhile: they were on the wire before the server
    /// saw the close, and dropping them would lose data on every shutdown.
    pub(super) async fn close(&mut self, code: u16, reason: &str) -> Vec<String> {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_string().into(),
        };
        let mut late = Vec::new();
        if self.tx.send(Message::Close(Some(frame))).await.is_err() {
            return late;
        }
        let rx = &mut self.rx;
        let _ = tokio::time::timeout(CLOSE_WAIT, async {
            while let Some(Ok(m)) = rx.next().await {
                match m {
                    Message::Close(_) => break,
                    Message::Text(t) => late.push(t.as_str().to_owned()),
                    Message::Binary(b) => late.push(String::from_utf8_lossy(&b).into_owned()),
                    _ => {}
                }
            }
        })
        .await;
        late
    }

    /// The `traffic` row of a frame, masked: known secrets, also where a frame
    /// boundary cuts one.
    pub(super) fn traffic(
        &mut self,
        source: &SourceName,
        direction: &str,
        text: &str,
        redactor: &Redactor,
    ) -> Record {
        let mask = &mut self.masks[usize::from(direction == crate::record::RECEIVED)];
        let payload = mask.frame(&crate::redact::secrets::current(), text);
        Record::Traffic(Traffic {
            id: crate::ids::next_id(),
            source: source.clone(),
            connection_id: Some(self.id),
            at: Utc::now(),
            direction: direction.to_string(),
            payload: redactor.redact(&payload),
        })
    }
}

/// Room in the queue behind `room`; never ready without one (the `select!` branch
/// is off then, but its future is still built).
async fn reserve(room: Option<&RecordSink>) -> Result<SinkPermit<'_>, WriterClosed> {
    match room {
        Some(room) => room.reserve().await,
        None => std::future::pending().await,
    }
}

/// Transport errors in words an operator can act on. (A refused upgrade is worded
/// where the upgrade is made, with the protocol's hint: `dial.rs`.)
pub(super) fn describe_error(e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Capacity(c) => {
            format!("message too large ({c}); raise max_message_bytes if it is legitimate")
        }
        E::Protocol(p) => format!("WebSocket protocol error: {p}"),
        E::Io(io) => format!("I/O error: {io}"),
        E::Http(resp) => format!("upgrade refused with HTTP {}", resp.status()),
        other => other.to_string(),
    }
}
