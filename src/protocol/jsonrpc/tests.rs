//! JSON-RPC framing, id growth, subscription by responses, notifications, batches
//! and malformed input, with literal frames.

use super::*;
use crate::config::{SourceKind, Timing};
use crate::record::{Event, SessionEvent};
use chrono::TimeZone;

mod echo_and_attach;
mod fuzz;

fn build(requests: Vec<JsonRpcRequest>, raw: RawEvents) -> JsonRpcProtocol {
    build_with(requests, raw, false)
}

fn build_with(
    requests: Vec<JsonRpcRequest>,
    raw: RawEvents,
    only_if_attached: bool,
) -> JsonRpcProtocol {
    let cfg = JsonRpcConfig {
        headers: vec![
            ("Authorization".to_string(), Secret::new("Bearer tok-123")),
            ("X-Qlik-Xrfkey".to_string(), Secret::new("0123456789abcdef")),
        ],
        requests,
    };
    let source = SourceConfig {
        name: "engine".to_string(),
        url: Url::parse("wss://qlik.example/app/engineData?reloadUri=x").unwrap(),
        timezone: chrono_tz::Tz::UTC,
        traffic: false,
        only_if_attached,
        ca_file: None,
        timing: Timing {
            backoff_initial: Duration::from_millis(500),
            backoff_max: Duration::from_secs(30),
            idle_timeout: Duration::from_secs(60),
            handshake_timeout: Duration::from_secs(10),
            connect_timeout: Duration::from_secs(10),
            stable_after: Duration::from_secs(60),
            ping_interval: Duration::from_secs(20),
            subscribe_timeout: Duration::from_secs(15),
            max_message_bytes: 1 << 20,
        },
        kind: SourceKind::JsonRpc(cfg.clone()),
    };
    let opts = CommonOptions {
        raw_events: raw,
        timezone: chrono_tz::Tz::UTC,
    };
    JsonRpcProtocol::new(&source, &cfg, opts)
}

fn two_requests() -> Vec<JsonRpcRequest> {
    vec![
        JsonRpcRequest {
            method: "OpenDoc".into(),
            handle: -1,
            params: serde_json::json!(["Sales.qvf"]),
        },
        JsonRpcRequest {
            method: "GetActiveDoc".into(),
            handle: -1,
            params: serde_json::json!({}),
        },
    ]
}

struct Clock(Instant);

impl Clock {
    fn at(&self, secs: u64, conn: i64) -> Ctx {
        Ctx {
            source: "engine".into(),
            connection_id: conn,
            now: Utc.timestamp_opt(1_772_438_400 + secs as i64, 0).unwrap(),
            mono: self.0 + Duration::from_secs(secs),
        }
    }
}

fn sent(out: &[Output]) -> Vec<String> {
    out.iter()
        .filter_map(|o| match o {
            Output::Send(s) => Some(s.clone()),
            _ => None,
        })
        .collect()
}

