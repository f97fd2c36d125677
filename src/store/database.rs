//! The seam between the store and its two backends.
//!
//! [`Store::connect`](super::Store::connect) picks the backend once, from the URL
//! scheme, and keeps it as an `Arc<dyn Database>`; everything that differs between
//! SQLite and PostgreSQL is an implementation of [`Database`] (and of the write path's
//! [`BatchWriter`]) in `store/sqlite/` or `store/postgres/`. Code above the seam writes
//! its SQL once, with `$1`, `$2`, … placeholders and plain SQL, binds [`Param`]s and
//! reads rows with sqlx's `FromRow` through [`Rows::decode`]; times go in as
//! [`Param::Time`] and come out as [`super::DbTime`], so the SQLite text format and
//! PostgreSQL's `timestamptz` never show above the seam.
//!
//! Dynamic dispatch happens per statement or per batch, never per row: the insert
//! path inside each backend is concrete, monomorphic code as before.

use super::Backend;
use super::batch::Batch;
use super::stats::WriterStats;
use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use sqlx::FromRow;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use std::sync::Arc;
use std::time::Duration;

/// One bound parameter of a statement written above the seam.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Param<'a> {
    /// `bigint` / `INTEGER`.
    Int(i64),
    /// A nullable integer.
    OptInt(Option<i64>),
    /// `text`.
    Text(&'a str),
    /// A nullable text.
    OptText(Option<&'a str>),
    /// A time column: `timestamptz` on PostgreSQL, the storage text on SQLite.
    Time(DateTime<Utc>),
}

/// Rows a statement returned, still in the backend's own row type; decoded once,
/// with `FromRow`, by [`Rows::decode`].
pub enum Rows {
    /// From SQLite.
    Sqlite(Vec<SqliteRow>),
    /// From PostgreSQL.
    Postgres(Vec<PgRow>),
}

impl Rows {
    /// Every row as a `T`; a row that does not fit `T` is an error, never skipped.
    pub fn decode<T>(self) -> Result<Vec<T>, sqlx::Error>
    where
        T: for<'r> FromRow<'r, SqliteRow> + for<'r> FromRow<'r, PgRow>,
    {
        match self {
            Rows::Sqlite(rows) => rows.iter().map(T::from_row).collect(),
            Rows::Postgres(rows) => rows.iter().map(T::from_row).collect(),
        }
    }
}

/// One retention step's outcome: rows deleted and, where the backend resumes its
/// walk (PostgreSQL), the newest walk time deleted.
pub type Pruned = (u64, Option<DateTime<Utc>>);

/// A claimed id slot: (slot, high water, now in Unix ms by the backend's clock).
pub type IdSlotRow = (i64, i64, i64);

/// One backend: its pool, migrations, dialect and write path.
pub(crate) trait Database: Send + Sync + 'static {
    /// Which backend this is (error classification, labels).
    fn backend(&self) -> Backend;

    /// Applies the embedded migrations, serialised across processes; `shown_url` is
    /// the URL with its password masked.
    fn migrate<'a>(
        &'a self,
        shown_url: &'a str,
    ) -> BoxFuture<'a, Result<(), sqlx::migrate::MigrateError>>;

    /// Runs a statement written with `$n` placeholders and returns its rows.
    fn fetch<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Param<'a>],
    ) -> BoxFuture<'a, Result<Rows, sqlx::Error>>;

    /// Runs a statement written with `$n` placeholders; returns the rows affected.
    fn execute<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Param<'a>],
    ) -> BoxFuture<'a, Result<u64, sqlx::Error>>;

    /// A JSON column as text (PostgreSQL's `jsonb` needs a cast; SQLite stores text).
    fn json_as_text(&self, column: &str) -> String;

    /// The text at `path` (object keys) inside a JSON column, `NULL` when missing.
    fn json_field(&self, column: &str, path: &[&str]) -> String;

    /// Retention's bounded delete of `table` along its `(source, walk)` index, for
    /// rows whose `age` column is before the cutoff, at most `batch` rows (see
    /// `ops::retention`); run it with [`Database::prune_step`].
    fn prune_statement(&self, table: &str, walk: &str, age: &str, batch: usize) -> String;

    /// Runs one [`Database::prune_statement`] for `source`, from `lower` (the newest
    /// time the previous step deleted; only PostgreSQL needs it) to `cutoff`.
    /// Returns the rows deleted and, where the backend resumes, the newest walk time.
    fn prune_step<'a>(
        &'a self,
        sql: &'a str,
        source: &'a str,
        lower: DateTime<Utc>,
        cutoff: DateTime<Utc>,
    ) -> BoxFuture<'a, Result<Pruned, sqlx::Error>>;

    /// Claims the least recently seen id slot not renewed within `stale` (see
    /// `crate::id_slots`); `(slot, high water, now in Unix ms)` by the backend's
    /// clock, `None` when every slot is taken.
    fn claim_id_slot<'a>(
        &'a self,
        holder: &'a str,
        token: i64,
        stale: Duration,
    ) -> BoxFuture<'a, Result<Option<IdSlotRow>, sqlx::Error>>;

    /// Renews `slot` held with `token`, raising its high water; now in Unix ms, or
    /// `None` when another process holds the slot now.
    fn renew_id_slot(
        &self,
        slot: u16,
        token: i64,
        high_water: i64,
    ) -> BoxFuture<'_, Result<Option<i64>, sqlx::Error>>;

    /// Releases `slot` held with `token`, recording its high water.
    fn release_id_slot(
        &self,
        slot: u16,
        token: i64,
        high_water: i64,
    ) -> BoxFuture<'_, Result<(), sqlx::Error>>;

    /// The write path's state for one writer task (held connection, `COPY` gate);
    /// `stats` receives the backend's own counters.
    fn batch_writer(&self, stats: Arc<WriterStats>) -> Box<dyn BatchWriter>;

    /// Closes every pooled connection; waits for checked-out ones to come back.
    fn close(&self) -> BoxFuture<'_, ()>;

    /// The SQLite pool, for backend-specific tools (backup, retention, bench, tests).
    fn sqlite_pool(&self) -> Option<&SqlitePool> {
        None
    }

    /// The PostgreSQL pool, for backend-specific tools (bench, tests).
    fn postgres_pool(&self) -> Option<&PgPool> {
        None
    }

    /// Turns cluster fencing on for every batch written from now on. Only
    /// PostgreSQL has `[cluster]` (config refuses it with SQLite), so the default
    /// ignores it.
    fn set_fence(&self, fence: super::Fence) {
        let _ = fence;
    }

    /// Names this daemon in the `node` column of the lifecycle rows it writes
    /// (PostgreSQL; SQLite keeps the column NULL).
    fn set_node(&self, node: &str) {
        let _ = node;
    }
}

