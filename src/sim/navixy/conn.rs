//! One accepted TCP connection of the Navixy simulator: the login call over plain
//! HTTP, or an Atmosphere WebSocket session (handshake, heartbeats, subscribe,
//! snapshot, updates, injected faults).
//!
//! Never closes a WebSocket with a close frame on its own initiative: every drop
//! is a bare TCP drop, as a network failure would be.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::atmosphere;
use super::fleet::Chunk;
use super::render::{self, EventFrame, Times};
use super::subscribe::{self, Request};
use super::{NavixyCmd, Shared};
use crate::sim::fanout::{Subscription, recv_opt};
use crate::sim::faults::{FaultEvent, FaultListener, Flow, later};
use crate::sim::http::{self, Ws};
use crate::sim::observe::push_capped;

/// Serves one accepted TCP connection.
pub(super) async fn serve(shared: Arc<Shared>, mut stream: TcpStream) {
    let faults = shared.faults.listener();
    let Some((head, leftover)) = http::read_head(&mut stream).await else {
        return;
    };
    if head.is_websocket_upgrade() {
        if !head.path().ends_with("/event/subscription") {
            shared.stats.update(|s| s.rejected_upgrades += 1);
            let _ = http::respond(&mut stream, 404, &[], "text/plain", b"not found").await;
            return;
        }
        if let Some(version) = head.query_param("X-Atmosphere-Framework")
            && atmosphere::framework_too_old(&version)
        {
            shared.stats.update(|s| s.rejected_upgrades += 1);
            let msg = format!("Invalid Atmosphere Version {version}");
            let _ = http::respond(
                &mut stream,
                501,
                &[("X-Atmosphere-error", &msg)],
                "text/plain",
                msg.as_bytes(),
            )
            .await;
            return;
        }
        let track_size = head
            .query_param("X-Atmosphere-TrackMessageSize")
            .is_some_and(|v| v.eq_ignore_ascii_case("true"));
        let Ok(ws) = http::upgrade(stream, &head, leftover).await else {
            return;
        };
        shared.stats.update(|s| {
            s.connections += 1;
            s.open_connections += 1;
            s.max_open_connections = s.max_open_connections.max(s.open_connections);
            push_capped(&mut s.connect_targets, head.target.clone());
            push_capped(&mut s.connect_times, std::time::Instant::now());
            s.last_connect_query = head.query().map(str::to_owned);
        });
        let id = shared.next_conn.fetch_add(1, Ordering::SeqCst);
        let mut conn = Conn {
            shared: Arc::clone(&shared),
            id,
            track_size,
            times: Times::new(false),
            subs: BTreeMap::new(),
            sub: None,
            last_write: Instant::now(),
        };
        conn.run(ws, faults).await;
        shared.auth().live.remove(&id);
        shared.stats.update(|s| s.open_connections -= 1);
    } else {
        super::auth::serve_http(&shared, stream, &head, leftover).await;
    }
}

/// What woke the connection loop.
enum Step {
    Fault(FaultEvent<NavixyCmd>),
    Inbound(Option<Result<Message, WsError>>),
    Chunk(Option<Arc<Chunk>>),
    Heartbeat,
}

/// The WebSocket side of one connection.
struct Conn {
    shared: Arc<Shared>,
    id: u64,
    track_size: bool,
    /// Timestamps in the format of the latest subscribe (`iso_datetime`).
    times: Times,
    subs: BTreeMap<String, Request>,
    sub: Option<Subscription<Arc<Chunk>>>,
    last_write: Instant,
}

impl Conn {
    async fn run(&mut self, mut ws: Ws, mut faults: FaultListener<NavixyCmd>) {
        if !faults.wait_while_silent().await {
            self.shared.stats.update(|s| s.drops += 1);
            return;
        }
        let handshake = format!(
            "{}|{}|X|",
            atmosphere::tracking_uuid(),
            self.shared.cfg.heartbeat_interval.as_millis()
        );
        if self.send(&mut ws, handshake).await.is_err() {
            return;
        }
        loop {
            if faults.is_silent() && !faults.wait_while_silent().await {
                self.shared.stats.update(|s| s.drops += 1);
                return;
            }
            let heartbeat_at = later(self.last_write, self.shared.cfg.server_heartbeat);
            // Biased: a drop, or the client having gone, wins over sending more
            // data, so nothing is counted as sent into a socket already closed.
            let step = tokio::select! {
                biased;
                ev = faults.next() => Step::Fault(ev),
                msg = ws.next() => Step::Inbound(msg),
                chunk = recv_opt(&mut self.sub) => Step::Chunk(chunk),
                _ = tokio::time::sleep_until(heartbeat_at) => Step::Heartbeat,
            };
            match faults.guard(self.handle(&mut ws, step)).await {
                Flow::Continue => {}
                Flow::Stop => return,
                Flow::Drop => {
                    self.shared.stats.update(|s| s.drops += 1);
                    return;
                }
            }
        }
    }

