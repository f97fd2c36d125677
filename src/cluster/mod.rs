//! Several daemons, one PostgreSQL database: the sources are shared out by leases.
//!
//! Each daemon registers as a *node* (`nodes`: one row per name, a heartbeat in
//! `last_seen_at`) and, every `renew_every`, runs one [`Cluster::tick`]: in one
//! transaction it beats its heart, renews the leases it holds, counts the live nodes
//! and the free sources, and claims free or expired ones up to its fair share
//! ([`share`]). The tick answers what to start (leases gained), what to stop (leases
//! lost) and what to hand over (held beyond the share because a node joined; the
//! caller closes the session, then [`Cluster::release`]s it). A node that cannot
//! renew gives its sources up by its own monotonic clock ([`Cluster::expire_local`])
//! a safety margin before the database could hand them to another node, and the
//! writer [`fence`]s every batch on the lease's term, so even a node frozen past its
//! ttl writes nothing for a source it lost.
//!
//! Every lease decision uses the database's `now()`; the daemon's wall clock is never
//! compared with a lease time. Coordination is plain rows and transactions, not
//! advisory locks: a session-level advisory lock belongs to a server connection,
//! which PgBouncer's transaction pooling hands to other clients between
//! transactions.
//!
//! This module must never write records (rows of the storage contract) and never
//! decide anything from the daemon's wall clock.

pub mod driver;
mod error;
pub mod fence;
mod lease;
pub mod metrics;
mod rounds;
pub mod share;

pub use driver::{Event, Handle, spawn};
pub use error::ClusterError;
use error::{db, fmt};
pub use fence::{FenceView, confirm_batch, fence, fence_batch, release_in};
pub use lease::{Acquired, Lease, Lost, Tick};
pub use metrics::Change;

use crate::config::ClusterConfig;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgConnection, PgPool};
use std::collections::BTreeMap;
use std::time::{Duration, Instant};

/// A lease just claimed, with what the row said before.
#[derive(sqlx::FromRow)]
struct ClaimedRow {
    source: String,
    term: i64,
    expires_at: DateTime<Utc>,
    prev_holder: Option<String>,
    prev_term: i64,
}

/// A lease as this node keeps it.
#[derive(Debug, Clone)]
struct Held {
    term: i64,
    expires_at: DateTime<Utc>,
    /// Local monotonic time taken *before* the statement that renewed or claimed the
    /// lease was sent: the database's expiry is at least `ttl` after it.
    renewed: Instant,
    /// On its way to another node: the session is being closed.
    handing_over: bool,
}

/// This daemon's membership in the cluster. One per daemon; driven by the
/// supervisor's cluster loop (tick every `renew_every`, react at `next_deadline`).
#[derive(Debug)]
pub struct Cluster {
    pool: PgPool,
    node: String,
    instance: i64,
    ttl: Duration,
    margin: Duration,
    renew_every: Duration,
    sources: Vec<String>,
    rows_missing: bool,
    held: BTreeMap<String, Held>,
    /// Leases given up locally and not yet handed to a caller.
    unreported: Vec<Lost>,
    view: FenceView,
}

