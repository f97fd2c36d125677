//! Helpers shared by the `navixy_*` end-to-end tests: a simulator on 127.0.0.1:0,
//! a config file pointing the REAL `wsvault` binary at it and at a test database,
//! and polling helpers that never sleep blindly (every wait has a deadline and
//! says what it waited for).
#![allow(dead_code)]

use std::process::ExitStatus;
use std::time::Duration;

use serde_json::Value;
use wsvault::sim::navixy::{NavixyControl, NavixySim, NavixySimConfig, NavixyStats};
use wsvault::store::Store;

use crate::common::daemon::Daemon;
use crate::common::{TestDb, count, fetch_cells, wait_until};

/// Deadline for anything that should happen "soon" on a loaded 2-core machine.
pub const SOON: Duration = Duration::from_secs(30);

/// Source name used by every test unless it needs several.
pub const SOURCE: &str = "fleet";

/// Starts a simulator on an ephemeral loopback port.
pub async fn start_sim(cfg: NavixySimConfig) -> NavixySim {
    NavixySim::start("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap()
}

/// A small, slow-moving fleet with quick heartbeats: enough to see data flow.
pub fn small_fleet() -> NavixySimConfig {
    NavixySimConfig {
        trackers: 5,
        rate: 50.0,
        heartbeat_interval: Duration::from_millis(200),
        server_heartbeat: Duration::from_millis(200),
        ..NavixySimConfig::default()
    }
}

/// A TOML table `[name]` with `defaults` (key, value) overridden or extended by
/// `extra` (`key = value` lines).
fn section(name: &str, defaults: &[(&str, &str)], extra: &str) -> String {
    let mut lines: Vec<(String, String)> = defaults
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for line in extra.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once('=').expect("key = value");
        let k = k.trim().to_string();
        match lines.iter_mut().find(|(name, _)| *name == k) {
            Some(slot) => slot.1 = v.trim().to_string(),
            None => lines.push((k, v.trim().to_string())),
        }
    }
    let body: Vec<String> = lines.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    format!("[{name}]\n{}\n", body.join("\n"))
}

/// Short reconnect knobs for `[supervisor]` (overridable by `extra`, TOML lines).
pub fn supervisor(extra: &str) -> String {
    section(
        "supervisor",
        &[
            ("backoff_initial", "\"50ms\""),
            ("backoff_max", "\"300ms\""),
            ("idle_timeout", "\"3s\""),
            ("handshake_timeout", "\"3s\""),
            ("connect_timeout", "\"3s\""),
            ("stable_after", "\"60s\""),
            ("subscribe_timeout", "\"5s\""),
        ],
        extra,
    )
}

/// A `[[sources]]` entry of kind navixy for `sim`; `rest` holds auth, subscriptions
/// and any other keys, as TOML lines.
pub fn navixy_source(name: &str, sim: &NavixySim, rest: &str) -> String {
    format!(
        "[[sources]]\nname = \"{name}\"\nkind = \"navixy\"\nurl = \"{}\"\n{rest}\n",
        sim.ws_url()
    )
}

/// The API key the simulator accepts, as a source line.
pub fn api_key_line() -> String {
    format!(
        "api_key_hash = \"{}\"",
        wsvault::sim::navixy::DEFAULT_API_KEY
    )
}

/// `state_batch` + `readings_batch` for every tracker.
pub const ALL_DATA: &str = r#"subscriptions = [
  { type = "state_batch", target = "all" },
  { type = "readings_batch", target = "all" },
]"#;

/// Source lines that log in with the simulator's default login and `password`,
/// subscribed to all data.
pub fn login_lines(password: &str) -> String {
    format!("login = \"demo@example.com\"\npassword = \"{password}\"\n{ALL_DATA}")
}

/// The whole config file: `[storage]` for `db` (defaults overridden or extended by
/// `storage_extra` lines), the supervisor section and the sources.
pub fn config(db: &TestDb, storage_extra: &str, supervisor: &str, sources: &str) -> String {
    let url = format!("\"{}\"", db.cfg.url);
    let storage = section(
        "storage",
        &[
            ("url", url.as_str()),
            ("batch_size", "500"),
            ("flush_interval", "\"20ms\""),
        ],
        storage_extra,
    );
    format!("{storage}\n{supervisor}\n{sources}")
}

/// A running daemon with the store the test reads through.
pub struct Run {
    pub store: Store,
    pub daemon: Option<Daemon>,
    /// Holds the config file and the log.
    pub dir: tempfile::TempDir,
}

impl Run {
    /// Migrates `db` (so the daemon's own migration is a no-op and the test can read
    /// at once), writes `config` and starts the real binary on it.
    pub async fn start(db: &TestDb, config: &str) -> Run {
        let store = db.store().await;
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::start(dir.path(), config);
        Run {
            store,
            daemon: Some(daemon),
            dir,
        }
    }

