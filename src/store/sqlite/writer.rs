//! The SQLite side of the writer: one held connection and the background checkpoint.
//!
//! SQLite empties a connection's whole page cache when it sees that *another*
//! connection committed since its last transaction. Taking any idle pooled connection
//! per batch therefore started most batches with a cold cache and re-read every index
//! page the batch touched; one connection for all batches keeps them warm
//! (BENCHMARKS.md). After a retriable failure it is closed, not given back to the
//! pool, so the retry starts on a fresh connection: on `SQLITE_FULL`, `SQLITE_IOERR`
//! or `SQLITE_NOMEM` SQLite may already have rolled the transaction back, the rollback
//! sqlx queues on drop then fails, and the connection stays marked as inside a
//! transaction, refusing every later `BEGIN` (issue 16). Every write transaction
//! starts with `BEGIN IMMEDIATE`, so the write lock is taken up front and a locked
//! file surfaces as `SQLITE_BUSY` after `busy_timeout`, which the writer retries.

use super::checkpoint::Checkpointer;
use super::insert::write_groups;
use crate::store::batch::{Batch, Groups};
use crate::store::classify::{ErrorClass, classify};
use crate::store::database::BatchWriter;
use crate::store::{Backend, transact};
use futures_util::future::BoxFuture;
use sqlx::pool::PoolConnection;
use sqlx::sqlite::{Sqlite, SqliteConnection, SqlitePool};
use sqlx::{Connection as _, Transaction};

/// The writer's SQLite state, kept from batch to batch.
pub(super) struct SqliteWriter {
    pool: SqlitePool,
    held: Option<PoolConnection<Sqlite>>,
    checkpointer: Checkpointer,
}

impl SqliteWriter {
    pub(super) fn new(pool: SqlitePool, checkpointer: Checkpointer) -> Self {
        SqliteWriter {
            pool,
            held: None,
            checkpointer,
        }
    }

    /// The held connection, acquired on first use (or after a discard).
    async fn conn(&mut self) -> Result<&mut SqliteConnection, sqlx::Error> {
        if self.held.is_none() {
            self.held = Some(self.pool.acquire().await?);
        }
        self.held.as_deref_mut().ok_or(sqlx::Error::PoolClosed)
    }

    fn keep_unless_retriable(&mut self, result: &Result<(), sqlx::Error>) {
        if let Err(e) = result
            && classify(Backend::Sqlite, e) == ErrorClass::Retriable
        {
            self.discard();
        }
    }
}

async fn begin(conn: &mut SqliteConnection) -> Result<Transaction<'_, Sqlite>, sqlx::Error> {
    conn.begin_with("BEGIN IMMEDIATE").await
}

impl BatchWriter for SqliteWriter {
    fn write_bulk<'a>(
        &'a mut self,
        batch: &'a mut Batch,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            let result = async {
                let groups = Groups::of(batch);
                let mut tx = begin(self.conn().await?).await?;
                write_groups(&mut tx, &groups).await?;
                transact::commit(tx).await
            }
            .await;
            self.keep_unless_retriable(&result);
            result
        })
    }

    fn write_each<'a>(
        &'a mut self,
        batch: &'a mut Batch,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            let result = async {
                let mut tx = begin(self.conn().await?).await?;
                transact::write_each(&mut tx, batch).await?;
                transact::commit(tx).await
            }
            .await;
            self.keep_unless_retriable(&result);
            result
        })
    }

    /// Closes the held connection instead of returning it to the pool, where its
    /// unknown transaction state would reach the next borrower.
    fn discard(&mut self) {
        if let Some(mut c) = self.held.take() {
            c.close_on_drop();
        }
    }

    fn committed(&mut self, rows: u64) {
        self.checkpointer.committed(rows);
    }
}