impl Cluster {
    /// Registers this daemon as `cfg.node` and makes sure every source has a lease
    /// row. Refused when a live daemon (heartbeat within the ttl by the database
    /// clock, not stopped) already uses the name. `pool` should be the cluster's own
    /// (a separate `Store::connect`), so a busy writer never delays a renewal.
    pub async fn register(
        pool: PgPool,
        cfg: &ClusterConfig,
        sources: &[String],
    ) -> Result<Cluster, ClusterError> {
        let instance = rand::random::<i64>();
        let host = crate::config::host_name().unwrap_or_default();
        let row: Option<String> = sqlx::query_scalar(
            "INSERT INTO nodes (node, instance, started_at, last_seen_at, version, host, pid) \
             VALUES ($1, $2, now(), now(), $3, $4, $5) \
             ON CONFLICT (node) DO UPDATE SET instance = EXCLUDED.instance, \
               started_at = now(), last_seen_at = now(), stopped_at = NULL, \
               version = EXCLUDED.version, host = EXCLUDED.host, pid = EXCLUDED.pid \
             WHERE nodes.stopped_at IS NOT NULL \
                OR nodes.last_seen_at <= now() - make_interval(secs => $6) \
             RETURNING node",
        )
        .bind(&cfg.node)
        .bind(instance)
        .bind(env!("CARGO_PKG_VERSION"))
        .bind(&host)
        .bind(i64::from(std::process::id()))
        .bind(cfg.lease_ttl.as_secs_f64())
        .fetch_optional(&pool)
        .await
        .map_err(db("registering the node"))?;
        if row.is_none() {
            let other: Option<(Option<String>, Option<i64>, String, f64)> = sqlx::query_as(
                "SELECT host, pid, version, \
                        extract(epoch FROM now() - last_seen_at)::float8 \
                 FROM nodes WHERE node = $1",
            )
            .bind(&cfg.node)
            .fetch_optional(&pool)
            .await
            .map_err(db("reading the node that holds the name"))?;
            let (host, pid, version, ago) = other.unwrap_or_default();
            return Err(ClusterError::NodeNameTaken {
                node: cfg.node.clone(),
                host: host.unwrap_or_else(|| "unknown".into()),
                pid: pid
                    .map(|p| p.to_string())
                    .unwrap_or_else(|| "unknown".into()),
                version,
                seen_ago: fmt(Duration::from_secs_f64(ago.max(0.0))),
                ttl: fmt(cfg.lease_ttl),
            });
        }
        let mut cluster = Cluster {
            pool,
            node: cfg.node.clone(),
            instance,
            ttl: cfg.lease_ttl,
            margin: cfg.safety_margin(),
            renew_every: cfg.renew_every,
            sources: Vec::new(),
            rows_missing: true,
            held: BTreeMap::new(),
            unreported: Vec::new(),
            view: FenceView::default(),
        };
        cluster.set_sources(sources);
        let mut conn = cluster
            .pool
            .acquire()
            .await
            .map_err(db("creating lease rows"))?;
        cluster.ensure_rows(&mut conn).await?;
        cluster.rows_missing = false;
        metrics::leases_held(0);
        Ok(cluster)
    }

    /// This node's name.
    pub fn node(&self) -> &str {
        &self.node
    }

    /// How often [`Cluster::tick`] should run.
    pub fn renew_every(&self) -> Duration {
        self.renew_every
    }

    /// The view the writer fences with.
    pub fn fence_view(&self) -> FenceView {
        self.view.clone()
    }

    /// The leases held now, handovers in progress included.
    pub fn held(&self) -> Vec<Lease> {
        self.held
            .iter()
            .map(|(source, h)| Lease {
                source: source.clone(),
                term: h.term,
                expires_at: h.expires_at,
            })
            .collect()
    }

