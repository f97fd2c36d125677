//! JSON text of the simulated trackers' states and readings, and of the event
//! frames that carry them to one connection.
//!
//! The simulator is the load generator of `wsvault bench`: every microsecond it
//! spends per state is taken from the daemon being measured on the same machine.
//! So states are plain structs serialized straight into the frame's buffer (no
//! `serde_json::Value` trees, nothing serialized twice), and each timestamp string
//! is formatted once per update number, not several times per state.

use std::collections::BTreeMap;
use std::io;

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::subscribe::Request;
use super::{Shared, TrackerStatus, WrapItems};

/// Update numbers whose times stay cached per connection. Trackers update
/// round-robin, so a chunk spans few update numbers at once (one or two when the
/// fleet outnumbers the chunk).
const UPDATE_SLOTS: usize = 4;

/// Timestamp strings of one connection, in the format its subscribe asked for,
/// formatted with chrono once and reused by every tracker that needs them.
#[derive(Debug)]
pub(super) struct Times {
    iso: bool,
    /// The epoch (`inputs_update`, `outputs_update`), once formatted.
    epoch: Option<String>,
    /// Update number → its time, direct-mapped by `k % UPDATE_SLOTS`.
    updates: [Option<(u64, String)>; UPDATE_SLOTS],
    /// `user_time`: the Unix second it was formatted for, and the text.
    now: Option<(i64, String)>,
}

/// The two timestamps a state or readings item carries.
#[derive(Debug, Clone, Copy)]
struct StateTimes<'a> {
    /// Time of the update itself.
    t: &'a str,
    /// Time of the initial state (inputs and outputs never change after it).
    t0: &'a str,
}

impl Times {
    /// An empty cache for naive (`iso` false) or ISO 8601 timestamps.
    pub(super) fn new(iso: bool) -> Times {
        Times {
            iso,
            epoch: None,
            updates: Default::default(),
            now: None,
        }
    }

    /// Switches the format (a later subscribe may ask for the other one).
    pub(super) fn set_iso(&mut self, iso: bool) {
        if iso != self.iso {
            *self = Times::new(iso);
        }
    }

    /// The timestamps of update `k` (the same for every tracker).
    fn update(&mut self, shared: &Shared, k: u64) -> StateTimes<'_> {
        let iso = self.iso;
        let t0 = self
            .epoch
            .get_or_insert_with(|| shared.timestamp(shared.epoch, iso));
        let slot = &mut self.updates[(k % UPDATE_SLOTS as u64) as usize];
        if slot.as_ref().is_some_and(|(cached, _)| *cached != k) {
            *slot = None;
        }
        let (_, t) = slot.get_or_insert_with(|| (k, shared.timestamp(shared.state_time(k), iso)));
        StateTimes { t, t0 }
    }

    /// Server time now, for `user_time` (formatted at most once per second).
    pub(super) fn user_time(&mut self, shared: &Shared) -> &str {
        let now = Utc::now();
        self.user_time_at(shared, now)
    }

    fn user_time_at(&mut self, shared: &Shared, now: DateTime<Utc>) -> &str {
        let second = now.timestamp();
        if self
            .now
            .as_ref()
            .is_some_and(|(cached, _)| *cached != second)
        {
            self.now = None;
        }
        let (_, text) = self
            .now
            .get_or_insert_with(|| (second, shared.timestamp(now, self.iso)));
        text
    }
}

/// One tracker state; `full` is absent in the compact format.
#[derive(Debug, Serialize)]
struct State<'a> {
    source_id: u64,
    gps: Gps<'a>,
    connection_status: &'static str,
    movement_status: &'static str,
    movement_status_update: &'a str,
    ignition: bool,
    ignition_update: &'a str,
    last_update: &'a str,
    #[serde(flatten)]
    full: Option<FullState<'a>>,
}

#[derive(Debug, Serialize)]
struct Gps<'a> {
    updated: &'a str,
    signal_level: u64,
    location: Location,
    heading: u64,
    speed: u64,
    alt: u64,
}

#[derive(Debug, Serialize)]
struct Location {
    lat: f64,
    lng: f64,
}

