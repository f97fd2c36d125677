//! Parsing of `subscribe` / `unsubscribe` messages and the responses to them.
//!
//! Accepts the documented `requests` form and the deprecated `events`/`trackers`
//! form. Pure functions over JSON: no sockets, no shared state beyond reading the
//! configuration.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Map, Value, json};

use super::{ResponseShape, Shared, TrackerStatus};

/// Which trackers a request targets.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Target {
    All,
    Selected(BTreeSet<u64>),
}

impl Target {
    /// Whether the request covers `tracker_id`.
    pub fn contains(&self, tracker_id: u64) -> bool {
        match self {
            Self::All => true,
            Self::Selected(ids) => ids.contains(&tracker_id),
        }
    }
}

/// One entry of `requests`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Request {
    /// Event type (`state_batch`, `readings_batch`, `state`, …).
    pub kind: String,
    /// Trackers covered.
    pub target: Target,
    /// `format: compact` was asked for.
    pub compact: bool,
}

fn ids(v: Option<&Value>) -> Option<BTreeSet<u64>> {
    v.and_then(Value::as_array)
        .map(|a| a.iter().filter_map(Value::as_u64).collect())
}

/// The requests of a subscribe/unsubscribe message, in either form.
pub(super) fn parse_requests(msg: &Value) -> Vec<Request> {
    if let Some(reqs) = msg.get("requests").and_then(Value::as_array) {
        return reqs
            .iter()
            .filter_map(|r| {
                let kind = r.get("type")?.as_str()?.to_owned();
                let target = match r.get("target") {
                    Some(t) if t.get("type").and_then(Value::as_str) == Some("selected") => {
                        Target::Selected(ids(t.get("tracker_ids")).unwrap_or_default())
                    }
                    Some(_) => Target::All,
                    None => ids(r.get("trackers")).map_or(Target::All, Target::Selected),
                };
                let compact = r.get("format").and_then(Value::as_str) == Some("compact");
                Some(Request {
                    kind,
                    target,
                    compact,
                })
            })
            .collect();
    }
    let target = ids(msg.get("trackers")).map_or(Target::All, Target::Selected);
    msg.get("events")
        .and_then(Value::as_array)
        .map(|evs| {
            evs.iter()
                .filter_map(Value::as_str)
                .map(|kind| Request {
                    kind: kind.to_owned(),
                    target: target.clone(),
                    compact: false,
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The per-tracker status map a response reports for `target`.
fn status_map(shared: &Shared, target: &Target) -> BTreeMap<u64, TrackerStatus> {
    let mut map = BTreeMap::new();
    match target {
        Target::All => {
            for idx in 0..shared.cfg.trackers {
                let id = shared.tracker_id(idx);
                map.insert(id, shared.status_of(id));
            }
            for (id, status) in &shared.cfg.status_overrides {
                map.insert(*id, *status);
            }
        }
        Target::Selected(ids) => {
            for id in ids {
                map.insert(*id, shared.status_of(*id));
            }
        }
    }
    map
}

fn shaped(shape: ResponseShape, value: Map<String, Value>) -> Value {
    match shape {
        ResponseShape::Documented => json!({"success": true, "value": value}),
        ResponseShape::WithoutSuccess => json!({"value": value}),
        ResponseShape::Bare => Value::Object(value),
    }
}

/// `{"type":"response","action":"subscription/<action>",...}` for `requests`.
pub(super) fn response(shared: &Shared, action: &str, requests: &[Request]) -> Value {
    let mut data = Map::new();
    for req in requests {
        let value: Map<String, Value> = status_map(shared, &req.target)
            .into_iter()
            .map(|(id, s)| (id.to_string(), Value::from(s.as_str())))
            .collect();
        data.insert(req.kind.clone(), shaped(shared.cfg.response_shape, value));
    }
    json!({
        "type": "response",
        "action": format!("subscription/{action}"),
        "events": kinds(requests),
        "data": data,
    })
}

/// The `Wrong hash` error for a refused subscribe.
pub(super) fn wrong_hash(msg: &Value, requests: &[Request]) -> Value {
    let mut data = json!({"events": kinds(requests)});
    if let (Some(trackers), Value::Object(map)) = (msg.get("trackers"), &mut data) {
        map.insert("trackers".into(), trackers.clone());
    }
    json!({
        "type": "error",
        "action": "subscription/subscribe",
        "status": {"code": 3, "description": "Wrong hash"},
        "data": data,
    })
}

/// A subscribe refused for a reason other than the hash (busy server).
pub(super) fn refused(requests: &[Request], code: u16, description: &str) -> Value {
    json!({
        "type": "error",
        "action": "subscription/subscribe",
        "status": {"code": code, "description": description},
        "data": {"events": kinds(requests)},
    })
}

/// The error for a client message the server cannot make sense of (`action` is
/// the string `"null"`, as seen on the wire).
pub(super) fn invalid_message() -> Value {
    json!({
        "type": "error",
        "action": "null",
        "status": {"code": 7, "description": "Invalid parameters"},
    })
}

fn kinds(requests: &[Request]) -> Vec<&str> {
    requests.iter().map(|r| r.kind.as_str()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_documented_and_deprecated_forms() {
        let msg = json!({"action": "subscribe", "hash": "h", "requests": [
            {"type": "state_batch", "target": {"type": "all"}, "rate_limit": "5s", "format": "compact"},
            {"type": "readings_batch", "target": {"type": "selected", "tracker_ids": [501, 502]}},
            {"type": "state", "trackers": [503]}]});
        let reqs = parse_requests(&msg);
        assert_eq!(reqs.len(), 3);
        assert_eq!(reqs[0].target, Target::All);
        assert!(reqs[0].compact);
        assert_eq!(reqs[1].target, Target::Selected([501, 502].into()));
        assert_eq!(reqs[2].target, Target::Selected([503].into()));

        let old =
            json!({"action": "subscribe", "hash": "h", "events": ["state"], "trackers": [501]});
        let reqs = parse_requests(&old);
        assert_eq!(reqs.len(), 1);
        assert_eq!(reqs[0].kind, "state");
        assert!(reqs[0].target.contains(501) && !reqs[0].target.contains(502));
    }
}
