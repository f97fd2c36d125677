//! One open WebSocket: pump frames through the protocol until something ends it.
//!
//! The loop reads with an idle deadline that restarts after every inbound frame has
//! been fully handled. A frame's records go to the writer's queue without waiting;
//! when it is full they wait in the runner, and the loop stops reading frames until
//! they are handed over (back-pressure), while still serving commands and the
//! protocol's keep-alives, so a database stall neither grows memory nor makes the
//! upstream give up on a silent client. Time paused that way counts neither as
//! upstream silence nor against the protocol's deadlines. Protocol deadlines
//! (heartbeats) are served before the socket, so a socket that always has a frame
//! waiting cannot delay them past the frame being handled. It returns *why* the
//! connection ended; the runner turns that into lifecycle rows and decides what
//! happens next.

use super::Command;
use super::runner::Runner;
use crate::protocol::{Ctx, Output};
use crate::record::{Record, Traffic};
use chrono::Utc;
use futures_util::{SinkExt, StreamExt};
use std::time::{Duration, Instant};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The socket type every source uses.
pub(super) type Socket = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Why a connection ended.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Ending {
    /// Stop requested; closed with 1000 after unsubscribing.
    Stopped,
    /// Manual suspension; closed with 4000.
    Suspended,
    /// Lost: transport error, server close (any code, 1000 included), idle deadline,
    /// or the protocol asked to reconnect. `code` is the server's close code, `None`
    /// when no close frame arrived (recorded as 1006).
    Network { code: Option<i64>, reason: String },
    /// The credential is dead.
    CredentialDead { reason: String },
    /// The writer is gone (daemon shutting down under us).
    WriterClosed,
}

const FAR: Duration = Duration::from_secs(3600 * 24 * 365);

impl Runner {
    fn ctx(&self, connection_id: i64) -> Ctx {
        Ctx {
            source: self.source.clone(),
            connection_id,
            now: Utc::now(),
            mono: Instant::now(),
        }
    }

