//! The fault soak: the simulator streams numbered states (`additional.seq`) and
//! readings while a seeded schedule injects, one at a time, connection drops,
//! silences (some longer than the daemon's idle deadline, so it reconnects),
//! malformed frames and database outages (some with a drop in the middle, while the
//! daemon is pushing back). After each fault the soak waits for recovery: everything
//! the simulator had written before the fault ended is stored, and a state written
//! after it is stored too. At the end every state and readings item the simulator
//! wrote whole to a connection must be stored exactly once.
//!
//! "Sent" counts distinct items written whole to a socket (re-sends of a snapshot
//! count once); an item whose frame was cut by a drop is not sent.

use super::BenchError;
use super::daemon::DaemonSettings;
use super::ingest::Rig;
use super::stall::{Outage, outage_name};
use super::target::{Backend, Env, Target};
use crate::sim::navixy::{NavixySimConfig, READING_VALUES_PER_ITEM};
use rand::{Rng, SeedableRng, rngs::StdRng};
use std::time::{Duration, Instant};

/// Idle deadline of the daemon during the soak; longer silences force a reconnect.
const IDLE: Duration = Duration::from_secs(3);
/// A fault the daemon has not recovered from within this fails the soak.
const RECOVERY_LIMIT: Duration = Duration::from_secs(120);

#[derive(Debug, Default)]
struct Tally {
    drops: u32,
    silences: u32,
    long_silences: u32,
    malformed: u32,
    malformed_frames: u64,
    outages: u32,
    outages_with_drop: u32,
    longest: Duration,
    longest_kind: &'static str,
}

/// Runs the soak for `duration` on `env.backend` and prints its report.
pub async fn run(env: &Env, duration: Duration, seed: u64) -> Result<(), BenchError> {
    let label = env.backend.name();
    let target = Target::create(env, "soak").await?;
    let (mut outage, url) = match Outage::prepare(&target).await {
        Ok(o) => o,
        Err(e) => {
            target.cleanup().await;
            return Err(e);
        }
    };
    let sim_cfg = NavixySimConfig {
        trackers: 200,
        updates: None,
        rate: 2000.0,
        batch_size: 100,
        readings: true,
        seq: true,
        // The daemon then sends nothing after subscribing, so a drop never meets
        // unread client bytes (which would turn the close into a reset).
        heartbeat_interval: Duration::from_secs(3600),
        server_heartbeat: Duration::from_secs(1),
        ..NavixySimConfig::default()
    };
    let settings = DaemonSettings {
        idle_timeout: IDLE,
        ..DaemonSettings::default()
    };
    let mut rig = Rig::start(env, target, sim_cfg, &settings, Some(url)).await?;
    println!(
        "[{label}] soak: {} s, seed {seed}, 200 trackers at 2000 states/s; database outage = {}",
        duration.as_secs(),
        outage_name(env.backend)
    );
    let mut tally = Tally::default();
    let result = schedule(&mut rig, &mut outage, duration, seed, &mut tally).await;
    let _ = outage.end().await;
    let settled = match result {
        Ok(()) => settle(&mut rig).await,
        Err(e) => Err(e),
    };
    let stats = rig.sim.control().stats();
    let (line, target) = match rig.finish().await {
        Ok(x) => x,
        Err(e) => return Err(e),
    };
    let report = async {
        settled?;
        let states = target.count("tracker_states").await?;
        let readings = target.count("tracker_readings").await?;
        let malformed = target
            .scalar("SELECT COUNT(*) FROM events WHERE kind = 'malformed'")
            .await?;
        let dup_sql = match env.backend {
            Backend::Sqlite => {
                "SELECT COUNT(*) - COUNT(DISTINCT source_id || ':' || \
                 json_extract(payload, '$.additional.seq.value')) FROM tracker_states"
            }
            Backend::Postgres => {
                "SELECT COUNT(*) - COUNT(DISTINCT (source_id, \
                 payload->'additional'->'seq'->>'value')) FROM tracker_states"
            }
        };
        let dup_states = target.scalar(dup_sql).await?;
        let dup_readings = target
            .scalar(match env.backend {
                Backend::Sqlite => {
                    "SELECT COUNT(*) - COUNT(DISTINCT tracker_id || ':' || reading_kind || ':' \
                     || name || ':' || update_time) FROM tracker_readings"
                }
                Backend::Postgres => {
                    "SELECT COUNT(*) - COUNT(DISTINCT (tracker_id, reading_kind, name, \
                     update_time)) FROM tracker_readings"
                }
            })
            .await?;
        let reconnects = target.count("connections").await? - 1;
        let sent_readings = stats.reading_items_first_sent * READING_VALUES_PER_ITEM;
        println!(
            "[{label}] soak faults: {} drops, {} silences ({} past the idle deadline), {} malformed bursts ({} frames), {} database outages ({} with a drop)",
            tally.drops,
            tally.silences,
            tally.long_silences,
            tally.malformed,
            tally.malformed_frames,
            tally.outages,
            tally.outages_with_drop
        );
        println!(
            "[{label}] soak result: states sent while connected {} / stored {}; readings sent {} / stored {}; duplicates in typed tables {}; malformed frames stored {}; reconnects {}; writer retries {}; longest recovery {:.2} s ({})",
            stats.states_first_sent,
            states,
            sent_readings,
            readings,
            dup_states + dup_readings,
            malformed,
            reconnects,
            line.retries,
            tally.longest.as_secs_f64(),
            tally.longest_kind
        );
        let ok = states as u64 == stats.states_first_sent
            && readings as u64 == sent_readings
            && dup_states + dup_readings == 0
            && line.lost == 0;
        if ok {
            println!("[{label}] soak: PASS");
            Ok(())
        } else {
            Err(BenchError::SoakFailed(format!(
                "{label}: sent and stored differ, duplicates found or records lost (log in {})",
                target.dir.display()
            )))
        }
    }
    .await;
    if report.is_ok() {
        target.cleanup().await;
    }
    report
}