/// The fields only the full (not compact) format has.
#[derive(Debug, Serialize)]
struct FullState<'a> {
    gsm: Gsm<'a>,
    battery_level: u64,
    battery_update: &'a str,
    inputs: [bool; 2],
    inputs_update: &'a str,
    outputs: [bool; 1],
    outputs_update: &'a str,
    additional: Additional<'a>,
    actual_track_update: &'a str,
}

#[derive(Debug, Serialize)]
struct Gsm<'a> {
    updated: &'a str,
    signal_level: u64,
    network_name: &'static str,
    roaming: bool,
}

#[derive(Debug, Serialize)]
struct Additional<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    seq: Option<Seq<'a>>,
}

#[derive(Debug, Serialize)]
struct Seq<'a> {
    value: u64,
    updated: &'a str,
}

/// A `state_batch` item in its `{"type":"source_state_event","state":…}` wrapping.
#[derive(Debug, Serialize)]
struct Wrapped<'s, 'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    state: &'s State<'a>,
}

impl<'s, 'a> Wrapped<'s, 'a> {
    /// Wraps `state`.
    fn new(state: &'s State<'a>) -> Self {
        Wrapped {
            kind: "source_state_event",
            state,
        }
    }
}

/// One `readings_event` item: all four values changed at once.
#[derive(Debug, Serialize)]
struct Readings<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    tracker_id: u64,
    timestamp: &'a str,
    inputs: [SensorInput<'a>; 1],
    states: [FieldState<'a>; 1],
    virtual_sensors: [VirtualSensor<'a>; 1],
    counters: [Counter<'a>; 1],
}

#[derive(Debug, Serialize)]
struct SensorInput<'a> {
    sensor_id: u64,
    label: &'static str,
    name: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    units: &'static str,
    units_type: &'static str,
    value: f64,
    update_time: &'a str,
}

#[derive(Debug, Serialize)]
struct FieldState<'a> {
    field: &'static str,
    value: bool,
    update_time: &'a str,
}

#[derive(Debug, Serialize)]
struct VirtualSensor<'a> {
    sensor_id: u64,
    label: &'static str,
    #[serde(rename = "type")]
    kind: &'static str,
    value: &'static str,
    update_time: &'a str,
}

#[derive(Debug, Serialize)]
struct Counter<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    value: f64,
    update_time: &'a str,
}

