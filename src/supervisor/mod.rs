//! The daemon's top: sessions from config, signals, reload, shutdown order, systemd
//! notifications.
//!
//! Shutdown order matters for "nothing lost": sessions stop first (unsubscribe, close
//! 1000, `closed` rows), then the last record sink is dropped so the writer drains its
//! queue and commits, then the pool closes. A second TERM/INT, or `[storage]
//! drain_timeout` running out (the database is down and the drain would otherwise
//! outlast systemd's stop timeout), makes the writer stop retrying and sessions stop
//! waiting, so the process exits quickly while still flushing what the database
//! accepts at once; anything it could not write is counted and logged by the writer.

use crate::config::{self, Config, SourceConfig};
use crate::ops::Registry;
use crate::ops::http::{HttpError, HttpServer};
use crate::ops::partitions::Maintainer;
use crate::ops::retention::Retention;
use crate::ops::systemd::{Watchdog, extend_while, notify, wait_first_attempts};
use crate::session::{self, Command, SessionHandle};
use crate::store::{RecordSink, Store, StoreError, Writer, WriterHandle, WriterReport};
use futures_util::StreamExt;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM, SIGUSR1, SIGUSR2};
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

mod cluster;
use cluster::{ClusterMsg, ClusterRun, next_cluster_message, start_cluster};