fn events(out: &[Output]) -> Vec<Event> {
    out.iter()
        .filter_map(|o| match o {
            Output::Record(Record::Event(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn notes(out: &[Output]) -> Vec<Notification> {
    out.iter()
        .filter_map(|o| match o {
            Output::Record(Record::Notification(n)) => Some(n.clone()),
            _ => None,
        })
        .collect()
}

fn lifecycle(out: &[Output]) -> Vec<SessionEvent> {
    out.iter()
        .filter_map(|o| match o {
            Output::Record(Record::SessionEvent(e)) => Some(e.clone()),
            _ => None,
        })
        .collect()
}

fn warnings(out: &[Output]) -> usize {
    out.iter()
        .filter(|o| matches!(o, Output::Warning(_)))
        .count()
}

#[test]
fn requests_are_framed_and_ids_grow_across_opens() {
    let clock = Clock(Instant::now());
    let mut p = build(two_requests(), RawEvents::Envelope);
    let out = p.on_open(&clock.at(0, 1));
    assert_eq!(
        sent(&out),
        vec![
            r#"{"jsonrpc":"2.0","id":1,"method":"OpenDoc","handle":-1,"params":["Sales.qvf"]}"#,
            r#"{"jsonrpc":"2.0","id":2,"method":"GetActiveDoc","handle":-1,"params":{}}"#,
        ]
    );
    assert!(!out.contains(&Output::Subscribed));
    let out = p.on_open(&clock.at(30, 2));
    assert_eq!(
        sent(&out),
        vec![
            r#"{"jsonrpc":"2.0","id":3,"method":"OpenDoc","handle":-1,"params":["Sales.qvf"]}"#,
            r#"{"jsonrpc":"2.0","id":4,"method":"GetActiveDoc","handle":-1,"params":{}}"#,
        ]
    );
    // A late response to the previous connection's id does not count for this one.
    let out = p.on_text(&clock.at(31, 2), r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
    assert!(!out.contains(&Output::Subscribed));
    assert_eq!(events(&out)[0].kind, "response");
    // Only this connection's ids are awaited: ids 1 and 2 were forgotten at the reopen.
    p.on_text(&clock.at(32, 2), r#"{"jsonrpc":"2.0","id":3,"result":{}}"#);
    let out = p.on_text(&clock.at(33, 2), r#"{"jsonrpc":"2.0","id":4,"result":{}}"#);
    assert!(out.contains(&Output::Subscribed));
}

#[test]
fn url_headers_and_secrets() {
    let p = build(vec![], RawEvents::Envelope);
    let clock = Clock(Instant::now());
    assert_eq!(
        p.connect_url(clock.at(0, 1).now).as_str(),
        "wss://qlik.example/app/engineData?reloadUri=x"
    );
    assert_eq!(
        p.connect_headers(),
        vec![
            ("Authorization".to_string(), "Bearer tok-123".to_string()),
            ("X-Qlik-Xrfkey".to_string(), "0123456789abcdef".to_string()),
        ]
    );
    assert_eq!(
        p.secrets(),
        vec!["Bearer tok-123", "tok-123", "0123456789abcdef"]
    );
}

#[test]
fn subscribed_once_every_request_is_answered() {
    let clock = Clock(Instant::now());
    let mut p = build(two_requests(), RawEvents::Envelope);
    p.on_open(&clock.at(0, 1));
    let frame = r#"{"jsonrpc":"2.0","id":1,"result":{"qReturn":{"qType":"Doc","qHandle":1}}}"#;
    let out = p.on_text(&clock.at(1, 1), frame);
    assert!(!out.contains(&Output::Subscribed));
    let ev = events(&out);
    assert_eq!(
        (ev[0].kind.as_str(), ev[0].payload.as_str()),
        ("response", frame)
    );
    assert_eq!(ev[0].connection_id, Some(1));

    let frame = r#"{"jsonrpc":"2.0","id":2,"error":{"code":1002,"parameter":"","message":"App already open"}}"#;
    let out = p.on_text(&clock.at(2, 1), frame);
    assert!(
        out.contains(&Output::Subscribed),
        "an error is an answer too"
    );
    let ev = events(&out);
    assert_eq!(
        (ev[0].kind.as_str(), ev[0].payload.as_str()),
        ("error", frame)
    );
    let rows = lifecycle(&out);
    assert_eq!(rows.len(), 1);
    assert_eq!(rows[0].event, "subscribe_error");
    assert_eq!(rows[0].code, Some(1002));
    assert_eq!(rows[0].reason.as_deref(), Some("App already open"));
    assert!(rows[0].detail.as_deref().unwrap().contains("GetActiveDoc"));
    assert_eq!(warnings(&out), 1);

    // Repeated answers do not re-subscribe; an error to an unknown id is a notice.
    let out = p.on_text(
        &clock.at(3, 1),
        r#"{"jsonrpc":"2.0","id":99,"error":{"code":-32601,"message":"no such method"}}"#,
    );
    assert!(!out.contains(&Output::Subscribed));
    let rows = lifecycle(&out);
    assert_eq!(rows[0].event, "notification");
    assert_eq!(
        rows[0].reason.as_deref(),
        Some("error response to id 99: no such method")
    );
    assert_eq!(p.next_deadline(), None);
}

#[test]
fn no_requests_means_subscribed_at_once() {
    let clock = Clock(Instant::now());
    let mut p = build(vec![], RawEvents::Envelope);
    assert_eq!(p.on_open(&clock.at(0, 1)), vec![Output::Subscribed]);
    assert_eq!(p.next_deadline(), None);
    assert_eq!(p.on_open(&clock.at(5, 2)), vec![Output::Subscribed]);
}

#[test]
fn unanswered_requests_warn_once_per_connection() {
    let clock = Clock(Instant::now());
    let mut p = build(two_requests(), RawEvents::Envelope);
    p.on_open(&clock.at(0, 1));
    assert_eq!(p.next_deadline(), Some(clock.at(15, 1).mono));
    assert!(p.on_tick(&clock.at(14, 1)).is_empty());
    p.on_text(&clock.at(14, 1), r#"{"jsonrpc":"2.0","id":1,"result":{}}"#);
    let out = p.on_tick(&clock.at(15, 1));
    assert_eq!(warnings(&out), 1);
    let rows = lifecycle(&out);
    assert_eq!(rows[0].event, "warning");
    assert_eq!(
        rows[0].reason.as_deref(),
        Some("1 of 2 requests unanswered within 15s after opening")
    );
    assert!(p.on_tick(&clock.at(40, 1)).is_empty());
    assert_eq!(p.next_deadline(), None);
}

#[test]
fn notifications_are_stored_in_order_with_seq() {
    let clock = Clock(Instant::now());
    let mut p = build(vec![], RawEvents::Envelope);
    p.on_open(&clock.at(0, 1));
    let out = p.on_text(
        &clock.at(1, 1),
        r#"{"jsonrpc":"2.0","method":"OnConnected","params":{"qSessionState":"SESSION_CREATED"}}"#,
    );
    assert!(
        events(&out).is_empty(),
        "notifications live in their own table only"
    );
    assert_eq!(out.len(), 1);
    let n = notes(&out);
    assert_eq!(n[0].method, "OnConnected");
    assert_eq!(n[0].params, r#"{"qSessionState":"SESSION_CREATED"}"#);
    assert_eq!((n[0].seq, n[0].connection_id), (1, Some(1)));
    assert_eq!(n[0].received_at, clock.at(1, 1).now);

    let out = p.on_text(
        &clock.at(2, 1),
        r#"{"jsonrpc":"2.0","method":"OnSessionTimedOut"}"#,
    );
    let n = notes(&out);
    assert_eq!((n[0].seq, n[0].params.as_str()), (2, "null"));

    // seq restarts on a new connection.
    p.on_open(&clock.at(10, 2));
    let out = p.on_text(
        &clock.at(11, 2),
        r#"{"jsonrpc":"2.0","method":"OnConnected","params":{"qSessionState":"SESSION_ATTACHED"}}"#,
    );
    let n = notes(&out);
    assert_eq!((n[0].seq, n[0].connection_id), (1, Some(2)));

    // raw_events = off does not touch the notifications table.
    let mut p = build(vec![], RawEvents::Off);
    p.on_open(&clock.at(0, 3));
    assert_eq!(
        notes(&p.on_text(&clock.at(1, 3), r#"{"method":"X","params":[1]}"#)).len(),
        1
    );
}

#[test]
fn batches_are_handled_element_by_element() {
    let clock = Clock(Instant::now());
    let mut p = build(two_requests(), RawEvents::Envelope);
    p.on_open(&clock.at(0, 1));
    let out = p.on_text(
        &clock.at(1, 1),
        r#"[{"jsonrpc":"2.0","method":"A","params":[1]}, {"jsonrpc":"2.0","id":1,"result":{"ok":true}}, {"jsonrpc":"2.0","method":"B","params":[2]}, {"jsonrpc":"2.0","id":2,"result":null}, 7]"#,
    );
    let n = notes(&out);
    assert_eq!(
        n.iter()
            .map(|n| (n.method.as_str(), n.seq))
            .collect::<Vec<_>>(),
        vec![("A", 1), ("B", 2)]
    );
    let ev = events(&out);
    let kinds: Vec<(&str, Value)> = ev
        .iter()
        .map(|e| (e.kind.as_str(), serde_json::from_str(&e.payload).unwrap()))
        .collect();
    assert_eq!(
        kinds,
        vec![
            (
                "response",
                serde_json::json!({"jsonrpc":"2.0","id":1,"result":{"ok":true}})
            ),
            (
                "response",
                serde_json::json!({"jsonrpc":"2.0","id":2,"result":null})
            ),
            ("malformed", serde_json::json!(7)),
        ]
    );
    assert_eq!(out.iter().filter(|o| **o == Output::Subscribed).count(), 1);
    assert_eq!(warnings(&out), 1);
}

#[test]
fn malformed_and_odd_messages_are_kept() {
    let clock = Clock(Instant::now());
    let mut p = build(vec![], RawEvents::Envelope);
    p.on_open(&clock.at(0, 1));
    for (frame, kind, payload) in [
        ("<html>502</html>", "malformed", r#""<html>502</html>""#),
        ("42", "malformed", "42"),
        ("[]", "malformed", "[]"),
        (r#"{"jsonrpc":"2.0"}"#, "malformed", r#"{"jsonrpc":"2.0"}"#),
        (
            r#"{"jsonrpc":"2.0","id":5}"#,
            "malformed",
            r#"{"jsonrpc":"2.0","id":5}"#,
        ),
        (
            r#"{"jsonrpc":"2.0","id":9,"method":"Ping"}"#,
            "request",
            r#"{"jsonrpc":"2.0","id":9,"method":"Ping"}"#,
        ),
    ] {
        let out = p.on_text(&clock.at(1, 1), frame);
        let ev = events(&out);
        assert_eq!(ev.len(), 1, "{frame}");
        assert_eq!(
            (ev[0].kind.as_str(), ev[0].payload.as_str()),
            (kind, payload)
        );
        assert_eq!(warnings(&out), usize::from(kind == "malformed"), "{frame}");
        assert!(notes(&out).is_empty());
    }
    assert!(p.on_close(&clock.at(2, 1)).is_empty());
}
