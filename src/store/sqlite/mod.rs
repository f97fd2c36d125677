//! SQLite side of the store: pool options, migrations, the dialect of statements
//! written above the seam, and the write path ([`insert`], [`writer`]).
//!
//! One local file in WAL mode. Times are the storage text of `store/time.rs`, bound
//! with [`format_ts`] and read back through [`crate::store::DbTime`]. This module
//! never decides about retries; it returns errors.

use super::Backend;
use super::database::{BatchWriter, Database, Param, Rows, numbered_for_sqlite};
use super::stats::WriterStats;
use super::time::format_ts;
use crate::config::StorageConfig;
use futures_util::future::BoxFuture;
use sqlx::AssertSqlSafe;
use sqlx::sqlite::{
    Sqlite, SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePool,
    SqlitePoolOptions, SqliteSynchronous,
};
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

mod checkpoint;
mod derived;
mod files;
mod id_slots;
mod insert;
mod prune;
mod sql;
mod writer;

/// The SQLite backend behind [`Database`].
pub(crate) struct SqliteDb {
    pool: SqlitePool,
}

impl SqliteDb {
    /// Opens the database at `url` (see [`connect`]).
    pub(crate) async fn connect(url: &str, cfg: &StorageConfig) -> Result<SqliteDb, sqlx::Error> {
        Ok(SqliteDb {
            pool: connect(url, cfg).await?,
        })
    }
}

/// Opens the pool: file created when missing (mode 0600, see [`files`]), WAL, `synchronous=NORMAL`, the
/// configured busy timeout, and a statement cache large enough for every chunk size
/// of every table.
async fn connect(url: &str, cfg: &StorageConfig) -> Result<SqlitePool, sqlx::Error> {
    let options = SqliteConnectOptions::from_str(url)?
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal)
        .synchronous(SqliteSynchronous::Normal)
        .busy_timeout(cfg.busy_timeout)
        // Statement journals of multi-row inserts stay in memory instead of temp files.
        .pragma("temp_store", "memory")
        // 16 MiB page cache: index pages of a busy table stay hot between batches.
        .pragma("cache_size", "-16384")
        // Checkpoint every ~40 MiB of WAL instead of every 4 MiB. Each commit of a
        // batch dirties index pages all over the file (one leaf per tracker), so the
        // default 1000-page threshold checkpointed (and fsynced the database file)
        // after nearly every batch; this halves the cost of a batch (BENCHMARKS.md).
        .pragma("wal_autocheckpoint", "10000")
        .statement_cache_capacity(256);
    // The first connection switches a new file to WAL, which needs an exclusive lock
    // that SQLite refuses at once (no busy wait) while another process does the same:
    // two daemons starting together on a fresh file failed with "database is locked".
    // The migration lock file serialises that first open across processes.
    let _first_open = match files::database_path(&options, url) {
        Some(path) => {
            files::create_private(&path)?;
            Some(files::MigrateLock::acquire(&path).await?)
        }
        None => None,
    };
    SqlitePoolOptions::new()
        .max_connections(4)
        .acquire_timeout(cfg.busy_timeout.max(Duration::from_secs(5)))
        .connect_with(options)
        .await
}

/// Binds `params` in order; a time as the storage text.
fn bind<'q>(
    mut q: sqlx::query::Query<'q, Sqlite, SqliteArguments>,
    params: &[Param<'_>],
) -> sqlx::query::Query<'q, Sqlite, SqliteArguments> {
    for p in params {
        q = match *p {
            Param::Int(v) => q.bind(v),
            Param::OptInt(v) => q.bind(v),
            Param::Text(v) => q.bind(v),
            Param::OptText(v) => q.bind(v),
            Param::Time(t) => q.bind(format_ts(&t)),
        };
    }
    q
}

impl Database for SqliteDb {
    fn backend(&self) -> Backend {
        Backend::Sqlite
    }

    /// sqlx's SQLite migrator takes no lock, so [`files::MigrateLock`] serialises
    /// migrating processes on a lock file beside the database.
    fn migrate<'a>(
        &'a self,
        shown_url: &'a str,
    ) -> BoxFuture<'a, Result<(), sqlx::migrate::MigrateError>> {
        Box::pin(async move {
            let options = self.pool.connect_options();
            let _held = match files::database_path(&options, shown_url) {
                Some(path) => Some(
                    files::MigrateLock::acquire(&path)
                        .await
                        .map_err(|e| sqlx::migrate::MigrateError::Execute(sqlx::Error::Io(e)))?,
                ),
                None => None,
            };
            sqlx::migrate!("migrations/sqlite").run(&self.pool).await
        })
    }

    fn fetch<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Param<'a>],
    ) -> BoxFuture<'a, Result<Rows, sqlx::Error>> {
        Box::pin(async move {
            let q = sqlx::query(AssertSqlSafe(numbered_for_sqlite(sql)));
            Ok(Rows::Sqlite(bind(q, params).fetch_all(&self.pool).await?))
        })
    }

    fn execute<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Param<'a>],
    ) -> BoxFuture<'a, Result<u64, sqlx::Error>> {
        Box::pin(async move {
            let q = sqlx::query(AssertSqlSafe(numbered_for_sqlite(sql)));
            Ok(bind(q, params).execute(&self.pool).await?.rows_affected())
        })
    }

    fn json_as_text(&self, column: &str) -> String {
        column.to_string()
    }

    fn json_field(&self, column: &str, path: &[&str]) -> String {
        format!("json_extract({column}, '$.{}')", path.join("."))
    }

    fn prune_statement(&self, table: &str, walk: &str, age: &str, batch: usize) -> String {
        prune::statement(table, walk, age, batch)
    }

    fn prune_step<'a>(
        &'a self,
        sql: &'a str,
        source: &'a str,
        _lower: chrono::DateTime<chrono::Utc>,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> BoxFuture<'a, Result<super::database::Pruned, sqlx::Error>> {
        Box::pin(async move { prune::step(&self.pool, sql, source, cutoff).await })
    }

    fn claim_id_slot<'a>(
        &'a self,
        holder: &'a str,
        token: i64,
        stale: Duration,
    ) -> BoxFuture<'a, Result<Option<super::database::IdSlotRow>, sqlx::Error>> {
        Box::pin(id_slots::claim(&self.pool, holder, token, stale))
    }

    fn renew_id_slot(
        &self,
        slot: u16,
        token: i64,
        high_water: i64,
    ) -> BoxFuture<'_, Result<Option<i64>, sqlx::Error>> {
        Box::pin(id_slots::renew(&self.pool, slot, token, high_water))
    }

    fn release_id_slot(
        &self,
        slot: u16,
        token: i64,
        high_water: i64,
    ) -> BoxFuture<'_, Result<(), sqlx::Error>> {
        Box::pin(id_slots::release(&self.pool, slot, token, high_water))
    }

    fn batch_writer(&self, stats: Arc<WriterStats>) -> Box<dyn BatchWriter> {
        let checkpointer =
            checkpoint::Checkpointer::spawn(self.pool.clone(), stats.wal_checkpoints.clone());
        Box::new(writer::SqliteWriter::new(self.pool.clone(), checkpointer))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.pool.close())
    }

    fn sqlite_pool(&self) -> Option<&SqlitePool> {
        Some(&self.pool)
    }
}
