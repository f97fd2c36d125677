//! Test databases: a fresh one per test and backend, reading rows back as
//! [`Record`]s, and sample records.
//!
//! SQLite always runs (a new file in a temp dir). PostgreSQL runs when
//! `WSVAULT_TEST_POSTGRES_URL` names an admin connection (e.g.
//! `postgres://postgres@127.0.0.1:5432/postgres`): each [`test_databases`] call
//! creates a fresh database `wsvault_t_<unix secs>_<random>` and drops it when the
//! [`TestDb`] is dropped (best effort, `WITH (FORCE)`); leftovers of crashed runs older
//! than an hour are swept at the next call. Without the variable the PostgreSQL
//! variant of a test gets no database, prints (once per run) that it was skipped, and
//! passes.
//!
//! Self-contained (nothing from the rest of `support`), so `benches/writer.rs` can
//! include it by path.
#![allow(dead_code)]

pub mod rows;
pub mod samples;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Once;
use std::time::Duration;

use sqlx::Connection as _;
use wsvault::config::{RawEvents, StorageConfig};
use wsvault::store::{Backend, Store};

pub use rows::*;
#[allow(unused_imports)] // the bench builds no sample records
pub use samples::*;

/// Env var naming the PostgreSQL admin URL used to create test databases.
pub const PG_ENV: &str = "WSVAULT_TEST_POSTGRES_URL";

static SKIP_NOTICE: Once = Once::new();

/// One fresh, empty (not yet migrated) database for one test.
pub struct TestDb {
    /// "sqlite" or "postgres", for assertion messages.
    pub label: &'static str,
    /// Storage settings pointing at this database; small flush interval and backoff.
    pub cfg: StorageConfig,
    _dir: Option<tempfile::TempDir>,
    /// (admin url, database name) to drop on `Drop`, PostgreSQL only.
    pg_drop: Option<(String, String)>,
}

impl TestDb {
    /// The backend of this database.
    pub fn backend(&self) -> Backend {
        if self.label == "postgres" {
            Backend::Postgres
        } else {
            Backend::Sqlite
        }
    }

    /// A copy of the storage config, for tests that tweak it.
    pub fn config(&self) -> StorageConfig {
        self.cfg.clone()
    }

    /// Connects to this database and applies the migrations.
    pub async fn store(&self) -> Store {
        store_for(&self.cfg).await
    }

    /// The SQLite file path (SQLite only).
    pub fn sqlite_path(&self) -> Option<std::path::PathBuf> {
        self.cfg
            .url
            .strip_prefix("sqlite://")
            .map(std::path::PathBuf::from)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some((admin, name)) = self.pg_drop.take() else {
            return;
        };
        // Drop runs inside the test's runtime; a separate thread with its own runtime
        // may block on the network without disturbing it.
        let _ = std::thread::spawn(move || {
            let Ok(rt) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            rt.block_on(async move {
                if let Ok(mut c) = sqlx::PgConnection::connect(&admin).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await;
                }
            });
        })
        .join();
    }
}

/// Storage settings for tests: batches of 500, 20 ms flush, short lock wait and backoff.
pub fn storage_config(url: impl Into<String>) -> StorageConfig {
    StorageConfig {
        url: url.into(),
        batch_size: 500,
        commit_max_rows: wsvault::config::DEFAULT_COMMIT_MAX_ROWS,
        commit_max_bytes: wsvault::config::DEFAULT_COMMIT_MAX_BYTES,
        flush_interval: Duration::from_millis(20),
        queue_capacity: 10_000,
        raw_events: RawEvents::Envelope,
        traffic: false,
        busy_timeout: Duration::from_millis(100),
        retry_max: Duration::from_millis(400),
        drain_timeout: Duration::from_secs(30),
        ca_file: None,
        partition: wsvault::config::DEFAULT_PARTITION,
    }
}

/// Connects with `cfg` and migrates, panicking with the error text on failure.
pub async fn store_for(cfg: &StorageConfig) -> Store {
    let store = Store::connect(cfg)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"));
    store
        .migrate()
        .await
        .unwrap_or_else(|e| panic!("migrate: {e}"));
    store
}

