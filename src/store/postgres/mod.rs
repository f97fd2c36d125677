//! PostgreSQL side of the store: pool options, migrations (with the analysts' read
//! grants, [`reader`]), the dialect of statements written above the seam, and the
//! write path ([`insert`], [`copy`], [`writer`]).
//!
//! The pool tests connections before handing them out and gives up on an acquire
//! quickly, so the writer's retry loop, not the pool, waits out an outage and recovers
//! when the server is back. This module never decides about retries; it returns
//! errors.

use super::Backend;
use super::database::{BatchWriter, Database, Param, Rows};
use super::stats::WriterStats;
use futures_util::future::BoxFuture;
use sqlx::AssertSqlSafe;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, Postgres};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;
use std::time::Duration;

mod copy;
mod derived;
mod id_slots;
mod insert;
mod prune;
pub(crate) mod reader;
mod sql;
mod writer;

/// The PostgreSQL backend behind [`Database`].
pub(crate) struct PgDb {
    pool: PgPool,
    /// Cluster fencing and the `node` column value, set once by the supervisor and
    /// shared with every writer this backend hands out.
    cluster: Arc<writer::TxSetup>,
}

impl PgDb {
    /// Connects to `url` (see [`connect`]).
    pub(crate) async fn connect(url: &str, ca_file: Option<&Path>) -> Result<PgDb, sqlx::Error> {
        Ok(PgDb {
            pool: connect(url, ca_file).await?,
            cluster: Arc::default(),
        })
    }
}

/// Opens the pool. Connecting eagerly makes a wrong URL or a missing server an
/// error at start-up rather than a retry loop later. `ca_file` (`[storage]`) is the
/// URL's `sslrootcert`; naming a CA means the server must be verified by it, so it
/// implies `sslmode=verify-full` unless the URL chose a mode itself.
async fn connect(url: &str, ca_file: Option<&Path>) -> Result<PgPool, sqlx::Error> {
    let mut options = PgConnectOptions::from_str(url)?.application_name("wsvault");
    if let Some(ca) = ca_file {
        options = options.ssl_root_cert(ca);
        let sslmode_in_url = url::Url::parse(url)
            .map(|u| {
                u.query_pairs()
                    .any(|(k, _)| k == "sslmode" || k == "ssl-mode")
            })
            .unwrap_or(false);
        if !sslmode_in_url {
            options = options.ssl_mode(sqlx::postgres::PgSslMode::VerifyFull);
        }
    }
    PgPoolOptions::new()
        .max_connections(4)
        .min_connections(0)
        .acquire_timeout(Duration::from_secs(3))
        .test_before_acquire(true)
        .idle_timeout(Duration::from_secs(300))
        .connect_with(options)
        .await
}

/// Binds `params` in order, times as `timestamptz`.
fn bind<'q>(
    mut q: sqlx::query::Query<'q, Postgres, PgArguments>,
    params: &[Param<'_>],
) -> sqlx::query::Query<'q, Postgres, PgArguments> {
    for p in params {
        q = match *p {
            Param::Int(v) => q.bind(v),
            Param::OptInt(v) => q.bind(v),
            Param::Text(v) => q.bind(v),
            Param::OptText(v) => q.bind(v),
            Param::Time(t) => q.bind(t),
        };
    }
    q
}

impl Database for PgDb {
    fn backend(&self) -> Backend {
        Backend::Postgres
    }

    /// sqlx's PostgreSQL migrator holds an advisory lock, so concurrent starts
    /// migrate one after the other; the read grants are renewed afterwards.
    fn migrate<'a>(
        &'a self,
        _shown_url: &'a str,
    ) -> BoxFuture<'a, Result<(), sqlx::migrate::MigrateError>> {
        Box::pin(async move {
            sqlx::migrate!("migrations/postgres")
                .run(&self.pool)
                .await?;
            reader::regrant(&self.pool)
                .await
                .map_err(sqlx::migrate::MigrateError::Execute)
        })
    }

    fn fetch<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Param<'a>],
    ) -> BoxFuture<'a, Result<Rows, sqlx::Error>> {
        Box::pin(async move {
            let q = sqlx::query(AssertSqlSafe(sql.to_string()));
            Ok(Rows::Postgres(bind(q, params).fetch_all(&self.pool).await?))
        })
    }

    fn execute<'a>(
        &'a self,
        sql: &'a str,
        params: &'a [Param<'a>],
    ) -> BoxFuture<'a, Result<u64, sqlx::Error>> {
        Box::pin(async move {
            let q = sqlx::query(AssertSqlSafe(sql.to_string()));
            Ok(bind(q, params).execute(&self.pool).await?.rows_affected())
        })
    }

    fn json_as_text(&self, column: &str) -> String {
        format!("{column}::text")
    }

    fn json_field(&self, column: &str, path: &[&str]) -> String {
        let mut out = column.to_string();
        for (i, key) in path.iter().enumerate() {
            let op = if i + 1 == path.len() { "->>" } else { "->" };
            out.push_str(&format!(" {op} '{key}'"));
        }
        out
    }

    fn prune_statement(&self, table: &str, walk: &str, age: &str, batch: usize) -> String {
        prune::statement(table, walk, age, batch)
    }

    fn prune_step<'a>(
        &'a self,
        sql: &'a str,
        source: &'a str,
        lower: chrono::DateTime<chrono::Utc>,
        cutoff: chrono::DateTime<chrono::Utc>,
    ) -> BoxFuture<'a, Result<super::database::Pruned, sqlx::Error>> {
        Box::pin(async move { prune::step(&self.pool, sql, source, lower, cutoff).await })
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
        Box::new(writer::PgWriter::new(
            self.pool.clone(),
            stats,
            self.cluster.clone(),
        ))
    }

    fn close(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.pool.close())
    }

    fn postgres_pool(&self) -> Option<&PgPool> {
        Some(&self.pool)
    }

    fn set_fence(&self, fence: super::Fence) {
        let _ = self.cluster.fence.set(fence);
    }

    fn set_node(&self, node: &str) {
        let _ = self.cluster.node.set(node.to_string());
    }
}
