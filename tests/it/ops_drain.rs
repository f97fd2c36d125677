//! Issue 16 point 10: the first SIGTERM while the database is unavailable ends within
//! `[storage] drain_timeout`, logging and counting what could not be written, instead
//! of draining forever until systemd kills the daemon and the loss goes unlogged.
//! SQLite: another connection holds `BEGIN EXCLUSIVE`; PostgreSQL: its proxy is cut.

use std::time::{Duration, Instant};

use crate::support::*;
use wsvault::sim::jsonrpc::{JsonRpcSim, JsonRpcSimConfig};

const DRAIN: Duration = Duration::from_secs(1);

each_backend!(first_sigterm_with_the_database_down_ends_within_drain_timeout);
async fn first_sigterm_with_the_database_down_ends_within_drain_timeout(backend: Backend) {
    for db in test_databases(backend).await {
        let label = db.label;
        let rpc = JsonRpcSim::start(
            "127.0.0.1:0".parse().unwrap(),
            JsonRpcSimConfig {
                interval: Duration::from_millis(20),
                ..JsonRpcSimConfig::default()
            },
        )
        .await
        .unwrap();
        let mut outage = Outage::for_db(&db).await;
        let text = config(
            outage.url(),
            "drain_timeout = \"1s\"",
            "",
            &jsonrpc_source("rpc", &rpc.ws_url(), -1),
        );
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::start(dir.path(), &text);
        let store = daemon_store(&daemon, &db).await;
        wait_count(
            &store,
            Some(&daemon),
            "notifications WHERE source = 'rpc'",
            |n| n >= 10,
        )
        .await;

        // Kept unavailable until the end of the test (`outage` is never ended).
        outage.begin().await;
        daemon.wait_log("database write failed; retrying").await;

        daemon.signal("TERM");
        let sent = Instant::now();
        // Old code: the drain never ends, and `wait` panics after its limit.
        let (status, log) = daemon.wait(DRAIN * 20).await;
        let took = sent.elapsed();
        assert!(
            log.contains("drain_timeout expired"),
            "[{label}] the log says why it stopped: {log}"
        );
        let lost = lost_in(&log);
        assert!(lost > 0, "[{label}] the loss is counted in the log:\n{log}");
        assert_eq!(
            status.code(),
            Some(1),
            "[{label}] records lost: exit status 1; log:\n{log}"
        );
        // drain_timeout, then one quick attempt (at most 2 s) on the batch in hand.
        assert!(
            took < DRAIN + Duration::from_secs(8),
            "[{label}] stopped after {took:?}"
        );
        store.close().await;
        rpc.shutdown().await;
    }
}

/// The `lost=N` of the writer's final line.
fn lost_in(log: &str) -> u64 {
    log.lines()
        .filter(|l| l.contains("storage writer finished"))
        .find_map(|l| {
            l.split_whitespace()
                .find_map(|w| w.strip_prefix("lost="))
                .and_then(|n| n.parse().ok())
        })
        .unwrap_or(0)
}

#[test]
fn check_config_refuses_a_zero_drain_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wsvault.toml");
    let source = jsonrpc_source("rpc", "ws://127.0.0.1:9/app", -1);
    let text = config("sqlite://vault.db", "drain_timeout = \"0s\"", "", &source);
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(binary())
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("drain_timeout"), "{text}");
}
