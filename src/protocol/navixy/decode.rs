//! Navixy event payloads to typed rows: source states (`tracker_states`), readings
//! (`tracker_readings`) and lifecycle notices (`tracker_lifecycle`).
//!
//! Items are classified by content, not by the event name (one documented sample
//! labels readings as `state_batch`): `{"type":"readings_event"}` or an item with a
//! `tracker_id` and reading lists is readings; `{"type":"source_state_event",
//! "state":{…}}` or anything else is a source state. An item that cannot become a
//! typed row is reported as a problem so the caller keeps the whole message raw; this
//! module never drops data silently and never decides what goes to `events`.

use crate::protocol::Ctx;
use crate::protocol::time::parse_timestamp_value;
use crate::record::{Record, TrackerLifecycle, TrackerReading, TrackerState};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde_json::{Map, Value};

/// The typed rows of one message's `data`, and why any item could not be typed.
#[derive(Debug, Default)]
pub struct Items {
    /// `TrackerState` and `TrackerReading` rows, in item order.
    pub records: Vec<Record>,
    /// Items in `data` (an object counts as one).
    pub item_count: usize,
    /// One entry per item that did not become typed rows; the message must then be
    /// kept whole. Static texts so callers can warn once per kind.
    pub problems: Vec<&'static str>,
}

/// Decodes the `data` of a `state`, `state_batch` or `readings_batch` event.
pub fn items(ctx: &Ctx, tz: Tz, data: Option<&Value>) -> Items {
    let mut out = Items::default();
    let list: Vec<&Value> = match data {
        Some(Value::Array(a)) => a.iter().collect(),
        Some(v @ Value::Object(_)) => vec![v],
        None | Some(Value::Null) => {
            out.problems.push("event without data");
            return out;
        }
        Some(_) => {
            out.problems
                .push("event data is neither an object nor an array");
            return out;
        }
    };
    out.item_count = list.len();
    for item in list {
        match one_item(ctx, tz, item) {
            Ok(records) => out.records.extend(records),
            Err(problem) => out.problems.push(problem),
        }
    }
    out
}

fn one_item(ctx: &Ctx, tz: Tz, item: &Value) -> Result<Vec<Record>, &'static str> {
    let obj = item.as_object().ok_or("event item is not an object")?;
    match obj.get("type").and_then(Value::as_str) {
        Some("source_state_event") => {
            let inner = obj.get("state").ok_or("source_state_event without state")?;
            Ok(vec![Record::TrackerState(state(ctx, tz, inner)?)])
        }
        Some("readings_event") => readings(ctx, tz, obj),
        _ if looks_like_readings(obj) => readings(ctx, tz, obj),
        _ => Ok(vec![Record::TrackerState(state(ctx, tz, item)?)]),
    }
}

const READING_LISTS: [&str; 4] = ["inputs", "states", "virtual_sensors", "counters"];

fn looks_like_readings(obj: &Map<String, Value>) -> bool {
    !obj.contains_key("source_id")
        && obj.contains_key("tracker_id")
        && READING_LISTS.iter().any(|k| obj.contains_key(*k))
}

