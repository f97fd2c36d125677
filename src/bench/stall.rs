//! Memory at full rate and during a database stall: the queue is bounded, so while the
//! database takes nothing the daemon must stop reading its socket and its memory must
//! stay flat.
//!
//! A stall is a [`Outage`]: PostgreSQL behind a [`TcpProxy`] that is cut (connections
//! reset, new ones refused), SQLite with its write lock held by another connection.

use super::daemon::DaemonSettings;
use super::ingest::{Rig, sim_config};
use super::target::{Backend, Env, SqliteLock, Target};
use super::{BenchArgs, BenchError};
use crate::sim::proxy::TcpProxy;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// A way to make the benchmark database unavailable to the daemon and back.
pub enum Outage {
    /// PostgreSQL reached through this proxy.
    Proxy(TcpProxy),
    /// SQLite file whose write lock is taken while the outage lasts.
    Sqlite {
        path: PathBuf,
        lock: Option<SqliteLock>,
    },
}

impl Outage {
    /// Prepares an outage switch for `target`; returns it and the storage URL the
    /// daemon must use (through the proxy, for PostgreSQL).
    pub async fn prepare(target: &Target) -> Result<(Outage, String), BenchError> {
        match target.sqlite_path() {
            Some(p) => Ok((
                Outage::Sqlite {
                    path: p.to_path_buf(),
                    lock: None,
                },
                target.url.clone(),
            )),
            None => {
                let upstream = pg_addr(&target.url)?;
                let proxy = TcpProxy::start(upstream)
                    .await
                    .map_err(BenchError::io("starting the PostgreSQL proxy"))?;
                let mut u = url::Url::parse(&target.url)
                    .map_err(|e| BenchError::Daemon(format!("database URL: {e}")))?;
                let _ = u.set_host(Some(&proxy.addr().ip().to_string()));
                let _ = u.set_port(Some(proxy.addr().port()));
                Ok((Outage::Proxy(proxy), u.to_string()))
            }
        }
    }

    /// Makes the database unavailable.
    pub async fn begin(&mut self) -> Result<(), BenchError> {
        match self {
            Outage::Proxy(p) => p.cut(),
            Outage::Sqlite { path, lock } => {
                if lock.is_none() {
                    *lock = Some(SqliteLock::take(path).await?);
                }
            }
        }
        Ok(())
    }

    /// Makes it available again.
    pub async fn end(&mut self) -> Result<(), BenchError> {
        match self {
            Outage::Proxy(p) => p.restore(),
            Outage::Sqlite { lock, .. } => {
                if let Some(l) = lock.take() {
                    l.release().await?;
                }
            }
        }
        Ok(())
    }
}

fn pg_addr(url: &str) -> Result<SocketAddr, BenchError> {
    let u = url::Url::parse(url).map_err(|e| BenchError::Daemon(format!("database URL: {e}")))?;
    let host = u.host_str().unwrap_or("127.0.0.1").to_string();
    let port = u.port().unwrap_or(5432);
    (host.as_str(), port)
        .to_socket_addrs()
        .map_err(BenchError::io(format!("resolving {host}")))?
        .next()
        .ok_or_else(|| BenchError::Daemon(format!("{host} has no address")))
}

/// Figures of the memory run.
#[derive(Debug)]
pub struct Stall {
    pub full_rate_peak_mib: f64,
    pub stall_start_mib: f64,
    pub stall_max_mib: f64,
    pub stall_end_mib: f64,
    pub rows_during_stall: i64,
    pub rows_after_stall: i64,
    pub recovery: Duration,
}

/// Full rate for a warm-up, a stall of `args.stall` seconds, then the wait for the
/// first commit after it (the writer's backoff decides how long) and 5 s more.
pub async fn run(env: &Env, args: &BenchArgs) -> Result<Stall, BenchError> {
    let settings = DaemonSettings {
        batch_size: args.batch_size,
        readings: !args.no_readings,
        queue_capacity: args.queue_capacity,
        ..DaemonSettings::default()
    };
    // The database is created first so the proxy can point at it.
    let target = Target::create(env, "stall").await?;
    let (mut outage, url) = match Outage::prepare(&target).await {
        Ok(o) => o,
        Err(e) => {
            target.cleanup().await;
            return Err(e);
        }
    };
    let sim_cfg = sim_config(1000, None, 0.0, !args.no_readings);
    let mut rig = Rig::start(env, target, sim_cfg, &settings, Some(url)).await?;
    let result = measure(&mut rig, &mut outage, args).await;
    let _ = outage.end().await;
    let (_line, target) = rig.finish().await?;
    target.cleanup().await;
    result
}

async fn measure(
    rig: &mut Rig,
    outage: &mut Outage,
    args: &BenchArgs,
) -> Result<Stall, BenchError> {
    let Rig {
        target: probe,
        daemon,
        ..
    } = rig;
    let warmup = Duration::from_secs(args.seconds.clamp(2, 10));
    let mut peak: f64 = 0.0;
    let t = Instant::now();
    while t.elapsed() < warmup {
        daemon.check_alive()?;
        peak = peak.max(daemon.mem().map_or(0.0, |m| m.hwm_mib));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let start_mib = daemon.mem().map_or(0.0, |m| m.rss_mib);
    outage.begin().await?;
    let before = probe.states_progress().await?;
    let mut max_mib = start_mib;
    let t = Instant::now();
    while t.elapsed() < Duration::from_secs(args.stall) {
        daemon.check_alive()?;
        max_mib = max_mib.max(daemon.mem().map_or(0.0, |m| m.rss_mib));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let end_mib = daemon.mem().map_or(0.0, |m| m.rss_mib);
    let during = probe.states_progress().await? - before;
    outage.end().await?;
    let t = Instant::now();
    let limit = Duration::from_secs(120);
    let mut recovery = None;
    while t.elapsed() < limit {
        daemon.check_alive()?;
        if probe.states_progress().await? > before + during {
            recovery = Some(t.elapsed());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let recovery = recovery.ok_or_else(|| BenchError::Timeout {
        what: "waiting for the first commit after the stall".into(),
        after: limit,
    })?;
    tokio::time::sleep(Duration::from_secs(5)).await;
    daemon.check_alive()?;
    let after = probe.states_progress().await? - before - during;
    Ok(Stall {
        full_rate_peak_mib: peak,
        stall_start_mib: start_mib,
        stall_max_mib: max_mib,
        stall_end_mib: end_mib,
        rows_during_stall: during,
        rows_after_stall: after,
        recovery,
    })
}

/// Which outage a backend gets, in words, for reports.
pub fn outage_name(backend: Backend) -> &'static str {
    match backend {
        Backend::Sqlite => "write lock held by another connection",
        Backend::Postgres => "TCP proxy cut (connections reset, new ones refused)",
    }
}
