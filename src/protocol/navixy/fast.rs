//! The quick path for the messages that carry nearly all of Navixy's volume:
//! `state`, `state_batch` and `readings_batch` events whose items have the
//! documented shape.
//!
//! Why it exists: parsing every message into a `serde_json::Value` tree (a
//! `BTreeMap` per object) and serialising each item back for its `payload` cost the
//! daemon more CPU per tracker state than the database insert did (BENCHMARKS.md).
//! Here the message is read once into borrowed, typed views; unknown members are
//! skipped without being built, and each item's `payload` is its original text.
//!
//! It never decides anything on its own: whatever it does not understand exactly
//! (another event or type, a member of an unexpected JSON type, a duplicate
//! top-level key, an item the general path would call a problem) makes [`decode`]
//! return `None`, and the caller takes the general path ([`super::decode`]), which
//! parses a `Value`, reports problems and keeps such messages whole. So this path
//! produces only what the general one would (stored JSON text aside: original text
//! instead of re-serialised, equal as JSON), which the tests check item by item.

use super::decode::{Items, numeric};
use crate::protocol::Ctx;
use crate::protocol::time::{from_unix_number, parse_timestamp};
use crate::record::{Record, TrackerReading, TrackerState};
use chrono::{DateTime, Utc};
use chrono_tz::Tz;
use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_json::value::RawValue;
use std::borrow::Cow;
use std::collections::HashSet;
use std::fmt;
use std::marker::PhantomData;

/// A decoded data event: its name, typed rows and, when asked for, its envelope.
#[derive(Debug)]
pub(super) struct Decoded {
    /// `state`, `state_batch` or `readings_batch`.
    pub name: &'static str,
    /// Rows and item count; never any problems (those take the general path).
    pub items: Items,
    /// The message without `data`, as JSON text (only when requested).
    pub envelope: Option<String>,
}

/// Decodes `text` if it is a data event of the documented shape; `None` sends the
/// caller down the general path.
pub(super) fn decode(ctx: &Ctx, tz: Tz, text: &str, want_envelope: bool) -> Option<Decoded> {
    let Members(members) = serde_json::from_str(text).ok()?;
    let get = |key: &str| members.iter().find(|(k, _)| k.0 == key).map(|(_, v)| *v);
    if first_duplicate(&members).is_some() || string_of(get("type")?)? != "event" {
        return None;
    }
    let name = match &*string_of(get("event")?)? {
        "state" => "state",
        "state_batch" => "state_batch",
        "readings_batch" => "readings_batch",
        _ => return None,
    };
    let data = get("data")?;
    let raws: Vec<&RawValue> = match data.get().as_bytes().first() {
        Some(b'[') => serde_json::from_str(data.get()).ok()?,
        Some(b'{') => vec![data],
        _ => return None,
    };
    let mut records = Vec::with_capacity(raws.len());
    for raw in &raws {
        item(ctx, tz, raw, &mut records)?;
    }
    Some(Decoded {
        name,
        items: Items {
            records,
            item_count: raws.len(),
            problems: Vec::new(),
        },
        envelope: want_envelope.then(|| envelope(&members)),
    })
}

/// The first top-level key that `text` (a JSON object) holds more than once. Such
/// a message means two things at once (a JSON reader keeps only the last value),
/// so neither path may take it apart: the caller keeps it whole.
pub(super) fn duplicate_key(text: &str) -> Option<String> {
    let Members(members) = serde_json::from_str(text).ok()?;
    first_duplicate(&members).map(str::to_string)
}

/// Hashes the keys: a linear search per key made a message with many keys cost
/// quadratic time and stalled the daemon.
fn first_duplicate<'m>(members: &'m [(Text, &RawValue)]) -> Option<&'m str> {
    let mut seen = HashSet::with_capacity(members.len());
    members
        .iter()
        .map(|(k, _)| &*k.0)
        .find(|k| !seen.insert(*k))
}

/// The message's top-level members in order, values left as raw text.
struct Members<'a>(Vec<(Text<'a>, &'a RawValue)>);