/// The database a test of `backend` runs on: a fresh SQLite file, or a fresh
/// PostgreSQL database when [`PG_ENV`] is set. Empty when PostgreSQL is not
/// configured (the skip is printed once per run), so a test written as
/// `for db in test_databases(backend).await { .. }` runs once or passes skipped.
pub async fn test_databases(backend: Backend) -> Vec<TestDb> {
    match backend {
        Backend::Sqlite => vec![sqlite_database()],
        Backend::Postgres => match std::env::var(PG_ENV) {
            Ok(admin) if !admin.trim().is_empty() => vec![fresh_postgres(admin.trim()).await],
            _ => {
                SKIP_NOTICE.call_once(|| {
                    // Written to the real stderr: libtest captures `eprintln!` of passing tests.
                    use std::io::Write as _;
                    let _ = writeln!(
                        std::io::stderr(),
                        "PostgreSQL tests skipped: {PG_ENV} is not set"
                    );
                });
                Vec::new()
            }
        },
    }
}

/// A fresh SQLite database, for tests that need one whatever the backend (the
/// daemon must store somewhere) or that check SQLite-only behaviour.
pub fn sqlite_database() -> TestDb {
    let dir = tempfile::tempdir().expect("temp dir");
    let url = format!("sqlite://{}", dir.path().join("wsvault-test.db").display());
    TestDb {
        label: "sqlite",
        cfg: storage_config(url),
        _dir: Some(dir),
        pg_drop: None,
    }
}

async fn fresh_postgres(admin: &str) -> TestDb {
    let mut conn = sqlx::PgConnection::connect(admin)
        .await
        .unwrap_or_else(|e| panic!("{PG_ENV}: cannot connect: {e}"));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    sweep_stale(&mut conn, now).await;
    let name = format!("wsvault_t_{now}_{:08x}", rand::random::<u32>());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
    let _ = conn.close().await;
    let mut url = url::Url::parse(admin).expect("admin url");
    url.set_path(&format!("/{name}"));
    TestDb {
        label: "postgres",
        cfg: storage_config(url.to_string()),
        _dir: None,
        pg_drop: Some((admin.to_string(), name)),
    }
}

/// Drops test databases left behind by runs that died more than an hour ago.
async fn sweep_stale(conn: &mut sqlx::PgConnection, now: u64) {
    let names: Vec<String> =
        sqlx::query_scalar("SELECT datname FROM pg_database WHERE datname LIKE 'wsvault\\_t\\_%'")
            .fetch_all(&mut *conn)
            .await
            .unwrap_or_default();
    for name in names {
        let created = name
            .split('_')
            .nth(2)
            .and_then(|s| s.parse::<u64>().ok())
            .unwrap_or(now);
        if now.saturating_sub(created) > 3600 {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            let _ = sqlx::query(sqlx::AssertSqlSafe(sql))
                .execute(&mut *conn)
                .await;
        }
    }
}

/// The `host:port` a PostgreSQL URL points at, resolved (for a [`wsvault::sim::proxy::TcpProxy`]).
pub fn pg_addr(url: &str) -> SocketAddr {
    let u = url::Url::parse(url).expect("postgres url");
    let host = u.host_str().unwrap_or("127.0.0.1").to_string();
    let port = u.port().unwrap_or(5432);
    (host.as_str(), port)
        .to_socket_addrs()
        .expect("resolve postgres host")
        .next()
        .expect("postgres host has an address")
}

/// `url` with its host and port replaced by `addr` (to route it through a proxy).
pub fn url_via(url: &str, addr: SocketAddr) -> String {
    let mut u = url::Url::parse(url).expect("url");
    u.set_host(Some(&addr.ip().to_string())).expect("set host");
    u.set_port(Some(addr.port())).expect("set port");
    u.to_string()
}

/// Pushes `records` through a fresh writer on `store` and waits (at most 30 s) for
/// it to drain and finish.
pub async fn write_all(
    store: &Store,
    cfg: &StorageConfig,
    records: Vec<wsvault::record::Record>,
) -> wsvault::store::WriterReport {
    let (sink, handle) = wsvault::store::Writer::spawn(store.clone(), cfg);
    for r in records {
        sink.send(r).await.unwrap();
    }
    drop(sink);
    tokio::time::timeout(Duration::from_secs(30), handle.join())
        .await
        .expect("writer finishes after its sinks are dropped")
}

/// [`write_all`], also returning how the writer's PostgreSQL batches went in
/// (`COPY` or its `ON CONFLICT` fallback).
pub async fn write_counting_copies(
    store: &Store,
    cfg: &StorageConfig,
    records: Vec<wsvault::record::Record>,
) -> (wsvault::store::WriterReport, wsvault::store::CopyCounts) {
    let (sink, handle) = wsvault::store::Writer::spawn(store.clone(), cfg);
    let stats = handle.stats();
    for r in records {
        sink.send(r).await.unwrap();
    }
    drop(sink);
    let report = tokio::time::timeout(Duration::from_secs(30), handle.join())
        .await
        .expect("writer finishes after its sinks are dropped");
    (report, stats.copy_counts())
}
