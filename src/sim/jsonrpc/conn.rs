//! The JSON-RPC simulator's wire behaviour: the notification generator and one
//! WebSocket connection (OnConnected, notifications, request/response, faults).
//!
//! Drops are bare TCP drops, never close frames.

use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::{CloseWith, JsonRpcConnection, SentNotification, Shared};
use crate::sim::fanout::Subscription;
use crate::sim::faults::{FaultEvent, FaultListener, Flow};
use crate::sim::http::{self, Ws};
use crate::sim::observe::push_capped;

fn blocked(shared: &Shared) -> bool {
    shared.faults.is_silent() || (shared.fanout.len() == 0 && !shared.cfg.run_without_connections)
}

/// Numbers notifications 1, 2, 3… one per `interval` and hands each to every open
/// connection. Waits (without spinning) while silent or without connections, so
/// every `n` is offered to at least one client unless configured otherwise.
pub(super) async fn generate(shared: Arc<Shared>) {
    let methods = if shared.cfg.methods.is_empty() {
        vec!["OnTick".to_owned()]
    } else {
        shared.cfg.methods.clone()
    };
    let mut count_rx = shared.fanout.count_rx();
    let mut silent_rx = shared.faults.silent_rx();
    let mut n: u64 = 0;
    loop {
        if shared.cfg.count.is_some_and(|c| n >= c) {
            return;
        }
        if blocked(&shared) {
            tokio::select! {
                _ = count_rx.changed() => {}
                _ = silent_rx.changed() => {}
            }
            continue;
        }
        tokio::time::sleep(shared.cfg.interval).await;
        if blocked(&shared) {
            continue;
        }
        n += 1;
        let method = methods[((n - 1) % methods.len() as u64) as usize].clone();
        shared.stats.update(|s| s.notifications_generated = n);
        shared.fanout.send_all(Arc::new((n, method))).await;
    }
}

/// Serves one accepted TCP connection.
pub(super) async fn serve(shared: Arc<Shared>, mut stream: TcpStream) {
    let faults = shared.faults.listener();
    let Some((head, leftover)) = http::read_head(&mut stream).await else {
        return;
    };
    if !head.is_websocket_upgrade() {
        let _ = http::respond(&mut stream, 426, &[], "text/plain", b"WebSocket only").await;
        return;
    }
    let id = shared.conn_number();
    let session_state = if shared.cfg.attach_on_reconnect && id > 1 {
        "SESSION_ATTACHED"
    } else {
        "SESSION_CREATED"
    };
    let Ok(ws) = http::upgrade(stream, &head, leftover).await else {
        return;
    };
    shared.stats.update(|s| {
        s.connections += 1;
        s.open_connections += 1;
        s.max_open_connections = s.max_open_connections.max(s.open_connections);
        let record = JsonRpcConnection {
            id,
            target: head.target.clone(),
            headers: head.headers.clone(),
            session_state: session_state.to_owned(),
            requests: Vec::new(),
        };
        push_capped(&mut s.connection_log, record);
    });
    let sub = shared.fanout.register(id);
    let mut conn = Conn {
        shared: Arc::clone(&shared),
        id,
    };
    conn.run(ws, faults, sub, session_state).await;
    shared.stats.update(|s| s.open_connections -= 1);
}

/// What woke the connection loop.
enum Step {
    Fault(FaultEvent<CloseWith>),
    Inbound(Option<Result<Message, WsError>>),
    Notify(Arc<(u64, String)>),
}

struct Conn {
    shared: Arc<Shared>,
    id: u64,
}