impl<'de: 'a, 'a> Deserialize<'de> for Members<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Members<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut out = Vec::with_capacity(4);
                while let Some(key) = map.next_key::<Text<'de>>()? {
                    out.push((key, map.next_value::<&'de RawValue>()?));
                }
                Ok(Members(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The string a raw member holds, or `None` when it holds anything else.
fn string_of<'a>(raw: &'a RawValue) -> Option<Cow<'a, str>> {
    serde_json::from_str::<Text<'a>>(raw.get())
        .ok()
        .map(|t| t.0)
}

/// `{…}` with every member but `data`, values verbatim.
fn envelope(members: &[(Text, &RawValue)]) -> String {
    let mut out = String::with_capacity(96);
    out.push('{');
    for (key, value) in members.iter().filter(|(k, _)| k.0 != "data") {
        if out.len() > 1 {
            out.push(',');
        }
        out.push_str(&crate::protocol::text_as_json(&key.0));
        out.push(':');
        out.push_str(value.get());
    }
    out.push('}');
    out
}

/// One item of `data` to rows, as [`super::decode`]'s `one_item` classifies it.
fn item(ctx: &Ctx, tz: Tz, raw: &RawValue, out: &mut Vec<Record>) -> Option<()> {
    let Obj(it): Obj<Item> = serde_json::from_str(raw.get()).ok()?;
    match it.kind.value().map(|t| &*t.0) {
        Some("source_state_event") => {
            let Field::Value(inner) = it.state else {
                return None;
            };
            let Obj(state): Obj<Item> = serde_json::from_str(inner.get()).ok()?;
            out.push(Record::TrackerState(state_row(ctx, tz, &state, inner)?));
        }
        Some("readings_event") => readings(ctx, tz, &it, out)?,
        _ if it.looks_like_readings() => readings(ctx, tz, &it, out)?,
        _ => out.push(Record::TrackerState(state_row(ctx, tz, &it, raw)?)),
    }
    Some(())
}

fn stamp(s: Option<&Stamp>, tz: Tz) -> Option<DateTime<Utc>> {
    s.and_then(|s| s.to_utc(tz))
}

fn owned(t: Option<&Text>) -> Option<String> {
    t.map(|t| t.0.to_string())
}

fn state_row(ctx: &Ctx, tz: Tz, it: &Item, raw: &RawValue) -> Option<TrackerState> {
    let Field::Value(Id(source_id)) = it.source_id else {
        return None;
    };
    let gps = it.gps.as_ref().map(|g| &g.0);
    let location = gps.and_then(|g| g.location.as_ref()).map(|l| &l.0);
    Some(TrackerState {
        source: ctx.source.clone(),
        source_id,
        state_time: stamp(it.last_update.as_ref(), tz)
            .or_else(|| stamp(gps.and_then(|g| g.updated.as_ref()), tz))
            .unwrap_or(ctx.now),
        received_at: ctx.now,
        lat: location.and_then(|l| l.lat),
        lng: location.and_then(|l| l.lng),
        speed: gps.and_then(|g| g.speed),
        heading: gps.and_then(|g| g.heading),
        connection_status: owned(it.connection_status.as_ref()),
        movement_status: owned(it.movement_status.as_ref()),
        payload: raw.get().to_string(),
        origin: crate::record::Origin::Live,
        event_id: None,
        connection_id: None,
    })
}

fn readings(ctx: &Ctx, tz: Tz, it: &Item, out: &mut Vec<Record>) -> Option<()> {
    let Field::Value(Id(tracker_id)) = it.tracker_id else {
        return None;
    };
    let item_time = stamp(it.timestamp.as_ref(), tz).unwrap_or(ctx.now);
    let lists = [
        (&it.inputs, "input"),
        (&it.states, "state"),
        (&it.virtual_sensors, "virtual_sensor"),
        (&it.counters, "counter"),
    ];
    for (list, kind) in lists {
        let Field::Value(entries) = list else {
            continue;
        };
        for raw in entries {
            let Obj(e): Obj<Entry> = serde_json::from_str(raw.get()).ok()?;
            let value: serde_json::Value = match e.value {
                Some(v) => serde_json::from_str(v.get()).ok()?,
                None => serde_json::Value::Null,
            };
            out.push(Record::TrackerReading(TrackerReading {
                source: ctx.source.clone(),
                tracker_id,
                reading_kind: kind.to_string(),
                name: e.name(kind)?,
                value: value.to_string(),
                value_num: numeric(&value),
                units: owned(e.units.as_ref()).filter(|u| !u.is_empty()),
                update_time: stamp(e.update_time.as_ref(), tz).unwrap_or(item_time),
                received_at: ctx.now,
                payload: raw.get().to_string(),
                origin: crate::record::Origin::Live,
                event_id: None,
                connection_id: None,
            }));
        }
    }
    Some(())
}

/// The members of an item (a state, a readings item or a `source_state_event`)
/// this path reads; any other member is skipped unparsed.
#[derive(Deserialize)]
struct Item<'a> {
    #[serde(rename = "type", default, borrow)]
    kind: Field<Text<'a>>,
    #[serde(default, borrow)]
    state: Field<&'a RawValue>,
    #[serde(default)]
    source_id: Field<Id>,
    #[serde(default)]
    tracker_id: Field<Id>,
    #[serde(default, borrow)]
    inputs: Field<Vec<&'a RawValue>>,
    #[serde(default, borrow)]
    states: Field<Vec<&'a RawValue>>,
    #[serde(default, borrow)]
    virtual_sensors: Field<Vec<&'a RawValue>>,
    #[serde(default, borrow)]
    counters: Field<Vec<&'a RawValue>>,
    #[serde(default, borrow)]
    timestamp: Option<Stamp<'a>>,
    #[serde(default, borrow)]
    last_update: Option<Stamp<'a>>,
    #[serde(default, borrow)]
    gps: Option<Obj<Gps<'a>>>,
    #[serde(default, borrow)]
    connection_status: Option<Text<'a>>,
    #[serde(default, borrow)]
    movement_status: Option<Text<'a>>,
}

