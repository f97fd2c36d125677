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
    watchdog: Option<Watchdog>,
    /// Registered before the first record can exist, so a TERM or HUP that arrives
    /// while sources make their first attempts waits its turn instead of killing the
    /// process with queued records (the default action of both).
    signals: signal_hook_tokio::Signals,
}

impl Supervisor {
    /// Connects the store, runs migrations, starts the writer and every source.
    /// `config_path` is re-read on SIGHUP; `None` disables reload.
    pub async fn start(
        config: Config,
        config_path: Option<PathBuf>,
    ) -> Result<Self, SupervisorError> {
        let store = Store::connect(&config.storage).await?;
        notify(&[sd_notify::NotifyState::Status("running migrations")]);
        extend_while("running migrations", store.migrate()).await?;
        let signals = signal_hook_tokio::Signals::new([SIGTERM, SIGINT, SIGHUP, SIGUSR1, SIGUSR2])
            .map_err(SupervisorError::Signals)?;
        tracing::debug!("signal handlers installed");
        let (sink, writer) = Writer::spawn(store.clone(), &config.storage);
        close_abandoned(&store, &config, &sink).await;
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
            watchdog: None,
            signals,
        };
        for source in sup.config.sources.clone() {
            sup.start_source(source).await;
        }
        let (subscribed, total) =
            wait_first_attempts(&sup.registry, first_attempt_limit(&sup.config)).await;
        sup.retention = Retention::start(sup.store.clone(), sup.config.retention.clone());
        sup.watchdog = Watchdog::start(sup.registry.clone());
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

    async fn start_source(&mut self, source: SourceConfig) {
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
        let backfill =
            crate::backfill::Backfill::start(&source, &self.store, self.sink.clone()).await;
        let links = backfill
            .as_ref()
            .map(|b| session::Links {
                gaps: Some(b.notifier()),
                login: b.login(),
            })
            .unwrap_or_default();
        if let Some(b) = backfill {
            self.backfills.insert(name.clone(), b);
        }
        let handle = session::spawn_linked(
            source,
            &self.config.storage,
            Some(&self.store),
            self.sink.clone(),
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
            tokio::select! {
                _ = &mut stop => break,
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
        Ok(self.shutdown().await)
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
        if new.retention != self.config.retention {
            tracing::info!("reload: [retention] changed, restarting the pruning task");
            if let Some(r) = self.retention.take() {
                r.stop().await;
            }
            self.retention = Retention::start(self.store.clone(), new.retention.clone());
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
                    self.start_source(cfg).await;
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
            self.start_source(cfg).await;
        }
        self.config.sources = new.sources;
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
            watchdog,
            mut signals,
            ..
        } = self;
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
/// their blind periods, before any source connects. A failed read is logged and
/// start goes on: the rows stay as they were, nothing new is lost.
async fn close_abandoned(store: &Store, config: &Config, sink: &RecordSink) {
    let names: Vec<String> = config.sources.iter().map(|s| s.name.clone()).collect();
    let records = match store.abandoned_connections(&names).await {
        Ok(r) => r,
        Err(e) => {
            tracing::error!("{e}; connections a previous run left open stay open");
            return;
        }
    };
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
