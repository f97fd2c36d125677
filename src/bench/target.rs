//! Benchmark databases: a fresh, migrated database per run (a SQLite file in a temp
//! directory, or a PostgreSQL database created from the admin URL), the harness's own
//! pool to watch it, and its removal afterwards.
//!
//! Only databases named `wsvault_bench_*` that this process created are ever dropped.

use super::BenchError;
use crate::config::{RawEvents, StorageConfig};
use crate::store::Store;
use sqlx::Connection as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub use crate::store::Backend;

/// What every run of one backend shares.
#[derive(Debug, Clone)]
pub struct Env {
    /// The backend measured.
    pub backend: Backend,
    /// PostgreSQL admin URL (required for [`Backend::Postgres`]).
    pub admin: Option<String>,
    /// The daemon binary.
    pub exe: PathBuf,
}

/// One fresh database and a scratch directory (config, logs, the SQLite file).
pub struct Target {
    /// Scratch directory, removed by [`Target::cleanup`].
    pub dir: PathBuf,
    /// Storage URL of the database.
    pub url: String,
    /// The harness's own connection pool to it (already migrated).
    pub store: Store,
    pg: Option<(String, String)>,
}

fn unique_suffix() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    format!("{secs}_{:08x}", rand::random::<u32>())
}

/// Storage settings the harness uses for its own pool (not the daemon's).
pub fn harness_storage(url: &str) -> StorageConfig {
    StorageConfig {
        url: url.to_string(),
        batch_size: 500,
        commit_max_rows: crate::config::DEFAULT_COMMIT_MAX_ROWS,
        commit_max_bytes: crate::config::DEFAULT_COMMIT_MAX_BYTES,
        flush_interval: Duration::from_millis(100),
        queue_capacity: 1000,
        raw_events: RawEvents::Envelope,
        traffic: false,
        busy_timeout: Duration::from_secs(5),
        retry_max: Duration::from_secs(1),
        drain_timeout: crate::config::DEFAULT_DRAIN_TIMEOUT,
        ca_file: None,
        partition: crate::config::DEFAULT_PARTITION,
    }
}

impl Target {
    /// Creates and migrates a fresh database of `env.backend`.
    pub async fn create(env: &Env, tag: &str) -> Result<Target, BenchError> {
        let suffix = unique_suffix();
        let dir = std::env::temp_dir().join(format!("wsvault-bench-{tag}-{suffix}"));
        std::fs::create_dir_all(&dir)
            .map_err(BenchError::io(format!("creating {}", dir.display())))?;
        let (url, pg) = match env.backend {
            Backend::Sqlite => (format!("sqlite://{}", dir.join("bench.db").display()), None),
            Backend::Postgres => {
                let admin = env.admin.as_deref().ok_or(BenchError::NoPostgresUrl)?;
                let name = format!("wsvault_bench_{suffix}");
                let mut conn = sqlx::PgConnection::connect(admin)
                    .await
                    .map_err(BenchError::sql("connecting to the PostgreSQL admin URL"))?;
                sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .map_err(BenchError::sql("creating the benchmark database"))?;
                let _ = conn.close().await;
                let mut u = url::Url::parse(admin).map_err(|e| {
                    BenchError::Daemon(format!("the PostgreSQL admin URL does not parse: {e}"))
                })?;
                u.set_path(&format!("/{name}"));
                (u.to_string(), Some((admin.to_string(), name)))
            }
        };
        let store = Store::connect(&harness_storage(&url)).await?;
        store.migrate().await?;
        Ok(Target {
            dir,
            url,
            store,
            pg,
        })
    }

    /// The SQLite file (SQLite only).
    pub fn sqlite_path(&self) -> Option<&Path> {
        self.url.strip_prefix("sqlite://").map(Path::new)
    }