    pub fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("daemon still running")
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        self.daemon.as_ref().map(Daemon::log).unwrap_or_default()
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        self.daemon().running()
    }

    /// SIGTERM and wait (on a blocking thread, so the in-process simulator keeps
    /// serving the daemon's unsubscribe and close).
    pub async fn stop(&mut self) -> (ExitStatus, String) {
        let d = self.daemon.take().expect("daemon still running");
        tokio::task::spawn_blocking(move || d.stop(Duration::from_secs(30)))
            .await
            .unwrap()
    }

    /// Waits until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str, limit: Duration) {
        let what = format!("log line containing {needle:?}");
        let deadline = std::time::Instant::now() + limit;
        loop {
            if self.log().contains(needle) {
                return;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; log:\n{}",
                self.log()
            );
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
    }

    /// `count(*)` of a FROM clause.
    pub async fn count(&self, from: &str) -> i64 {
        count(&self.store, from).await
    }

    /// Waits until `count(*) FROM from` satisfies `pred`; returns the last count.
    pub async fn wait_count(&self, from: &str, limit: Duration, pred: impl Fn(i64) -> bool) -> i64 {
        let deadline = std::time::Instant::now() + limit;
        loop {
            let n = count(&self.store, from).await;
            if pred(n) {
                return n;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out after {limit:?} waiting on count of {from} (last {n}); log:\n{}",
                tail(&self.log())
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// Lifecycle rows of `source`, oldest first.
    pub async fn lifecycle(&self, source: &str) -> Vec<Lifecycle> {
        let sql = format!(
            "SELECT event, initiator, code, reason, connection_id FROM session_events \
             WHERE source = '{source}' ORDER BY id"
        );
        fetch_cells(&self.store, &sql)
            .await
            .into_iter()
            .map(|c| Lifecycle {
                event: c[0].text(),
                initiator: c[1].opt_text(),
                code: c[2].opt_i64(),
                reason: c[3].opt_text(),
                connection_id: c[4].opt_i64(),
            })
            .collect()
    }

    /// Waits until the lifecycle rows of `source` satisfy `pred`.
    pub async fn wait_lifecycle(
        &self,
        source: &str,
        what: &str,
        pred: impl Fn(&[Lifecycle]) -> bool,
    ) -> Vec<Lifecycle> {
        let deadline = std::time::Instant::now() + SOON;
        loop {
            let rows = self.lifecycle(source).await;
            if pred(&rows) {
                return rows;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for {what}; lifecycle: {rows:#?}\nlog:\n{}",
                tail(&self.log())
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// One `session_events` row.
#[derive(Debug, Clone, PartialEq)]
pub struct Lifecycle {
    pub event: String,
    pub initiator: Option<String>,
    pub code: Option<i64>,
    pub reason: Option<String>,
    pub connection_id: Option<i64>,
}

/// How many rows of `rows` have event `name`.
pub fn n_events(rows: &[Lifecycle], name: &str) -> usize {
    rows.iter().filter(|r| r.event == name).count()
}

/// The last 60 lines of a log, for assertion messages.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(60)..].join("\n")
}

/// Waits until the simulator's stats satisfy `pred`, panicking with `what` and the
/// counters on timeout.
pub async fn wait_sim(
    control: &NavixyControl,
    what: &str,
    limit: Duration,
    pred: impl FnMut(&NavixyStats) -> bool,
) {
    if !control.wait_until(pred, limit).await {
        let s = control.stats();
        panic!(
            "timed out after {limit:?} waiting for {what}: connections {} subscribes {} \
             auth_calls {} subscribe_errors {} drops {} states_generated {} heartbeats {}",
            s.connections,
            s.subscribes,
            s.auth_calls,
            s.subscribe_errors,
            s.drops,
            s.states_generated,
            s.heartbeats_received
        );
    }
}

/// Waits until the database holds exactly what the simulator generated so far
/// (states and distinct reading values). Call it once generation is over (finite
/// `updates`, or paused), otherwise it may match a moment that then passes.
pub async fn wait_db_matches_sim(run: &Run, control: &NavixyControl, limit: Duration) {
    wait_until(
        limit,
        "tracker rows to match the simulator's ground truth",
        || async {
            let s = control.stats();
            let states = run.count("tracker_states").await as u64;
            let readings = run.count("tracker_readings").await as u64;
            states == s.states_generated && readings == s.reading_values_generated
        },
    )
    .await;
}

/// Rows of the typed tables whose natural key occurs more than once (must be 0).
pub async fn duplicate_keys(store: &Store) -> i64 {
    let states = count(
        store,
        "(SELECT source, source_id, state_time FROM tracker_states \
          GROUP BY source, source_id, state_time HAVING count(*) > 1) d",
    )
    .await;
    let readings = count(
        store,
        "(SELECT source, tracker_id, reading_kind, name, update_time FROM tracker_readings \
          GROUP BY source, tracker_id, reading_kind, name, update_time HAVING count(*) > 1) d",
    )
    .await;
    states + readings
}

/// Every string value in the simulator's recorded subscribe messages under `hash`.
pub fn hashes_used(stats: &NavixyStats) -> Vec<String> {
    stats
        .subscribe_messages
        .iter()
        .filter_map(|m| m.get("hash").and_then(Value::as_str).map(str::to_string))
        .collect()
}
