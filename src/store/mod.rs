//! Storage: the pool and migrations of each backend, the batching [`Writer`], and
//! the few reads the daemon itself needs.
//!
//! The backend (SQLite or PostgreSQL) is chosen once, from the URL scheme, in
//! [`Store::connect`]; every table of the storage contract (ARCHITECTURE.md §4)
//! exists with the same columns on both, created by the embedded migrations of
//! `migrations/sqlite` and `migrations/postgres`. Records reach the database only through the [`Writer`]
//! (batches, one transaction each, retry and `rejected` handling). This module must
//! never drop a record silently, never put a URL's password in an error or log, and
//! never format a SQLite timestamp other than through [`time`].

mod abandoned;
mod batch;
mod classify;
mod latency;
mod postgres;
mod read;
mod sqlite;
pub mod time;
mod writer;

pub use classify::{ErrorClass, classify, error_text};
pub use latency::{LatencyHistogram, LatencySummary};
pub use postgres::CopyCounts;
pub use time::{TimestampError, format_ts, parse_ts};
pub use writer::{
    ForceStop, RecordSink, SinkPermit, Writer, WriterClosed, WriterHandle, WriterReport,
    WriterStats,
};

use crate::config::StorageConfig;
use crate::record::{Record, SecuritySession};
use batch::Batch;
use sqlx::postgres::PgPool;
use sqlx::sqlite::SqlitePool;
use std::fmt;
use std::sync::Arc;

/// Every table of the storage contract, in the order `table_counts` reports them.
pub const TABLES: [&str; 11] = [
    "connections",
    "session_events",
    "events",
    "tracker_states",
    "tracker_readings",
    "tracker_lifecycle",
    "security_sessions",
    "security_session_changes",
    "notifications",
    "traffic",
    "rejected",
];

/// Which database the store talks to; fixed for the life of a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// `sqlite://PATH` or `sqlite:PATH`: one local file, WAL mode.
    Sqlite,
    /// `postgres://…` or `postgresql://…`.
    Postgres,
}

impl Backend {
    /// Lower-case name for logs, metrics labels and test labels.
    pub fn name(&self) -> &'static str {
        match self {
            Backend::Sqlite => "sqlite",
            Backend::Postgres => "postgres",
        }
    }
}

/// Failures of the store's own operations (connecting, migrating, reading).
/// Batch write failures never surface here: the writer handles them.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The URL is neither `sqlite:` nor `postgres://`/`postgresql://`.
    #[error(
        "storage url {url} has an unsupported scheme: use sqlite://PATH, \
         postgres://USER@HOST/DB or postgresql://USER@HOST/DB"
    )]
    UnsupportedScheme {
        /// The configured URL, password masked.
        url: String,
    },
    /// The database could not be opened or reached; the text has the password removed.
    #[error(
        "cannot open the {backend} database at {url}: {message}; check [storage] url and that the database is reachable"
    )]
    Connect {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// The configured URL, password masked.
        url: String,
        /// The driver's error text with the password removed.
        message: String,
    },
    /// Applying the embedded migrations failed.
    #[error("migrating the {backend} database at {url} failed: {source}")]
    Migrate {
        /// `sqlite` or `postgres`.
        backend: &'static str,
        /// The configured URL, password masked.
        url: String,
        #[source]
        source: sqlx::migrate::MigrateError,
    },
    /// A read the daemon needs failed.
    #[error("database query failed while {what}: {source}")]
    Query {
        /// What the store was doing, e.g. "counting rows".
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// A stored time could not be read back.
    #[error("while {what}: {source}")]
    Timestamp {
        /// What the store was reading.
        what: &'static str,
        #[source]
        source: TimestampError,
    },
}

