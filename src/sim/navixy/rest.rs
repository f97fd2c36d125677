//! The REST history calls of the Navixy simulator: `tracker/list`, `track/read`,
//! `tracker/sensor/list`, `tracker/sensor/data/read`, with the documented shapes and
//! error codes (201, 208, 211, 228, 15 with HTTP 429, 3/4), and fault switches.
//!
//! The history is not stored: update `k` of tracker `idx` is a pure function of
//! (idx, k) and its time is `epoch + k × step`, so any window is answered by
//! computing the updates whose time falls inside it and is already past. Memory
//! stays bounded however long the simulator runs, and the history exists for every
//! moment, connected client or not.

use std::collections::VecDeque;
use std::time::Duration;

use chrono::{DateTime, NaiveDateTime, TimeZone, Utc};
use serde_json::{Map, Value, json};

use super::{Shared, TrackerStatus};

/// Longest `tracker/sensor/data/read` window (`maxReportTimeSpan` default).
const SENSOR_MAX_SPAN: Duration = Duration::from_secs(30 * 86_400);

/// Fault switches of the REST calls.
#[derive(Debug, Default)]
pub(super) struct RestFaults {
    /// Answer the next this many calls with HTTP 429 (every other one without a body code).
    pub too_many: u64,
    /// Answer the next this many calls with HTTP 500.
    pub server_errors: u64,
    /// `track/read` windows longer than this are refused with 211.
    pub span_limit: Option<Duration>,
    /// Wait this long before answering each call.
    pub slow: Option<Duration>,
    /// Arrival times of the calls of the last second (rate measurement).
    pub recent: VecDeque<std::time::Instant>,
}

fn error(code: i64, description: &str) -> Value {
    json!({"success": false, "status": {"code": code, "description": description}})
}

