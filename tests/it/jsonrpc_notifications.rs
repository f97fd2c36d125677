//! Issue 4, JSON-RPC: every notification the server wrote is stored once, in order
//! (by connection, then `seq`), with its method and params, across a drop and
//! resume; the configured requests are sent again on the new connection with fresh
//! ids; an error response to a configured request is a `subscribe_error` row.

use std::time::Duration;

use crate::support::*;
use serde_json::{Value, json};
use wsvault::sim::jsonrpc::{JsonRpcControl, JsonRpcSim, JsonRpcSimConfig};
use wsvault::store::Store;

const SOURCE: &str = "engine";

async fn sim(cfg: JsonRpcSimConfig) -> JsonRpcSim {
    JsonRpcSim::start("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap()
}

fn source(sim: &JsonRpcSim, extra: &str) -> String {
    format!(
        r#"
[[sources]]
name = "{SOURCE}"
kind = "jsonrpc"
url = "{url}"
{extra}
requests = [
  {{ method = "GetActiveDoc", handle = -1, params = [] }},
  {{ method = "GetLayout", handle = 1, params = ["a", 2] }},
]
"#,
        url = sim.ws_url()
    )
}

/// Stored notifications of `SOURCE` other than `OnConnected`.
const DATA_COUNT: &str = "SELECT count(*) FROM notifications WHERE method <> 'OnConnected'";

/// Pauses the simulator and waits until everything it wrote is stored.
async fn settle(store: &Store, daemon: &Daemon, ctl: &JsonRpcControl) {
    ctl.set_silent(true);
    // A send in progress when silence began may still complete: wait for the count
    // to match the simulator's record, then check it stays matched.
    let settled = || async {
        let sent = ctl.stats().notifications_sent.len() as i64;
        let stored = scalar(store, DATA_COUNT).await;
        if stored != sent {
            return (stored, sent, false);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let still = ctl.stats().notifications_sent.len() as i64 == sent
            && scalar(store, DATA_COUNT).await == sent;
        (stored, sent, still)
    };
    let what = "every notification stored, and still after 100 ms (stored, sent, still)";
    wait_for(LIMIT, what, Some(daemon), settled, |s| s.2).await;
}

each_backend!(every_notification_is_stored_in_order_and_requests_are_replayed);
async fn every_notification_is_stored_in_order_and_requests_are_replayed(backend: Backend) {
    for db in test_databases(backend).await {
        notifications(&db).await;
    }
}

async fn notifications(db: &TestDb) {
    let label = db.label;
    let sim = sim(JsonRpcSimConfig {
        interval: Duration::from_millis(15),
        attach_on_reconnect: true,
        ..JsonRpcSimConfig::default()
    })
    .await;
    let ctl = sim.control().clone();
    let store = db.store().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = "only_if_attached = true";
    let daemon = Daemon::start(
        dir.path(),
        &config(&db.cfg.url, "", "", &source(&sim, extra)),
    );

    wait_count_at_least(&store, &daemon, 30).await;
    settle(&store, &daemon, &ctl).await;
    assert_eq!(ctl.drop_now(), 1, "{label}");
    ctl.set_silent(false);
    wait_events(&store, &daemon, SOURCE, "the resume", |e| {
        n_events(e, "resumed") == 1
    })
    .await;
    let before = scalar(&store, DATA_COUNT).await;
    wait_count_at_least(&store, &daemon, before + 30).await;
    settle(&store, &daemon, &ctl).await;
    daemon.stop().await;

    // Per connection, in seq order: OnConnected, then exactly what the simulator
    // wrote to that connection, in the order it wrote it.
    let conns = connections(&store, SOURCE).await;
    assert_eq!(conns.len(), 2, "{label}");
    let stats = ctl.stats();
    assert_eq!(stats.connections, 2, "{label}");
    let rows = fetch_cells(
        &store,
        &format!(
            "SELECT connection_id, seq, method, params FROM notifications \
             WHERE source = '{SOURCE}' ORDER BY connection_id, seq"
        ),
    )
    .await;
    let mut all_n = Vec::new();
    for (i, conn) in conns.iter().enumerate() {
        let mine: Vec<&Vec<Cell>> = rows.iter().filter(|r| r[0].i64() == conn.id).collect();
        let seqs: Vec<i64> = mine.iter().map(|r| r[1].i64()).collect();
        assert_eq!(
            seqs,
            (1..=mine.len() as i64).collect::<Vec<_>>(),
            "{label}: seq gap"
        );
        let hello: Value = serde_json::from_str(&mine[0][3].text()).unwrap();
        let state = if i == 0 {
            "SESSION_CREATED"
        } else {
            "SESSION_ATTACHED"
        };
        assert_eq!(mine[0][2].text(), "OnConnected", "{label}");
        assert_eq!(hello, json!({ "qSessionState": state }), "{label}");
        let stored: Vec<(u64, String)> = mine[1..]
            .iter()
            .map(|r| {
                let params: Value = serde_json::from_str(&r[3].text()).unwrap();
                assert!(params["at"].is_string(), "{label}: {params}");
                (params["n"].as_u64().unwrap(), r[2].text())
            })
            .collect();
        let sent: Vec<(u64, String)> = stats
            .notifications_sent
            .iter()
            .filter(|s| s.connection == i as u64 + 1)
            .map(|s| (s.n, s.method.clone()))
            .collect();
        assert!(sent.len() >= 30, "{label}: only {} sent", sent.len());
        assert_eq!(stored, sent, "{label}: connection {}", i + 1);
        all_n.extend(stored.into_iter().map(|(n, _)| n));
    }
    // Nothing written was lost, nothing stored twice: n runs 1, 2, 3… overall.
    assert_eq!(
        all_n,
        (1..=all_n.len() as u64).collect::<Vec<_>>(),
        "{label}"
    );

    // The configured requests went out on both connections, ids never reused.
    let sent_requests: Vec<Vec<Value>> = stats
        .connection_log
        .iter()
        .map(|c| c.requests.clone())
        .collect();
    let expect = |id1: i64, id2: i64| {
        vec![
            json!({"jsonrpc": "2.0", "id": id1, "method": "GetActiveDoc", "handle": -1, "params": []}),
            json!({"jsonrpc": "2.0", "id": id2, "method": "GetLayout", "handle": 1, "params": ["a", 2]}),
        ]
    };
    assert_eq!(sent_requests, [expect(1, 2), expect(3, 4)], "{label}");
    let responses = scalar(
        &store,
        "SELECT count(*) FROM events WHERE kind = 'response'",
    )
    .await;
    assert_eq!(responses, 4, "{label}");
    let evs = events(&store, SOURCE).await;
    assert_eq!(
        names(&evs),
        [
            "opened",
            "subscribed",
            "suspended",
            "opened",
            "subscribed",
            "resumed",
            "closed"
        ],
        "{label}: {evs:#?}"
    );
    sim.shutdown().await;
}

async fn wait_count_at_least(store: &Store, daemon: &Daemon, want: i64) {
    let data = "notifications WHERE method <> 'OnConnected'";
    wait_count(store, Some(daemon), data, |n| n >= want).await;
}

each_backend!(an_error_response_to_a_configured_request_is_a_subscribe_error);
async fn an_error_response_to_a_configured_request_is_a_subscribe_error(backend: Backend) {
    for db in test_databases(backend).await {
        request_error(&db).await;
    }
}

async fn request_error(db: &TestDb) {
    let label = db.label;
    let sim = sim(JsonRpcSimConfig {
        interval: Duration::from_millis(50),
        error_method: Some("GetLayout".into()),
        ..JsonRpcSimConfig::default()
    })
    .await;
    let store = db.store().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &config(&db.cfg.url, "", "", &source(&sim, "")));
    let evs = wait_events(&store, &daemon, SOURCE, "the subscription", |e| {
        n_events(e, "subscribed") == 1
    })
    .await;
    // Notifications still flow: the failure is recorded, the source keeps going.
    wait_count_at_least(&store, &daemon, 3).await;
    daemon.stop().await;
    let err = evs
        .iter()
        .find(|e| e.event == "subscribe_error")
        .unwrap_or_else(|| panic!("{label}: {evs:#?}"));
    assert_eq!(err.code, Some(-32000), "{label}");
    assert_eq!(
        err.reason.as_deref(),
        Some("Simulated failure of GetLayout"),
        "{label}"
    );
    let detail = fetch_cells(
        &store,
        "SELECT detail FROM session_events WHERE event = 'subscribe_error'",
    )
    .await;
    let detail: Value = serde_json::from_str(&detail[0][0].text()).unwrap();
    assert_eq!(detail, json!({"id": 2, "method": "GetLayout"}), "{label}");
    let kinds = fetch_cells(
        &store,
        "SELECT kind, count(*) FROM events GROUP BY kind ORDER BY kind",
    )
    .await;
    let kinds: Vec<(String, i64)> = kinds.iter().map(|r| (r[0].text(), r[1].i64())).collect();
    assert_eq!(
        kinds,
        [("error".to_string(), 1), ("response".to_string(), 1)],
        "{label}"
    );
    sim.shutdown().await;
}

each_backend!(only_if_attached_flags_a_resume_onto_a_fresh_session);
async fn only_if_attached_flags_a_resume_onto_a_fresh_session(backend: Backend) {
    for db in test_databases(backend).await {
        for only in [true, false] {
            fresh_session_on_resume(&db, only).await;
        }
    }
}

/// The simulator never attaches (`SESSION_CREATED` on every connection): with
/// `only_if_attached` the resume is flagged by one `warning` row on the new
/// connection; either way the source resumes and keeps recording.
async fn fresh_session_on_resume(db: &TestDb, only: bool) {
    let label = format!("{} only_if_attached={only}", db.label);
    let sim = sim(JsonRpcSimConfig {
        interval: Duration::from_millis(50),
        attach_on_reconnect: false,
        ..JsonRpcSimConfig::default()
    })
    .await;
    let ctl = sim.control().clone();
    let store = db.store().await;
    let source_name = format!("engine-{only}");
    let dir = tempfile::tempdir().unwrap();
    let sources = source(&sim, &format!("only_if_attached = {only}")).replace(
        &format!("name = \"{SOURCE}\""),
        &format!("name = \"{source_name}\""),
    );
    let daemon = Daemon::start(dir.path(), &config(&db.cfg.url, "", "", &sources));
    wait_events(&store, &daemon, &source_name, "the subscription", |e| {
        n_events(e, "subscribed") == 1
    })
    .await;
    assert_eq!(ctl.drop_now(), 1, "{label}");
    wait_events(&store, &daemon, &source_name, "the resume", |e| {
        n_events(e, "resumed") == 1
    })
    .await;
    let before = scalar(&store, DATA_COUNT).await;
    wait_count_at_least(&store, &daemon, before + 3).await;
    daemon.stop().await;
    let evs = events(&store, &source_name).await;
    let conns = connections(&store, &source_name).await;
    let warnings: Vec<&Ev> = evs.iter().filter(|e| e.event == "warning").collect();
    assert_eq!(warnings.len(), usize::from(only), "{label}: {evs:#?}");
    if let Some(w) = warnings.first() {
        assert_eq!(w.connection_id, Some(conns[1].id), "{label}");
        let reason = w.reason.as_deref().unwrap_or_default();
        assert!(reason.contains("fresh session"), "{label}: {reason}");
    }
    sim.shutdown().await;
}
