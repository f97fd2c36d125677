//! The operator commands on the real binary: `backup` of a live SQLite database (and
//! the pg_dump hint for PostgreSQL), `status` from the database, and `demo`.

use crate::support::navixy::{ALL_DATA, api_key_line, navixy_source};
use crate::support::*;
use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use std::path::Path;
use std::process::{Command, Output};
use std::time::Duration;
use wsvault::sim::jsonrpc::{JsonRpcSim, JsonRpcSimConfig};
use wsvault::sim::navixy::{NavixySim, NavixySimConfig};

fn any() -> std::net::SocketAddr {
    ([127, 0, 0, 1], 0).into()
}

/// Runs `wsvault ARGS…` in `dir` off the runtime and returns its output.
async fn wsvault(dir: &Path, args: &[&str]) -> Output {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_wsvault"))
            .args(&args)
            .current_dir(&dir)
            .env_remove("RUST_LOG")
            .output()
            .unwrap()
    })
    .await
    .unwrap()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// The number printed after `table` on a "  table   N" line.
fn printed_count(text: &str, table: &str) -> Option<i64> {
    text.lines().find_map(|l| {
        let mut parts = l.split_whitespace();
        (parts.next() == Some(table))
            .then(|| parts.next()?.parse().ok())
            .flatten()
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn backup_copies_a_live_sqlite_database_consistently() {
    let db = sqlite_database();
    let rpc = JsonRpcSim::start(
        any(),
        JsonRpcSimConfig {
            interval: Duration::from_millis(2),
            ..JsonRpcSimConfig::default()
        },
    )
    .await
    .unwrap();
    let navixy = NavixySim::start(
        any(),
        NavixySimConfig {
            rate: 500.0,
            ..NavixySimConfig::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sources = jsonrpc_source("rpc", &rpc.ws_url(), -1)
        + &navixy_source("fleet", &navixy, &format!("{}\n{ALL_DATA}", api_key_line()));
    let daemon = Daemon::start(dir.path(), &config(&db.cfg.url, "", "", &sources));
    let store = daemon_store(&daemon, &db).await;
    wait_count(&store, Some(&daemon), "notifications", |n| n >= 200).await;

    // Taken while both sources keep writing.
    let copy = dir.path().join("copy.db");
    let cfg = daemon.config_path.display().to_string();
    let out = wsvault(dir.path(), &["backup", "--config", &cfg, "--to", "copy.db"]).await;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(text.contains("integrity_check: ok"), "{text}");

    let opts = SqliteConnectOptions::new().filename(&copy).read_only(true);
    let mut c = SqliteConnection::connect_with(&opts).await.unwrap();
    let verdict: String = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_one(&mut c)
        .await
        .unwrap();
    assert_eq!(verdict, "ok");
    // A snapshot between two commits: each connection's notifications are 1..=n
    // without holes, and the printed counts are the copy's.
    let gaps: Vec<(i64, i64, i64)> = sqlx::query_as(
        "SELECT min(seq), max(seq), count(*) FROM notifications GROUP BY connection_id",
    )
    .fetch_all(&mut c)
    .await
    .unwrap();
    assert!(!gaps.is_empty());
    for (min, max, n) in gaps {
        assert_eq!((min, n), (1, max), "notifications 1..={max} without holes");
    }
    for table in ["notifications", "tracker_states", "connections"] {
        let n: i64 =
            sqlx::query_scalar(sqlx::AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
                .fetch_one(&mut c)
                .await
                .unwrap();
        assert_eq!(printed_count(&text, table), Some(n), "{table} in\n{text}");
        assert!(n > 0, "{table}");
        let live = count(&store, table).await;
        assert!(n <= live, "{table}: copy {n} > live {live}");
    }
    c.close().await.unwrap();

    // SQLite needs a target.
    let no_to = wsvault(dir.path(), &["backup", "--config", &cfg]).await;
    assert!(!no_to.status.success());
    assert!(String::from_utf8_lossy(&no_to.stderr).contains("--to PATH is required"));
    // Never overwrites.
    let again = wsvault(dir.path(), &["backup", "--config", &cfg, "--to", "copy.db"]).await;
    assert!(!again.status.success());
    assert!(
        String::from_utf8_lossy(&again.stderr).contains("already exists"),
        "{again:?}"
    );
    daemon.stop().await;
    store.close().await;
    rpc.shutdown().await;
    navixy.shutdown().await;
}

#[tokio::test]
async fn backup_prints_pg_dump_without_the_password() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("pg.toml");
    std::fs::write(
        &cfg,
        "[storage]\nurl = \"postgres://wsv:hunter2@db.internal:5432/wsvault\"\n",
    )
    .unwrap();
    let cfg = cfg.display().to_string();
    let out = wsvault(
        dir.path(),
        &["backup", "--config", &cfg, "--to", "/backups/wsvault.dump"],
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let text = stdout(&out);
    assert!(
        text.contains("pg_dump --format=custom --file='/backups/wsvault.dump' 'postgres://wsv:***@db.internal:5432/wsvault'"),
        "{text}"
    );
    assert!(!text.contains("hunter2") && !String::from_utf8_lossy(&out.stderr).contains("hunter2"));
    // Without --to the command names a default dump file.
    let out = wsvault(dir.path(), &["backup", "--config", &cfg]).await;
    assert!(out.status.success(), "{out:?}");
    assert!(stdout(&out).contains("--file='wsvault.dump'"), "{out:?}");
}

each_backend!(status_shows_sources_and_counts_from_the_database);
async fn status_shows_sources_and_counts_from_the_database(backend: Backend) {
    for db in test_databases(backend).await {
        let rpc = JsonRpcSim::start(
            any(),
            JsonRpcSimConfig {
                interval: Duration::from_millis(20),
                ..JsonRpcSimConfig::default()
            },
        )
        .await
        .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let sources = jsonrpc_source("rpc", &rpc.ws_url(), -1)
            + &jsonrpc_source("down", "ws://127.0.0.1:9/app", -1);
        let daemon = Daemon::start(dir.path(), &config(&db.cfg.url, "", "", &sources));
        let store = daemon_store(&daemon, &db).await;
        wait_count(&store, Some(&daemon), "notifications", |n| n >= 5).await;
        wait_count(
            &store,
            Some(&daemon),
            "session_events WHERE source = 'down'",
            |n| n >= 1,
        )
        .await;
        let cfg = daemon.config_path.display().to_string();

        let out = wsvault(dir.path(), &["status", "--config", &cfg]).await;
        assert!(out.status.success(), "[{}] {out:?}", db.label);
        let text = stdout(&out);
        assert!(
            text.contains("source rpc: subscribed"),
            "[{}] {text}",
            db.label
        );
        assert!(
            text.contains("source down: retrying"),
            "[{}] {text}",
            db.label
        );
        assert!(
            text.contains("connection: none recorded"),
            "[{}] {text}",
            db.label
        );
        assert!(text.contains("open since"), "[{}] {text}", db.label);
        assert!(
            text.contains("last event: ") && text.contains(" ago"),
            "[{}] {text}",
            db.label
        );
        assert!(
            printed_count(&text, "notifications").is_some_and(|n| n >= 5),
            "[{}] {text}",
            db.label
        );
        assert!(!text.contains("hunter2"));

        // After a clean stop the database says closed.
        daemon.stop().await;
        let out = wsvault(dir.path(), &["status", "--config", &cfg]).await;
        let text = stdout(&out);
        assert!(text.contains("source rpc: closed"), "[{}] {text}", db.label);
        assert!(text.contains("closed by wsvault"), "[{}] {text}", db.label);
        store.close().await;
        rpc.shutdown().await;
    }
}

#[tokio::test]
async fn demo_records_three_sources_and_shows_queries() {
    let dir = tempfile::tempdir().unwrap();
    let out = wsvault(dir.path(), &["demo", "--seconds", "3"]).await;
    let text = stdout(&out);
    assert!(out.status.success(), "{out:?}");
    assert!(dir.path().join("wsvault-demo.db").exists());
    for needle in [
        "-- latest position per tracker",
        "-- active security sessions",
        "-- notifications per method",
        "rows per table:",
        "0 lost",
    ] {
        assert!(text.contains(needle), "{needle:?} missing in\n{text}");
    }
    for table in [
        "tracker_states",
        "tracker_readings",
        "security_sessions",
        "notifications",
        "connections",
    ] {
        assert!(
            printed_count(&text, table).is_some_and(|n| n > 0),
            "{table} has no rows in\n{text}"
        );
    }
    // Query results are printed, not just the SQL: tracker ids and a method name.
    assert!(text.contains("90000"), "{text}");
    assert!(
        text.contains("OnTick") || text.contains("OnChange"),
        "{text}"
    );
    // A second run overwrites the file instead of appending to it.
    let again = wsvault(dir.path(), &["demo", "--seconds", "1"]).await;
    assert!(again.status.success(), "{again:?}");
    let first_states = printed_count(&text, "connections").unwrap();
    let second = printed_count(&stdout(&again), "connections").unwrap();
    assert!(second <= first_states, "fresh database each run");
}