impl Item<'_> {
    /// The general path's rule: no `source_id`, a `tracker_id` and a reading list
    /// (a `null` counts as present there, as it does here).
    fn looks_like_readings(&self) -> bool {
        self.source_id.is_missing()
            && !self.tracker_id.is_missing()
            && !(self.inputs.is_missing()
                && self.states.is_missing()
                && self.virtual_sensors.is_missing()
                && self.counters.is_missing())
    }
}

#[derive(Deserialize)]
struct Gps<'a> {
    #[serde(default, borrow)]
    updated: Option<Stamp<'a>>,
    #[serde(default)]
    location: Option<Obj<Location>>,
    #[serde(default)]
    speed: Option<f64>,
    #[serde(default)]
    heading: Option<f64>,
}

#[derive(Deserialize)]
struct Location {
    #[serde(default)]
    lat: Option<f64>,
    #[serde(default)]
    lng: Option<f64>,
}

/// One entry of a reading list.
#[derive(Deserialize)]
struct Entry<'a> {
    #[serde(default, borrow)]
    name: Option<Text<'a>>,
    #[serde(default, borrow)]
    label: Option<Text<'a>>,
    #[serde(default)]
    sensor_id: Option<SensorId>,
    #[serde(default, borrow)]
    field: Option<Text<'a>>,
    #[serde(rename = "type", default, borrow)]
    kind: Option<Text<'a>>,
    #[serde(default, borrow)]
    value: Option<&'a RawValue>,
    #[serde(default, borrow)]
    units: Option<Text<'a>>,
    #[serde(default, borrow)]
    update_time: Option<Stamp<'a>>,
}

impl Entry<'_> {
    /// The general path's `reading_name`, per reading kind.
    fn name(&self, kind: &str) -> Option<String> {
        let non_empty = |t: &Option<Text>| owned(t.as_ref()).filter(|s| !s.is_empty());
        let sensor_id = || self.sensor_id.as_ref().and_then(|s| s.0.clone());
        match kind {
            "input" => non_empty(&self.name)
                .or_else(|| non_empty(&self.label))
                .or_else(sensor_id),
            "state" => non_empty(&self.field),
            "virtual_sensor" => non_empty(&self.label).or_else(sensor_id),
            _ => non_empty(&self.kind),
        }
    }
}

