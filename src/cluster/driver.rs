//! The cluster loop as a task of its own: ticks every `renew_every`, gives leases up
//! at their local deadline even while a tick hangs on the database, and reports what
//! the supervisor must do as [`Event`]s. The supervisor sends back what it did
//! ([`Handle::release`] after a handover closed its session, [`Handle::shutdown`] at
//! the end), so the [`Cluster`] itself is never shared and a tick is never cancelled
//! by a `select!` elsewhere.

use super::{Acquired, Change, Cluster, ClusterError, FenceView, Lease, Lost, metrics};
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::time::Instant;

/// What the supervisor must do.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// Start recording this source (a lease was gained).
    Start(Acquired),
    /// Stop recording this source now: suspended with initiator `handover`, close
    /// 1000, no reconnect. The lease is gone (or about to be) already.
    Stop(Lost),
    /// Close this source's session (suspended `handover`, close 1000), then call
    /// [`Handle::release`]: the lease stays held and renewed until then.
    Handover(Lease),
    /// Another daemon registered this node name: stop everything; the loop ended.
    Superseded(Vec<Lost>),
}

enum Cmd {
    Release(String),
    Forget(String, Change),
    SetSources(Vec<String>),
    Shutdown(oneshot::Sender<Result<usize, ClusterError>>),
}

/// The supervisor's side of the cluster loop. Cheap to clone.
#[derive(Debug, Clone)]
pub struct Handle {
    tx: mpsc::UnboundedSender<Cmd>,
    view: FenceView,
    node: String,
}

impl Handle {
    /// This node's name (for `connections.node` / `session_events.node`).
    pub fn node(&self) -> &str {
        &self.node
    }

    /// The view the writer fences its batches with.
    pub fn fence_view(&self) -> FenceView {
        self.view.clone()
    }

    /// The session of a handed-over (or removed) source has closed and its last
    /// rows are committed: release the lease so another node claims it now.
    pub fn release(&self, source: &str) {
        let _ = self.tx.send(Cmd::Release(source.to_string()));
    }

    /// The writer released the lease inside its batch transaction
    /// ([`super::release_in`]): forget it locally.
    pub fn forget(&self, source: &str, change: Change) {
        let _ = self.tx.send(Cmd::Forget(source.to_string(), change));
    }

    /// The configuration changed (SIGHUP). Held leases of removed sources come back
    /// as [`Event::Handover`].
    pub fn set_sources(&self, sources: Vec<String>) {
        let _ = self.tx.send(Cmd::SetSources(sources));
    }

    /// Releases every lease, marks the node stopped and ends the loop. Call it once
    /// the writer has committed the sessions' last rows.
    pub async fn shutdown(&self) -> Result<usize, ClusterError> {
        let (reply, rx) = oneshot::channel();
        if self.tx.send(Cmd::Shutdown(reply)).is_err() {
            return Ok(0);
        }
        rx.await.unwrap_or(Ok(0))
    }
}

/// Starts the loop; the first tick runs at once.
pub fn spawn(cluster: Cluster) -> (Handle, mpsc::UnboundedReceiver<Event>) {
    let (tx, commands) = mpsc::unbounded_channel();
    let (events, rx) = mpsc::unbounded_channel();
    let handle = Handle {
        tx,
        view: cluster.fence_view(),
        node: cluster.node().to_string(),
    };
    let span = tracing::info_span!("cluster", node = %cluster.node());
    tokio::spawn(tracing::Instrument::instrument(
        run(cluster, commands, events),
        span,
    ));
    (handle, rx)
}

/// Far enough to mean "no deadline".
const FAR: Duration = Duration::from_secs(86_400 * 365);

fn deadline(cluster: &Cluster) -> Instant {
    cluster
        .next_deadline()
        .map(Instant::from_std)
        .unwrap_or_else(|| Instant::now() + FAR)
}

async fn run(
    mut cluster: Cluster,
    mut commands: mpsc::UnboundedReceiver<Cmd>,
    events: mpsc::UnboundedSender<Event>,
) {
    let mut next_tick = Instant::now();
    loop {
        tokio::select! {
            _ = tokio::time::sleep_until(next_tick) => {
                next_tick = Instant::now() + cluster.renew_every();
                // A tick that hangs past the next local deadline is abandoned (its
                // transaction rolls back) so the deadline is kept.
                let limit = deadline(&cluster);
                match tokio::time::timeout_at(limit, cluster.tick()).await {
                    Ok(Ok(t)) => {
                        metrics::tick("ok");
                        // Every tick, not once: SIGHUP may add sources, and a gauge
                        // set each tick also shows a standby's 0.
                        metrics::fenced_series(cluster.sources.iter().map(String::as_str));
                        metrics::leases_held(cluster.held.len());
                        for l in t.stop {
                            let _ = events.send(Event::Stop(l));
                        }
                        for a in t.start {
                            let _ = events.send(Event::Start(a));
                        }
                        for l in t.handover {
                            let _ = events.send(Event::Handover(l));
                        }
                    }
                    Ok(Err(ClusterError::Superseded { node, lost })) => {
                        tracing::error!("node `{node}` was registered by another daemon; stopping every source");
                        let _ = events.send(Event::Superseded(lost));
                        return;
                    }
                    Ok(Err(e)) => {
                        metrics::tick("failed");
                        tracing::warn!("cluster tick failed: {e}");
                    }
                    Err(_) => {
                        metrics::tick("abandoned");
                        tracing::warn!("cluster tick still running at a lease deadline; abandoned");
                    }
                }
            }
            _ = tokio::time::sleep_until(deadline(&cluster)) => {}
            cmd = commands.recv() => match cmd {
                Some(Cmd::Release(source)) => {
                    if let Err(e) = cluster.release(&source).await {
                        tracing::warn!(source, "releasing the lease failed ({e}); it expires instead");
                    }
                }
                Some(Cmd::Forget(source, change)) => cluster.forget(&source, change),
                Some(Cmd::SetSources(sources)) => {
                    for l in cluster.set_sources(&sources) {
                        let _ = events.send(Event::Handover(l));
                    }
                }
                Some(Cmd::Shutdown(reply)) => {
                    let _ = reply.send(cluster.shutdown().await);
                    return;
                }
                None => {
                    if let Err(e) = cluster.shutdown().await {
                        tracing::warn!("cluster shutdown failed: {e}");
                    }
                    return;
                }
            },
        }
        for l in cluster.expire_local(std::time::Instant::now()) {
            let _ = events.send(Event::Stop(l));
        }
    }
}