    async fn handle(&mut self, ws: &mut Ws, step: Step) -> Flow {
        let result = match step {
            Step::Fault(FaultEvent::Drop) => return Flow::Drop,
            Step::Fault(FaultEvent::Raw(text)) => self.send_frame(ws, text).await,
            Step::Fault(FaultEvent::Proto(NavixyCmd::Message(text))) => {
                self.send(ws, text.to_string()).await
            }
            Step::Fault(FaultEvent::Proto(NavixyCmd::Logout)) => self.logout(ws).await,
            Step::Fault(FaultEvent::Changed) => Ok(()),
            Step::Inbound(Some(Ok(Message::Text(text)))) => self.on_text(ws, text.as_str()).await,
            Step::Inbound(Some(Ok(Message::Close(frame)))) => {
                let code = frame.map(|f| u16::from(f.code));
                self.shared
                    .stats
                    .update(|s| push_capped(&mut s.close_frames, code));
                return Flow::Stop;
            }
            Step::Inbound(Some(Err(_)) | None) => return Flow::Stop,
            Step::Inbound(Some(Ok(_))) => Ok(()),
            Step::Chunk(Some(chunk)) => self.send_chunk(ws, &chunk).await,
            Step::Chunk(None) => {
                self.sub = None;
                Ok(())
            }
            Step::Heartbeat => {
                self.shared.stats.update(|s| s.heartbeats_sent += 1);
                self.send(ws, "X".to_owned()).await
            }
        };
        if result.is_ok() {
            Flow::Continue
        } else {
            Flow::Stop
        }
    }

    /// Sends one frame verbatim.
    async fn send_frame(&mut self, ws: &mut Ws, text: String) -> Result<(), WsError> {
        ws.send(Message::text(text)).await?;
        self.last_write = Instant::now();
        self.shared.stats.update(|s| s.frames_sent += 1);
        Ok(())
    }

    /// Sends one message with this connection's framing (and frame splitting).
    async fn send(&mut self, ws: &mut Ws, msg: String) -> Result<(), WsError> {
        let text = if self.track_size {
            format!("{}|{msg}", atmosphere::utf16_len(&msg))
        } else {
            msg
        };
        match self.shared.cfg.split_frames_at {
            Some(max) if max > 0 && text.len() > max => {
                let chars: Vec<char> = text.chars().collect();
                for piece in chars.chunks(max) {
                    self.send_frame(ws, piece.iter().collect()).await?;
                }
                Ok(())
            }
            _ => self.send_frame(ws, text).await,
        }
    }

    async fn send_json(&mut self, ws: &mut Ws, value: &Value) -> Result<(), WsError> {
        self.send(ws, value.to_string()).await
    }

    async fn on_text(&mut self, ws: &mut Ws, text: &str) -> Result<(), WsError> {
        let trimmed = text.trim();
        let body = match trimmed.split_once('|') {
            Some((len, rest)) if !len.is_empty() && len.bytes().all(|b| b.is_ascii_digit()) => rest,
            _ => trimmed,
        };
        if body == "X" {
            self.shared.stats.update(|s| {
                s.heartbeats_received += 1;
                push_capped(&mut s.heartbeat_times, std::time::Instant::now());
            });
            return Ok(());
        }
        let parsed: Option<Value> = serde_json::from_str(body).ok();
        match parsed
            .as_ref()
            .and_then(|v| v.get("action"))
            .and_then(Value::as_str)
        {
            Some("subscribe") => self.subscribe(ws, parsed.unwrap_or_default()).await,
            Some("unsubscribe") => self.unsubscribe(ws, parsed.unwrap_or_default()).await,
            _ => {
                self.shared
                    .stats
                    .update(|s| push_capped(&mut s.other_client_frames, text.to_owned()));
                self.send_json(ws, &subscribe::invalid_message()).await
            }
        }
    }