impl Shared {
    /// The `k`-th state of tracker `idx`, in full or compact format; `times` are
    /// those of update `k`.
    fn state<'a>(&self, idx: usize, k: u64, compact: bool, times: StateTimes<'a>) -> State<'a> {
        let t = times.t;
        let i = idx as u64;
        let phase = (k + i) % 4;
        let moving = phase < 2;
        let movement = ["moving", "moving", "stopped", "parked"][phase as usize];
        let step = (k % 1000) as f64;
        State {
            source_id: self.source_id(idx),
            gps: Gps {
                updated: t,
                signal_level: 70 + (k + i) % 30,
                location: Location {
                    lat: 48.2082 + 0.01 * i as f64 + 0.0001 * step,
                    lng: 16.3738 + 0.01 * i as f64 + 0.00013 * step,
                },
                heading: (k * 7 + i * 13) % 360,
                speed: if moving { 20 + (k * 3 + i) % 60 } else { 0 },
                alt: 150 + (k + i) % 40,
            },
            connection_status: if movement == "parked" {
                "idle"
            } else {
                "active"
            },
            movement_status: movement,
            movement_status_update: t,
            ignition: moving,
            ignition_update: t,
            last_update: t,
            full: (!compact).then(|| self.full_state(k, times)),
        }
    }

    fn full_state<'a>(&self, k: u64, times: StateTimes<'a>) -> FullState<'a> {
        let t = times.t;
        FullState {
            gsm: Gsm {
                updated: t,
                signal_level: 60 + k % 40,
                network_name: "SIM-NET",
                roaming: false,
            },
            battery_level: 100 - k % 50,
            battery_update: t,
            inputs: [k.is_multiple_of(2), false],
            inputs_update: times.t0,
            outputs: [false],
            outputs_update: times.t0,
            additional: Additional {
                seq: self.cfg.seq.then_some(Seq {
                    value: k,
                    updated: t,
                }),
            },
            actual_track_update: t,
        }
    }

    /// The `track/read` point of update `k` of tracker `idx`: the same GPS fix as
    /// the `k`-th state (its `gps.updated` is the point's `get_time`).
    pub(super) fn point(&self, idx: usize, k: u64, iso: bool) -> serde_json::Value {
        let t = self.timestamp(self.state_time(k), iso);
        let times = StateTimes { t: &t, t0: &t };
        let s = self.state(idx, k, true, times);
        serde_json::json!({
            "lat": s.gps.location.lat, "lng": s.gps.location.lng, "alt": s.gps.alt,
            "satellites": 10, "mileage": k as f64 * 0.01, "get_time": t, "address": "",
            "heading": s.gps.heading, "speed": s.gps.speed, "precision": 10,
            "gsm_lbs": false, "parking": s.movement_status == "parked", "buffered": false,
        })
    }

    /// The fuel input's value at update `k` (live readings and history agree).
    pub(super) fn fuel(&self, k: u64) -> f64 {
        40.0 + (k % 20) as f64 * 0.5
    }

    /// The engine virtual sensor's value at update `k`.
    pub(super) fn engine(&self, k: u64) -> &'static str {
        if k.is_multiple_of(2) { "on" } else { "off" }
    }

    /// The `k`-th readings item of tracker `idx`; `times` are those of update `k`.
    fn readings<'a>(&self, idx: usize, k: u64, times: StateTimes<'a>) -> Readings<'a> {
        let t = times.t;
        let sensor = 1000 + idx as u64 * 10;
        Readings {
            kind: "readings_event",
            tracker_id: self.tracker_id(idx),
            timestamp: t,
            inputs: [SensorInput {
                sensor_id: sensor + 1,
                label: "Fuel level",
                name: "fuel_level",
                kind: "fuel",
                units: "l",
                units_type: "litre",
                value: self.fuel(k),
                update_time: t,
            }],
            states: [FieldState {
                field: "door_open",
                value: k % 2 == 1,
                update_time: t,
            }],
            virtual_sensors: [VirtualSensor {
                sensor_id: sensor + 2,
                label: "Engine",
                kind: "engine_state",
                value: self.engine(k),
                update_time: t,
            }],
            counters: [Counter {
                kind: "odometer",
                value: 12000.0 + k as f64 * 0.25,
                update_time: t,
            }],
        }
    }
}

/// An event frame written in place as its items come:
/// `{"type":"event","event":…,"data":…` first, `,"user_time":…}` only when it is
/// sent, since the server stamps it at that moment.
#[derive(Debug)]
pub(super) struct EventFrame {
    buf: Vec<u8>,
    /// Items in `data`, or `None` when `data` is a single object.
    items: Option<usize>,
}

impl EventFrame {
    /// A frame whose `data` is an array, filled by [`EventFrame::push`].
    fn batch(event: &str) -> io::Result<EventFrame> {
        let mut frame = EventFrame::start(event)?;
        frame.buf.push(b'[');
        frame.items = Some(0);
        Ok(frame)
    }

    /// A frame whose `data` is `item` itself.
    fn single(event: &str, item: &impl Serialize) -> io::Result<EventFrame> {
        let mut frame = EventFrame::start(event)?;
        serde_json::to_writer(&mut frame.buf, item)?;
        Ok(frame)
    }

