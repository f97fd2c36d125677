//! End-to-end ingest runs: simulator → daemon process → database, measured from the
//! moment the simulator accepted the subscription until the database holds every
//! generated tracker state (throughput), or for a fixed time at an offered rate
//! (latency).
//!
//! Progress is read with `MAX(id)` (a primary-key lookup, cheap while the writer
//! works), confirmed with one `COUNT(*)` at the end.

use super::ceiling::Rows;
use super::daemon::{Daemon, DaemonSettings, config_toml};
use super::target::{Env, Target};
use super::{BenchArgs, BenchError};
use crate::sim::navixy::{NavixySim, NavixySimConfig};
use std::time::{Duration, Instant};

/// Poll period of progress and memory.
const POLL: Duration = Duration::from_millis(20);
/// A run fails when nothing new is stored for this long.
const STALL_LIMIT: Duration = Duration::from_secs(60);

/// Figures of one throughput run.
#[derive(Debug)]
pub struct Throughput {
    pub states: i64,
    pub readings: i64,
    pub events: i64,
    pub secs: f64,
    pub states_per_s: f64,
    pub rows_per_s: f64,
    pub steady_states_per_s: f64,
    pub peak_rss_mib: f64,
    pub daemon_cpu_s: f64,
    pub sim_cpu_s: f64,
    /// PostgreSQL server CPU for this database (PostgreSQL only).
    pub db_cpu_s: Option<f64>,
    /// The stored rows, for the ceiling run.
    pub rows: Rows,
}

/// Trackers and updates per tracker so that `trackers × (updates + 1) ≈ records`.
pub fn fleet_for(records: u64) -> (usize, u64) {
    let trackers = (records / 10).clamp(1, 1000);
    let updates = (records / trackers).saturating_sub(1);
    (trackers as usize, updates)
}

/// The simulator as every run uses it: full-format states in frames of 100 items.
pub fn sim_config(
    trackers: usize,
    updates: Option<u64>,
    rate: f64,
    readings: bool,
) -> NavixySimConfig {
    NavixySimConfig {
        trackers,
        updates,
        rate,
        batch_size: 100,
        readings,
        ..NavixySimConfig::default()
    }
}

/// A started simulator and daemon on a fresh database.
pub struct Rig {
    pub target: Target,
    pub sim: NavixySim,
    pub daemon: Daemon,
}

