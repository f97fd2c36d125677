//! Generic JSON-RPC 2.0 over WebSocket (Qlik's engine and proxy are the model): the
//! configured requests are sent on every open, notifications go to `notifications`
//! in arrival order, responses and errors are kept whole in `events`.
//!
//! Pure: no sockets, no tasks, no clock of its own. It must never reuse a request id
//! (ids grow across connections, so a late response can never be mistaken for one
//! to a newer request) and never drop a message: whatever cannot be read is stored
//! as a `malformed` event.
//!
//! Decisions where JSON-RPC leaves room:
//! - The source is `Subscribed` once every configured request of this connection got
//!   a response, an error response included (staying unsubscribed would change
//!   nothing on the wire; the failure is recorded instead). With no requests it is
//!   `Subscribed` at once.
//! - An error response to a configured request is a `subscribe_error` lifecycle row
//!   (code and message of the error) plus a warning; an error to any other id is a
//!   `notification` lifecycle row. Both also keep the whole message in `events`.
//! - A server-to-client request (`method` and `id`) is kept in `events` as kind
//!   `request` and not answered.
//! - Requests unanswered after `subscribe_timeout` give one warning per connection;
//!   the connection stays.
//! - Header values are credentials (`Authorization`, cookies, Qlik keys). A frame
//!   that quotes one (a server echoing the token in a notification or an error) is
//!   masked before anything is stored; for `scheme credential` values the bare
//!   credential is masked too.
//! - `only_if_attached` (enigma's `resume(onlyIfAttached)`): an `OnConnected` on a
//!   reconnection whose `qSessionState` is `SESSION_CREATED` means the server did not
//!   attach us to the previous session and its state is gone. That is one `warning`
//!   lifecycle row; recording goes on (the configured requests are replayed on every
//!   open, so the subscription is rebuilt rather than lost).

#[cfg(test)]
mod tests;

use crate::config::{JsonRpcConfig, JsonRpcRequest, RawEvents, Secret, SourceConfig};
use crate::protocol::{
    CommonOptions, Ctx, Output, Protocol, event_record, session_event, text_as_json,
};
use crate::record::{Notification, Record};
use crate::redact::{Redactor, header_secrets};
use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};
use url::Url;

/// A JSON-RPC 2.0 client that replays its configured requests on every open and
/// records everything the server sends. One value lives for the whole life of a
/// source; per-connection state resets in `on_open`.
pub struct JsonRpcProtocol {
    url: Url,
    headers: Vec<(String, Secret)>,
    requests: Vec<JsonRpcRequest>,
    opts: CommonOptions,
    subscribe_timeout: Duration,
    /// Masks header credentials the server may echo back.
    redactor: Redactor,
    /// Warn when a reconnection lands on a fresh server session.
    only_if_attached: bool,
    /// Connections opened so far (the first is not a resume).
    opened: u64,
    /// The id the next request gets; never reset.
    next_id: i64,
    // Per connection.
    /// Ids sent on this connection still waiting for a response, with their method.
    pending: BTreeMap<i64, String>,
    subscribed: bool,
    deadline: Option<Instant>,
    /// Notifications seen on this connection.
    seq: i64,
}

impl JsonRpcProtocol {
    /// Builds the protocol from validated config. A zero `subscribe_timeout` in the
    /// source's timing disables the unanswered-requests warning.
    pub fn new(source: &SourceConfig, cfg: &JsonRpcConfig, opts: CommonOptions) -> Self {
        JsonRpcProtocol {
            url: source.url.clone(),
            redactor: Redactor::new(header_secrets(&cfg.headers)),
            headers: cfg.headers.clone(),
            requests: cfg.requests.clone(),
            opts,
            subscribe_timeout: source.timing.subscribe_timeout,
            only_if_attached: source.only_if_attached,
            opened: 0,
            next_id: 1,
            pending: BTreeMap::new(),
            subscribed: false,
            deadline: None,
            seq: 0,
        }
    }