async fn sleep_checked(rig: &mut Rig, d: Duration) -> Result<(), BenchError> {
    let until = Instant::now() + d;
    while Instant::now() < until {
        rig.daemon.check_alive()?;
        tokio::time::sleep((until - Instant::now()).min(Duration::from_millis(100))).await;
    }
    Ok(())
}

fn secs(rng: &mut StdRng, lo: f64, hi: f64) -> Duration {
    Duration::from_secs_f64(rng.random_range(lo..hi))
}

async fn schedule(
    rig: &mut Rig,
    outage: &mut Outage,
    duration: Duration,
    seed: u64,
    tally: &mut Tally,
) -> Result<(), BenchError> {
    let mut rng = StdRng::seed_from_u64(seed);
    let started = Instant::now();
    while started.elapsed() < duration {
        let gap = secs(&mut rng, 1.0, 4.0);
        sleep_checked(rig, gap).await?;
        let control = rig.sim.control().clone();
        let kind = match rng.random_range(0..4u32) {
            0 => {
                tally.drops += 1;
                control.drop_now();
                "drop"
            }
            1 => {
                let d = secs(&mut rng, 0.5, 2.0 * IDLE.as_secs_f64());
                tally.silences += 1;
                control.set_silent(true);
                sleep_checked(rig, d).await?;
                control.set_silent(false);
                if d > IDLE {
                    tally.long_silences += 1;
                    "silence past the idle deadline"
                } else {
                    "silence"
                }
            }
            2 => {
                tally.malformed += 1;
                for _ in 0..rng.random_range(1..4u32) {
                    tally.malformed_frames += control.send_malformed() as u64;
                }
                "malformed frames"
            }
            _ => {
                let d = secs(&mut rng, 1.0, 15.0);
                let with_drop = rng.random_bool(0.5);
                tally.outages += 1;
                outage.begin().await?;
                if with_drop {
                    tally.outages_with_drop += 1;
                    sleep_checked(rig, d / 2).await?;
                    control.drop_now();
                    sleep_checked(rig, d / 2).await?;
                } else {
                    sleep_checked(rig, d).await?;
                }
                outage.end().await?;
                if with_drop {
                    "database outage with a drop"
                } else {
                    "database outage"
                }
            }
        };
        let took = recover(rig).await?;
        if took > tally.longest {
            tally.longest = took;
            tally.longest_kind = kind;
        }
    }
    Ok(())
}

/// Waits until everything sent so far is stored and a state sent later is stored too.
async fn recover(rig: &mut Rig) -> Result<Duration, BenchError> {
    let t = Instant::now();
    let sent = rig.sim.control().stats().states_first_sent as i64;
    loop {
        rig.daemon.check_alive()?;
        if rig.target.count("tracker_states").await? > sent {
            return Ok(t.elapsed());
        }
        if t.elapsed() > RECOVERY_LIMIT {
            return Err(BenchError::Timeout {
                what: format!("recovering ({sent} states sent before the fault ended)"),
                after: RECOVERY_LIMIT,
            });
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Pauses the simulator and waits until everything it sent is stored.
async fn settle(rig: &mut Rig) -> Result<(), BenchError> {
    rig.sim.control().pause_updates(true);
    let t = Instant::now();
    loop {
        rig.daemon.check_alive()?;
        let sent = rig.sim.control().stats().states_first_sent as i64;
        let stored = rig.target.count("tracker_states").await?;
        if stored >= sent {
            // Let the readings frame that follows the last states frame land too.
            sleep_checked(rig, Duration::from_millis(500)).await?;
            if rig.sim.control().stats().states_first_sent as i64 == sent {
                return Ok(());
            }
        }
        if t.elapsed() > Duration::from_secs(60) {
            return Err(BenchError::Timeout {
                what: format!("settling ({stored} of {sent} sent states stored)"),
                after: Duration::from_secs(60),
            });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