/// Why the daemon could not start or run.
#[derive(Debug, thiserror::Error)]
pub enum SupervisorError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot install signal handlers: {0}")]
    Signals(std::io::Error),
    /// `[http] listen` could not be bound.
    #[error(transparent)]
    Http(#[from] HttpError),
    /// The node number of row ids could not be claimed.
    #[error(transparent)]
    IdSlot(#[from] crate::id_slots::IdSlotError),
    /// `[cluster]`: the node name is taken, or this daemon was superseded.
    #[error(transparent)]
    Cluster(#[from] crate::cluster::ClusterError),
}

/// A running daemon: the writer, its sink, and one session per source.
pub struct Supervisor {
    config: Config,
    config_path: Option<PathBuf>,
    store: Store,
    sink: RecordSink,
    writer: WriterHandle,
    sessions: BTreeMap<String, SessionHandle>,
    /// One backfill worker per Navixy source with backfill on, beside its session.
    backfills: BTreeMap<String, crate::backfill::Backfill>,
    suspended: bool,
    registry: Arc<Registry>,
    http: Option<HttpServer>,
    retention: Option<Retention>,
    /// PostgreSQL: creates time partitions ahead and splits the default partition.
    partitions: Option<Maintainer>,
    watchdog: Option<Watchdog>,
    /// Registered before the first record can exist, so a TERM or HUP that arrives
    /// while sources make their first attempts waits its turn instead of killing the
    /// process with queued records (the default action of both).
    signals: signal_hook_tokio::Signals,
    /// Renews this process's node number of row ids; released after the writer drained.
    id_keeper: Option<crate::id_slots::Keeper>,
    /// `[cluster]`: sources start only when their lease is gained.
    cluster: Option<ClusterRun>,
    /// Per source, when the previous run's blind period began if it was killed
    /// while recording it; handed to the source's session when it starts.
    down_since: BTreeMap<String, chrono::DateTime<chrono::Utc>>,
}

impl Supervisor {
    /// Connects the store, runs migrations, starts the writer and every source.
    /// `config_path` is re-read on SIGHUP; `None` disables reload.
    pub async fn start(
        config: Config,
        config_path: Option<PathBuf>,
    ) -> Result<Self, SupervisorError> {
        if config.http.listen.is_some() {
            // Before anything records a metric: a series registered before the
            // recorder exists is lost (the lease loop's first tick, say).
            crate::ops::metrics::install();
        }
        let store = Store::connect(&config.storage).await?;
        notify(&[sd_notify::NotifyState::Status("running migrations")]);
        extend_while("running migrations", store.migrate()).await?;
        let node = match &config.cluster {
            Some(c) => c.node.clone(),
            None => crate::config::host_name().unwrap_or_default(),
        };
        if !node.is_empty() {
            store.set_node(&node);
        }
        let holder = format!("{node} pid {}", std::process::id());
        let id_keeper = crate::id_slots::claim_and_install(&store, &holder)
            .await?
            .keep(store.clone());
        let cluster = match &config.cluster {
            None => None,
            Some(c) => match start_cluster(&config, c, &store).await {
                Ok(run) => Some(run),
                Err(e) => {
                    if let Err(e) = id_keeper.release().await {
                        tracing::warn!("releasing the id slot failed: {e}");
                    }
                    store.close().await;
                    return Err(e);
                }
            },
        };
        let signals = signal_hook_tokio::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2])
            .map_err(SupervisorError::Signals)?;
        tracing::debug!("signal handlers installed");
        let (sink, writer) = Writer::spawn(store.clone(), &config.storage);
        let mut down_since = BTreeMap::new();
        if cluster.is_none() {
            // With [cluster] a source's abandoned connections are closed when its
            // lease is gained: only then is it sure that no live node records it.
            down_since = close_abandoned(&store, &config.sources, &sink).await;
        }
        let registry = Registry::new(writer.stats(), &config.storage);
        let http = match config.http.listen {
            None => None,
            Some(addr) => match HttpServer::start(addr, registry.clone()).await {
                Ok(h) => Some(h),
                Err(e) => {
                    drop(sink);
                    writer.join().await;
                    store.close().await;
                    return Err(e.into());
                }
            },
        };
        // Before any source starts, so the first rows already find their partition.
        let partitions = Maintainer::start(store.clone(), config.storage.partition);
        let mut sup = Supervisor {
            config,
            config_path,
            store,
            sink,
            writer,
            sessions: BTreeMap::new(),
            backfills: BTreeMap::new(),
            suspended: false,
            registry,
            http,
            retention: None,
            partitions,
            watchdog: None,
            signals,
            id_keeper: Some(id_keeper),
            cluster,
            down_since,
        };
        if sup.cluster.is_none() {
            for source in sup.config.sources.clone() {
                sup.start_source(source, crate::backfill::Cause::Down, None)
                    .await;
            }
        }
        let (subscribed, total) =
            wait_first_attempts(&sup.registry, first_attempt_limit(&sup.config)).await;
        sup.retention = Retention::start_for(
            sup.store.clone(),
            sup.config.retention.clone(),
            source_names(&sup.config),
        );
        tracing::info!(
            sources = total,
            subscribed,
            "wsvault running: {subscribed} of {total} sources subscribed"
        );
        let status = format!("running: {subscribed} of {total} sources subscribed");
        notify(&[
            sd_notify::NotifyState::Ready,
            sd_notify::NotifyState::Status(&status),
        ]);
        // After READY: the watchdog's first ping is immediate, and a ping before
        // READY would be a daemon claiming health before it says it started.
        sup.watchdog = Watchdog::start(sup.registry.clone());
        Ok(sup)
    }

    /// The live view `/metrics`, `/healthz` and the watchdog read.
    pub fn registry(&self) -> Arc<Registry> {
        self.registry.clone()
    }

    /// Where `/metrics` and `/healthz` listen, when `[http] listen` is set.
    pub fn http_addr(&self) -> Option<std::net::SocketAddr> {
        self.http.as_ref().map(HttpServer::addr)
    }

    /// Live status of every source, for health, metrics and `status`.
    pub fn sources(&self) -> impl Iterator<Item = (&str, &Arc<session::SourceStatus>)> {
        self.sessions.iter().map(|(k, v)| (k.as_str(), &v.status))
    }

    /// The writer's counters.
    pub fn writer_stats(&self) -> Arc<crate::store::WriterStats> {
        self.writer.stats()
    }

    /// Starts `source`'s session (and backfill). With `term` (cluster mode) every
    /// record they build is stamped with that lease term, so the writer stores it
    /// only while this node holds the source under that term.
    async fn start_source(
        &mut self,
        source: SourceConfig,
        cause: crate::backfill::Cause,
        term: Option<i64>,
    ) {
        if source.url.scheme() == "ws" && !is_loopback(&source.url) {
            tracing::warn!(
                source = %source.name,
                "url uses unencrypted ws:// to a non-loopback host; use wss:// in production"
            );
        }
        let initial = if self.suspended {
            Command::Suspend
        } else {
            Command::Run
        };
        let name = source.name.clone();
        let (kind, timing) = (source.kind.name(), source.timing);
        if let Some(old) = self.backfills.remove(&name) {
            old.abort();
        }
        let sink = match term {
            Some(t) => self.sink.with_term(t),
            None => self.sink.clone(),
        };
        if let (Some(c), Some(t)) = (&mut self.cluster, term) {
            c.terms.insert(name.clone(), t);
        }
        let backfill =
            crate::backfill::Backfill::start_after(&source, &self.store, sink.clone(), cause).await;
        let links = backfill
            .as_ref()
            .map(|b| session::Links {
                gaps: Some(b.notifier()),
                login: b.login(),
                down_since: None,
            })
            .unwrap_or_default();
        let links = session::Links {
            down_since: self.down_since.remove(&name),
            ..links
        };
        if let Some(b) = backfill {
            self.backfills.insert(name.clone(), b);
        }
        let handle = session::spawn_linked(
            source,
            &self.config.storage,
            Some(&self.store),
            sink,
            initial,
            links,
        )
        .await;
        self.registry
            .add(&name, kind, timing, handle.status.clone());
        self.sessions.insert(name, handle);
    }

    /// Runs until SIGTERM/SIGINT (or `stop` resolves), handling HUP/USR1/USR2, then
    /// shuts down in order and returns the writer's report.
    pub async fn run_until_signal(
        mut self,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<WriterReport, SupervisorError> {
        tokio::pin!(stop);
        loop {
            if self.cluster.as_ref().is_some_and(|c| c.superseded) {
                break;
            }
            tokio::select! {
                _ = &mut stop => break,
                msg = next_cluster_message(&mut self.cluster) => match msg {
                    ClusterMsg::Event(event) => self.on_cluster_event(event).await,
                    ClusterMsg::Fenced(source, term) => self.on_fenced(&source, term),
                    ClusterMsg::Closed(Some(source)) => {
                        if let Some(c) = &self.cluster {
                            c.handle.release(&source);
                        }
                    }
                    ClusterMsg::Closed(None) => {}
                },
                sig = self.signals.next() => match sig {
                    Some(SIGTERM) | Some(SIGINT) | None => {
                        tracing::info!("shutdown requested");
                        break;
                    }
                    Some(SIGHUP) => self.reload().await,
                    Some(SIGUSR1) => self.suspend_all(true),
                    Some(SIGUSR2) => self.suspend_all(false),
                    Some(_) => {}
                }
            }
        }
        let superseded = self.cluster.as_ref().is_some_and(|c| c.superseded);
        let node = self
            .config
            .cluster
            .as_ref()
            .map(|c| c.node.clone())
            .unwrap_or_default();
        let report = self.shutdown().await;
        if superseded {
            return Err(crate::cluster::ClusterError::Superseded {
                node,
                lost: Vec::new(),
            }
            .into());
        }
        Ok(report)
    }

    fn suspend_all(&mut self, suspend: bool) {
        self.suspended = suspend;
        self.registry.set_suspended(suspend);
        let cmd = if suspend {
            Command::Suspend
        } else {
            Command::Run
        };
        tracing::info!(
            "{} every source",
            if suspend { "suspending" } else { "resuming" }
        );
        for s in self.sessions.values() {
            s.command(cmd);
        }
    }

    /// SIGHUP: re-read the file; start added sources, stop removed ones, restart changed
    /// ones, leave unchanged ones connected. An invalid file changes nothing.
    pub async fn reload(&mut self) {
        let Some(path) = self.config_path.clone() else {
            tracing::warn!("SIGHUP ignored: no config file to reload");
            return;
        };
        let new = match config::load(&path) {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("reload refused, keeping the running configuration: {e}");
                return;
            }
        };
        if new.storage != self.config.storage {
            tracing::warn!("[storage] changes take effect only after a restart");
        }
        if new.http != self.config.http {
            tracing::warn!("[http] changes take effect only after a restart");
        }
        if new.log != self.config.log {
            tracing::warn!("[log] changes take effect only after a restart");
        }
        if new.cluster != self.config.cluster {
            tracing::warn!("[cluster] changes take effect only after a restart");
        }
        if new.retention != self.config.retention {
            tracing::info!("reload: [retention] changed, restarting the pruning task");
            if let Some(r) = self.retention.take() {
                r.stop().await;
            }
            self.retention = Retention::start_for(
                self.store.clone(),
                new.retention.clone(),
                source_names(&new),
            );
            self.config.retention = new.retention.clone();
        }
        let mut wanted: BTreeMap<String, SourceConfig> = new
            .sources
            .iter()
            .map(|s| (s.name.clone(), s.clone()))
            .collect();
        let names: Vec<String> = self.sessions.keys().cloned().collect();
        for name in names {
            match wanted.remove(&name) {
                Some(cfg) if self.sessions.get(&name).is_some_and(|h| h.config == cfg) => {}
                Some(cfg) => {
                    tracing::info!(source = %name, "reload: source changed, restarting it");
                    if let Some(h) = self.sessions.remove(&name) {
                        h.stop().await;
                    }
                    self.start_source(cfg, crate::backfill::Cause::Down, None)
                        .await;
                }
                None => {
                    tracing::info!(source = %name, "reload: source removed, closing it");
                    if let Some(h) = self.sessions.remove(&name) {
                        h.stop().await;
                    }
                    if let Some(b) = self.backfills.remove(&name) {
                        b.abort();
                    }
                    self.registry.retire(&name);
                }
            }
        }
        for (name, cfg) in wanted {
            tracing::info!(source = %name, "reload: source added");
            if self.cluster.is_none() {
                self.start_source(cfg, crate::backfill::Cause::Down, None)
                    .await;
            }
        }
        self.config.sources = new.sources;
        if let Some(c) = &self.cluster {
            // Added sources start when their lease is gained; leases of removed ones
            // come back as handovers and are released.
            c.handle
                .set_sources(self.config.sources.iter().map(|s| s.name.clone()).collect());
        }
        tracing::info!(sources = self.sessions.len(), "configuration reloaded");
    }

    async fn shutdown(self) -> WriterReport {
        notify(&[sd_notify::NotifyState::Stopping]);
        let drain_timeout = self.config.storage.drain_timeout;
        let deadline = tokio::time::Instant::now() + drain_timeout;
        let Supervisor {
            store,
            sink,
            writer,
            sessions,
            backfills,
            http,
            retention,
            partitions,
            watchdog,
            mut signals,
            id_keeper,
            cluster,
            ..
        } = self;
        let cluster = cluster.map(|mut c| {
            // Sessions already closing end on their own; the shutdown releases
            // every lease after the writer drained.
            c.closing.abort_all();
            c
        });
        // Backfills hold record sinks too; a gap they were filling stays `running`
        // and resumes from its saved progress at the next start.
        for b in backfills.values() {
            b.abort();
        }
        drop(backfills);
        if let Some(w) = watchdog {
            w.stop().await;
        }
        if let Some(r) = retention {
            r.stop().await;
        }
        if let Some(p) = partitions {
            p.stop().await;
        }
        let (force_tx, mut force_rx) = tokio::sync::watch::channel(false);
        let force = writer.force_trigger();
        let drain_force = writer.force_trigger();
        let stats = writer.stats();
        let drain_expired = move || {
            tracing::error!(
                drain_timeout = ?drain_timeout,
                queued = stats.queue_depth(),
                "drain_timeout expired with the database not taking the queue; \
                 stopping the writer, records it cannot write at once are counted as lost"
            );
            drain_force.force_stop();
        };
        let watcher = tokio::spawn(async move {
            while let Some(sig) = signals.next().await {
                if sig == SIGTERM || sig == SIGINT {
                    tracing::warn!(
                        "second signal: exiting quickly, flushing what the database accepts now"
                    );
                    force.force_stop();
                    let _ = force_tx.send(true);
                    break;
                }
            }
        });
        let mut sessions: Vec<SessionHandle> = sessions.into_values().collect();
        for s in &sessions {
            s.command(Command::Stop);
        }
        let all_stopped = futures_util::future::join_all(sessions.iter_mut().map(|s| s.join()));
        let mut expired = false;
        tokio::select! {
            _ = all_stopped => {}
            _ = force_rx.wait_for(|f| *f) => {}
            () = tokio::time::sleep_until(deadline) => {
                expired = true;
                drain_expired();
            }
        }
        // Sessions still running after a forced exit are cut off so their record
        // sinks drop and the writer can finish.
        for s in &sessions {
            s.abort();
        }
        drop(sessions);
        drop(sink);
        let join = writer.join();
        tokio::pin!(join);
        let report = tokio::select! {
            r = &mut join => r,
            () = tokio::time::sleep_until(deadline), if !expired => {
                drain_expired();
                join.await
            }
        };
        watcher.abort();
        if let Some(c) = cluster {
            match c.handle.shutdown().await {
                Ok(n) => tracing::info!(released = n, "leases released"),
                Err(e) => tracing::warn!("releasing the leases failed ({e}); they expire instead"),
            }
            c.store.close().await;
        }
        if let Some(k) = id_keeper
            && let Err(e) = k.release().await
        {
            tracing::warn!("releasing the id slot failed: {e}");
        }
        if let Some(h) = http {
            h.stop().await;
        }
        store.close().await;
        tracing::info!(
            written = report.written,
            rejected = report.rejected,
            lost = report.lost,
            "wsvault stopped"
        );
        report
    }
}