    fn record(&self, out: &mut Vec<Output>, ctx: &Ctx, kind: &str, payload: String) {
        if self.opts.raw_events == RawEvents::Off {
            return;
        }
        if let Some(r) = event_record(ctx, &self.opts, kind, payload, None) {
            out.push(Output::Record(r));
        }
    }

    fn malformed(&self, out: &mut Vec<Output>, ctx: &Ctx, payload: String, why: &str) {
        let len = payload.len();
        self.record(out, ctx, "malformed", payload);
        out.push(Output::Warning(format!(
            "jsonrpc: malformed message ({len} bytes): {why}; kept as a malformed event"
        )));
    }

    /// One message: the whole frame, or one element of a batch. `raw` is the frame
    /// text when the message is the whole frame, so it is stored byte for byte.
    fn on_message(&mut self, out: &mut Vec<Output>, ctx: &Ctx, msg: &Value, raw: Option<&str>) {
        let whole = || raw.map_or_else(|| msg.to_string(), str::to_string);
        let Value::Object(obj) = msg else {
            return self.malformed(out, ctx, whole(), "not a JSON object");
        };
        let method = obj.get("method").and_then(Value::as_str);
        let id = obj.get("id");
        match (method, id) {
            (Some(method), None) => {
                if method == "OnConnected" {
                    self.on_connected(out, ctx, obj);
                }
                self.seq += 1;
                out.push(Output::Record(Record::Notification(Notification {
                    id: crate::ids::next_id(),
                    source: ctx.source.clone(),
                    connection_id: Some(ctx.connection_id),
                    seq: self.seq,
                    received_at: ctx.now,
                    method: method.to_string(),
                    params: obj.get("params").unwrap_or(&Value::Null).to_string(),
                })));
            }
            (Some(_), Some(_)) => self.record(out, ctx, "request", whole()),
            (None, Some(id)) if obj.contains_key("error") => {
                self.record(out, ctx, "error", whole());
                self.on_error(out, ctx, id, obj);
            }
            (None, Some(id)) if obj.contains_key("result") => {
                self.record(out, ctx, "response", whole());
                self.answered(out, id);
            }
            _ => self.malformed(out, ctx, whole(), "neither notification nor response"),
        }
    }

    fn on_error(&mut self, out: &mut Vec<Output>, ctx: &Ctx, id: &Value, obj: &Map<String, Value>) {
        let error = obj.get("error").unwrap_or(&Value::Null);
        let code = error.get("code").and_then(Value::as_i64);
        let message = match error.get("message") {
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
            None => error.to_string(),
        };
        match id.as_i64().and_then(|n| self.pending.get(&n)) {
            Some(method) => {
                out.push(Output::Warning(format!(
                    "jsonrpc: request {id} ({method}) failed: {} {message}",
                    code.map_or_else(String::new, |c| c.to_string())
                )));
                let detail = serde_json::json!({ "id": id, "method": method }).to_string();
                out.push(Output::Record(session_event(
                    ctx,
                    "subscribe_error",
                    code,
                    Some(message),
                    Some(detail),
                )));
            }
            None => {
                let reason = format!("error response to id {id}: {message}");
                out.push(Output::Record(session_event(
                    ctx,
                    "notification",
                    code,
                    Some(reason),
                    None,
                )));
            }
        }
        self.answered(out, id);
    }

    /// `OnConnected` after a reconnection: with `only_if_attached`, a fresh server
    /// session (`SESSION_CREATED`) is worth a warning row.
    fn on_connected(&self, out: &mut Vec<Output>, ctx: &Ctx, obj: &Map<String, Value>) {
        let state = obj
            .get("params")
            .and_then(|p| p.get("qSessionState"))
            .and_then(Value::as_str);
        if self.only_if_attached && self.opened > 1 && state == Some("SESSION_CREATED") {
            let msg = "resume did not attach: the server created a fresh session \
                       (only_if_attached); state of the previous session is gone";
            out.push(Output::Warning(format!("jsonrpc: {msg}")));
            out.push(Output::Record(session_event(
                ctx,
                "warning",
                None,
                Some(msg.to_string()),
                None,
            )));
        }
    }