/// The SQLite connection the writer keeps from batch to batch.
///
/// SQLite empties a connection's whole page cache when it sees that *another*
/// connection committed since its last transaction. Taking any idle pooled connection
/// per batch therefore started most batches with a cold cache and re-read every
/// index page the batch touched; one connection for all batches keeps them warm
/// (BENCHMARKS.md). After a retriable failure it is closed, not given back to the
/// pool, so the retry starts on a fresh connection: on `SQLITE_FULL`, `SQLITE_IOERR`
/// or `SQLITE_NOMEM` SQLite may already have rolled the transaction back, the
/// rollback sqlx queues on drop then fails, and the connection stays marked as inside
/// a transaction, refusing every later `BEGIN` (issue 16). PostgreSQL keeps its caches on the server, and a held
/// connection there would meet server or firewall idle timeouts, so it takes one
/// from the pool per batch as before.
#[derive(Default)]
pub(crate) struct HeldConnection {
    sqlite: Option<sqlx::pool::PoolConnection<sqlx::Sqlite>>,
}

impl HeldConnection {
    async fn sqlite(
        &mut self,
        pool: &SqlitePool,
    ) -> Result<&mut sqlx::SqliteConnection, sqlx::Error> {
        if self.sqlite.is_none() {
            self.sqlite = Some(pool.acquire().await?);
        }
        self.sqlite.as_deref_mut().ok_or(sqlx::Error::PoolClosed)
    }

    fn keep_unless_retriable(&mut self, result: &Result<(), sqlx::Error>) {
        if let Err(e) = result
            && classify(Backend::Sqlite, e) == ErrorClass::Retriable
        {
            self.discard();
        }
    }

    /// Closes the held connection instead of returning it to the pool, where its
    /// unknown transaction state would reach the next borrower.
    pub(crate) fn discard(&mut self) {
        if let Some(mut c) = self.sqlite.take() {
            c.close_on_drop();
        }
    }
}

#[derive(Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// A connection pool to the configured database. Cheap to clone (the pool is shared);
/// the writer holds one clone, the daemon's status/health code others.
#[derive(Clone)]
pub struct Store {
    pool: Pool,
    /// The URL with its password masked: the only form that may appear in messages.
    shown_url: Arc<str>,
    /// Whether PostgreSQL batches try `COPY` first; shared by clones (unused on SQLite).
    copy_gate: Arc<postgres::CopyGate>,
    /// Cluster fencing of PostgreSQL batches, set once by the supervisor with
    /// `[cluster]`; shared by clones so the writer's store sees it.
    fence: Arc<std::sync::OnceLock<Fence>>,
    /// The `node` of the `connections` and `session_events` rows this daemon writes
    /// (PostgreSQL): the cluster node name, or the host name without `[cluster]`.
    node: Arc<std::sync::OnceLock<String>>,
}

/// What the writer needs to fence its batches (see [`crate::cluster::fence`]): a
/// batch writes rows of a source only while, in the same transaction, the lease is
/// still this node's under the term it was acquired with.
#[derive(Debug, Clone)]
pub struct Fence {
    /// This node's name, as the `leases.holder` column says it.
    pub node: String,
    /// The leases held, kept current by the cluster loop.
    pub view: crate::cluster::FenceView,
    /// Told the source of every fenced record, so the supervisor stops its session.
    pub fenced: tokio::sync::mpsc::UnboundedSender<String>,
}

impl fmt::Debug for Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Store")
            .field("backend", &self.backend())
            .field("url", &self.shown_url)
            .finish()
    }
}