/// An integer id sent as a number or a numeric string.
pub fn as_id(v: Option<&Value>) -> Option<i64> {
    match v? {
        Value::Number(n) => n.as_i64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

fn ts(v: Option<&Value>, tz: Tz) -> Option<DateTime<Utc>> {
    parse_timestamp_value(v?, tz)
}

fn text(v: Option<&Value>) -> Option<String> {
    v.and_then(Value::as_str).map(str::to_string)
}

/// One source state (full or compact format; missing fields stay `None`).
fn state(ctx: &Ctx, tz: Tz, s: &Value) -> Result<TrackerState, &'static str> {
    let o = s.as_object().ok_or("source state is not an object")?;
    let source_id = as_id(o.get("source_id")).ok_or("source state without source_id")?;
    let gps = o.get("gps");
    let location = gps.and_then(|g| g.get("location"));
    let num =
        |parent: Option<&Value>, key: &str| parent.and_then(|p| p.get(key)).and_then(Value::as_f64);
    Ok(TrackerState {
        source: ctx.source.clone(),
        source_id,
        state_time: ts(o.get("last_update"), tz)
            .or_else(|| ts(gps.and_then(|g| g.get("updated")), tz))
            .unwrap_or(ctx.now),
        received_at: ctx.now,
        lat: num(location, "lat"),
        lng: num(location, "lng"),
        speed: num(gps, "speed"),
        heading: num(gps, "heading"),
        connection_status: text(o.get("connection_status")),
        movement_status: text(o.get("movement_status")),
        payload: s.to_string(),
        origin: crate::record::Origin::Live,
        event_id: None,
        connection_id: None,
    })
}

/// The reading's name, per list: input `name` (else `label`, else `sensor_id`),
/// state `field`, virtual sensor `label` (else `sensor_id`), counter `type`.
fn reading_name(list: &str, e: &Map<String, Value>) -> Option<String> {
    let non_empty = |k: &str| text(e.get(k)).filter(|s| !s.is_empty());
    let sensor_id = || match e.get("sensor_id") {
        Some(Value::Number(n)) => Some(n.to_string()),
        Some(Value::String(s)) if !s.is_empty() => Some(s.clone()),
        _ => None,
    };
    match list {
        "inputs" => non_empty("name")
            .or_else(|| non_empty("label"))
            .or_else(sensor_id),
        "states" => non_empty("field"),
        "virtual_sensors" => non_empty("label").or_else(sensor_id),
        _ => non_empty("type"),
    }
}

/// The value as a number when it is one, or a string holding a plain decimal
/// number (virtual sensors send strings such as `"12.5"`). Booleans, `"NaN"`,
/// `"inf"` and anything else are `None`: the JSON text stays in `value`.
pub fn numeric(v: &Value) -> Option<f64> {
    match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => {
            let t = s.trim();
            let plain = !t.is_empty()
                && t.bytes()
                    .all(|b| b.is_ascii_digit() || matches!(b, b'-' | b'+' | b'.' | b'e' | b'E'))
                && t.bytes().any(|b| b.is_ascii_digit());
            if !plain {
                return None;
            }
            t.parse::<f64>().ok().filter(|x| x.is_finite())
        }
        _ => None,
    }
}

/// One `readings_event` item: one row per value in its four lists.
fn readings(ctx: &Ctx, tz: Tz, obj: &Map<String, Value>) -> Result<Vec<Record>, &'static str> {
    let tracker_id = as_id(obj.get("tracker_id")).ok_or("readings item without tracker_id")?;
    let item_time = ts(obj.get("timestamp"), tz).unwrap_or(ctx.now);
    let mut out = Vec::new();
    for list in READING_LISTS {
        let entries = match obj.get(list) {
            None | Some(Value::Null) => continue,
            Some(Value::Array(a)) => a,
            Some(_) => return Err("readings list is not an array"),
        };
        let kind = match list {
            "inputs" => "input",
            "states" => "state",
            "virtual_sensors" => "virtual_sensor",
            _ => "counter",
        };
        for entry in entries {
            let e = entry.as_object().ok_or("reading is not an object")?;
            let name = reading_name(list, e).ok_or("reading without a name")?;
            let value = e.get("value").cloned().unwrap_or(Value::Null);
            out.push(Record::TrackerReading(TrackerReading {
                source: ctx.source.clone(),
                tracker_id,
                reading_kind: kind.to_string(),
                name,
                value: value.to_string(),
                value_num: numeric(&value),
                units: text(e.get("units")).filter(|u| !u.is_empty()),
                update_time: ts(e.get("update_time"), tz).unwrap_or(item_time),
                received_at: ctx.now,
                payload: entry.to_string(),
                origin: crate::record::Origin::Live,
                event_id: None,
                connection_id: None,
            }));
        }
    }
    Ok(out)
}

/// A `lifecycle` event's row, or the problem that prevents one.
pub fn lifecycle(ctx: &Ctx, data: Option<&Value>) -> Result<TrackerLifecycle, &'static str> {
    let data = data.ok_or("lifecycle event without data")?;
    let source_id = as_id(data.get("source_id")).ok_or("lifecycle event without source_id")?;
    let event =
        text(data.get("lifecycle_event")).ok_or("lifecycle event without lifecycle_event")?;
    Ok(TrackerLifecycle {
        id: crate::ids::next_id(),
        source: ctx.source.clone(),
        source_id,
        lifecycle_event: event,
        received_at: ctx.now,
        event_id: None,
        connection_id: None,
    })
}