    /// When the next held lease runs out locally (its renewal time + ttl − safety
    /// margin, monotonic): call [`Cluster::expire_local`] then, whatever a tick is doing.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.held.values().map(|h| self.deadline(h)).min()
    }

    fn deadline(&self, h: &Held) -> Instant {
        h.renewed + self.ttl.saturating_sub(self.margin)
    }

    /// Gives up every lease whose local deadline has passed: this node could not
    /// renew it in time, and another node may claim it `margin` later. The caller
    /// stops those sessions at once.
    pub fn expire_local(&mut self, now: Instant) -> Vec<Lost> {
        self.expire_into_unreported(now);
        std::mem::take(&mut self.unreported)
    }

    /// Moves leases past their local deadline to `unreported`, where they wait until
    /// a caller takes them: a tick abandoned half-way loses no loss.
    fn expire_into_unreported(&mut self, now: Instant) {
        let expired: Vec<String> = self
            .held
            .iter()
            .filter(|(_, h)| self.deadline(h) <= now)
            .map(|(s, _)| s.clone())
            .collect();
        for s in expired {
            if let Some(l) = self.drop_held(&s, Change::Expired, None) {
                self.unreported.push(l);
            }
        }
        metrics::leases_held(self.held.len());
    }

    /// Replaces the configured sources (at start and on reload). Returns the leases of
    /// sources no longer configured: stop those sessions, then release each with
    /// [`Cluster::release`] (counted as `removed`).
    pub fn set_sources(&mut self, sources: &[String]) -> Vec<Lease> {
        let mut sorted = sources.to_vec();
        sorted.sort();
        sorted.dedup();
        self.sources = sorted;
        self.rows_missing = true;
        let gone: Vec<String> = self
            .held
            .keys()
            .filter(|s| self.sources.binary_search(s).is_err())
            .cloned()
            .collect();
        gone.iter()
            .filter_map(|s| {
                let h = self.held.get_mut(s)?;
                h.handing_over = true;
                Some(Lease {
                    source: s.clone(),
                    term: h.term,
                    expires_at: h.expires_at,
                })
            })
            .collect()
    }

    /// One round: heartbeat, renew, count, claim; all in one transaction with a
    /// statement timeout of `renew_every`. Local state changes only after the commit,
    /// so a failed tick changes nothing but time (the local deadlines keep running).
    pub async fn tick(&mut self) -> Result<Tick, ClusterError> {
        let sent = Instant::now();
        self.expire_into_unreported(sent);
        let mut out = Tick::default();
        let mut tx = self.pool.begin().await.map_err(db("starting a tick"))?;
        // A tick frozen halfway (SIGSTOP) must not keep its row locks: the server ends
        // the transaction once it sits idle as long as a statement may run.
        sqlx::query(
            "SELECT set_config('statement_timeout', $1, true), \
                    set_config('idle_in_transaction_session_timeout', $1, true)",
        )
        .bind(format!("{}ms", self.renew_every.as_millis().max(1)))
        .execute(&mut *tx)
        .await
        .map_err(db("setting the tick's statement timeout"))?;
        let adding_rows = self.rows_missing;
        if adding_rows {
            self.ensure_rows(&mut tx).await?;
        }
        let beat = sqlx::query(
            "UPDATE nodes SET last_seen_at = now(), stopped_at = NULL \
             WHERE node = $1 AND instance = $2",
        )
        .bind(&self.node)
        .bind(self.instance)
        .execute(&mut *tx)
        .await
        .map_err(db("sending the heartbeat"))?;
        if beat.rows_affected() == 0 {
            drop(tx);
            let mut lost = std::mem::take(&mut self.unreported);
            let all: Vec<String> = self.held.keys().cloned().collect();
            lost.extend(
                all.iter()
                    .filter_map(|s| self.drop_held(s, Change::Lost, None)),
            );
            self.view.clear();
            metrics::leases_held(0);
            return Err(ClusterError::Superseded {
                node: self.node.clone(),
                lost,
            });
        }
        let renewed = self.renew(&mut tx).await?;
        let missing: Vec<String> = self
            .held
            .keys()
            .filter(|s| !renewed.iter().any(|(r, _, _)| r == *s))
            .cloned()
            .collect();
        let holders = self.current_holders(&mut tx, &missing).await?;
        let census = self.census(&mut tx).await?;
        // Leases of sources still configured count towards the share; those of
        // removed sources are on their way out whatever the share says.
        let counted: Vec<&Held> = self
            .held
            .iter()
            .filter(|(s, _)| !missing.contains(s) && self.sources.binary_search(s).is_ok())
            .map(|(_, h)| h)
            .collect();
        let mine = counted.len();
        let handing = counted.iter().filter(|h| h.handing_over).count();
        let plan = share::plan(&self.node, mine, handing, &census);
        let claimed = if plan.claim > 0 {
            self.claim(&mut tx, plan.claim).await?
        } else {
            Vec::new()
        };
        tx.commit().await.map_err(db("committing the tick"))?;

        // Committed: apply to the local state.
        if adding_rows {
            self.rows_missing = false;
        }
        out.stop = std::mem::take(&mut self.unreported);
        for (source, term, expires_at) in renewed {
            if let Some(h) = self.held.get_mut(&source)
                && h.term == term
            {
                h.renewed = sent;
                h.expires_at = expires_at;
            }
        }
        for source in missing {
            let now_held_by = holders
                .iter()
                .find(|(s, _, _)| *s == source)
                .and_then(|(_, holder, term)| holder.clone().map(|h| (h, *term)));
            out.stop
                .extend(self.drop_held(&source, Change::Lost, now_held_by));
        }
        for a in claimed {
            self.held.insert(
                a.lease.source.clone(),
                Held {
                    term: a.lease.term,
                    expires_at: a.lease.expires_at,
                    renewed: sent,
                    handing_over: false,
                },
            );
            self.view.set(&a.lease.source, a.lease.term);
            metrics::lease_change(a.change);
            tracing::info!(
                source = %a.lease.source,
                term = a.lease.term,
                previous = a.previous_holder.as_deref().unwrap_or("none"),
                "lease acquired ({})",
                a.change.as_str()
            );
            out.start.push(a);
        }
        out.handover = self.pick_handovers(plan.hand_over);
        out.live_nodes = plan.live;
        out.cap = plan.cap;
        metrics::leases_held(self.held.len());
        Ok(out)
    }

    /// Marks `n` more held leases (not already leaving) as handed over, the last by
    /// name first, and returns them.
    fn pick_handovers(&mut self, n: usize) -> Vec<Lease> {
        let mut out = Vec::new();
        for (source, h) in self.held.iter_mut().rev() {
            if out.len() == n {
                break;
            }
            if h.handing_over {
                continue;
            }
            h.handing_over = true;
            out.push(Lease {
                source: source.clone(),
                term: h.term,
                expires_at: h.expires_at,
            });
        }
        out
    }

    /// Forgets a lease locally, with its metric and log line.
    fn drop_held(
        &mut self,
        source: &str,
        change: Change,
        now_held_by: Option<(String, i64)>,
    ) -> Option<Lost> {
        let h = self.held.remove(source)?;
        self.view.remove(source);
        metrics::lease_change(change);
        match &now_held_by {
            Some((node, term)) => tracing::warn!(
                source,
                term = h.term,
                "lease lost ({}): now held by {node} under term {term}",
                change.as_str()
            ),
            None => tracing::warn!(source, term = h.term, "lease lost ({})", change.as_str()),
        }
        Some(Lost {
            source: source.to_string(),
            term: h.term,
            change,
            now_held_by,
        })
    }

    /// Gives `source` up after its session closed (handover, or removed from the
    /// config), so another node claims it at its next tick instead of after the ttl.
    /// The lease is forgotten locally even when the statement fails: it then expires.
    /// Returns whether the database still had it as ours.
    pub async fn release(&mut self, source: &str) -> Result<bool, ClusterError> {
        let Some(h) = self.held.remove(source) else {
            return Ok(false);
        };
        self.view.remove(source);
        let change = if self
            .sources
            .binary_search_by(|s| s.as_str().cmp(source))
            .is_ok()
        {
            Change::Handover
        } else {
            Change::Removed
        };
        metrics::lease_change(change);
        metrics::leases_held(self.held.len());
        let mut conn = self.pool.acquire().await.map_err(db("releasing a lease"))?;
        let ours = release_in(&mut conn, &self.node, source, h.term)
            .await
            .map_err(db("releasing a lease"))?;
        tracing::info!(
            source,
            term = h.term,
            "lease released ({})",
            change.as_str()
        );
        Ok(ours)
    }

    /// Forgets `source` locally after the writer released it inside its batch
    /// transaction ([`release_in`]).
    pub fn forget(&mut self, source: &str, change: Change) {
        if self.held.remove(source).is_some() {
            self.view.remove(source);
            metrics::lease_change(change);
            metrics::leases_held(self.held.len());
        }
    }

    /// Releases every lease and marks the node stopped, in one transaction, so the
    /// other nodes take the sources at their next tick rather than after the ttl, and
    /// a restart under the same name is accepted at once. Call it after the writer
    /// committed the sessions' last rows (later rows of these sources would be
    /// fenced). Returns how many leases were released.
    pub async fn shutdown(mut self) -> Result<usize, ClusterError> {
        let sources: Vec<String> = self.held.keys().cloned().collect();
        let terms: Vec<i64> = self.held.values().map(|h| h.term).collect();
        self.held.clear();
        self.view.clear();
        metrics::leases_held(0);
        let mut tx = self.pool.begin().await.map_err(db("shutting down"))?;
        let released = sqlx::query(
            "UPDATE leases l SET holder = NULL, expires_at = now() \
             FROM UNNEST($2::text[], $3::bigint[]) AS h(source, term) \
             WHERE l.source = h.source AND l.term = h.term AND l.holder = $1",
        )
        .bind(&self.node)
        .bind(&sources)
        .bind(&terms)
        .execute(&mut *tx)
        .await
        .map_err(db("releasing leases at shutdown"))?
        .rows_affected();
        sqlx::query(
            "UPDATE nodes SET stopped_at = now(), last_seen_at = now() \
             WHERE node = $1 AND instance = $2",
        )
        .bind(&self.node)
        .bind(self.instance)
        .execute(&mut *tx)
        .await
        .map_err(db("marking the node stopped"))?;
        tx.commit().await.map_err(db("shutting down"))?;
        for _ in 0..released {
            metrics::lease_change(Change::Shutdown);
        }
        tracing::info!(released, "cluster node stopped; leases released");
        Ok(released as usize)
    }
}

#[cfg(test)]
mod tests;