/// Removes the URL's password (raw and percent-decoded) from a driver's error text.
fn scrub(url: &str, text: String) -> String {
    let Some(password) = url::Url::parse(url)
        .ok()
        .and_then(|u| u.password().map(str::to_string))
    else {
        return text;
    };
    let decoded = url::form_urlencoded::parse(format!("p={password}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_default();
    let mut out = text;
    for secret in [password, decoded] {
        if !secret.is_empty() {
            out = out.replace(&secret, crate::redact::MASK);
        }
    }
    out
}

impl Store {
    /// Opens a pool for `cfg.url`: `sqlite://path` or `sqlite:path` (the file is
    /// created when missing; WAL, `synchronous=NORMAL`, `busy_timeout`), or
    /// `postgres://`/`postgresql://` (connected eagerly, so a wrong URL fails here).
    pub async fn connect(cfg: &StorageConfig) -> Result<Store, StoreError> {
        let url = cfg.url.trim();
        let shown: Arc<str> = crate::redact::redact_url_str(url).into();
        let scheme = url
            .split_once(':')
            .map(|(s, _)| s.to_ascii_lowercase())
            .unwrap_or_default();
        let (backend, pool) = match scheme.as_str() {
            "sqlite" => (
                Backend::Sqlite,
                sqlite::connect(url, cfg).await.map(Pool::Sqlite),
            ),
            "postgres" | "postgresql" => (
                Backend::Postgres,
                postgres::connect(url, cfg.ca_file.as_deref())
                    .await
                    .map(Pool::Postgres),
            ),
            _ => {
                return Err(StoreError::UnsupportedScheme {
                    url: shown.to_string(),
                });
            }
        };
        let pool = pool.map_err(|e| StoreError::Connect {
            backend: backend.name(),
            url: shown.to_string(),
            message: scrub(url, e.to_string()),
        })?;
        Ok(Store {
            pool,
            shown_url: shown,
            copy_gate: Arc::default(),
            fence: Arc::default(),
            node: Arc::default(),
        })
    }

    /// Turns cluster fencing on for every batch this store (and its clones) writes.
    /// Set once, before the first record of a leased source; later calls are ignored.
    pub fn set_fence(&self, fence: Fence) {
        let _ = self.fence.set(fence);
    }

    /// Names the daemon in the `node` column of the `connections` and
    /// `session_events` rows it writes from now on (PostgreSQL; set once).
    pub fn set_node(&self, node: &str) {
        let _ = self.node.set(node.to_string());
    }

    /// The backend chosen from the URL scheme.
    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    /// The configured URL with its password masked, for logs and status output.
    pub fn shown_url(&self) -> &str {
        &self.shown_url
    }

    /// Applies the embedded migrations of this backend; already applied ones are
    /// skipped, so running it at every start is safe, also from several processes at
    /// once: PostgreSQL's migrator holds an advisory lock, SQLite's a lock file
    /// beside the database ([`sqlite::files::MigrateLock`]). On PostgreSQL it then
    /// renews the analysts' read grants (see `postgres::reader`).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        let result = match &self.pool {
            Pool::Sqlite(p) => {
                let options = p.connect_options();
                let lock = match sqlite::files::database_path(&options, &self.shown_url) {
                    Some(path) => sqlite::files::MigrateLock::acquire(&path)
                        .await
                        .map(Some)
                        .map_err(|e| sqlx::migrate::MigrateError::Execute(sqlx::Error::Io(e))),
                    None => Ok(None),
                };
                match lock {
                    Ok(_held) => sqlx::migrate!("migrations/sqlite").run(p).await,
                    Err(e) => Err(e),
                }
            }
            Pool::Postgres(p) => match sqlx::migrate!("migrations/postgres").run(p).await {
                Ok(()) => postgres::reader::regrant(p)
                    .await
                    .map_err(sqlx::migrate::MigrateError::Execute),
                Err(e) => Err(e),
            },
        };
        result.map_err(|source| StoreError::Migrate {
            backend: self.backend().name(),
            url: self.shown_url.to_string(),
            source,
        })
    }

    /// The security sessions of `source` that have not ended (`ended_at IS NULL`),
    /// fully populated, ordered by `session_id`: the Tradernet diff starts from these
    /// after a restart so it does not report every live session as newly opened.
    pub async fn active_security_sessions(
        &self,
        source: &str,
    ) -> Result<Vec<SecuritySession>, StoreError> {
        match &self.pool {
            Pool::Sqlite(p) => read::sqlite_active_sessions(p, source).await,
            Pool::Postgres(p) => read::postgres_active_sessions(p, source).await,
        }
    }

    /// Records that close the connections of `sources` a previous run left open
    /// (killed or crashed): for each, `suspended` (initiator `down`) and `closed`
    /// session events and the `connections` row, all at the last time its source
    /// stored anything, so the blind period shows. Queue them before sources start.
    pub async fn abandoned_connections(
        &self,
        sources: &[String],
    ) -> Result<Vec<Record>, StoreError> {
        match &self.pool {
            Pool::Sqlite(p) => abandoned::sqlite(p, sources).await,
            Pool::Postgres(p) => abandoned::postgres(p, sources).await,
        }
    }

    /// Row count of every contract table ([`TABLES`] order), for `status` and tests.
    pub async fn table_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        let mut out = Vec::with_capacity(TABLES.len());
        for table in TABLES {
            let n = match &self.pool {
                Pool::Sqlite(p) => read::count(p, table).await,
                Pool::Postgres(p) => read::count(p, table).await,
            };
            let n = n.map_err(|source| StoreError::Query {
                what: "counting rows",
                source,
            })?;
            out.push((table.to_string(), n));
        }
        Ok(out)
    }

    /// Closes every pooled connection; waits for checked-out ones to come back.
    pub async fn close(&self) {
        match &self.pool {
            Pool::Sqlite(p) => p.close().await,
            Pool::Postgres(p) => p.close().await,
        }
    }

    /// How many batches PostgreSQL took by `COPY` and how many it refused that way
    /// (then written with `ON CONFLICT`); always zero on SQLite. For tests and status.
    pub fn copy_counts(&self) -> CopyCounts {
        self.copy_gate.counts()
    }

    /// The SQLite pool, for backend-specific tools (backup, retention, tests).
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        match &self.pool {
            Pool::Sqlite(p) => Some(p),
            Pool::Postgres(_) => None,
        }
    }

    /// The PostgreSQL pool, for backend-specific tools (retention, tests).
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        match &self.pool {
            Pool::Sqlite(_) => None,
            Pool::Postgres(p) => Some(p),
        }
    }

    /// One transaction with every live record of the batch.
    pub(crate) async fn write_bulk(
        &self,
        held: &mut HeldConnection,
        batch: &mut Batch,
    ) -> Result<(), sqlx::Error> {
        match &self.pool {
            Pool::Sqlite(p) => {
                let result = sqlite::write_bulk(held.sqlite(p).await?, batch).await;
                held.keep_unless_retriable(&result);
                result
            }
            Pool::Postgres(p) => {
                let ctx = postgres::TxContext {
                    fence: self.fence.get(),
                    node: self.node.get().map(String::as_str),
                };
                postgres::write_bulk(p, &self.copy_gate, ctx, batch).await
            }
        }
    }

    /// One transaction, a savepoint per record, refused records swapped for `rejected` rows.
    pub(crate) async fn write_each(
        &self,
        held: &mut HeldConnection,
        batch: &mut Batch,
    ) -> Result<(), sqlx::Error> {
        match &self.pool {
            Pool::Sqlite(p) => {
                let result = sqlite::write_each(held.sqlite(p).await?, batch).await;
                held.keep_unless_retriable(&result);
                result
            }
            Pool::Postgres(p) => {
                let ctx = postgres::TxContext {
                    fence: self.fence.get(),
                    node: self.node.get().map(String::as_str),
                };
                postgres::write_each(p, ctx, batch).await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::scrub;

    #[test]
    fn scrub_removes_raw_and_decoded_password() {
        let url = "postgres://u:p%40ssw0rd@h/db";
        let text = "failed for p%40ssw0rd and p@ssw0rd".to_string();
        let out = scrub(url, text);
        assert!(!out.contains("ssw0rd"), "{out}");
    }
}
