//! Storage: the backends behind one seam, the batching [`Writer`], and the few reads
//! the daemon itself needs.
//!
//! The backend (SQLite or PostgreSQL) is chosen once, from the URL scheme, in
//! [`Store::connect`], and lives behind the `Database` trait ([`database`]): each
//! backend's pool, migrations, SQL dialect and insert path are in `sqlite/` or
//! `postgres/`, and nothing above the seam matches on the backend. Every table of the
//! storage contract (ARCHITECTURE.md §4) exists with the same columns on both, created
//! by the embedded migrations of `migrations/sqlite` and `migrations/postgres`.
//! Records reach the database only through the [`Writer`] (batches, one transaction
//! each, retry and `rejected` handling, [`transact`]). This module must never drop a
//! record silently, never put a URL's password in an error or log, and never format a
//! SQLite timestamp other than through [`time`].

mod abandoned;
mod batch;
mod classify;
mod database;
mod derived;
mod group;
mod latency;
mod postgres;
mod read;
mod sqlite;
mod stats;
pub mod time;
mod transact;
mod writer;

pub use classify::{ErrorClass, classify, error_text};
pub use database::Param;
pub use latency::{LatencyHistogram, LatencySummary};
pub use stats::{Committed, CopyCounts, CopyOutcomes, WriterReport, WriterStats};
pub use time::{DbTime, TimestampError, format_ts, parse_ts};
pub use writer::{ForceStop, RecordSink, SinkPermit, Writer, WriterClosed, WriterHandle};

use crate::config::StorageConfig;
use crate::record::{Record, SecuritySession};
use database::{BatchWriter, Database};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
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

