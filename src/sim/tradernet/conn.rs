//! One accepted TCP connection of the Tradernet simulator: the edge checks
//! (path, User-Agent), authentication from the query, `userData`, the sessions
//! channel and its pushes, and injected faults.
//!
//! Drops are bare TCP drops, never close frames. Secrets seen in the query are
//! only compared, never logged.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use futures_util::{SinkExt, StreamExt};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Error as WsError, Message};

use super::Shared;
use crate::sim::faults::{FaultEvent, FaultListener, Flow, later, sleep_until_opt};
use crate::sim::http::{self, RequestHead, Ws};
use crate::sim::observe::push_capped;

/// Hex HMAC-SHA256 of `timestamp` keyed with `private_key`: the `X-NtApi-Sig`
/// a client must send with `X-NtApi-Timestamp`.
pub fn sign(private_key: &str, timestamp: &str) -> String {
    match Hmac::<Sha256>::new_from_slice(private_key.as_bytes()) {
        Ok(mut mac) => {
            mac.update(timestamp.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        // HMAC accepts keys of any length; keep a total function anyway.
        Err(_) => String::new(),
    }
}

fn authenticated(shared: &Shared, head: &RequestHead) -> bool {
    if let Some(sid) = head.query_param("SID") {
        return shared.cfg.sids.contains(&sid);
    }
    let (Some(public), Some(ts), Some(sig)) = (
        head.query_param("X-NtApi-PublicKey"),
        head.query_param("X-NtApi-Timestamp"),
        head.query_param("X-NtApi-Sig"),
    ) else {
        return false;
    };
    shared
        .cfg
        .api_keys
        .iter()
        .find(|(p, _)| *p == public)
        .is_some_and(|(_, private)| sign(private, &ts).eq_ignore_ascii_case(&sig))
}

fn agent_blocked(shared: &Shared, ua: Option<&str>) -> bool {
    match ua {
        None => true,
        Some(ua) => {
            let ua = ua.to_ascii_lowercase();
            ua.trim().is_empty()
                || shared
                    .cfg
                    .blocked_user_agents
                    .iter()
                    .any(|b| ua.contains(&b.to_ascii_lowercase()))
        }
    }
}

/// Serves one accepted TCP connection.
pub(super) async fn serve(shared: Arc<Shared>, mut stream: TcpStream) {
    let faults = shared.faults.listener();
    let Some((head, leftover)) = http::read_head(&mut stream).await else {
        return;
    };
    let ua = head.header("user-agent").map(str::to_owned);
    shared.stats.update(|s| {
        push_capped(&mut s.connect_targets, head.target.clone());
        push_capped(&mut s.user_agents, ua.clone());
    });
    let refusal = if !head.is_websocket_upgrade() {
        Some((426, "WebSocket upgrade required"))
    } else if head.path() != "/" {
        Some((404, "not found"))
    } else if agent_blocked(&shared, ua.as_deref()) {
        Some((403, "Forbidden"))
    } else {
        None
    };
    if let Some((status, text)) = refusal {
        shared.stats.update(|s| s.rejected_upgrades += 1);
        let _ = http::respond(&mut stream, status, &[], "text/plain", text.as_bytes()).await;
        return;
    }
    let authed = authenticated(&shared, &head) && !shared.demo.load(Ordering::SeqCst);
    let Ok(ws) = http::upgrade(stream, &head, leftover).await else {
        return;
    };
    shared.stats.update(|s| {
        s.connections += 1;
        s.open_connections += 1;
        if authed {
            s.auth_ok += 1;
        } else {
            s.auth_failed += 1;
        }
    });
    let mut conn = Conn {
        shared: Arc::clone(&shared),
        authed,
        subscribed: false,
        push_at: None,
    };
    conn.run(ws, faults).await;
    shared.stats.update(|s| s.open_connections -= 1);
}

/// What woke the connection loop.
enum Step {
    Fault(FaultEvent<()>),
    Inbound(Option<Result<Message, WsError>>),
    Push,
}

struct Conn {
    shared: Arc<Shared>,
    authed: bool,
    subscribed: bool,
    push_at: Option<Instant>,
}

impl Conn {
    async fn run(&mut self, mut ws: Ws, mut faults: FaultListener<()>) {
        if !faults.wait_while_silent().await {
            self.shared.stats.update(|s| s.drops += 1);
            return;
        }
        let user_data = if self.authed {
            json!(["userData", {"login": self.shared.cfg.owner_login, "mode": "prod", "isDemo": false, "lang": "en"}])
        } else {
            json!(["userData", {"isDemo": true, "mode": "demo"}])
        };
        if self.send(&mut ws, user_data.to_string()).await.is_err() {
            return;
        }
        let mut version = self.shared.version.subscribe();
        loop {
            if faults.is_silent() && !faults.wait_while_silent().await {
                self.shared.stats.update(|s| s.drops += 1);
                return;
            }
            let step = tokio::select! {
                ev = faults.next() => Step::Fault(ev),
                msg = ws.next() => Step::Inbound(msg),
                _ = sleep_until_opt(self.push_at) => Step::Push,
                changed = version.changed(), if self.subscribed => match changed {
                    Ok(()) => Step::Push,
                    Err(_) => return,
                },
            };
            match faults.guard(self.handle(&mut ws, &mut version, step)).await {
                Flow::Continue => {}
                Flow::Stop => return,
                Flow::Drop => {
                    self.shared.stats.update(|s| s.drops += 1);
                    return;
                }
            }
        }
    }

    async fn handle(
        &mut self,
        ws: &mut Ws,
        version: &mut tokio::sync::watch::Receiver<u64>,
        step: Step,
    ) -> Flow {
        let result = match step {
            Step::Fault(FaultEvent::Drop) => return Flow::Drop,
            Step::Fault(FaultEvent::Raw(text)) => self.send(ws, text).await,
            Step::Fault(FaultEvent::Proto(()) | FaultEvent::Changed) => Ok(()),
            Step::Inbound(Some(Ok(Message::Text(text)))) => {
                self.on_text(ws, version, text.as_str()).await
            }
            Step::Inbound(Some(Ok(Message::Ping(_)))) => {
                self.shared.stats.update(|s| s.pings_received += 1);
                Ok(())
            }
            Step::Inbound(Some(Ok(Message::Close(frame)))) => {
                let code = frame.map_or(1005, |f| u16::from(f.code));
                self.shared
                    .stats
                    .update(|s| push_capped(&mut s.client_close_codes, code));
                return Flow::Stop;
            }
            Step::Inbound(Some(Err(_)) | None) => return Flow::Stop,
            Step::Inbound(Some(Ok(_))) => Ok(()),
            Step::Push => self.push(ws).await,
        };
        if result.is_ok() {
            Flow::Continue
        } else {
            Flow::Stop
        }
    }

    async fn send(&mut self, ws: &mut Ws, text: String) -> Result<(), WsError> {
        ws.send(Message::text(text)).await?;
        self.shared.stats.update(|s| s.frames_sent += 1);
        Ok(())
    }

    async fn push(&mut self, ws: &mut Ws) -> Result<(), WsError> {
        self.push_at = Some(later(Instant::now(), self.shared.cfg.push_interval));
        let frame = json!(["sessions", self.shared.sessions_json()]);
        self.shared.stats.update(|s| s.session_pushes += 1);
        self.send(ws, frame.to_string()).await
    }

    async fn on_text(
        &mut self,
        ws: &mut Ws,
        version: &mut tokio::sync::watch::Receiver<u64>,
        text: &str,
    ) -> Result<(), WsError> {
        self.shared
            .stats
            .update(|s| push_capped(&mut s.client_frames, text.to_owned()));
        let parsed: Option<Value> = serde_json::from_str(text).ok();
        let Some(event) = parsed
            .as_ref()
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(Value::as_str)
        else {
            return self
                .send(ws, json!(["error", "Bad request"]).to_string())
                .await;
        };
        if event != "sessions" && event != "session" {
            // Other channels exist on the real server; the simulator only records them.
            return Ok(());
        }
        self.shared.stats.update(|s| s.subscribes += 1);
        if !self.authed {
            self.shared.stats.update(|s| s.refused_subscribes += 1);
            let err = json!([
                "error",
                "Not authorized: the sessions channel needs a valid SID or API key"
            ]);
            return self.send(ws, err.to_string()).await;
        }
        if !self.shared.answer.load(Ordering::SeqCst) {
            return Ok(());
        }
        self.subscribed = true;
        version.borrow_and_update();
        self.push(ws).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signature_is_hex_hmac_sha256_of_the_timestamp() {
        // RFC 4231 test case 2: key "Jefe", data "what do ya want for nothing?".
        assert_eq!(
            sign("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
