//! `wsvault demo`: the whole product in ten seconds, with nothing to set up.
//!
//! Starts the three loopback simulators (Navixy, Tradernet, JSON-RPC) and the real
//! daemon in-process on a local SQLite file (overwritten), records for a short while,
//! then prints row counts and three example queries with their results. It never
//! touches anything but loopback sockets and the demo database file.

use crate::sim::jsonrpc::{JsonRpcSim, JsonRpcSimConfig};
use crate::sim::navixy::{DEFAULT_API_KEY, NavixySim, NavixySimConfig};
use crate::sim::tradernet::{DEFAULT_SID, TradernetSim, TradernetSimConfig};
use crate::store::Store;
use crate::supervisor::Supervisor;
use sqlx::{AssertSqlSafe, Column, Row, TypeInfo, ValueRef};
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Why the demo could not run.
#[derive(Debug, thiserror::Error)]
pub enum DemoError {
    /// A simulator could not bind a loopback port.
    #[error("cannot start the {which} simulator: {source}")]
    Sim {
        /// Which simulator.
        which: &'static str,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The generated config was refused (a bug).
    #[error("demo config refused: {0}")]
    Config(#[from] crate::config::ConfigError),
    /// The daemon failed.
    #[error(transparent)]
    Supervisor(#[from] crate::supervisor::SupervisorError),
    /// Reading the results failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// An example query failed.
    #[error("example query ({title}) failed: {source}")]
    Query {
        /// Which query.
        title: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
}

fn sim(which: &'static str) -> impl FnOnce(std::io::Error) -> DemoError {
    move |source| DemoError::Sim { which, source }
}

/// The example queries: (title, SQL for SQLite).
pub const QUERIES: [(&str, &str); 3] = [
    (
        "latest position per tracker",
        "SELECT source_id, state_time, lat, lng, speed FROM latest_tracker_states \
         ORDER BY source, source_id",
    ),
    (
        "active security sessions",
        "SELECT session_id, user_login, ip_client, started_at FROM active_security_sessions \
         ORDER BY source, session_id",
    ),
    (
        "notifications per method",
        "SELECT method, count(*) AS notifications FROM notifications \
         GROUP BY method ORDER BY method",
    ),
];

/// The config the demo daemon runs with, pointing at the simulators.
pub fn config_text(db: &Path, navixy: &str, tradernet: &str, jsonrpc: &str) -> String {
    format!(
        r#"[storage]
url = "sqlite://{db}"
flush_interval = "100ms"

[supervisor]
backoff_initial = "200ms"
backoff_max = "2s"

[[sources]]
name = "fleet"
kind = "navixy"
url = "{navixy}"
api_key_hash = "{DEFAULT_API_KEY}"
subscriptions = [
  {{ type = "state_batch", target = "all" }},
  {{ type = "readings_batch", target = "all" }},
]

[[sources]]
name = "broker"
kind = "tradernet"
url = "{tradernet}"
sid = "{DEFAULT_SID}"

[[sources]]
name = "engine"
kind = "jsonrpc"
url = "{jsonrpc}"
requests = [ {{ method = "GetActiveDoc", handle = -1, params = [] }} ]
"#,
        db = db.display()
    )
}

/// Removes the database file and its WAL companions.
fn remove_db(db: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = db.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// Runs the demo for `seconds` (Ctrl-C ends it early) and returns the printed text.
pub async fn run(db: &Path, seconds: Duration) -> Result<String, DemoError> {
    let any: std::net::SocketAddr = ([127, 0, 0, 1], 0).into();
    let navixy = NavixySim::start(any, NavixySimConfig::default())
        .await
        .map_err(sim("Navixy"))?;
    let tradernet = TradernetSim::start(
        any,
        TradernetSimConfig {
            push_interval: Duration::from_secs(1),
            churn_every: Some(Duration::from_secs(2)),
            churn_lifetime: Duration::from_secs(3),
            ..TradernetSimConfig::default()
        },
    )
    .await
    .map_err(sim("Tradernet"))?;
    let jsonrpc = JsonRpcSim::start(
        any,
        JsonRpcSimConfig {
            interval: Duration::from_millis(100),
            ..JsonRpcSimConfig::default()
        },
    )
    .await
    .map_err(sim("JSON-RPC"))?;
    remove_db(db);
    let text = config_text(db, &navixy.ws_url(), &tradernet.ws_url(), &jsonrpc.ws_url());
    let cfg = crate::config::parse_str(&text, Path::new("demo.toml"), std::iter::empty())?;
    let storage = cfg.storage.clone();
    let mut out = String::new();
    let _ = writeln!(
        out,
        "wsvault demo: recording 3 simulated sources into {} for {}",
        db.display(),
        humantime::format_duration(seconds)
    );
    // A reader that closed the pipe early is not a failure (see `cli::out`).
    let _ = super::out(&out);
    let sup = Supervisor::start(cfg, None).await?;
    let report = sup.run_until_signal(tokio::time::sleep(seconds)).await?;
    navixy.shutdown().await;
    tradernet.shutdown().await;
    jsonrpc.shutdown().await;
    let mut body = String::new();
    let _ = writeln!(
        body,
        "\nwritten {} records in {} transactions ({} rejected, {} lost)",
        report.written, report.batches, report.rejected, report.lost
    );
    let store = Store::connect(&storage).await?;
    let _ = writeln!(body, "\nrows per table:");
    for (table, n) in store.table_counts().await? {
        let _ = writeln!(body, "  {table:<26} {n:>8}");
    }
    for (title, sql) in QUERIES {
        let _ = writeln!(body, "\n-- {title}\n{sql};");
        let Some(pool) = store.sqlite_pool() else {
            break;
        };
        let rows = sqlx::query(AssertSqlSafe(sql))
            .fetch_all(pool)
            .await
            .map_err(|source| DemoError::Query { title, source })?;
        body.push_str(&table(&rows));
    }
    store.close().await;
    let _ = writeln!(
        body,
        "\nexplore it yourself: sqlite3 {} (or wsvault status with storage.url pointing at it)",
        db.display()
    );
    let _ = super::out(&body);
    out.push_str(&body);
    Ok(out)
}

/// Renders rows as an aligned text table.
fn table(rows: &[sqlx::sqlite::SqliteRow]) -> String {
    let Some(first) = rows.first() else {
        return "(no rows)\n".into();
    };
    let header: Vec<String> = first
        .columns()
        .iter()
        .map(|c| c.name().to_string())
        .collect();
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|r| (0..r.len()).map(|i| cell(r, i)).collect())
        .collect();
    let widths: Vec<usize> = (0..header.len())
        .map(|i| {
            cells
                .iter()
                .map(|r| r[i].len())
                .chain([header[i].len()])
                .max()
                .unwrap_or(0)
        })
        .collect();
    let line = |vals: &[String]| {
        let parts: Vec<String> = vals
            .iter()
            .zip(&widths)
            .map(|(v, w)| format!("{v:<w$}"))
            .collect();
        format!("{}\n", parts.join(" | ").trim_end())
    };
    let mut s = line(&header);
    let rule: Vec<String> = widths.iter().map(|w| "-".repeat(*w)).collect();
    s.push_str(&format!("{}\n", rule.join("-+-")));
    for r in &cells {
        s.push_str(&line(r));
    }
    s
}

fn cell(row: &sqlx::sqlite::SqliteRow, i: usize) -> String {
    let Ok(raw) = row.try_get_raw(i) else {
        return "?".into();
    };
    if raw.is_null() {
        return "NULL".into();
    }
    match raw.type_info().name() {
        "INTEGER" => row.try_get::<i64, _>(i).map(|v| v.to_string()),
        "REAL" => row.try_get::<f64, _>(i).map(|v| format!("{v:.5}")),
        _ => row.try_get::<String, _>(i),
    }
    .unwrap_or_else(|_| "?".into())
}