impl Rig {
    /// Starts the simulator, then the daemon, and waits for the subscription.
    /// `daemon_url` overrides the storage URL the daemon gets (a proxy in front of
    /// `target`).
    pub async fn start(
        env: &Env,
        target: Target,
        sim_cfg: NavixySimConfig,
        settings: &DaemonSettings,
        daemon_url: Option<String>,
    ) -> Result<Rig, BenchError> {
        let sim = NavixySim::start(([127, 0, 0, 1], 0).into(), sim_cfg)
            .await
            .map_err(BenchError::io("starting the Navixy simulator"))?;
        let url = daemon_url.unwrap_or_else(|| target.url.clone());
        let cfg = config_toml(&url, &sim.ws_url(), settings);
        let mut daemon = Daemon::spawn(&env.exe, &target.dir, &cfg)?;
        let deadline = Instant::now() + Duration::from_secs(30);
        while sim.control().stats().subscribes == 0 {
            daemon.check_alive()?;
            if Instant::now() > deadline {
                return Err(BenchError::Timeout {
                    what: "waiting for the daemon to subscribe".into(),
                    after: Duration::from_secs(30),
                });
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        Ok(Rig {
            target,
            sim,
            daemon,
        })
    }

    /// Stops the daemon (drain), the simulator, and returns the writer's last line.
    pub async fn finish(self) -> Result<(super::daemon::WriterLine, Target), BenchError> {
        let line = self.daemon.stop(Duration::from_secs(120)).await;
        self.sim.shutdown().await;
        match line {
            Ok(l) => Ok((l, self.target)),
            Err(e) => {
                self.target.cleanup().await;
                Err(e)
            }
        }
    }
}

/// Ingests `args.records` tracker states as fast as the daemon takes them.
pub async fn throughput(env: &Env, args: &BenchArgs) -> Result<Throughput, BenchError> {
    let (trackers, updates) = fleet_for(args.records);
    let expected = (trackers as u64 * (updates + 1)) as i64;
    let settings = DaemonSettings {
        batch_size: args.batch_size,
        readings: !args.no_readings,
        queue_capacity: args.queue_capacity,
        ..DaemonSettings::default()
    };
    let sim_cfg = sim_config(trackers, Some(updates), 0.0, !args.no_readings);
    let sim_cpu_before = super::daemon::cpu_seconds("self");
    let mut rig = Rig::start(
        env,
        Target::create(env, "ingest").await?,
        sim_cfg,
        &settings,
        None,
    )
    .await?;
    let started = Instant::now();
    let (mut t10, mut t90) = (None, None);
    let mut peak_rss: f64 = 0.0;
    let (mut last, mut last_change) = (0, Instant::now());
    loop {
        rig.daemon.check_alive()?;
        if let Some(m) = rig.daemon.mem() {
            peak_rss = peak_rss.max(m.hwm_mib);
        }
        let n = rig.target.states_progress().await?;
        if n != last {
            (last, last_change) = (n, Instant::now());
        }
        if t10.is_none() && n * 10 >= expected {
            t10 = Some((Instant::now(), n));
        }
        if t90.is_none() && n * 10 >= expected * 9 {
            t90 = Some((Instant::now(), n));
        }
        if n >= expected && rig.target.count("tracker_states").await? >= expected {
            break;
        }
        if last_change.elapsed() > STALL_LIMIT {
            return Err(BenchError::Timeout {
                what: format!("ingesting ({n} of {expected} states stored)"),
                after: STALL_LIMIT,
            });
        }
        tokio::time::sleep(POLL).await;
    }
    let secs = started.elapsed().as_secs_f64();
    let daemon_cpu_s = rig.daemon.cpu_seconds();
    let sim_cpu_s = super::daemon::cpu_seconds("self") - sim_cpu_before;
    let db_cpu_s = rig.target.server_cpu_seconds().await;
    let steady = match (t10, t90) {
        (Some((a, na)), Some((b, nb))) if b > a => (nb - na) as f64 / (b - a).as_secs_f64(),
        _ => expected as f64 / secs,
    };
    let (line, target) = rig.finish().await?;
    if line.lost > 0 {
        target.cleanup().await;
        return Err(BenchError::Daemon(format!("{} records lost", line.lost)));
    }
    let rows = super::ceiling::read_rows(&target).await;
    target.cleanup().await;
    let rows = rows?;
    let states = rows.states.len() as i64;
    let readings = rows.readings.len() as i64;
    let events = rows.events.len() as i64;
    Ok(Throughput {
        states,
        readings,
        events,
        secs,
        states_per_s: states as f64 / secs,
        rows_per_s: (states + readings + events) as f64 / secs,
        steady_states_per_s: steady,
        peak_rss_mib: peak_rss,
        daemon_cpu_s,
        sim_cpu_s,
        db_cpu_s,
        rows,
    })
}

/// Figures of one latency run.
#[derive(Debug)]
pub struct Latency {
    pub count: u64,
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
    pub achieved_states_per_s: f64,
    pub peak_rss_mib: f64,
}

/// Offers `rate` states/s for `args.seconds` and reads the daemon's latency histogram.
pub async fn latency(env: &Env, args: &BenchArgs, rate: u64) -> Result<Latency, BenchError> {
    let settings = DaemonSettings {
        batch_size: args.batch_size,
        readings: !args.no_readings,
        queue_capacity: args.queue_capacity,
        ..DaemonSettings::default()
    };
    let sim_cfg = sim_config(1000, None, rate as f64, !args.no_readings);
    let mut rig = Rig::start(
        env,
        Target::create(env, "latency").await?,
        sim_cfg,
        &settings,
        None,
    )
    .await?;
    // The subscribe snapshot (one state per tracker) lands first; the offered rate
    // is measured after it.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let started = Instant::now();
    let first = rig.target.states_progress().await?;
    let mut peak_rss: f64 = 0.0;
    while started.elapsed() < Duration::from_secs(args.seconds.max(1)) {
        rig.daemon.check_alive()?;
        if let Some(m) = rig.daemon.mem() {
            peak_rss = peak_rss.max(m.hwm_mib);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let stored = rig.target.states_progress().await? - first;
    let achieved = stored as f64 / started.elapsed().as_secs_f64();
    let (line, target) = rig.finish().await?;
    target.cleanup().await;
    Ok(Latency {
        count: line.latency_count,
        p50_ms: line.p50_ms,
        p99_ms: line.p99_ms,
        achieved_states_per_s: achieved,
        peak_rss_mib: peak_rss,
    })
}

#[cfg(test)]
mod tests {
    use super::fleet_for;

    #[test]
    fn fleet_covers_the_records() {
        assert_eq!(fleet_for(200_000), (1000, 199));
        assert_eq!(fleet_for(2_000), (200, 9));
        assert_eq!(fleet_for(5), (1, 4));
    }
}
