//! Navixy helpers shared by the `sim_navixy*` tests.

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::{Value, json};
use wsvault::sim::navixy::{NavixySim, NavixySimConfig};

use super::{Client, SOON, connect, next_text};

pub const QUERY: &str = "X-Atmosphere-tracking-id=0&X-Atmosphere-Framework=2.3.6-javascript&X-Atmosphere-Transport=websocket&Content-Type=application/json&X-atmo-protocol=true";

pub use crate::support::navixy::start_sim as start;

pub fn quick() -> NavixySimConfig {
    NavixySimConfig {
        trackers: 3,
        updates: Some(2),
        rate: 200.0,
        heartbeat_interval: Duration::from_millis(200),
        server_heartbeat: Duration::from_secs(30),
        ..NavixySimConfig::default()
    }
}

pub async fn open(sim: &NavixySim) -> (Client, String) {
    let mut ws = connect(&format!("{}?{QUERY}", sim.ws_url())).await;
    let handshake = next_text(&mut ws, SOON).await.expect("handshake");
    (ws, handshake)
}

pub fn subscribe_msg(hash: &str, extra: Value) -> String {
    let mut msg = json!({"action": "subscribe", "hash": hash, "requests": [
        {"type": "state_batch", "target": {"type": "all"}, "rate_limit": "5s", "format": "full"},
        {"type": "readings_batch", "target": {"type": "all"}, "rate_limit": "5s"}]});
    if let (Value::Object(m), Value::Object(e)) = (&mut msg, extra) {
        m.extend(e);
    }
    msg.to_string()
}

/// Collected data frames: (source_id, last_update) of states, (tracker_id, timestamp) of readings.
#[derive(Default)]
pub struct Seen {
    pub states: BTreeSet<(u64, String)>,
    pub readings: BTreeSet<(u64, String)>,
    pub wrapped: usize,
    pub bare: usize,
}

impl Seen {
    pub fn absorb(&mut self, frame: &Value) {
        match frame["event"].as_str() {
            Some("state_batch") => {
                for item in frame["data"].as_array().unwrap() {
                    let state = if item["type"] == "source_state_event" {
                        self.wrapped += 1;
                        &item["state"]
                    } else {
                        self.bare += 1;
                        item
                    };
                    let t = state["last_update"].as_str().unwrap().to_owned();
                    assert_eq!(state["gps"]["updated"].as_str(), Some(t.as_str()));
                    self.states
                        .insert((state["source_id"].as_u64().unwrap(), t));
                }
            }
            Some("readings_batch") => {
                for item in frame["data"].as_array().unwrap() {
                    assert_eq!(item["type"], "readings_event");
                    assert_eq!(item["counters"][0]["update_time"], item["timestamp"]);
                    let id = item["tracker_id"].as_u64().unwrap();
                    self.readings
                        .insert((id, item["timestamp"].as_str().unwrap().to_owned()));
                }
            }
            other => panic!("unexpected frame {other:?}: {frame}"),
        }
    }
}
