//! Issue 16 point 6: a daemon killed with SIGKILL leaves its connection open in the
//! database. The next start closes it at the last thing it stored and records the
//! blind period (`suspended`, initiator `down`, then `closed`), so the README's
//! blind-periods statement of the cookbook shows it, ending when the new run subscribed again.

use std::time::Duration;

use crate::support::*;
use chrono::{DateTime, Utc};
use wsvault::bench::cookbook::QUESTIONS;
use wsvault::sim::jsonrpc::{JsonRpcSim, JsonRpcSimConfig};
use wsvault::store::Store;

/// The cookbook's "blind periods of a source without backfill" statement (README
/// holds it verbatim, `bench::cookbook`'s tests check that), for this test's source.
fn blind_periods(backend: Backend) -> String {
    let q = QUESTIONS
        .iter()
        .find(|q| q.name == "blind periods of a source without backfill")
        .expect("the cookbook has the blind-periods question");
    let sql = match backend {
        Backend::Sqlite => q.sqlite,
        Backend::Postgres => q.postgres,
    };
    assert!(
        sql.contains("'broker'"),
        "the statement names its example source"
    );
    sql.replace("'broker'", "'rpc'")
}

each_backend!(sigkill_leaves_a_blind_period_the_next_start_records);
async fn sigkill_leaves_a_blind_period_the_next_start_records(backend: Backend) {
    for db in test_databases(backend).await {
        killed_then_restarted(&db).await;
    }
}

/// The latest time anything of `source` was stored before `before`.
async fn last_stored(store: &Store, source: &str, before: DateTime<Utc>) -> DateTime<Utc> {
    let mut last = None;
    for (table, column) in [
        ("session_events", "occurred_at"),
        ("notifications", "received_at"),
        ("events", "received_at"),
    ] {
        let sql = format!(
            "SELECT max({column}) FROM {table} WHERE source = '{source}' AND {column} < '{}'",
            before.to_rfc3339()
        );
        if let Some(t) = fetch_cells(store, &sql).await[0][0].opt_ts() {
            last = last.max(Some(t));
        }
    }
    last.expect("the source stored rows")
}

async fn killed_then_restarted(db: &TestDb) {
    let label = db.label;
    let sim_cfg = JsonRpcSimConfig {
        interval: Duration::from_millis(20),
        ..JsonRpcSimConfig::default()
    };
    let rpc = JsonRpcSim::start("127.0.0.1:0".parse().unwrap(), sim_cfg)
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        &db.cfg.url,
        "",
        "",
        &jsonrpc_source("rpc", &rpc.ws_url(), -1),
    );
    let daemon = Daemon::start(dir.path(), &cfg);
    let store = daemon_store(&daemon, db).await;
    wait_count(
        &store,
        Some(&daemon),
        "notifications WHERE source = 'rpc'",
        |n| n >= 20,
    )
    .await;
    daemon.signal("KILL");
    daemon.wait(LIMIT).await;

    let killed = fetch_cells(
        &store,
        "SELECT id FROM connections WHERE source = 'rpc' AND closed_at IS NULL",
    )
    .await;
    assert_eq!(
        killed.len(),
        1,
        "[{label}] the killed run left one connection open"
    );
    let killed_id = killed[0][0].i64();
    // Read once the next run has closed the connection: a PostgreSQL commit the
    // killed daemon had sent may still become visible just after the kill. Rows of
    // the next run are newer than its start.
    let restarted = Utc::now();
    let daemon = Daemon::start(dir.path(), &cfg);
    daemon.wait_log("wsvault running").await;
    let closed = wait_closed(&store, killed_id).await;
    let end = last_stored(&store, "rpc", restarted).await;
    assert_eq!(
        closed[0].clone().ts(),
        end,
        "[{label}] closed at its last row"
    );
    assert_eq!(closed[1].opt_i64(), Some(1006), "[{label}]");
    assert!(
        closed[2].text().contains("without closing"),
        "[{label}] {:?}",
        closed[2]
    );

    let sql = format!(
        "SELECT event, occurred_at, initiator, code, reason FROM session_events \
         WHERE connection_id = {killed_id} AND event IN ('suspended', 'closed') ORDER BY id"
    );
    let rows = fetch_cells(&store, &sql).await;
    let got: Vec<(String, DateTime<Utc>, Option<String>)> = rows
        .iter()
        .map(|r| (r[0].text(), r[1].ts(), r[2].opt_text()))
        .collect();
    assert_eq!(
        got,
        vec![
            ("suspended".to_string(), end, Some("down".to_string())),
            ("closed".to_string(), end, None),
        ],
        "[{label}]"
    );

    // The blind-periods query shows the killed period, ending when the new run
    // subscribed again: its `resumed` row names the `down` suspension.
    wait_count(&store, Some(&daemon), &format!("session_events WHERE source = 'rpc' AND event = 'resumed' AND connection_id <> {killed_id}"), |n| n >= 1)
    .await;
    let blind = fetch_cells(&store, &blind_periods(db.backend())).await;
    assert_eq!(blind.len(), 1, "[{label}] {blind:?}");
    assert_eq!(blind[0][1].ts(), end, "[{label}]");
    let until = blind[0][2].opt_ts().expect("the blind period ends");
    assert!(until > end, "[{label}] {until} after {end}");
    assert_eq!(blind[0][3].opt_text().as_deref(), Some("down"), "[{label}]");

    // A clean stop closes the new connection itself; nothing is left open.
    daemon.stop().await;
    let open = fetch_cells(
        &store,
        "SELECT count(*) FROM connections WHERE closed_at IS NULL",
    )
    .await;
    assert_eq!(open[0][0].i64(), 0, "[{label}]");
    store.close().await;
    rpc.shutdown().await;
}

/// Waits until connection `id` has `closed_at`; returns (closed_at, close_code, close_reason).
async fn wait_closed(store: &Store, id: i64) -> Vec<Cell> {
    let sql =
        format!("SELECT closed_at, close_code, close_reason FROM connections WHERE id = {id}");
    let what = format!("connection {id} closed");
    let rows = wait_for(
        LIMIT,
        &what,
        None,
        || fetch_cells(store, &sql),
        |rows| rows[0][0] != Cell::Null,
    )
    .await;
    rows.into_iter().next().unwrap()
}
