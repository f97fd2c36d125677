//! The supervisor's side of `[cluster]`: the lease loop's events start, stop and
//! hand over sources; fenced rows stop the session that built them; closing
//! sessions release their leases once their last rows are committed.

use super::*;

/// With `[cluster]`: the supervisor's side of the lease loop.
pub(super) struct ClusterRun {
    pub(super) handle: crate::cluster::Handle,
    pub(super) events: tokio::sync::mpsc::UnboundedReceiver<crate::cluster::Event>,
    /// Sources (and the terms of their rows) the writer fenced: their lease is
    /// gone, stop their sessions.
    pub(super) fenced: tokio::sync::mpsc::UnboundedReceiver<(String, Option<i64>)>,
    /// The lease term each running session was started under.
    pub(super) terms: BTreeMap<String, i64>,
    /// The cluster's own pool, so a busy writer never delays a renewal.
    pub(super) store: Store,
    /// Sessions closing after a lease loss or for a handover; `Some(source)` asks
    /// for the lease to be released once its last rows are committed.
    pub(super) closing: tokio::task::JoinSet<Option<String>>,
    /// Set when another daemon registered this node name.
    pub(super) superseded: bool,
}

/// Connects the cluster's own pool, registers the node and starts the lease loop.
/// The writer's store fences every batch with the loop's view from here on.
pub(super) async fn start_cluster(
    config: &Config,
    cfg: &crate::config::ClusterConfig,
    store: &Store,
) -> Result<ClusterRun, SupervisorError> {
    let cluster_store = Store::connect(&config.storage).await?;
    let Some(pool) = cluster_store.postgres_pool().cloned() else {
        cluster_store.close().await;
        return Err(StoreError::UnsupportedScheme {
            url: store.shown_url().to_string(),
        }
        .into());
    };
    let names: Vec<String> = config.sources.iter().map(|s| s.name.clone()).collect();
    let cluster = match crate::cluster::Cluster::register(pool, cfg, &names).await {
        Ok(c) => c,
        Err(e) => {
            cluster_store.close().await;
            return Err(e.into());
        }
    };
    let (fenced_tx, fenced) = tokio::sync::mpsc::unbounded_channel();
    store.set_fence(crate::store::Fence {
        node: cfg.node.clone(),
        view: cluster.fence_view(),
        idle_limit: cfg.renew_every,
        statement_limit: cfg.lease_ttl,
        fenced: fenced_tx,
    });
    let (handle, events) = crate::cluster::spawn(cluster);
    tracing::info!(node = %cfg.node, "joined the cluster; sources start as their leases are gained");
    Ok(ClusterRun {
        handle,
        events,
        fenced,
        terms: BTreeMap::new(),
        store: cluster_store,
        closing: tokio::task::JoinSet::new(),
        superseded: false,
    })
}

/// One thing the cluster side has for the supervisor loop.
pub(super) enum ClusterMsg {
    Event(crate::cluster::Event),
    Fenced(String, Option<i64>),
    /// A closing session ended; `Some` asks for its lease to be released.
    Closed(Option<String>),
}

/// The next [`ClusterMsg`]; never resolves without `[cluster]` (or once the loop ended).
pub(super) async fn next_cluster_message(c: &mut Option<ClusterRun>) -> ClusterMsg {
    let Some(c) = c else {
        return std::future::pending().await;
    };
    let has_closing = !c.closing.is_empty();
    tokio::select! {
        Some(e) = c.events.recv() => ClusterMsg::Event(e),
        Some((s, t)) = c.fenced.recv() => ClusterMsg::Fenced(s, t),
        Some(r) = c.closing.join_next(), if has_closing => match r {
            Ok(r) => ClusterMsg::Closed(r),
            Err(e) => {
                tracing::error!("closing a session failed: {e}");
                ClusterMsg::Closed(None)
            }
        },
        else => std::future::pending().await,
    }
}

/// Waits until the writer has nothing queued and no batch in hand, so the rows a
/// closed session sent are committed (or `limit` passed: fencing then keeps any
/// late row of a released source out).
async fn wait_committed(stats: &crate::store::WriterStats, limit: Duration) {
    let deadline = tokio::time::Instant::now() + limit;
    while tokio::time::Instant::now() < deadline {
        if stats.queue_depth() == 0
            && stats.busy_since.load(std::sync::atomic::Ordering::Relaxed) == 0
        {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

impl Supervisor {
    /// The writer left rows of `source` built under `term` out of a batch: stop the
    /// session that built them, unless they came from an earlier session whose
    /// lease this node lost before getting the source back (that one is gone).
    pub(super) fn on_fenced(&mut self, source: &str, term: Option<i64>) {
        let current = self
            .cluster
            .as_ref()
            .and_then(|c| c.terms.get(source).copied());
        if let (Some(t), Some(now)) = (term, current)
            && t != now
        {
            tracing::info!(
                source,
                term = t,
                current = now,
                "the writer fenced rows of an earlier lease of this source; the current session goes on"
            );
            return;
        }
        tracing::warn!(
            source,
            "the writer fenced this source: its lease is gone; stopping its session"
        );
        self.close_session(source, false);
    }

    /// Acts on what the lease loop asks.
    pub(super) async fn on_cluster_event(&mut self, event: crate::cluster::Event) {
        use crate::cluster::Event;
        match event {
            Event::Start(acq) => {
                let source = acq.lease.source.clone();
                if self.sessions.contains_key(&source) {
                    return;
                }
                let Some(cfg) = self
                    .config
                    .sources
                    .iter()
                    .find(|s| s.name == source)
                    .cloned()
                else {
                    return;
                };
                tracing::info!(
                    source,
                    term = acq.lease.term,
                    previous = acq.previous_holder.as_deref().unwrap_or("none"),
                    "lease gained; starting the source"
                );
                let down =
                    close_abandoned(&self.store, std::slice::from_ref(&cfg), &self.sink).await;
                self.down_since.extend(down);
                let cause = if acq.follows_another_holder() {
                    crate::backfill::Cause::Handover
                } else {
                    crate::backfill::Cause::Down
                };
                self.start_source(cfg, cause, Some(acq.lease.term)).await;
            }
            Event::Stop(lost) => {
                tracing::warn!(source = lost.source, "lease lost; stopping the source");
                self.close_session(&lost.source, false);
            }
            Event::Handover(lease) => {
                tracing::info!(
                    source = lease.source,
                    "handing the source over to another node"
                );
                self.close_session(&lease.source, true);
            }
            Event::Superseded(_) => {
                tracing::error!("another daemon registered this node name; stopping every source");
                let names: Vec<String> = self.sessions.keys().cloned().collect();
                for n in names {
                    self.close_session(&n, false);
                }
                if let Some(c) = &mut self.cluster {
                    c.superseded = true;
                }
            }
        }
    }

    /// Closes a source's session with `Command::Handover` (suspended, initiator
    /// `handover`, close 1000) in the background; with `release`, the lease is
    /// released once the session ended and the writer committed its last rows.
    pub(super) fn close_session(&mut self, source: &str, release: bool) {
        let session = self.sessions.remove(source);
        if let Some(b) = self.backfills.remove(source) {
            b.abort();
        }
        if session.is_some() {
            self.registry.retire(source);
        }
        let stats = self.writer.stats();
        let Some(c) = &mut self.cluster else {
            return;
        };
        c.terms.remove(source);
        let name = source.to_string();
        c.closing.spawn(async move {
            if let Some(mut s) = session {
                s.command(Command::Handover);
                s.join().await;
            }
            if release {
                wait_committed(&stats, Duration::from_secs(5)).await;
            }
            release.then_some(name)
        });
    }
}