impl Conn {
    async fn run(
        &mut self,
        mut ws: Ws,
        mut faults: FaultListener<CloseWith>,
        mut sub: Subscription<Arc<(u64, String)>>,
        session_state: &str,
    ) {
        if !faults.wait_while_silent().await {
            self.shared.stats.update(|s| s.drops += 1);
            return;
        }
        let hello = json!({"jsonrpc": "2.0", "method": "OnConnected", "params": {"qSessionState": session_state}});
        if self.send(&mut ws, hello.to_string()).await.is_err() {
            return;
        }
        loop {
            if faults.is_silent() && !faults.wait_while_silent().await {
                self.shared.stats.update(|s| s.drops += 1);
                return;
            }
            let step = tokio::select! {
                ev = faults.next() => Step::Fault(ev),
                msg = ws.next() => Step::Inbound(msg),
                item = sub.recv() => match item {
                    Some(item) => Step::Notify(item),
                    None => return,
                },
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
            Step::Fault(FaultEvent::Raw(text)) => self.send(ws, text).await,
            Step::Fault(FaultEvent::Proto(close)) => {
                self.close(ws, close).await;
                return Flow::Stop;
            }
            Step::Fault(FaultEvent::Changed) => Ok(()),
            Step::Inbound(Some(Ok(Message::Text(text)))) => self.on_text(ws, text.as_str()).await,
            Step::Inbound(Some(Ok(Message::Close(_)) | Err(_)) | None) => return Flow::Stop,
            Step::Inbound(Some(Ok(_))) => Ok(()),
            Step::Notify(item) => self.notify(ws, item.0, &item.1).await,
        };
        if result.is_ok() {
            Flow::Continue
        } else {
            Flow::Stop
        }
    }

    /// Sends a close frame and waits up to a second for the client's answer, so the
    /// client sees a clean close rather than a reset.
    async fn close(&mut self, ws: &mut Ws, close: CloseWith) {
        let frame = CloseFrame {
            code: CloseCode::from(close.code),
            reason: close.reason.into(),
        };
        if ws.send(Message::Close(Some(frame))).await.is_err() {
            return;
        }
        self.shared.stats.update(|s| s.closes += 1);
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), async {
            while let Some(Ok(m)) = ws.next().await {
                if matches!(m, Message::Close(_)) {
                    break;
                }
            }
        })
        .await;
    }

    async fn send(&mut self, ws: &mut Ws, text: String) -> Result<(), WsError> {
        ws.send(Message::text(text)).await?;
        self.shared.stats.update(|s| s.frames_sent += 1);
        Ok(())
    }

    async fn notify(&mut self, ws: &mut Ws, n: u64, method: &str) -> Result<(), WsError> {
        let at = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Millis, true);
        let msg = json!({"jsonrpc": "2.0", "method": method, "params": {"n": n, "at": at}});
        self.send(ws, msg.to_string()).await?;
        let connection = self.id;
        self.shared.stats.update(|s| {
            let sent = SentNotification {
                connection,
                n,
                method: method.to_owned(),
            };
            push_capped(&mut s.notifications_sent, sent);
        });
        Ok(())
    }

    async fn on_text(&mut self, ws: &mut Ws, text: &str) -> Result<(), WsError> {
        let parsed: Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(_) => {
                self.record_other(text);
                let err = json!({"jsonrpc": "2.0", "id": null, "error": {"code": -32700, "message": "Parse error"}});
                return self.send(ws, err.to_string()).await;
            }
        };
        let (Some(id), Some(method)) = (
            parsed.get("id").cloned(),
            parsed
                .get("method")
                .and_then(Value::as_str)
                .map(str::to_owned),
        ) else {
            // Notifications from the client (no id) or junk: recorded, not answered.
            self.record_other(text);
            return Ok(());
        };
        let conn_id = self.id;
        self.shared.stats.update(|s| {
            s.requests_received += 1;
            if let Some(c) = s.connection_log.iter_mut().rev().find(|c| c.id == conn_id) {
                push_capped(&mut c.requests, parsed.clone());
            }
        });
        let handle = parsed.get("handle").cloned().unwrap_or(Value::Null);
        let params = parsed.get("params").cloned().unwrap_or(Value::Null);
        let reply = if self.shared.cfg.error_method.as_deref() == Some(method.as_str()) {
            json!({"jsonrpc": "2.0", "id": id, "error": {
                "code": -32000, "message": format!("Simulated failure of {method}"),
                "parameter": method}})
        } else {
            json!({"jsonrpc": "2.0", "id": id, "result": {
                "qReturn": {"method": method, "handle": handle, "params": params}}})
        };
        self.send(ws, reply.to_string()).await
    }

    fn record_other(&self, text: &str) {
        self.shared
            .stats
            .update(|s| push_capped(&mut s.other_client_frames, text.to_owned()));
    }
}