    fn start(event: &str) -> io::Result<EventFrame> {
        let mut buf = Vec::with_capacity(4096);
        buf.extend_from_slice(br#"{"type":"event","event":"#);
        serde_json::to_writer(&mut buf, event)?;
        buf.extend_from_slice(br#","data":"#);
        Ok(EventFrame { buf, items: None })
    }

    /// Appends `item` to a batch's `data` array (a single frame's `data` is fixed).
    fn push(&mut self, item: &impl Serialize) -> io::Result<()> {
        let Some(items) = &mut self.items else {
            return Err(io::Error::other("push onto a single-item event frame"));
        };
        if *items > 0 {
            self.buf.push(b',');
        }
        *items += 1;
        serde_json::to_writer(&mut self.buf, item)?;
        Ok(())
    }

    /// Items in a batch's `data` so far (1 for a single-item frame).
    fn len(&self) -> usize {
        self.items.unwrap_or(1)
    }

    /// Whether a batch has no item yet (such a frame is not sent).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The finished frame text, stamped with `user_time`.
    pub(super) fn finish(mut self, user_time: &str) -> io::Result<String> {
        if self.items.is_some() {
            self.buf.push(b']');
        }
        self.buf.extend_from_slice(br#","user_time":"#);
        serde_json::to_writer(&mut self.buf, user_time)?;
        self.buf.push(b'}');
        String::from_utf8(self.buf).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
    }
}

/// The frames one chunk of updates becomes on one connection.
#[derive(Debug, Default)]
pub(super) struct ChunkFrames {
    /// The `state_batch` frame, if any tracker of the chunk is subscribed to it.
    pub state_batch: Option<EventFrame>,
    /// One `state` frame per tracker subscribed to `state` (and not `state_batch`).
    pub states: Vec<EventFrame>,
    /// The `readings_batch` frame, if any.
    pub readings_batch: Option<EventFrame>,
    /// The `(tracker, update)` pairs whose state is in these frames.
    pub state_keys: Vec<(usize, u64)>,
    /// The `(tracker, update)` pairs whose readings are in these frames.
    pub reading_keys: Vec<(usize, u64)>,
}

impl ChunkFrames {
    /// States in all frames.
    pub(super) fn states_sent(&self) -> u64 {
        (self.state_batch.as_ref().map_or(0, EventFrame::len) + self.states.len()) as u64
    }

    /// Readings items in all frames.
    pub(super) fn readings_sent(&self) -> u64 {
        self.readings_batch.as_ref().map_or(0, EventFrame::len) as u64
    }
}

/// The subscription of kind `kind` covering tracker `idx`, if the tracker sends data.
fn selected<'r>(
    shared: &Shared,
    subs: &'r BTreeMap<String, Request>,
    kind: &str,
    idx: usize,
) -> Option<&'r Request> {
    let id = shared.tracker_id(idx);
    subs.get(kind)
        .filter(|r| r.target.contains(id) && shared.status_of(id) == TrackerStatus::Normal)
}

/// Renders `chunk` for a connection subscribed to `subs`: a tracker in both
/// `state_batch` and `state` gets its state in the batch only; readings go to
/// `readings_batch` when the simulator generates them.
pub(super) fn chunk_frames(
    shared: &Shared,
    subs: &BTreeMap<String, Request>,
    times: &mut Times,
    chunk: &[(usize, u64)],
) -> io::Result<ChunkFrames> {
    let mut out = ChunkFrames::default();
    let mut batch = EventFrame::batch("state_batch")?;
    let mut readings = EventFrame::batch("readings_batch")?;
    for &(idx, k) in chunk {
        let in_batch = selected(shared, subs, "state_batch", idx).map(|r| r.compact);
        let single = selected(shared, subs, "state", idx).map(|r| r.compact);
        let wants_readings =
            shared.cfg.readings && selected(shared, subs, "readings_batch", idx).is_some();
        if in_batch.is_none() && single.is_none() && !wants_readings {
            continue;
        }
        let times = times.update(shared, k);
        if let Some(compact) = in_batch.or(single) {
            out.state_keys.push((idx, k));
            let state = shared.state(idx, k, compact, times);
            if in_batch.is_none() {
                out.states.push(EventFrame::single("state", &state)?);
            } else if wrapped(shared.cfg.wrap_items, batch.len()) {
                batch.push(&Wrapped::new(&state))?;
            } else {
                batch.push(&state)?;
            }
        }
        if wants_readings {
            out.reading_keys.push((idx, k));
            readings.push(&shared.readings(idx, k, times))?;
        }
    }
    out.state_batch = (!batch.is_empty()).then_some(batch);
    out.readings_batch = (!readings.is_empty()).then_some(readings);
    Ok(out)
}

/// Whether the `state_batch` item at `position` is wrapped.
fn wrapped(wrap: WrapItems, position: usize) -> bool {
    match wrap {
        WrapItems::Always => true,
        WrapItems::Never => false,
        WrapItems::Alternate => position.is_multiple_of(2),
    }
}

#[cfg(test)]
mod tests;