    /// Marks a response to `id` as received; the last missing one makes the source
    /// `Subscribed`.
    fn answered(&mut self, out: &mut Vec<Output>, id: &Value) {
        let was_pending = id
            .as_i64()
            .is_some_and(|n| self.pending.remove(&n).is_some());
        if was_pending && self.pending.is_empty() && !self.subscribed {
            self.subscribed = true;
            self.deadline = None;
            out.push(Output::Subscribed);
        }
    }
}

/// The wire form of one request, fields in the order JSON-RPC examples use.
fn request_frame(id: i64, req: &JsonRpcRequest) -> String {
    format!(
        r#"{{"jsonrpc":"2.0","id":{id},"method":{},"handle":{},"params":{}}}"#,
        Value::String(req.method.clone()),
        req.handle,
        req.params
    )
}

impl Protocol for JsonRpcProtocol {
    fn connect_url(&self, _now: DateTime<Utc>) -> Url {
        self.url.clone()
    }

    fn connect_headers(&self) -> Vec<(String, String)> {
        self.headers
            .iter()
            .map(|(k, v)| (k.clone(), v.expose().to_string()))
            .collect()
    }

    fn on_open(&mut self, ctx: &Ctx) -> Vec<Output> {
        self.pending.clear();
        self.opened += 1;
        self.seq = 0;
        self.subscribed = false;
        self.deadline = None;
        let mut out = Vec::with_capacity(self.requests.len() + 1);
        for req in &self.requests {
            let id = self.next_id;
            self.next_id += 1;
            self.pending.insert(id, req.method.clone());
            out.push(Output::Send(request_frame(id, req)));
        }
        if self.pending.is_empty() {
            self.subscribed = true;
            out.push(Output::Subscribed);
        } else if !self.subscribe_timeout.is_zero() {
            self.deadline = Some(ctx.mono + self.subscribe_timeout);
        }
        out
    }

    fn on_text(&mut self, ctx: &Ctx, text: &str) -> Vec<Output> {
        let redacted = self.redactor.redact(text);
        let text = redacted.as_str();
        let mut out = Vec::new();
        match serde_json::from_str::<Value>(text) {
            Err(_) => self.malformed(&mut out, ctx, text_as_json(text), "not JSON"),
            Ok(Value::Array(batch)) if batch.is_empty() => {
                self.malformed(&mut out, ctx, text.to_string(), "empty batch")
            }
            Ok(Value::Array(batch)) => {
                for msg in &batch {
                    self.on_message(&mut out, ctx, msg, None);
                }
            }
            Ok(msg) => self.on_message(&mut out, ctx, &msg, Some(text)),
        }
        out
    }

    fn on_tick(&mut self, ctx: &Ctx) -> Vec<Output> {
        let mut out = Vec::new();
        if let Some(deadline) = self.deadline
            && ctx.mono >= deadline
        {
            self.deadline = None;
            let msg = format!(
                "{} of {} requests unanswered within {} after opening",
                self.pending.len(),
                self.requests.len(),
                humantime::format_duration(self.subscribe_timeout)
            );
            out.push(Output::Warning(format!("jsonrpc: {msg}")));
            out.push(Output::Record(session_event(
                ctx,
                "warning",
                None,
                Some(msg),
                None,
            )));
        }
        out
    }

    fn postpone(&mut self, by: Duration) {
        if let Some(d) = self.deadline.as_mut() {
            *d += by;
        }
    }

    fn next_deadline(&self) -> Option<Instant> {
        self.deadline
    }

    fn on_close(&mut self, _ctx: &Ctx) -> Vec<Output> {
        // JSON-RPC has no generic unsubscribe; closing the socket ends the session.
        self.deadline = None;
        Vec::new()
    }

    fn secrets(&self) -> Vec<String> {
        header_secrets(&self.headers)
    }
}