    /// One integer from `sql` (a count or a max).
    pub async fn scalar(&self, sql: &'static str) -> Result<i64, BenchError> {
        let what = "reading progress from the benchmark database";
        if let Some(p) = self.store.sqlite_pool() {
            sqlx::query_scalar::<_, Option<i64>>(sql)
                .fetch_one(p)
                .await
                .map(Option::unwrap_or_default)
                .map_err(BenchError::sql(what))
        } else if let Some(p) = self.store.postgres_pool() {
            sqlx::query_scalar::<_, Option<i64>>(sql)
                .fetch_one(p)
                .await
                .map(Option::unwrap_or_default)
                .map_err(BenchError::sql(what))
        } else {
            Ok(0)
        }
    }

    /// Rows in `table` (one of the contract tables).
    pub async fn count(&self, table: &str) -> Result<i64, BenchError> {
        let counts = self.store.table_counts().await?;
        Ok(counts
            .into_iter()
            .find(|(t, _)| t == table)
            .map_or(0, |(_, n)| n))
    }

    /// Highest `tracker_states.id`: a cheap progress probe (ids are never reused).
    pub async fn states_progress(&self) -> Result<i64, BenchError> {
        self.scalar("SELECT MAX(id) FROM tracker_states").await
    }

    /// CPU seconds of the PostgreSQL server processes serving this database now
    /// (the daemon's pool and the harness's), when the server runs on this machine.
    pub async fn server_cpu_seconds(&self) -> Option<f64> {
        let pool = self.store.postgres_pool()?;
        let pids: Vec<i32> = sqlx::query_scalar(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database()",
        )
        .fetch_all(pool)
        .await
        .ok()?;
        Some(
            pids.iter()
                .map(|p| super::daemon::cpu_seconds(&p.to_string()))
                .sum(),
        )
    }

    /// Closes the pool, drops the PostgreSQL database and removes the directory
    /// (both kept, for inspection, when `WSVAULT_BENCH_KEEP` is set).
    pub async fn cleanup(self) {
        self.store.close().await;
        if std::env::var_os("WSVAULT_BENCH_KEEP").is_some() {
            eprintln!(
                "kept {} ({})",
                self.dir.display(),
                crate::redact::redact_url_str(&self.url)
            );
            return;
        }
        if let Some((admin, name)) = self.pg
            && let Ok(mut c) = sqlx::PgConnection::connect(&admin).await
        {
            let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
            if let Err(e) = sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut c).await {
                tracing::warn!("could not drop benchmark database {name}: {e}");
            }
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Holds SQLite's write lock from another connection, as a backup tool or a stuck
/// process would: the daemon's writes fail with SQLITE_BUSY until it is released.
pub struct SqliteLock {
    conn: sqlx::SqliteConnection,
}

impl SqliteLock {
    /// Takes the write lock (`BEGIN EXCLUSIVE`), waiting up to 30 s for it: a writer
    /// working off a backlog commits back to back (group commit), and SQLite's busy
    /// handler, which polls, can miss many of the short gaps between its
    /// transactions on a loaded machine.
    pub async fn take(path: &Path) -> Result<SqliteLock, BenchError> {
        let opts = sqlx::sqlite::SqliteConnectOptions::new()
            .filename(path)
            .busy_timeout(Duration::from_secs(30));
        let mut conn = sqlx::SqliteConnection::connect_with(&opts)
            .await
            .map_err(BenchError::sql("opening a second SQLite connection"))?;
        sqlx::query("BEGIN EXCLUSIVE")
            .execute(&mut conn)
            .await
            .map_err(BenchError::sql("taking the SQLite write lock"))?;
        Ok(SqliteLock { conn })
    }

    /// Releases the lock.
    pub async fn release(mut self) -> Result<(), BenchError> {
        sqlx::query("ROLLBACK")
            .execute(&mut self.conn)
            .await
            .map_err(BenchError::sql("releasing the SQLite write lock"))?;
        let _ = self.conn.close().await;
        Ok(())
    }
}
