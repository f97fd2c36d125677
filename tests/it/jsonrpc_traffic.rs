//! Issue 4, JSON-RPC traffic and secrets: with `traffic = true` every frame in both
//! directions is in `traffic`, in order, on its connection; a credential carried in
//! an upgrade header reaches the server but appears nowhere in the database nor in
//! the log, even when the server echoes it in a notification or an error.

use std::time::Duration;

use crate::support::*;
use serde_json::{Value, json};
use wsvault::sim::jsonrpc::{JsonRpcSim, JsonRpcSimConfig};

const SOURCE: &str = "engine";
const TOKEN: &str = "tok-SECRET-51c0ffee99";

each_backend!(every_frame_is_in_traffic_and_the_header_credential_nowhere);
async fn every_frame_is_in_traffic_and_the_header_credential_nowhere(backend: Backend) {
    for db in test_databases(backend).await {
        traffic(&db).await;
    }
}

async fn traffic(db: &TestDb) {
    let label = db.label;
    let sim = JsonRpcSim::start(
        "127.0.0.1:0".parse().unwrap(),
        JsonRpcSimConfig {
            interval: Duration::from_millis(40),
            count: Some(5),
            ..JsonRpcSimConfig::default()
        },
    )
    .await
    .unwrap();
    let ctl = sim.control().clone();
    let store = db.store().await;
    let dir = tempfile::tempdir().unwrap();
    let sources = format!(
        r#"
[[sources]]
name = "{SOURCE}"
kind = "jsonrpc"
url = "{url}"
traffic = true
headers = {{ Authorization = "Bearer {TOKEN}" }}
requests = [ {{ method = "GetActiveDoc", handle = -1, params = [] }} ]
"#,
        url = sim.ws_url()
    );
    let daemon = Daemon::start(dir.path(), &config(&db.cfg.url, "", "", &sources));
    held(
        ctl.wait_until(|s| s.notifications_sent.len() == 5, LIMIT)
            .await,
        &daemon,
        "five notifications",
    );
    // The server echoes the credential back, as a notification and as an error.
    let echo = json!({"jsonrpc": "2.0", "method": "OnAuthenticationInformation",
        "params": {"authorization": format!("Bearer {TOKEN}"), "mustAuthenticate": false}});
    assert_eq!(ctl.send_raw(&echo.to_string()), 1, "{label}");
    let err = json!({"jsonrpc": "2.0", "id": 99, "error": {"code": 401,
        "message": format!("token {TOKEN} expired")}});
    assert_eq!(ctl.send_raw(&err.to_string()), 1, "{label}");
    // OnConnected, one response, five notifications, two echoes.
    held(
        ctl.wait_until(|s| s.frames_sent == 9, LIMIT).await,
        &daemon,
        "the echoes sent",
    );
    let frames = ctl.stats().frames_sent as i64;
    wait_count(
        &store,
        Some(&daemon),
        "traffic WHERE direction = 'received'",
        |n| n == frames,
    )
    .await;
    let log = daemon.stop().await;

    let stats = ctl.stats();
    let conn = &stats.connection_log[0];
    assert!(
        conn.headers.iter().any(
            |(k, v)| k.eq_ignore_ascii_case("authorization") && v == &format!("Bearer {TOKEN}")
        ),
        "{label}: the header reached the server"
    );
    let rows = fetch_cells(
        &store,
        &format!("SELECT direction, payload FROM traffic WHERE source = '{SOURCE}' ORDER BY id"),
    )
    .await;
    let sent: Vec<Value> = rows
        .iter()
        .filter(|r| r[0].text() == "sent")
        .map(|r| serde_json::from_str(&r[1].text()).unwrap())
        .collect();
    assert_eq!(sent, conn.requests, "{label}");
    let received: Vec<Value> = rows
        .iter()
        .filter(|r| r[0].text() == "received")
        .map(|r| serde_json::from_str(&r[1].text()).unwrap())
        .collect();
    assert_eq!(received.len() as u64, stats.frames_sent, "{label}");
    // OnConnected, the response and the five notifications in some interleaving,
    // then the two echoes, masked.
    assert_eq!(received[0]["method"], "OnConnected", "{label}");
    let ns: Vec<u64> = received
        .iter()
        .filter_map(|v| v["params"]["n"].as_u64())
        .collect();
    assert_eq!(ns, [1, 2, 3, 4, 5], "{label}");
    assert_eq!(
        received[received.len() - 2]["params"]["authorization"],
        "***",
        "{label}"
    );
    assert_eq!(
        received[received.len() - 1]["error"]["message"],
        "token *** expired",
        "{label}"
    );
    // The echoed notification and error are stored masked as well (the whole
    // header value, and the credential after its auth scheme on its own).
    let params = fetch_cells(
        &store,
        "SELECT params FROM notifications WHERE method = 'OnAuthenticationInformation'",
    )
    .await;
    let params: Value = serde_json::from_str(&params[0][0].text()).unwrap();
    assert_eq!(params["authorization"], "***", "{label}");
    let error = fetch_cells(&store, "SELECT payload FROM events WHERE kind = 'error'").await;
    let error: Value = serde_json::from_str(&error[0][0].text()).unwrap();
    assert_eq!(error["error"]["message"], "token *** expired", "{label}");
    assert_nowhere(db, &store, &[TOKEN], "OnAuthenticationInformation", &log).await;
    sim.shutdown().await;
}
