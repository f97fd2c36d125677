//! Navixy end to end: a simulator on 127.0.0.1:0, the `[[sources]]` lines that
//! point the real daemon at it, and waits on the simulator's ground truth.

use std::time::Duration;

use serde_json::Value;
use wsvault::sim::navixy::{NavixyControl, NavixySim, NavixySimConfig, NavixyStats};
use wsvault::store::Store;

use super::daemon::Run;
use super::db::count;
use super::wait::wait_until;

/// The deadline the Navixy tests call "soon": [`LIMIT`](super::LIMIT).
pub const SOON: Duration = super::LIMIT;

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