    async fn subscribe(&mut self, ws: &mut Ws, msg: Value) -> Result<(), WsError> {
        let requests = subscribe::parse_requests(&msg);
        let hash = msg
            .get("hash")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_owned();
        let valid = self.shared.hash_valid(&hash);
        let refusal = if valid {
            self.shared.take_refusal()
        } else {
            None
        };
        self.shared.stats.update(|s| {
            s.subscribes += 1;
            if !valid || refusal.is_some() {
                s.subscribe_errors += 1;
            }
            push_capped(&mut s.subscribe_messages, msg.clone());
        });
        if let Some((code, description)) = refusal {
            return self
                .send_json(ws, &subscribe::refused(&requests, code, &description))
                .await;
        }
        if !valid {
            return self
                .send_json(ws, &subscribe::wrong_hash(&msg, &requests))
                .await;
        }
        self.shared.auth().live.insert(self.id, hash);
        self.times.set_iso(
            msg.get("iso_datetime")
                .and_then(Value::as_bool)
                .unwrap_or(false),
        );
        let response = subscribe::response(&self.shared, "subscribe", &requests);
        for req in &requests {
            self.subs.insert(req.kind.clone(), req.clone());
        }
        self.send_json(ws, &response).await?;
        if let Some(message) = self.shared.after_subscribe() {
            self.send(ws, message.to_string()).await?;
        }
        if self.wants_data() && self.sub.is_none() {
            // Register before taking the snapshot: every later update then reaches
            // this connection, every earlier one is in the snapshot.
            self.sub = Some(self.shared.fanout.register(self.id));
        }
        let snapshot: Chunk = {
            let latest = self.shared.latest();
            self.shared
                .normal_indices()
                .into_iter()
                .map(|i| (i, latest[i]))
                .collect()
        };
        let batch = self.shared.cfg.batch_size.max(1);
        for part in snapshot.chunks(batch) {
            self.send_chunk(ws, part).await?;
        }
        Ok(())
    }

    async fn unsubscribe(&mut self, ws: &mut Ws, msg: Value) -> Result<(), WsError> {
        let requests = subscribe::parse_requests(&msg);
        self.shared
            .stats
            .update(|s| push_capped(&mut s.unsubscribe_messages, msg.clone()));
        for req in &requests {
            self.subs.remove(&req.kind);
        }
        if !self.wants_data() {
            self.sub = None;
        }
        let response = subscribe::response(&self.shared, "unsubscribe", &requests);
        self.send_json(ws, &response).await
    }

    async fn logout(&mut self, ws: &mut Ws) -> Result<(), WsError> {
        self.subs.clear();
        self.sub = None;
        let msg = json!({"type": "event", "event": "logout", "data": "session closed"});
        self.send_json(ws, &msg).await
    }

    fn wants_data(&self) -> bool {
        ["state_batch", "state", "readings_batch"]
            .iter()
            .any(|k| self.subs.contains_key(*k))
    }

    async fn send_chunk(&mut self, ws: &mut Ws, chunk: &[(usize, u64)]) -> Result<(), WsError> {
        let shared = Arc::clone(&self.shared);
        let frames = render::chunk_frames(&shared, &self.subs, &mut self.times, chunk)?;
        let states_sent = frames.states_sent();
        let readings_sent = frames.readings_sent();
        if let Some(batch) = frames.state_batch {
            self.send_event(ws, batch).await?;
        }
        for state in frames.states {
            self.send_event(ws, state).await?;
        }
        let first = count_first(&shared.sent_state, &frames.state_keys);
        shared.stats.update(|s| s.states_first_sent += first);
        if let Some(readings) = frames.readings_batch {
            self.send_event(ws, readings).await?;
        }
        let first = count_first(&shared.sent_readings, &frames.reading_keys);
        shared.stats.update(|s| {
            s.state_items_sent += states_sent;
            s.reading_items_sent += readings_sent;
            s.reading_items_first_sent += first;
        });
        Ok(())
    }

    /// Stamps `frame` with the server time and sends it.
    async fn send_event(&mut self, ws: &mut Ws, frame: EventFrame) -> Result<(), WsError> {
        let text = frame.finish(self.times.user_time(&self.shared))?;
        self.send(ws, text).await
    }
}

/// Counts the `(tracker, update)` pairs written for the first time and marks them.
fn count_first(marks: &[std::sync::atomic::AtomicU64], keys: &[(usize, u64)]) -> u64 {
    keys.iter()
        .filter(|(idx, k)| {
            marks
                .get(*idx)
                .is_some_and(|m| m.fetch_max(k + 1, Ordering::Relaxed) < k + 1)
        })
        .count() as u64
}
