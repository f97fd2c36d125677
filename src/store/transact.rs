//! What both backends do the same way inside a batch transaction: the
//! record-by-record fallback with its `rejected` handling, and the commit.
//!
//! A backend provides only how one group of rows is inserted
//! ([`WriteDialect::write_groups`]) and how its transaction begins (SQLite
//! `BEGIN IMMEDIATE` on the held connection, PostgreSQL a pooled connection). This
//! module never decides about retries: it returns retriable errors to the writer.

use super::Backend;
use super::batch::{Batch, Groups};
use super::classify::{ErrorClass, classify};
use crate::record::Record;
use futures_util::future::BoxFuture;
use sqlx::{Connection, Transaction};

/// The backend-specific half of the write path, implemented on sqlx's database types.
pub(crate) trait WriteDialect: sqlx::Database {
    /// For error classification.
    const BACKEND: Backend;

    /// Inserts every group through the backend's `ON CONFLICT` statements; the
    /// caller owns the transaction (or savepoint).
    fn write_groups<'c>(
        conn: &'c mut Self::Connection,
        groups: &'c Groups<'c>,
    ) -> BoxFuture<'c, Result<(), sqlx::Error>>;
}

/// Writes `batch` record by record inside `tx`, a savepoint per record. A refused
/// record is swapped for its `rejected` row (which is then written the same way); a
/// refused `rejected` row is given up on and counted as lost by the writer. Returns
/// an error only for failures that are not about one record: the caller then retries
/// the whole batch.
pub(crate) async fn write_each<DB: WriteDialect>(
    tx: &mut Transaction<'_, DB>,
    batch: &mut Batch,
) -> Result<(), sqlx::Error> {
    for i in 0..batch.records.len() {
        if !batch.is_live(i) {
            continue;
        }
        if let Some(err) = write_one::<DB>(tx, &batch.records[i]).await?
            && batch.refuse(i, &err)
            && let Some(err) = write_one::<DB>(tx, &batch.records[i]).await?
        {
            batch.refuse(i, &err);
        }
    }
    Ok(())
}

/// `Ok(None)`: stored. `Ok(Some(e))`: refused for good, savepoint rolled back.
/// `Err(e)`: the database is unavailable, abandon the transaction.
async fn write_one<DB: WriteDialect>(
    tx: &mut Transaction<'_, DB>,
    record: &Record,
) -> Result<Option<sqlx::Error>, sqlx::Error> {
    let mut sp = Connection::begin(&mut **tx).await?;
    let groups = Groups::single(record);
    match DB::write_groups(&mut sp, &groups).await {
        Ok(()) => {
            sp.commit().await?;
            Ok(None)
        }
        Err(e) if classify(DB::BACKEND, &e) == ErrorClass::Retriable => Err(e),
        Err(e) => {
            sp.rollback().await?;
            Ok(Some(e))
        }
    }
}

/// Commits a batch transaction. Every batch ends here, whichever path wrote it (bulk,
/// `COPY`, record by record), so a statement that must succeed in the *same*
/// transaction as the batch, or make it roll back, runs here before the commit: the
/// place for a lease fencing check when several daemons share sources.
pub(crate) async fn commit<DB: WriteDialect>(tx: Transaction<'_, DB>) -> Result<(), sqlx::Error> {
    tx.commit().await
}