/// A JSON object read into `T`. serde's derived structs also accept an array,
/// taking its elements as the fields in order; the general path calls that "not an
/// object" (or reads nothing from it), so this path must refuse it and step aside.
struct Obj<T>(T);

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Obj<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<T>(PhantomData<T>);
        impl<'de, T: Deserialize<'de>> Visitor<'de> for V<T> {
            type Value = T;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<T, A::Error> {
                T::deserialize(de::value::MapAccessDeserializer::new(map))
            }
        }
        d.deserialize_map(V(PhantomData)).map(Obj)
    }
}

/// A member that may be missing, `null`, or a value: the general path tells the
/// first two apart when it classifies an item, so this path must as well.
#[derive(Default)]
enum Field<T> {
    #[default]
    Missing,
    Null,
    Value(T),
}

impl<T> Field<T> {
    fn is_missing(&self) -> bool {
        matches!(self, Field::Missing)
    }

    fn value(&self) -> Option<&T> {
        match self {
            Field::Value(v) => Some(v),
            _ => None,
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Field<T> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Option::<T>::deserialize(d).map(|v| v.map_or(Field::Null, Field::Value))
    }
}

/// A string, borrowed from the message unless it contains escapes.
struct Text<'a>(Cow<'a, str>);

impl<'de: 'a, 'a> Deserialize<'de> for Text<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Cow<'de, str>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Cow::Borrowed(v))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v.to_string()))
            }
            fn visit_string<E: de::Error>(self, v: String) -> Result<Self::Value, E> {
                Ok(Cow::Owned(v))
            }
        }
        d.deserialize_str(V).map(Text)
    }
}

/// An id sent as an integer or a numeric string (the general path's `as_id`).
struct Id(i64);

impl<'de> Deserialize<'de> for Id {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = i64;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("an integer id")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<i64, E> {
                Ok(v)
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<i64, E> {
                i64::try_from(v).map_err(E::custom)
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<i64, E> {
                v.trim().parse().map_err(E::custom)
            }
        }
        d.deserialize_any(V).map(Id)
    }
}

/// A `sensor_id`: an integer or a string; an empty string names nothing.
struct SensorId(Option<String>);

impl<'de> Deserialize<'de> for SensorId {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Option<String>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a sensor id")
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Some(v.to_string()))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Some(v.to_string()))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok((!v.is_empty()).then(|| v.to_string()))
            }
        }
        d.deserialize_any(V).map(SensorId)
    }
}

/// A timestamp as sent: text, or a Unix time as a number.
enum Stamp<'a> {
    Text(Cow<'a, str>),
    Number(f64),
}

impl Stamp<'_> {
    fn to_utc(&self, tz: Tz) -> Option<DateTime<Utc>> {
        match self {
            Stamp::Text(t) => parse_timestamp(t, tz),
            Stamp::Number(x) => from_unix_number(*x),
        }
    }
}

impl<'de: 'a, 'a> Deserialize<'de> for Stamp<'a> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Stamp<'de>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a timestamp")
            }
            fn visit_borrowed_str<E: de::Error>(self, v: &'de str) -> Result<Self::Value, E> {
                Ok(Stamp::Text(Cow::Borrowed(v)))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
                Ok(Stamp::Text(Cow::Owned(v.to_string())))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Self::Value, E> {
                Ok(Stamp::Number(v as f64))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Self::Value, E> {
                Ok(Stamp::Number(v as f64))
            }
            fn visit_f64<E: de::Error>(self, v: f64) -> Result<Self::Value, E> {
                Ok(Stamp::Number(v))
            }
        }
        d.deserialize_any(V)
    }
}

#[cfg(test)]
mod fuzz;
#[cfg(test)]
mod tests;