    /// Drives `ws` until it ends; returns the ending and, for the `connections` row,
    /// the close code we or the server used.
    pub(super) async fn drive(&mut self, ws: Socket, connection_id: i64) -> Ending {
        let (mut tx, mut rx) = ws.split();
        self.traffic_masks = Default::default();
        let idle = self.config.timing.idle_timeout;
        let ctx = self.ctx(connection_id);
        let outputs = self.protocol.on_open(&ctx);
        if let Some(end) = self.handle(&mut tx, connection_id, outputs).await {
            return self.conclude(&mut tx, &mut rx, connection_id, end).await;
        }
        let mut idle_deadline = tokio::time::Instant::now() + idle;
        // Since when the socket is not read because records wait for queue room.
        // A clone of the sink to wait for room on: the permit borrows it across the
        // `select!`, which must not borrow `self`.
        let room = self.sink.clone();
        let mut paused_since: Option<tokio::time::Instant> = None;
        loop {
            let reading = self.waiting.is_empty();
            if let (true, Some(since)) = (reading, paused_since.take()) {
                let paused = since.elapsed();
                self.protocol.postpone(paused);
                idle_deadline += paused;
            } else if !reading && paused_since.is_none() {
                paused_since = Some(tokio::time::Instant::now());
            }
            let next = if reading {
                self.protocol.next_deadline()
            } else {
                self.protocol.next_keepalive()
            };
            let tick_at = next
                .map(tokio::time::Instant::from_std)
                .unwrap_or_else(|| tokio::time::Instant::now() + FAR);
            tokio::select! {
                biased;
                changed = self.commands.changed() => {
                    let cmd = if changed.is_ok() { *self.commands.borrow_and_update() } else { Command::Stop };
                    match cmd {
                        Command::Run => {}
                        Command::Suspend => {
                            let late = self.close(&mut tx, &mut rx, 4000, "suspended by operator").await;
                            if self.keep_late(connection_id, late).await.is_err() {
                                return Ending::WriterClosed;
                            }
                            return Ending::Suspended;
                        }
                        Command::Stop => {
                            let ctx = self.ctx(connection_id);
                            let outputs = self.protocol.on_close(&ctx);
                            let _ = self.handle(&mut tx, connection_id, outputs).await;
                            let late = self.close(&mut tx, &mut rx, 1000, "wsvault closing").await;
                            if self.keep_late(connection_id, late).await.is_err() {
                                return Ending::WriterClosed;
                            }
                            return Ending::Stopped;
                        }
                    }
                }
                // Before the socket: a stream that always has a frame waiting (the
                // writer lagging behind a flood) must not starve heartbeats.
                _ = tokio::time::sleep_until(tick_at) => {
                    let ctx = self.ctx(connection_id);
                    let outputs = if reading {
                        self.protocol.on_tick(&ctx)
                    } else {
                        self.protocol.keepalive(&ctx)
                    };
                    if let Some(end) = self.handle(&mut tx, connection_id, outputs).await {
                        return self.conclude(&mut tx, &mut rx, connection_id, end).await;
                    }
                }
                // Back-pressure without going deaf: while records wait for room in
                // the writer's queue, no frame is read (the kernel's socket buffer
                // and then TCP flow control hold the server back), but commands and
                // keep-alives above are still served.
                permit = room.reserve(), if !reading => {
                    let Ok(permit) = permit else {
                        self.abandon_waiting(0);
                        return Ending::WriterClosed;
                    };
                    if let Some(r) = self.waiting.pop_front() {
                        permit.send(r);
                    }
                    // The writer frees room a batch at a time: fill it in one go.
                    if self.hand_over_waiting().is_err() {
                        return Ending::WriterClosed;
                    }
                }
                msg = rx.next(), if reading => {
                    let text = match msg {
                        Some(Ok(Message::Text(t))) => t.as_str().to_owned(),
                        Some(Ok(Message::Binary(b))) => String::from_utf8_lossy(&b).into_owned(),
                        Some(Ok(Message::Ping(_) | Message::Pong(_) | Message::Frame(_))) => {
                            self.status.frame(Utc::now().timestamp_millis());
                            idle_deadline = tokio::time::Instant::now() + idle;
                            continue;
                        }
                        Some(Ok(Message::Close(frame))) => {
                            let (code, reason) = describe_close(frame.as_ref());
                            return Ending::Network { code: Some(code), reason };
                        }
                        Some(Err(e)) => return Ending::Network { code: None, reason: describe_error(&e) },
                        None => return Ending::Network {
                            code: None,
                            reason: "connection closed without a close frame".into(),
                        },
                    };
                    self.status.frame(Utc::now().timestamp_millis());
                    if self.config.traffic {
                        let rec = self.traffic(connection_id, crate::record::RECEIVED, &text);
                        if self.queue(rec).is_err() {
                            return Ending::WriterClosed;
                        }
                    }
                    let ctx = self.ctx(connection_id);
                    let protocol = &mut self.protocol;
                    let outputs = super::offload::decode(text.len(), || protocol.on_text(&ctx, &text));
                    if let Some(end) = self.handle(&mut tx, connection_id, outputs).await {
                        return self.conclude(&mut tx, &mut rx, connection_id, end).await;
                    }
                    idle_deadline = tokio::time::Instant::now() + idle;
                }
                _ = tokio::time::sleep_until(idle_deadline), if reading => {
                    return Ending::Network {
                        code: None,
                        reason: format!("no frame for {} (idle deadline)", humantime::format_duration(idle)),
                    };
                }
            }
        }
    }

    fn traffic(&mut self, connection_id: i64, direction: &str, text: &str) -> Record {
        let mask = &mut self.traffic_masks[usize::from(direction == crate::record::RECEIVED)];
        let payload = mask.frame(&crate::redact::secrets::current(), text);
        let payload = self.redactor.redact(&payload);
        Record::Traffic(Traffic {
            id: crate::ids::next_id(),
            source: self.source.clone(),
            connection_id: Some(connection_id),
            at: Utc::now(),
            direction: direction.to_string(),
            payload,
        })
    }

    /// Carries out protocol outputs; returns an ending when one of them ends the
    /// connection.
    async fn handle<S>(
        &mut self,
        tx: &mut S,
        connection_id: i64,
        outputs: Vec<Output>,
    ) -> Option<Ending>
    where
        S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
    {
        for out in outputs {
            match out {
                Output::Send(text) => {
                    if self.config.traffic {
                        let rec = self.traffic(connection_id, crate::record::SENT, &text);
                        if self.queue(rec).is_err() {
                            return Some(Ending::WriterClosed);
                        }
                    }
                    if let Err(e) = tx.send(Message::text(text)).await {
                        return Some(Ending::Network {
                            code: None,
                            reason: format!("send failed: {}", describe_error(&e)),
                        });
                    }
                }
                Output::Ping => {
                    if let Err(e) = tx.send(Message::Ping(Vec::new().into())).await {
                        return Some(Ending::Network {
                            code: None,
                            reason: format!("ping failed: {}", describe_error(&e)),
                        });
                    }
                }
                Output::Record(r) => {
                    self.note_record(&r);
                    if self.queue(r).is_err() {
                        return Some(Ending::WriterClosed);
                    }
                }
                Output::Subscribed => {
                    if let Err(()) = self.subscribed(connection_id) {
                        return Some(Ending::WriterClosed);
                    }
                }
                Output::CredentialDead { reason } => {
                    return Some(Ending::CredentialDead { reason });
                }
                Output::Reconnect { reason } => {
                    return Some(Ending::Network { code: None, reason });
                }
                Output::Warning(w) => tracing::warn!("{}", self.redactor.redact(&w)),
            }
        }
        None
    }