/// Closes the connections a killed or crashed previous run left open, recording
/// their blind periods, before any source connects; returns when each such blind
/// period began (its `suspended{down}` row), per source, for the `resumed` row of
/// the source's first subscription. A failed read is logged and start goes on: the
/// rows stay as they were, nothing new is lost.
async fn close_abandoned(
    store: &Store,
    sources: &[SourceConfig],
    sink: &RecordSink,
) -> BTreeMap<String, chrono::DateTime<chrono::Utc>> {
    let names: Vec<String> = sources.iter().map(|s| s.name.clone()).collect();
    let records = match store.abandoned_connections(&names).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{e}; connections a previous run left open stay open");
            return BTreeMap::new();
        }
    };
    let mut down_since = BTreeMap::new();
    for r in &records {
        if let crate::record::Record::SessionEvent(e) = r
            && e.event == "suspended"
            && e.initiator.as_deref() == Some("down")
        {
            // An older abandoned connection's period ended when the next one
            // opened; the newest is the one this run ends.
            let last = down_since
                .entry(e.source.to_string())
                .or_insert(e.occurred_at);
            *last = (*last).max(e.occurred_at);
        }
    }
    let connections = records
        .iter()
        .filter(|r| matches!(r, crate::record::Record::Connection(_)))
        .count();
    if connections > 0 {
        tracing::warn!(
            connections,
            "the previous run stopped without closing its connections (killed or crashed); \
             closing them at their last stored row and recording the blind period"
        );
    }
    for r in records {
        if sink.send(r).await.is_err() {
            break;
        }
    }
    down_since
}

/// The configured source names: retention prunes their rows without first reading
/// which sources a table holds.
fn source_names(cfg: &Config) -> Vec<String> {
    cfg.sources.iter().map(|s| s.name.clone()).collect()
}

/// How long READY waits for the first attempts: the slowest source's connect and
/// handshake budget, plus a second.
fn first_attempt_limit(cfg: &Config) -> Duration {
    cfg.sources
        .iter()
        .map(|s| s.timing.connect_timeout + s.timing.handshake_timeout)
        .max()
        .unwrap_or_default()
        + Duration::from_secs(1)
}

fn is_loopback(url: &url::Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        Some(url::Host::Domain(d)) => d == "localhost",
        None => false,
    }
}
