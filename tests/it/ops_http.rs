//! `[http] listen` on the real binary: `/metrics` and `/healthz` reflect a stopped
//! simulator and a stopped database (SQLite locked by another connection, PostgreSQL
//! cut by a proxy), and recover when they come back.

use crate::support::navixy::{ALL_DATA, api_key_line, navixy_source};
use crate::support::*;
use serde_json::Value;
use std::time::Duration;
use wsvault::sim::jsonrpc::{JsonRpcSim, JsonRpcSimConfig};
use wsvault::sim::navixy::{NavixySim, NavixySimConfig};

const HTTP: &str = "[http]\nlisten = \"127.0.0.1:0\"\n";

fn any() -> std::net::SocketAddr {
    ([127, 0, 0, 1], 0).into()
}

fn rpc_config() -> JsonRpcSimConfig {
    JsonRpcSimConfig {
        interval: Duration::from_millis(20),
        ..JsonRpcSimConfig::default()
    }
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("/healthz body is not JSON ({e}): {body}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_and_health_follow_a_stopped_simulator() {
    let db = sqlite_database();
    let navixy = NavixySim::start(any(), NavixySimConfig::default())
        .await
        .unwrap();
    let rpc = JsonRpcSim::start(any(), rpc_config()).await.unwrap();
    let rpc_addr = rpc.addr();
    let dir = tempfile::tempdir().unwrap();
    let sources = navixy_source("fleet", &navixy, &format!("{}\n{ALL_DATA}", api_key_line()))
        + &jsonrpc_source("rpc", &rpc.ws_url(), -1);
    let cfg = config(&db.cfg.url, "", "", &format!("{HTTP}{sources}"));
    let daemon = Daemon::start(dir.path(), &cfg);
    let addr = http_addr(&daemon).await;

    let (_, body) = wait_http(
        &addr,
        "/healthz",
        "200 with both sources subscribed",
        |s, b| {
            s == 200
                && serde_json::from_str::<Value>(b).is_ok_and(|h| {
                    h["sources"]["rpc"]["state"] == "subscribed"
                        && h["sources"]["fleet"]["state"] == "subscribed"
                })
        },
    )
    .await;
    let h = json(&body);
    assert_eq!(h["status"], "ok");
    assert_eq!(h["sources"]["rpc"]["state"], "subscribed");
    assert_eq!(h["sources"]["fleet"]["state"], "subscribed");

    let (_, m) = wait_http(&addr, "/metrics", "written notifications", |s, b| {
        s == 200
            && sample(
                b,
                r#"wsvault_records_written_total{source="rpc",kind="notifications"}"#,
            )
            .is_some_and(|v| v > 0.0)
            && sample(
                b,
                r#"wsvault_records_written_total{source="fleet",kind="tracker_states"}"#,
            )
            .is_some_and(|v| v > 0.0)
    })
    .await;
    for (series, want) in [
        (
            r#"wsvault_source_state{source="rpc",state="subscribed"}"#,
            1.0,
        ),
        (
            r#"wsvault_source_state{source="rpc",state="retrying"}"#,
            0.0,
        ),
        (r#"wsvault_source_connected{source="rpc"}"#, 1.0),
        (r#"wsvault_source_reconnects_total{source="rpc"}"#, 0.0),
        ("wsvault_writer_healthy", 1.0),
        ("wsvault_healthy", 1.0),
    ] {
        assert_eq!(sample(&m, series), Some(want), "{series} in\n{m}");
    }
    for series in [
        r#"wsvault_records_received_total{source="rpc",kind="notifications"}"#,
        r#"wsvault_records_received_total{source="fleet",kind="tracker_readings"}"#,
        r#"wsvault_source_last_event_age_seconds{source="rpc"}"#,
        "wsvault_writer_queue_depth",
        "wsvault_write_seconds_count",
        r#"wsvault_write_seconds_bucket{le="+Inf"}"#,
    ] {
        assert!(sample(&m, series).is_some(), "{series} missing in\n{m}");
    }

    // The simulator goes away: the source retries, health turns 503 naming it.
    rpc.shutdown().await;
    let (status, body) = wait_http(&addr, "/healthz", "503 naming rpc", |s, b| {
        s == 503 && b.contains("source rpc")
    })
    .await;
    assert_eq!(status, 503);
    let h = json(&body);
    assert_eq!(h["status"], "unhealthy");
    assert_ne!(h["sources"]["rpc"]["state"], "subscribed");
    assert_eq!(h["sources"]["fleet"]["state"], "subscribed");
    let reasons = h["reasons"].as_array().unwrap();
    assert!(
        reasons.iter().all(|r| r.as_str().unwrap().contains("rpc")),
        "only rpc is a problem: {reasons:?}"
    );
    let (_, m) = get(&addr, "/metrics").await;
    assert_eq!(
        sample(&m, r#"wsvault_source_connected{source="rpc"}"#),
        Some(0.0),
        "{m}"
    );
    assert_eq!(
        sample(&m, r#"wsvault_source_connected{source="fleet"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(sample(&m, "wsvault_healthy"), Some(0.0), "{m}");
    assert!(
        sample(&m, r#"wsvault_source_failed_attempts{source="rpc"}"#).is_some_and(|v| v >= 5.0)
    );

    // It comes back on the same address: healthy again, one reconnect counted.
    let rpc = JsonRpcSim::start(rpc_addr, rpc_config()).await.unwrap();
    wait_http(
        &addr,
        "/healthz",
        "200 after the simulator returns",
        |s, _| s == 200,
    )
    .await;
    let (_, m) = get(&addr, "/metrics").await;
    assert_eq!(
        sample(&m, r#"wsvault_source_reconnects_total{source="rpc"}"#),
        Some(1.0),
        "{m}"
    );
    assert_eq!(get(&addr, "/nothing").await.0, 404);

    daemon.stop().await;
    rpc.shutdown().await;
    navixy.shutdown().await;
}

each_backend!(metrics_and_health_follow_a_stopped_database);
async fn metrics_and_health_follow_a_stopped_database(backend: Backend) {
    for db in test_databases(backend).await {
        let rpc = JsonRpcSim::start(any(), rpc_config()).await.unwrap();
        let mut outage = Outage::for_db(&db).await;
        let dir = tempfile::tempdir().unwrap();
        let sources = jsonrpc_source("rpc", &rpc.ws_url(), -1);
        let daemon = Daemon::start(
            dir.path(),
            &config(outage.url(), "", "", &format!("{HTTP}{sources}")),
        );
        let addr = http_addr(&daemon).await;
        wait_http(&addr, "/healthz", "200", |s, _| s == 200).await;

        outage.begin().await;
        let (_, body) = wait_http(&addr, "/healthz", "503 naming the writer", |s, b| {
            s == 503 && b.contains("writer: database writes failing")
        })
        .await;
        let h = json(&body);
        assert_eq!(h["writer"]["healthy"], false, "[{}] {body}", db.label);
        assert!(
            h["writer"]["last_error"].is_string(),
            "[{}] {body}",
            db.label
        );
        assert_eq!(
            h["sources"]["rpc"]["state"], "subscribed",
            "[{}] the source is fine",
            db.label
        );
        let (_, m) = wait_http(&addr, "/metrics", "records queued", |_, b| {
            sample(b, "wsvault_writer_queue_depth").is_some_and(|v| v > 0.0)
        })
        .await;
        assert_eq!(
            sample(&m, "wsvault_writer_healthy"),
            Some(0.0),
            "[{}] {m}",
            db.label
        );
        assert!(
            sample(&m, "wsvault_writer_retries_total").is_some_and(|v| v > 0.0),
            "{m}"
        );
        assert_eq!(sample(&m, "wsvault_healthy"), Some(0.0));

        outage.end().await;
        wait_http(
            &addr,
            "/healthz",
            "200 after the database returns",
            |s, _| s == 200,
        )
        .await;
        let (_, m) = wait_http(&addr, "/metrics", "queue drained", |_, b| {
            sample(b, "wsvault_writer_queue_depth") == Some(0.0)
        })
        .await;
        assert_eq!(
            sample(&m, "wsvault_writer_healthy"),
            Some(1.0),
            "[{}] {m}",
            db.label
        );
        assert_eq!(
            sample(&m, "wsvault_writer_lost_total"),
            Some(0.0),
            "[{}] {m}",
            db.label
        );
        daemon.stop().await;
        rpc.shutdown().await;
    }
}
