//! The Navixy subscription exchange: building `subscribe`/`unsubscribe` messages from
//! config, and reading the server's `response` and `error` frames.
//!
//! Pure functions over JSON values; the caller decides what to send and what the
//! results mean for the connection. The hash appears only in the built message text,
//! never in a record built here (error details are redacted by the caller).

use crate::config::{NavixyConfig, NavixyRequestType, NavixySubscription, NavixyTarget};
use crate::protocol::{Ctx, session_event};
use crate::record::Record;
use serde_json::{Map, Value, json};

/// The `subscribe` (or, with `action = "unsubscribe"`, `unsubscribe`) message for
/// every configured request. Both carry the same structure, as the API requires.
/// `"iso_datetime": true` is added when configured so timestamps carry offsets.
pub fn request_message(action: &str, hash: &str, cfg: &NavixyConfig) -> String {
    let requests: Vec<Value> = cfg.subscriptions.iter().map(request_json).collect();
    let mut msg = Map::new();
    msg.insert("action".into(), json!(action));
    msg.insert("hash".into(), json!(hash));
    msg.insert("requests".into(), Value::Array(requests));
    if cfg.iso_datetime {
        msg.insert("iso_datetime".into(), json!(true));
    }
    Value::Object(msg).to_string()
}

/// One entry of `requests`. `state` names its trackers in `trackers`; every other
/// type takes a `target`. A `state` request with target `all` (which config
/// validation refuses) falls back to a `target` rather than inventing tracker ids.
fn request_json(sub: &NavixySubscription) -> Value {
    let mut r = Map::new();
    r.insert("type".into(), json!(sub.kind.as_str()));
    match (&sub.target, sub.kind) {
        (NavixyTarget::Selected(ids), NavixyRequestType::State) => {
            r.insert("trackers".into(), json!(ids));
        }
        (NavixyTarget::Selected(ids), _) => {
            r.insert(
                "target".into(),
                json!({"type": "selected", "tracker_ids": ids}),
            );
        }
        (NavixyTarget::All, _) => {
            r.insert("target".into(), json!({"type": "all"}));
        }
    }
    if let Some(v) = &sub.rate_limit {
        r.insert("rate_limit".into(), json!(v));
    }
    if let Some(v) = &sub.format {
        r.insert("format".into(), json!(v));
    }
    if let Some(v) = &sub.sensor_type {
        r.insert("sensor_type".into(), json!(v));
    }
    if let Some(v) = sub.include_components {
        r.insert("include_components".into(), json!(v));
    }
    Value::Object(r)
}

/// What a `response` frame says.
#[derive(Debug, Default)]
pub struct ResponseOutcome {
    /// `subscribe_status` rows (trackers not `normal`) and `subscribe_error` rows
    /// (request types answered `success: false`).
    pub records: Vec<Record>,
    /// Answer to an `unsubscribe`: says nothing about the subscription.
    pub is_unsubscribe: bool,
    /// The subscription works, at least for one request type. `success` may be
    /// missing on the wire; only an explicit `false` counts as failure.
    pub success: bool,
}

/// Reads a `response` frame, with or without `success`, with or without the `value`
/// wrapper around the per-tracker statuses.
pub fn read_response(ctx: &Ctx, v: &Value) -> ResponseOutcome {
    let action = v.get("action").and_then(Value::as_str).unwrap_or("");
    let mut out = ResponseOutcome {
        is_unsubscribe: action.ends_with("unsubscribe"),
        ..Default::default()
    };
    let top_ok = v.get("success").and_then(Value::as_bool).unwrap_or(true);
    if !top_ok {
        let (code, description) = status_of(v);
        out.records.push(session_event(
            ctx,
            "subscribe_error",
            code,
            Some(description.unwrap_or_else(|| "response with success=false".into())),
            Some(json!({"action": action}).to_string()),
        ));
    }
    let (mut any_ok, mut any_failed) = (false, false);
    if let Some(data) = v.get("data").and_then(Value::as_object) {
        for (request, entry) in data {
            let ok = match entry {
                Value::Object(o) => o.get("success").and_then(Value::as_bool).unwrap_or(true),
                Value::Bool(b) => *b,
                _ => true,
            };
            if ok {
                any_ok = true;
            } else {
                any_failed = true;
                let (code, description) = status_of(entry);
                out.records.push(session_event(
                    ctx,
                    "subscribe_error",
                    code,
                    Some(description.unwrap_or_else(|| format!("{request}: success=false"))),
                    Some(json!({"action": action, "request": request}).to_string()),
                ));
            }
            for (tracker, status) in tracker_statuses(entry) {
                if status != "normal" {
                    let tracker_id = tracker
                        .parse::<i64>()
                        .map(Value::from)
                        .unwrap_or_else(|_| Value::from(tracker));
                    out.records.push(session_event(
                        ctx,
                        "subscribe_status",
                        None,
                        Some(status.to_string()),
                        Some(json!({"tracker_id": tracker_id, "request": request}).to_string()),
                    ));
                }
            }
        }
    }
    out.success = top_ok && (any_ok || !any_failed);
    out
}

/// Per-tracker statuses of one request type: the `value` map, or (old servers,
/// no wrapper) the entry's own keys that are tracker ids.
fn tracker_statuses(entry: &Value) -> Vec<(&str, &str)> {
    let Some(o) = entry.as_object() else {
        return Vec::new();
    };
    match o.get("value") {
        Some(Value::Object(m)) => m
            .iter()
            .filter_map(|(k, s)| Some((k.as_str(), s.as_str()?)))
            .collect(),
        Some(_) => Vec::new(),
        None => o
            .iter()
            .filter(|(k, _)| k.parse::<i64>().is_ok())
            .filter_map(|(k, s)| Some((k.as_str(), s.as_str()?)))
            .collect(),
    }
}

/// `status.code` (number or numeric string) and `status.description` of a frame.
fn status_of(v: &Value) -> (Option<i64>, Option<String>) {
    let status = v.get("status");
    let code = status.and_then(|s| s.get("code")).and_then(|c| match c {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    });
    let description = status
        .and_then(|s| s.get("description"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| status.and_then(Value::as_str).map(str::to_string));
    (code, description)
}

/// What an `error` frame says.
#[derive(Debug, Clone, PartialEq)]
pub struct ErrorOutcome {
    /// `status.code` (3 and 4 mean the hash is dead), if the frame had one.
    pub code: Option<i64>,
    /// `status.description`, or a placeholder when the server sent none.
    pub description: String,
    /// JSON text: the frame's `action` (possibly the string `"null"`) and `data`
    /// (absent, a string or an object), for `session_events.detail`.
    pub detail: String,
}

impl ErrorOutcome {
    /// Codes 3 (wrong hash) and 4 (user/API key not found, session ended) mean the
    /// hash is dead: retrying with it cannot help.
    pub fn credential_dead(&self) -> bool {
        matches!(self.code, Some(3) | Some(4))
    }
}

/// Reads an `error` frame.
pub fn read_error(v: &Value) -> ErrorOutcome {
    let (code, description) = status_of(v);
    let action = v.get("action").cloned().unwrap_or(Value::Null);
    let data = v.get("data").cloned().unwrap_or(Value::Null);
    ErrorOutcome {
        code,
        description: description.unwrap_or_else(|| "error without description".into()),
        detail: json!({"action": action, "data": data}).to_string(),
    }
}