    /// Records what the server sent between our close frame and its own: those
    /// frames were on the wire before the server saw the close, and dropping them
    /// would lose data on every shutdown or suspension. Only records are kept;
    /// anything the protocol would send back is moot on a closing socket.
    async fn keep_late(&mut self, connection_id: i64, late: Vec<String>) -> Result<(), ()> {
        for text in late {
            self.status.frame(Utc::now().timestamp_millis());
            if self.config.traffic {
                let rec = self.traffic(connection_id, crate::record::RECEIVED, &text);
                self.emit(rec).await?;
            }
            let ctx = self.ctx(connection_id);
            for out in self.protocol.on_text(&ctx, &text) {
                match out {
                    Output::Record(r) => {
                        self.note_record(&r);
                        self.emit(r).await?;
                    }
                    Output::Warning(w) => tracing::warn!("{}", self.redactor.redact(&w)),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// Ends the connection the way `end` calls for: giving up on a dead credential
    /// is our decision, so the server gets a clean close (1000) rather than a reset;
    /// every other ending has already happened on the wire.
    /// Frames the server sent before it saw our close are still recorded.
    async fn conclude<S, R>(
        &mut self,
        tx: &mut S,
        rx: &mut R,
        connection_id: i64,
        end: Ending,
    ) -> Ending
    where
        S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
        R: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
            + Unpin,
    {
        if matches!(end, Ending::CredentialDead { .. }) {
            let late = self.close(tx, rx, 1000, "credential dead").await;
            if self.keep_late(connection_id, late).await.is_err() {
                return Ending::WriterClosed;
            }
        }
        end
    }

    /// Sends a close frame and waits briefly for the server's answer, so a clean
    /// close is seen as clean upstream; never waits longer than a second. Returns the
    /// text frames that arrived meanwhile (see [`Runner::keep_late`]).
    async fn close<S, R>(&self, tx: &mut S, rx: &mut R, code: u16, reason: &str) -> Vec<String>
    where
        S: futures_util::Sink<Message, Error = tokio_tungstenite::tungstenite::Error> + Unpin,
        R: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>>
            + Unpin,
    {
        let frame = CloseFrame {
            code: CloseCode::from(code),
            reason: reason.to_string().into(),
        };
        let mut late = Vec::new();
        if tx.send(Message::Close(Some(frame))).await.is_err() {
            return late;
        }
        let _ = tokio::time::timeout(Duration::from_secs(1), async {
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
}

fn describe_close(frame: Option<&CloseFrame>) -> (i64, String) {
    match frame {
        None => (1005, "server closed without a status code".into()),
        Some(f) => {
            let code = u16::from(f.code) as i64;
            let reason = if code == 1000 {
                format!(
                    "server closed normally (1000{}); treated as a drop",
                    suffix(&f.reason)
                )
            } else {
                format!("server closed with {code}{}", suffix(&f.reason))
            };
            (code, reason)
        }
    }
}

fn suffix(reason: &str) -> String {
    if reason.is_empty() {
        String::new()
    } else {
        format!(": {reason}")
    }
}

/// Transport errors in words an operator can act on.
pub(super) fn describe_error(e: &tokio_tungstenite::tungstenite::Error) -> String {
    use tokio_tungstenite::tungstenite::Error as E;
    match e {
        E::Capacity(c) => {
            format!("message too large ({c}); raise max_message_bytes if it is legitimate")
        }
        E::Protocol(p) => format!("WebSocket protocol error: {p}"),
        E::Io(io) => format!("I/O error: {io}"),
        E::Http(resp) => {
            let status = resp.status();
            let hint = resp
                .headers()
                .get("X-Atmosphere-error")
                .and_then(|v| v.to_str().ok())
                .map(|v| format!(" (X-Atmosphere-error: {v})"))
                .unwrap_or_default();
            format!("upgrade refused with HTTP {status}{hint}")
        }
        other => other.to_string(),
    }
}
