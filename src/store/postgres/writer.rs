//! The PostgreSQL side of the writer: a pooled connection per batch and the
//! optimistic `COPY`.
//!
//! PostgreSQL keeps its caches on the server, and a held connection would meet
//! server or firewall idle timeouts, so each batch takes a connection from the pool.
//! When the [`CopyGate`] allows it and the batch is big enough, the high-volume
//! tables go in by binary `COPY` first; if the server refuses that (a duplicate, a
//! bad value), the batch is written again in a new transaction through
//! `UNNEST … ON CONFLICT DO NOTHING`, and an error of that attempt is what the writer
//! sees. A retriable error of the `COPY` attempt is returned as it is: the writer
//! retries the batch later.

use super::copy::CopyGate;
use super::insert::{Streams, write_groups};
use crate::store::batch::{Batch, Groups};
use crate::store::classify::{ErrorClass, classify};
use crate::store::database::BatchWriter;
use crate::store::stats::WriterStats;
use crate::store::{Backend, transact};
use crate::telemetry::emit;
use crate::telemetry::events::CopyRefused;
use futures_util::future::BoxFuture;
use sqlx::PgConnection;
use sqlx::postgres::PgPool;
use std::sync::{Arc, OnceLock};

/// What every write transaction of this daemon does before its inserts, set once by
/// the supervisor: cluster fencing with `[cluster]`, and the `node` column value of
/// `connections` and `session_events` rows (migration 0005's defaults read it).
#[derive(Debug, Default)]
pub(crate) struct TxSetup {
    pub(crate) fence: OnceLock<crate::store::Fence>,
    pub(crate) node: OnceLock<String>,
}

impl TxSetup {
    /// Inside `conn`'s transaction: names the node and fences the batch, marking the
    /// records of sources whose lease is no longer this node's as fenced. A fenced
    /// record is never unmarked: a lease does not come back under the same term.
    async fn prepare(&self, conn: &mut PgConnection, batch: &mut Batch) -> Result<(), sqlx::Error> {
        let node = self.node.get().map(String::as_str);
        let fence = self.fence.get();
        if node.is_some() || fence.is_some() {
            let ms = |d: std::time::Duration| format!("{}ms", d.as_millis().max(1));
            // One round trip: `set_config(…, true)` lasts until the transaction ends;
            // a NULL value leaves that setting alone.
            sqlx::query(
                "SELECT CASE WHEN $1::text IS NOT NULL \
                    THEN set_config('wsvault.node', $1, true) END, \
                        CASE WHEN $2::text IS NOT NULL \
                    THEN set_config('idle_in_transaction_session_timeout', $2, true) END, \
                        CASE WHEN $3::text IS NOT NULL \
                    THEN set_config('statement_timeout', $3, true) END",
            )
            .bind(node)
            .bind(fence.map(|f| ms(f.idle_limit)))
            .bind(fence.map(|f| ms(f.statement_limit)))
            .execute(&mut *conn)
            .await?;
        }
        let Some(fence) = fence else {
            return Ok(());
        };
        let leases = batch.live_leases();
        if leases.is_empty() {
            return Ok(());
        }
        let lost = crate::cluster::fence_batch(conn, &fence.node, &fence.view, &leases).await?;
        for (source, term) in lost {
            let n = batch.fence_lease(&source, term);
            crate::cluster::metrics::fenced_records(&source, n);
            let _ = fence.fenced.send((source, term));
        }
        Ok(())
    }

    /// Inside `conn`'s transaction, just before its commit: locks the lease rows of
    /// the batch's sources and fails the attempt (retriable) when one moved since
    /// [`TxSetup::prepare`]; the retry's `prepare` then fences those rows.
    async fn confirm(&self, conn: &mut PgConnection, batch: &Batch) -> Result<(), sqlx::Error> {
        let Some(fence) = self.fence.get() else {
            return Ok(());
        };
        let leases = batch.live_leases();
        if leases.is_empty() {
            return Ok(());
        }
        let moved = crate::cluster::confirm_batch(conn, &fence.node, &fence.view, &leases).await?;
        if moved.is_empty() {
            return Ok(());
        }
        Err(sqlx::Error::Protocol(format!(
            "the lease of {} moved while the batch was being written; retrying so its rows are fenced",
            moved.join(", ")
        )))
    }
}

/// The writer's PostgreSQL state, kept from batch to batch.
pub(super) struct PgWriter {
    pool: PgPool,
    gate: CopyGate,
    stats: Arc<WriterStats>,
    setup: Arc<TxSetup>,
}

impl PgWriter {
    pub(super) fn new(pool: PgPool, stats: Arc<WriterStats>, setup: Arc<TxSetup>) -> Self {
        PgWriter {
            pool,
            gate: CopyGate::default(),
            stats,
            setup,
        }
    }

    /// One transaction holding the whole batch (after fencing); `COPY` for the big
    /// tables when `copied` is given, set to whether the batch went by `COPY` (so a
    /// refusal of a batch too small for `COPY` is not taken for a `COPY` refusal).
    async fn write_tx(
        &self,
        batch: &mut Batch,
        copied: Option<&mut bool>,
    ) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        self.setup.prepare(&mut tx, batch).await?;
        let groups = Groups::of(batch);
        let mut streams = match copied {
            Some(flag) => {
                let streams = Streams::encode(&groups);
                *flag = !streams.is_empty();
                streams
            }
            None => Streams::default(),
        };
        write_groups(&mut tx, &groups, &mut streams).await?;
        self.setup.confirm(&mut tx, batch).await?;
        transact::commit(tx).await
    }
}

impl BatchWriter for PgWriter {
    fn write_bulk<'a>(
        &'a mut self,
        batch: &'a mut Batch,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            if self.gate.open() {
                let mut copied = false;
                match self.write_tx(batch, Some(&mut copied)).await {
                    Ok(()) => {
                        if copied {
                            self.stats.copy.copied();
                        }
                        return Ok(());
                    }
                    Err(e) if classify(Backend::Postgres, &e) == ErrorClass::Retriable => {
                        return Err(e);
                    }
                    // Not a `COPY` refusal: the plain statements were refused, which
                    // the writer handles record by record.
                    Err(e) if !copied => return Err(e),
                    Err(e) => {
                        self.gate.refused();
                        self.stats.copy.refused();
                        emit(CopyRefused {
                            error: &e.to_string(),
                        });
                    }
                }
            }
            self.write_tx(batch, None).await
        })
    }

    fn write_each<'a>(
        &'a mut self,
        batch: &'a mut Batch,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            self.setup.prepare(&mut tx, batch).await?;
            transact::write_each(&mut tx, batch).await?;
            self.setup.confirm(&mut tx, batch).await?;
            transact::commit(tx).await
        })
    }
}
