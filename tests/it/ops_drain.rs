//! Issue 16 point 10: the first SIGTERM while the database is unavailable ends within
//! `[storage] drain_timeout`, logging and counting what could not be written, instead
//! of draining forever until systemd kills the daemon and the loss goes unlogged.
//! SQLite: another connection holds `BEGIN EXCLUSIVE`; PostgreSQL: its proxy is cut.

mod common;
mod ops_support;

use std::time::{Duration, Instant};

use common::daemon::binary;
use common::{pg_addr, url_via};
use ops_support::{config, daemon_store, jsonrpc_source, start, wait_count, wait_log};
use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use wsvault::sim::jsonrpc::{JsonRpcSim, JsonRpcSimConfig};
use wsvault::sim::proxy::TcpProxy;

const DRAIN: Duration = Duration::from_secs(1);

/// Keeps the database unavailable while alive (held, never read).
#[allow(dead_code)]
enum Outage {
    Proxy(TcpProxy),
    Lock(SqliteConnection),
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn first_sigterm_with_the_database_down_ends_within_drain_timeout() {
    for db in common::test_databases().await {
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
        let proxy = match db.sqlite_path() {
            Some(_) => None,
            None => Some(TcpProxy::start(pg_addr(&db.cfg.url)).await.unwrap()),
        };
        let url = match &proxy {
            Some(p) => url_via(&db.cfg.url, p.addr()),
            None => db.cfg.url.clone(),
        };
        let text = config(&url, "", &jsonrpc_source("rpc", &rpc.ws_url(), -1)).replace(
            "retry_max = \"200ms\"",
            "retry_max = \"200ms\"\ndrain_timeout = \"1s\"",
        );
        let dir = tempfile::tempdir().unwrap();
        let daemon = start(dir.path(), &text);
        let store = daemon_store(&daemon, &db).await;
        wait_count(
            &store,
            "notifications",
            "source = 'rpc'",
            "notifications",
            |n| n >= 10,
        )
        .await;

        let _outage = match (db.sqlite_path(), proxy) {
            (Some(path), _) => {
                let opts = SqliteConnectOptions::new()
                    .filename(&path)
                    .busy_timeout(Duration::from_secs(10));
                let mut c = SqliteConnection::connect_with(&opts).await.unwrap();
                sqlx::query("BEGIN EXCLUSIVE")
                    .execute(&mut c)
                    .await
                    .unwrap();
                Outage::Lock(c)
            }
            (None, Some(p)) => {
                p.cut();
                Outage::Proxy(p)
            }
            (None, None) => unreachable!("PostgreSQL runs behind its proxy"),
        };
        wait_log(&daemon, "database write failed; retrying").await;

        daemon.signal("TERM");
        let sent = Instant::now();
        // Old code: the drain never ends, and `wait` panics after its limit.
        let (status, log) = tokio::task::spawn_blocking(move || daemon.wait(DRAIN * 20))
            .await
            .unwrap();
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
    let text = config("sqlite://vault.db", "", &source)
        .replace("retry_max = \"200ms\"", "drain_timeout = \"0s\"");
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
