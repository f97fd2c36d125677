//! Shared by the `ops_*` tests: config files for the real daemon against the loopback
//! simulators, the daemon's HTTP address from its log, plain HTTP GETs, and small
//! database reads that poll with a deadline.
#![allow(dead_code)]

use crate::common::daemon::Daemon;
use crate::common::{TestDb, fetch_cells};
use std::path::Path;
use std::time::{Duration, Instant};
use wsvault::store::Store;

/// Upper bound for anything that should happen "soon" on a loaded machine.
pub const LIMIT: Duration = Duration::from_secs(30);

/// `[storage]` for `url` with short flushes, lock waits and retries, quick reconnects,
/// and `extra` (more TOML tables), followed by `sources`.
pub fn config(url: &str, extra: &str, sources: &str) -> String {
    format!(
        r#"
[storage]
url = "{url}"
batch_size = 200
flush_interval = "20ms"
busy_timeout = "100ms"
retry_max = "200ms"

[supervisor]
backoff_initial = "50ms"
backoff_max = "200ms"
connect_timeout = "3s"
idle_timeout = "10s"
stable_after = "1h"

{extra}

{sources}
"#
    )
}

/// A `[[sources]]` table of kind jsonrpc against `ws_url`; `handle` makes it differ.
pub fn jsonrpc_source(name: &str, ws_url: &str, handle: i64) -> String {
    format!(
        r#"
[[sources]]
name = "{name}"
kind = "jsonrpc"
url = "{ws_url}"
requests = [ {{ method = "GetActiveDoc", handle = {handle}, params = [] }} ]
"#
    )
}

/// A `[[sources]]` table of kind navixy (API key, states and readings of every tracker).
pub fn navixy_source(name: &str, ws_url: &str) -> String {
    format!(
        r#"
[[sources]]
name = "{name}"
kind = "navixy"
url = "{ws_url}"
api_key_hash = "{key}"
subscriptions = [
  {{ type = "state_batch", target = "all" }},
  {{ type = "readings_batch", target = "all" }},
]
"#,
        key = wsvault::sim::navixy::DEFAULT_API_KEY
    )
}

/// Starts the daemon off the async runtime's worker (it blocks briefly).
pub fn start(dir: &Path, config: &str) -> Daemon {
    Daemon::start(dir, config)
}

/// SIGTERM, waits off the runtime for exit, asserts success and returns the log.
pub async fn stop(daemon: Daemon) -> String {
    let (status, log) = tokio::task::spawn_blocking(move || daemon.stop(LIMIT))
        .await
        .expect("stop task");
    assert!(status.success(), "daemon exit {status}; log:\n{log}");
    log
}

/// Waits (off the runtime) until the log contains `needle`; panics with the log if not.
pub async fn wait_log(daemon: &Daemon, needle: &str) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let log = daemon.log();
        if log.contains(needle) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "log never contained {needle:?}:\n{log}"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The `/metrics` + `/healthz` address the daemon logged.
pub async fn http_addr(daemon: &Daemon) -> String {
    wait_log(daemon, "http listening on ").await;
    let log = daemon.log();
    let rest = log.split("http listening on ").nth(1).expect("listen line");
    rest.split_whitespace().next().expect("address").to_string()
}

/// `GET http://addr/path`: (status, body).
pub async fn get(addr: &str, path: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

/// Polls `GET path` until `pred(status, body)` holds; returns the last answer.
pub async fn wait_http(
    addr: &str,
    path: &str,
    what: &str,
    pred: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let deadline = Instant::now() + LIMIT;
    loop {
        let (status, body) = get(addr, path).await;
        if pred(status, &body) {
            return (status, body);
        }
        assert!(
            Instant::now() < deadline,
            "{path} never showed {what}; last answer {status}:\n{body}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The value of the Prometheus sample whose line starts with `series` (name and
/// labels exactly as rendered, e.g. `wsvault_source_connected{source="rpc"}`).
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.trim().parse::<f64>().ok())
    })
}

/// `SELECT count(*) FROM table [WHERE where_]`.
pub async fn count_where(store: &Store, table: &str, where_: &str) -> i64 {
    let sql = if where_.is_empty() {
        format!("SELECT count(*) FROM {table}")
    } else {
        format!("SELECT count(*) FROM {table} WHERE {where_}")
    };
    fetch_cells(store, &sql).await[0][0].i64()
}

/// Polls `count` until `pred` holds; returns the last count.
pub async fn wait_count(
    store: &Store,
    table: &str,
    where_: &str,
    what: &str,
    pred: impl Fn(i64) -> bool,
) -> i64 {
    let deadline = Instant::now() + LIMIT;
    loop {
        let n = count_where(store, table, where_).await;
        if pred(n) {
            return n;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what} ({table} count {n})"
        );
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
}

/// The storage URL of `db` as the daemon should use it.
pub fn url(db: &TestDb) -> String {
    db.cfg.url.clone()
}

/// Waits until the daemon is up (READY), then opens `db` without migrating it: two
/// processes migrating one SQLite file at once race on `CREATE TABLE`.
pub async fn daemon_store(daemon: &Daemon, db: &TestDb) -> Store {
    wait_log(daemon, "wsvault running").await;
    Store::connect(&db.cfg)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}