/// A connection pool to the configured database. Cheap to clone (the backend is
/// shared); the writer holds one clone, the daemon's status/health code others.
#[derive(Clone)]
pub struct Store {
    db: Arc<dyn Database>,
    /// The URL with its password masked: the only form that may appear in messages.
    shown_url: Arc<str>,
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
    /// How long a write transaction may sit idle (`idle_in_transaction_session_timeout`)
    /// and how long one statement may run (`statement_timeout`). The fence holds the
    /// lease rows `FOR KEY SHARE` until commit; a daemon frozen inside a transaction
    /// (SIGSTOP, a stalled VM) would otherwise hold them, and so block the takeover,
    /// for as long as it stays frozen. The server ends such a session instead.
    pub idle_limit: std::time::Duration,
    /// See `idle_limit`.
    pub statement_limit: std::time::Duration,
    /// Told the source (and lease term) of every fenced record, so the supervisor
    /// stops the session that built it.
    pub fenced: tokio::sync::mpsc::UnboundedSender<(String, Option<i64>)>,
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
        let connected: Result<Arc<dyn Database>, (Backend, sqlx::Error)> = match scheme.as_str() {
            "sqlite" => sqlite::SqliteDb::connect(url, cfg)
                .await
                .map(|db| Arc::new(db) as Arc<dyn Database>)
                .map_err(|e| (Backend::Sqlite, e)),
            "postgres" | "postgresql" => postgres::PgDb::connect(url, cfg.ca_file.as_deref())
                .await
                .map(|db| Arc::new(db) as Arc<dyn Database>)
                .map_err(|e| (Backend::Postgres, e)),
            _ => {
                return Err(StoreError::UnsupportedScheme {
                    url: shown.to_string(),
                });
            }
        };
        let db = connected.map_err(|(backend, e)| StoreError::Connect {
            backend: backend.name(),
            url: shown.to_string(),
            message: scrub(url, e.to_string()),
        })?;
        Ok(Store {
            db,
            shown_url: shown,
        })
    }

    /// Turns cluster fencing on for every batch this store (and its clones) writes.
    /// Set once, before the first record of a leased source; later calls are ignored.
    pub fn set_fence(&self, fence: Fence) {
        self.db.set_fence(fence);
    }

    /// Names the daemon in the `node` column of the `connections` and
    /// `session_events` rows it writes from now on (PostgreSQL; set once).
    pub fn set_node(&self, node: &str) {
        self.db.set_node(node);
    }

    /// The backend chosen from the URL scheme.
    pub fn backend(&self) -> Backend {
        self.db.backend()
    }

    /// The configured URL with its password masked, for logs and status output.
    pub fn shown_url(&self) -> &str {
        &self.shown_url
    }

    /// Applies the embedded migrations of this backend; already applied ones are
    /// skipped, so running it at every start is safe, also from several processes at
    /// once: PostgreSQL's migrator holds an advisory lock, SQLite's a lock file
    /// beside the database. On PostgreSQL it then renews the analysts' read grants.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        self.db
            .migrate(&self.shown_url)
            .await
            .map_err(|source| StoreError::Migrate {
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
        read::active_sessions(self, source).await
    }

    /// Records that close the connections of `sources` a previous run left open
    /// (killed or crashed): for each, `suspended` (initiator `down`) and `closed`
    /// session events and the `connections` row, all at the last time its source
    /// stored anything, so the blind period shows. Queue them before sources start.
    pub async fn abandoned_connections(
        &self,
        sources: &[String],
    ) -> Result<Vec<Record>, StoreError> {
        abandoned::records(self, sources).await
    }

    /// Row count of every contract table ([`TABLES`] order), for `status` and tests.
    pub async fn table_counts(&self) -> Result<Vec<(String, i64)>, StoreError> {
        read::table_counts(self).await
    }

    /// Closes every pooled connection; waits for checked-out ones to come back.
    pub async fn close(&self) {
        self.db.close().await;
    }

    /// Runs one statement written with `$1`, `$2`, … placeholders on either backend
    /// and decodes its rows with `FromRow` (times as [`DbTime`]): the way code above
    /// the seam (status, retention, backfill gaps) reads without knowing the backend.
    pub async fn fetch_all<T>(&self, sql: &str, params: &[Param<'_>]) -> Result<Vec<T>, sqlx::Error>
    where
        T: for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow>,
    {
        self.db.fetch(sql, params).await?.decode()
    }

    /// [`Store::fetch_all`] for a statement that returns at most one row.
    pub async fn fetch_optional<T>(
        &self,
        sql: &str,
        params: &[Param<'_>],
    ) -> Result<Option<T>, sqlx::Error>
    where
        T: for<'r> sqlx::FromRow<'r, SqliteRow> + for<'r> sqlx::FromRow<'r, PgRow>,
    {
        Ok(self.fetch_all(sql, params).await?.into_iter().next())
    }

    /// Runs one statement written with `$n` placeholders; returns the rows affected.
    pub async fn execute(&self, sql: &str, params: &[Param<'_>]) -> Result<u64, sqlx::Error> {
        self.db.execute(sql, params).await
    }

    /// A JSON column as text in this backend's SQL (PostgreSQL's `jsonb` needs a cast).
    pub fn json_as_text(&self, column: &str) -> String {
        self.db.json_as_text(column)
    }

    /// The text at `path` inside a JSON column in this backend's SQL, `NULL` when missing.
    pub fn json_field(&self, column: &str, path: &[&str]) -> String {
        self.db.json_field(column, path)
    }

    /// A `WHERE` condition selecting at most `$3` rows of `table` with `source = $1`
    /// and `time_col < $2` (SQLite `rowid`, PostgreSQL `ctid`), for bounded deletes.
    /// Claims an id slot (see [`Database::claim_id_slot`]).
    pub async fn claim_id_slot(
        &self,
        holder: &str,
        token: i64,
        stale: std::time::Duration,
    ) -> Result<Option<database::IdSlotRow>, sqlx::Error> {
        self.db.claim_id_slot(holder, token, stale).await
    }

    /// Renews an id slot (see [`Database::renew_id_slot`]).
    pub async fn renew_id_slot(
        &self,
        slot: u16,
        token: i64,
        high_water: i64,
    ) -> Result<Option<i64>, sqlx::Error> {
        self.db.renew_id_slot(slot, token, high_water).await
    }

    /// Releases an id slot (see [`Database::release_id_slot`]).
    pub async fn release_id_slot(
        &self,
        slot: u16,
        token: i64,
        high_water: i64,
    ) -> Result<(), sqlx::Error> {
        self.db.release_id_slot(slot, token, high_water).await
    }

    /// Retention's bounded delete statement for this backend (see
    /// [`Database::prune_statement`]).
    pub fn prune_statement(&self, table: &str, walk: &str, age: &str, batch: usize) -> String {
        self.db.prune_statement(table, walk, age, batch)
    }

    /// Runs one retention step (see [`Database::prune_step`]).
    pub async fn prune_step(
        &self,
        sql: &str,
        source: &str,
        lower: chrono::DateTime<chrono::Utc>,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> Result<database::Pruned, sqlx::Error> {
        self.db.prune_step(sql, source, lower, cutoff).await
    }

    /// The SQLite pool, for backend-specific tools (backup, bench, tests).
    pub fn sqlite_pool(&self) -> Option<&SqlitePool> {
        self.db.sqlite_pool()
    }

    /// The PostgreSQL pool, for backend-specific tools (bench, tests).
    pub fn postgres_pool(&self) -> Option<&PgPool> {
        self.db.postgres_pool()
    }

    /// The write path of one writer task.
    pub(crate) fn batch_writer(&self, stats: Arc<WriterStats>) -> Box<dyn BatchWriter> {
        self.db.batch_writer(stats)
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
