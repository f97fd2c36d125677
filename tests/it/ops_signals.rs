//! Signals on the real binary: SIGTERM under load loses nothing and exits 0; SIGHUP
//! adds, removes and restarts sources as the file says, leaves unchanged ones on
//! their connection, and refuses an invalid file while the old config keeps running.

use crate::support::navixy::{ALL_DATA, api_key_line, navixy_source};
use crate::support::*;
use std::collections::BTreeSet;
use std::time::Duration;
use wsvault::sim::jsonrpc::{JsonRpcSim, JsonRpcSimConfig};
use wsvault::sim::navixy::{NavixySim, NavixySimConfig};
use wsvault::store::Store;

fn any() -> std::net::SocketAddr {
    ([127, 0, 0, 1], 0).into()
}

/// The `n` of every stored notification of `source`.
async fn stored_ns(store: &Store, source: &str) -> BTreeSet<u64> {
    let rows = fetch_cells(
        store,
        &format!("SELECT params FROM notifications WHERE source = '{source}'"),
    )
    .await;
    rows.iter()
        .filter_map(|r| {
            let v: serde_json::Value = serde_json::from_str(&r[0].text()).unwrap();
            v["n"].as_u64()
        })
        .collect()
}

each_backend!(sigterm_under_load_loses_nothing);
async fn sigterm_under_load_loses_nothing(backend: Backend) {
    for db in test_databases(backend).await {
        let navixy = NavixySim::start(
            any(),
            NavixySimConfig {
                trackers: 20,
                rate: 3000.0,
                ..NavixySimConfig::default()
            },
        )
        .await
        .unwrap();
        let rpc = JsonRpcSim::start(
            any(),
            JsonRpcSimConfig {
                interval: Duration::from_millis(2),
                ..JsonRpcSimConfig::default()
            },
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sources = navixy_source("fleet", &navixy, &format!("{}\n{ALL_DATA}", api_key_line()))
            + &jsonrpc_source("rpc", &rpc.ws_url(), -1);
        let daemon = Daemon::start(dir.path(), &config(&db.cfg.url, "", "", &sources));
        let store = daemon_store(&daemon, &db).await;
        wait_count(&store, Some(&daemon), "tracker_states", |n| n >= 1000).await;
        wait_count(&store, Some(&daemon), "notifications", |n| n >= 100).await;

        // What the simulators had sent when the signal went out.
        let states_before = navixy.control().stats().state_items_sent;
        let ns_before: BTreeSet<u64> = rpc
            .control()
            .stats()
            .notifications_sent
            .iter()
            .map(|s| s.n)
            .collect();
        let log = daemon.stop().await;
        let states_after = navixy.control().stats().state_items_sent;

        let stored_states = count(&store, "tracker_states").await as u64;
        assert!(
            stored_states >= states_before,
            "[{}] {stored_states} states stored, {states_before} sent before SIGTERM",
            db.label
        );
        // Frames already on the wire when the daemon closed are kept too.
        assert_eq!(
            stored_states, states_after,
            "[{}] every state the simulator sent is stored",
            db.label
        );
        let stored = stored_ns(&store, "rpc").await;
        let missing: Vec<_> = ns_before.difference(&stored).take(10).collect();
        assert!(
            missing.is_empty(),
            "[{}] notifications sent before SIGTERM missing: {missing:?}",
            db.label
        );
        assert!(log.contains("wsvault stopped"), "{log}");
        assert!(log.contains("lost=0"), "{log}");
        // Both sessions closed cleanly.
        let closed = count(&store, "session_events WHERE event = 'closed'").await;
        assert_eq!(closed, 2, "[{}] closed rows", db.label);
        store.close().await;
        navixy.shutdown().await;
        rpc.shutdown().await;
    }
}

/// (id, closed) of every connection of `source`, oldest first.
async fn connections(store: &Store, source: &str) -> Vec<(i64, bool)> {
    fetch_cells(
        store,
        &format!(
            "SELECT id, closed_at FROM connections WHERE source = '{source}' ORDER BY opened_at, id"
        ),
    )
    .await
    .iter()
    .map(|r| (r[0].i64(), !matches!(r[1], Cell::Null)))
    .collect()
}

/// Polls until `source` has connections matching `pred`.
async fn wait_connections(
    store: &Store,
    source: &str,
    what: &str,
    pred: impl Fn(&[(i64, bool)]) -> bool,
) -> Vec<(i64, bool)> {
    let what = format!("{source}: {what} (last: its connections)");
    wait_for(
        LIMIT,
        &what,
        None,
        || connections(store, source),
        |c| pred(c),
    )
    .await
}

fn one_open(c: &[(i64, bool)]) -> bool {
    c.len() == 1 && !c[0].1
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_adds_removes_restarts_and_refuses_invalid_files() {
    let db = sqlite_database();
    let rpc = JsonRpcSim::start(any(), JsonRpcSimConfig::default())
        .await
        .unwrap();
    let ws = rpc.ws_url();
    let dir = tempfile::tempdir().unwrap();
    let first = jsonrpc_source("keep", &ws, -1)
        + &jsonrpc_source("drop", &ws, -1)
        + &jsonrpc_source("change", &ws, -1);
    let daemon = Daemon::start(dir.path(), &config(&db.cfg.url, "", "", &first));
    let store = daemon_store(&daemon, &db).await;
    let keep = wait_connections(&store, "keep", "connects", one_open).await;
    wait_connections(&store, "drop", "connects", one_open).await;
    let change = wait_connections(&store, "change", "connects", one_open).await;

    // keep: unchanged; drop: removed; change: other request handle; add: new.
    let second = jsonrpc_source("keep", &ws, -1)
        + &jsonrpc_source("change", &ws, 7)
        + &jsonrpc_source("add", &ws, -1);
    std::fs::write(&daemon.config_path, config(&db.cfg.url, "", "", &second)).unwrap();
    daemon.signal("HUP");
    daemon.wait_log("configuration reloaded").await;

    wait_connections(&store, "add", "added source connects", one_open).await;
    wait_connections(&store, "drop", "removed source is closed", |c| {
        c.len() == 1 && c[0].1
    })
    .await;
    let drop_events = fetch_cells(
        &store,
        "SELECT event FROM session_events WHERE source = 'drop' ORDER BY occurred_at DESC, id DESC LIMIT 1",
    )
    .await;
    assert_eq!(drop_events[0][0].text(), "closed");
    let changed = wait_connections(&store, "change", "changed source restarts", |c| {
        c.len() == 2 && c[0].1 && !c[1].1
    })
    .await;
    assert_eq!(
        changed[0].0, change[0].0,
        "the old connection was the one closed"
    );
    assert_eq!(
        connections(&store, "keep").await,
        keep,
        "unchanged source kept its connection"
    );
    // The restarted source sends its new request.
    assert!(
        rpc.control()
            .wait_until(
                |s| s
                    .connection_log
                    .iter()
                    .any(|c| c.requests.iter().any(|r| r["handle"] == 7)),
                LIMIT
            )
            .await,
        "changed request never reached the server"
    );

    // An invalid file changes nothing.
    std::fs::write(&daemon.config_path, "[storage\nurl = ").unwrap();
    daemon.signal("HUP");
    daemon
        .wait_log("reload refused, keeping the running configuration")
        .await;
    let third = std::fs::read_to_string(&daemon.config_path).unwrap();
    assert!(third.starts_with("[storage"));
    // Every source still on the connection it had (give a wrong reload time to act).
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(connections(&store, "keep").await, keep);
    assert_eq!(connections(&store, "change").await.len(), 2);
    assert!(one_open(&connections(&store, "add").await));

    let log = daemon.stop().await;
    assert!(log.contains("reload: source added"), "{log}");
    assert!(log.contains("reload: source removed"), "{log}");
    assert!(log.contains("reload: source changed"), "{log}");
    store.close().await;
    rpc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_during_the_first_attempts_waits_and_exits_cleanly() {
    let db = sqlite_database();
    // Accepts TCP and never answers the upgrade: the first attempt takes the whole
    // connect timeout (3 s), so READY is not sent yet when the signal arrives.
    let silent = tokio::net::TcpListener::bind(any()).await.unwrap();
    let silent_url = format!("ws://{}/app", silent.local_addr().unwrap());
    let hold = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let rpc = JsonRpcSim::start(any(), JsonRpcSimConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sources =
        jsonrpc_source("rpc", &rpc.ws_url(), -1) + &jsonrpc_source("slow", &silent_url, -1);
    let daemon = Daemon::start(dir.path(), &config(&db.cfg.url, "", "", &sources));
    daemon.wait_log("signal handlers installed").await;
    daemon.wait_log("source{source=rpc}: subscribed").await;
    assert!(
        !daemon.log().contains("wsvault running"),
        "{}",
        daemon.log()
    );
    let log = daemon.stop().await;
    assert!(log.contains("shutdown requested"), "{log}");
    assert!(log.contains("wsvault stopped"), "{log}");
    let store = db.store().await;
    assert_eq!(
        count(
            &store,
            "session_events WHERE source = 'rpc' AND event = 'closed'"
        )
        .await,
        1,
        "the subscribed source was closed cleanly"
    );
    store.close().await;
    hold.abort();
    rpc.shutdown().await;
}