impl Shared {
    fn rest_faults(&self) -> std::sync::MutexGuard<'_, RestFaults> {
        self.rest
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Counts one call in the sliding one-second window; returns the pending fault.
    fn rest_arrival(&self) -> (Option<(u16, Value)>, Option<Duration>) {
        let now = std::time::Instant::now();
        let mut f = self.rest_faults();
        f.recent.push_back(now);
        while f
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= Duration::from_secs(1))
        {
            f.recent.pop_front();
        }
        let in_window = f.recent.len() as u64;
        let slow = f.slow;
        let fault = if f.too_many > 0 {
            f.too_many -= 1;
            Some(if f.too_many.is_multiple_of(2) {
                (429, error(15, "Too many requests (rate limit exceeded)"))
            } else {
                (429, json!({"message": "slow down"}))
            })
        } else if f.server_errors > 0 {
            f.server_errors -= 1;
            Some((500, json!({"error": "internal"})))
        } else {
            None
        };
        drop(f);
        self.stats.update(|s| {
            s.rest_calls += 1;
            s.rest_max_per_second = s.rest_max_per_second.max(in_window);
            if fault.is_some() {
                s.rest_faults_served += 1;
            }
        });
        (fault, slow)
    }

    /// Parses a request time: ISO 8601 with offset, or naive in the user's zone.
    fn parse_time(&self, v: Option<&Value>) -> Option<DateTime<Utc>> {
        let text = v?.as_str()?.trim();
        if let Ok(t) = DateTime::parse_from_rfc3339(text) {
            return Some(t.with_timezone(&Utc));
        }
        let naive = NaiveDateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S").ok()?;
        self.offset
            .from_local_datetime(&naive)
            .single()
            .map(|t| t.with_timezone(&Utc))
    }

    /// Index of a tracker id of the fleet.
    fn index_of(&self, tracker_id: i64) -> Option<usize> {
        let base = self.cfg.tracker_id_base as i64;
        let idx = usize::try_from(tracker_id.checked_sub(base)?).ok()?;
        (idx < self.cfg.trackers).then_some(idx)
    }

    /// Update numbers of one tracker whose time lies strictly inside (from, to) and
    /// that exist already (at most the latest one generated).
    fn updates_within(&self, idx: usize, from: DateTime<Utc>, to: DateTime<Utc>) -> Vec<u64> {
        let latest = self.latest().get(idx).copied().unwrap_or(0);
        let step = self.step().as_millis().max(1) as i64;
        let since_epoch = |t: DateTime<Utc>| (t - self.epoch).num_milliseconds();
        let first = since_epoch(from).div_euclid(step) + 1;
        let first = first.max(0) as u64;
        let mut out = Vec::new();
        let mut k = first;
        while k <= latest {
            let t = self.state_time(k);
            if t >= to {
                break;
            }
            if t > from {
                out.push(k);
            }
            k += 1;
        }
        out
    }

    /// Answers one REST call; `None` when the path is not a REST call.
    pub(super) async fn rest_call(
        &self,
        path: &str,
        p: &Map<String, Value>,
    ) -> Option<(u16, Value)> {
        let call = [
            "tracker/list",
            "track/read",
            "tracker/sensor/list",
            "tracker/sensor/data/read",
        ]
        .into_iter()
        .find(|c| path.ends_with(&format!("/{c}")))?;
        let (fault, slow) = self.rest_arrival();
        if let Some(d) = slow {
            tokio::time::sleep(d).await;
        }
        if let Some(f) = fault {
            return Some(f);
        }
        let hash = p.get("hash").and_then(Value::as_str).unwrap_or("");
        if !self.hash_valid(hash) {
            return Some((400, error(4, "User or API key not found or session ended")));
        }
        let iso = p
            .get("iso_datetime")
            .is_some_and(|v| v == &json!(true) || v == &json!("true"));
        Some(match call {
            "tracker/list" => (200, self.tracker_list()),
            _ => self.history(call, p, iso),
        })
    }

    fn tracker_list(&self) -> Value {
        let list: Vec<Value> = (0..self.cfg.trackers)
            .filter(|i| self.status_of(self.tracker_id(*i)) != TrackerStatus::Unknown)
            .map(|i| {
                let blocked = self.status_of(self.tracker_id(i)) == TrackerStatus::Blocked;
                json!({"id": self.tracker_id(i), "label": format!("Sim {i}"), "clone": false,
                       "group_id": 0,
                       "source": {"id": self.source_id(i), "device_id": format!("SIM{i:08}"),
                                  "model": "sim", "blocked": blocked, "tariff_id": 1,
                                  "status_listing_id": null, "creation_date": "2024-01-01",
                                  "tariff_end_date": null, "phone": null},
                       "tag_bindings": []})
            })
            .collect();
        json!({"success": true, "list": list})
    }

    fn history(&self, call: &str, p: &Map<String, Value>, iso: bool) -> (u16, Value) {
        let tracker = p.get("tracker_id").and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        });
        let Some(idx) = tracker.and_then(|t| self.index_of(t)) else {
            return (400, error(201, "Not found in the database"));
        };
        match self.status_of(self.tracker_id(idx)) {
            TrackerStatus::Blocked => return (400, error(208, "Device blocked")),
            TrackerStatus::Normal => {}
            _ => return (400, error(201, "Not found in the database")),
        }
        if call == "tracker/sensor/list" {
            return (200, json!({"success": true, "list": sensors(idx)}));
        }
        let (Some(from), Some(to)) = (self.parse_time(p.get("from")), self.parse_time(p.get("to")))
        else {
            return (400, error(7, "Invalid parameters"));
        };
        if to < from {
            return (400, error(7, "Invalid parameters"));
        }
        let span = (to - from).to_std().unwrap_or_default();
        let ks = |limit: Option<Duration>| {
            if limit.is_some_and(|l| span > l) {
                None
            } else {
                Some(self.updates_within(idx, from, to))
            }
        };
        if call == "track/read" {
            let limit = self.rest_faults().span_limit;
            let Some(ks) = ks(limit) else {
                return (400, error(211, "Requested time span is too big"));
            };
            let list: Vec<Value> = ks.into_iter().map(|k| self.point(idx, k, iso)).collect();
            return (
                200,
                json!({"success": true, "limit_exceeded": false, "list": list}),
            );
        }
        let sensor = p.get("sensor_id").and_then(|v| {
            v.as_i64()
                .or_else(|| v.as_str().and_then(|s| s.trim().parse().ok()))
        });
        let base = 1000 + idx as i64 * 10;
        let Some(kind) = sensor.map(|s| s - base) else {
            return (400, error(7, "Invalid parameters"));
        };
        if kind == 3 {
            return (400, error(228, "Not supported by the sensor"));
        }
        if !(1..=2).contains(&kind) {
            return (400, error(201, "Not found in the database"));
        }
        let Some(ks) = ks(Some(SENSOR_MAX_SPAN)) else {
            return (400, error(211, "Requested time span is too big"));
        };
        let list: Vec<Value> = ks
            .into_iter()
            .map(|k| {
                let t = self.timestamp(self.state_time(k), iso);
                if kind == 1 {
                    json!({"value": self.fuel(k), "get_time": t})
                } else {
                    json!({"value": self.engine(k), "get_time": t})
                }
            })
            .collect();
        (200, json!({"success": true, "list": list}))
    }
}

/// The sensors of tracker `idx`: the metering and virtual ones its readings carry,
/// and a discrete one (whose history call answers 228).
fn sensors(idx: usize) -> Vec<Value> {
    let base = 1000 + idx as u64 * 10;
    vec![
        json!({"type": "metering", "id": base + 1, "sensor_type": "fuel", "name": "Fuel level",
               "input_name": "fuel_level", "divider": 1, "accuracy": 0, "units": "l",
               "units_type": "litre"}),
        json!({"type": "virtual", "id": base + 2, "sensor_type": "state", "name": "Engine",
               "input_name": "engine_state", "units": "", "units_type": "custom"}),
        json!({"type": "discrete", "id": base + 3, "sensor_type": "door", "name": "Door",
               "input_name": "door_open"}),
    ]
}
