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
use sqlx::postgres::PgPool;
use std::sync::Arc;

/// The writer's PostgreSQL state, kept from batch to batch.
pub(super) struct PgWriter {
    pool: PgPool,
    gate: CopyGate,
    stats: Arc<WriterStats>,
}

impl PgWriter {
    pub(super) fn new(pool: PgPool, stats: Arc<WriterStats>) -> Self {
        PgWriter {
            pool,
            gate: CopyGate::default(),
            stats,
        }
    }

    /// One transaction holding every group.
    async fn write_tx(&self, groups: &Groups<'_>, streams: &Streams) -> Result<(), sqlx::Error> {
        let mut tx = self.pool.begin().await?;
        write_groups(&mut tx, groups, streams).await?;
        transact::commit(tx).await
    }
}

impl BatchWriter for PgWriter {
    fn write_bulk<'a>(&'a mut self, batch: &'a Batch) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            let groups = Groups::of(batch);
            let streams = if self.gate.open() {
                Streams::encode(&groups)
            } else {
                Streams::default()
            };
            if !streams.is_empty() {
                match self.write_tx(&groups, &streams).await {
                    Ok(()) => {
                        self.stats.copy.copied();
                        return Ok(());
                    }
                    Err(e) if classify(Backend::Postgres, &e) == ErrorClass::Retriable => {
                        return Err(e);
                    }
                    Err(e) => {
                        self.gate.refused();
                        self.stats.copy.refused();
                        emit(CopyRefused {
                            error: &e.to_string(),
                        });
                    }
                }
            }
            self.write_tx(&groups, &Streams::default()).await
        })
    }

    fn write_each<'a>(
        &'a mut self,
        batch: &'a mut Batch,
    ) -> BoxFuture<'a, Result<(), sqlx::Error>> {
        Box::pin(async move {
            let mut tx = self.pool.begin().await?;
            transact::write_each(&mut tx, batch).await?;
            transact::commit(tx).await
        })
    }
}