/// The writer's side of a backend: writes one batch per call, in one transaction.
///
/// Both methods end in the backend's one commit point (`transact::commit`), where
/// statements that must commit or fail with the batch belong.
pub(crate) trait BatchWriter: Send {
    /// One transaction with every live record of the batch; any error rolls back all.
    /// Takes the batch mutably because fencing may mark records it must not write.
    fn write_bulk<'a>(&'a mut self, batch: &'a mut Batch)
    -> BoxFuture<'a, Result<(), sqlx::Error>>;

    /// One transaction, a savepoint per record, refused records swapped for their
    /// `rejected` rows ([`super::transact::write_each`]).
    fn write_each<'a>(&'a mut self, batch: &'a mut Batch)
    -> BoxFuture<'a, Result<(), sqlx::Error>>;

    /// An attempt was cut short (force-stop): drop any connection whose transaction
    /// state is unknown instead of reusing it.
    fn discard(&mut self) {}

    /// `rows` were committed (SQLite schedules its background checkpoint from this).
    fn committed(&mut self, rows: u64) {
        let _ = rows;
    }
}

/// `sql` with `$n` placeholders rewritten as SQLite's `?n` (same number, so a
/// parameter may be used twice or out of order).
pub(crate) fn numbered_for_sqlite(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len());
    let mut chars = sql.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '$' && chars.peek().is_some_and(char::is_ascii_digit) {
            out.push('?');
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbered_parameters_keep_their_numbers_on_sqlite() {
        assert_eq!(
            super::numbered_for_sqlite("a = $1 AND b = $12 AND c = '$.x' AND d = $1"),
            "a = ?1 AND b = ?12 AND c = '$.x' AND d = ?1"
        );
    }
}
