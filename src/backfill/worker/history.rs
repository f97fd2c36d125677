//! How the backfill reads one tracker's history over a gap: the REST windows
//! (split to the server's span limit, halved on error 211) and the track points and
//! sensor values they return, turned into the same typed records the live stream
//! gives, with `origin = backfill`.

use super::*;

impl Worker {
    /// `from`/`to` as the API wants them: ISO 8601 with `iso_datetime`, else
    /// `yyyy-MM-dd HH:mm:ss` in the user's timezone.
    fn time_param(&self, t: DateTime<Utc>) -> String {
        let local = t.with_timezone(&self.tz);
        if self.rest.iso() {
            local.format("%Y-%m-%dT%H:%M:%S%:z").to_string()
        } else {
            local.format("%Y-%m-%d %H:%M:%S").to_string()
        }
    }

    /// Every `list` item of `path` over [from, to], split into spans of at most
    /// `max_span`, halved again on error 211. Returns the items and whether the
    /// server said the window reaches past the storage period.
    async fn read_window(
        &self,
        path: &str,
        base: &Map<String, Value>,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        max_span: Duration,
    ) -> Result<(Vec<Value>, bool), RestError> {
        let mut items = Vec::new();
        let mut limited = false;
        let max = TimeDelta::from_std(max_span).unwrap_or(TimeDelta::days(7));
        let mut spans: Vec<(DateTime<Utc>, DateTime<Utc>)> = Vec::new();
        let mut a = from;
        while a < to {
            let b = (a + max).min(to);
            spans.push((a, b));
            a = b;
        }
        let min = TimeDelta::from_std(MIN_SPAN).unwrap_or(TimeDelta::minutes(1));
        spans.reverse();
        while let Some((a, b)) = spans.pop() {
            let mut params = base.clone();
            params.insert("from".into(), json!(self.time_param(a)));
            params.insert("to".into(), json!(self.time_param(b)));
            match self.rest.call(path, params).await {
                Ok(answer) => {
                    limited |= answer.get("limit_exceeded").and_then(Value::as_bool) == Some(true);
                    if let Some(list) = answer.get("list").and_then(Value::as_array) {
                        items.extend(list.iter().cloned());
                    }
                }
                Err(RestError::Api { code: 211, .. }) if b - a > min => {
                    // Span too big for this server: halve it (overlaps at the
                    // seam dedupe on the unique keys; bounds are exclusive).
                    // Bounds are exclusive and times whole seconds: (a, mid + 1s)
                    // holds every point up to mid, (mid, b) every point after it.
                    let mid = (a + (b - a) / 2).trunc_subsecs(0);
                    spans.push((mid, b));
                    spans.push((a, mid + TimeDelta::seconds(1)));
                }
                Err(e) => return Err(e),
            }
        }
        Ok((items, limited))
    }

    pub(super) async fn tracker_points(
        &mut self,
        gap: &mut Gap,
        t: &Tracker,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<i64, Failure> {
        let mut base = Map::new();
        base.insert("tracker_id".into(), json!(t.id));
        base.insert("simplify".into(), json!(false));
        base.insert("filter".into(), json!(false));
        base.insert("include_gsm_lbs".into(), json!(true));
        let (points, limited) = match self
            .read_window("track/read", &base, from, to, self.cfg.max_span)
            .await
        {
            Ok(x) => x,
            Err(RestError::Api { code, description }) if code == 201 || code == 208 => {
                gap.error = Some(join_note(
                    gap.error.as_deref(),
                    &format!("tracker {} skipped: {code} {description}", t.id),
                ));
                return Ok(0);
            }
            Err(e) => return Err(Failure::Retry(format!("track/read tracker {}: {e}", t.id))),
        };
        if limited {
            gap.error = Some(join_note(
                gap.error.as_deref(),
                &format!(
                    "tracker {}: limit_exceeded (the window reaches past the tariff's storage period)",
                    t.id
                ),
            ));
        }
        // What is stored already for this tracker: its keys, and the GPS fix times
        // of live rows (a live state is keyed by last_update, a point by its fix).
        let upper = to + TimeDelta::hours(1);
        let stored = gaps::stored_times(&self.store, &self.source, t.source_id, from, upper)
            .await
            .map_err(|e| Failure::Retry(format!("reading stored states: {e}")))?;
        let mut seen: HashSet<DateTime<Utc>> = HashSet::new();
        for (time, fix) in stored {
            seen.insert(time);
            if let Some(fix) = fix.and_then(|f| crate::protocol::time::parse_timestamp(&f, self.tz))
            {
                seen.insert(fix);
            }
        }
        let now = Utc::now();
        let mut unreadable = 0;
        let mut records = Vec::new();
        for p in points {
            let Some(time) = p
                .get("get_time")
                .and_then(|v| parse_timestamp_value(v, self.tz))
            else {
                unreadable += 1;
                continue;
            };
            if !seen.insert(time) {
                continue;
            }
            let num = |k: &str| p.get(k).and_then(Value::as_f64);
            records.push(Record::TrackerState(TrackerState {
                source: self.source.clone(),
                source_id: t.source_id,
                state_time: time,
                received_at: now,
                lat: num("lat"),
                lng: num("lng"),
                speed: num("speed"),
                heading: num("heading"),
                connection_status: None,
                movement_status: None,
                payload: p.to_string(),
                origin: Origin::Backfill,
                event_id: None,
                connection_id: None,
            }));
        }
        if unreadable > 0 {
            gap.error = Some(join_note(
                gap.error.as_deref(),
                &format!(
                    "tracker {}: {unreadable} points without a readable get_time",
                    t.id
                ),
            ));
        }
        let n = records.len();
        if let Some(last) = self.hand_over(records).await? {
            self.last_handed = Some(last);
        }
        emit(BackfillPoints {
            source: &self.source,
            table: "tracker_states",
            n: n as u64,
        });
        Ok(n as i64)
    }

    pub(super) async fn tracker_readings(
        &mut self,
        gap: &mut Gap,
        t: &Tracker,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Result<i64, Failure> {
        let mut params = Map::new();
        params.insert("tracker_id".into(), json!(t.id));
        let sensors = match self.rest.call("tracker/sensor/list", params).await {
            Ok(a) => a
                .get("list")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default(),
            Err(RestError::Api { code, description }) if code == 201 || code == 208 => {
                gap.error = Some(join_note(
                    gap.error.as_deref(),
                    &format!("tracker {} sensors skipped: {code} {description}", t.id),
                ));
                return Ok(0);
            }
            Err(e) => {
                return Err(Failure::Retry(format!(
                    "tracker/sensor/list tracker {}: {e}",
                    t.id
                )));
            }
        };
        let now = Utc::now();
        let mut records = Vec::new();
        for s in sensors {
            let Some((sensor_id, kind, name, units)) = sensor(&s) else {
                continue;
            };
            let mut base = Map::new();
            base.insert("tracker_id".into(), json!(t.id));
            base.insert("sensor_id".into(), json!(sensor_id));
            base.insert("raw_data".into(), json!(false));
            let span = self.cfg.max_span.min(SENSOR_MAX_SPAN);
            let (values, _) = match self
                .read_window("tracker/sensor/data/read", &base, from, to, span)
                .await
            {
                Ok(x) => x,
                // 228: a discrete sensor after all; 201/208: gone or blocked.
                Err(RestError::Api {
                    code: 228 | 201 | 208,
                    ..
                }) => continue,
                Err(e) => {
                    return Err(Failure::Retry(format!(
                        "tracker/sensor/data/read tracker {} sensor {sensor_id}: {e}",
                        t.id
                    )));
                }
            };
            for v in values {
                let Some(time) = v
                    .get("get_time")
                    .and_then(|x| parse_timestamp_value(x, self.tz))
                else {
                    continue;
                };
                let value = v.get("value").cloned().unwrap_or(Value::Null);
                records.push(Record::TrackerReading(TrackerReading {
                    source: self.source.clone(),
                    tracker_id: t.id,
                    reading_kind: kind.to_string(),
                    name: name.clone(),
                    value: value.to_string(),
                    value_num: crate::protocol::navixy::decode::numeric(&value),
                    units: units.clone(),
                    update_time: time,
                    received_at: now,
                    payload: v.to_string(),
                    origin: Origin::Backfill,
                    event_id: None,
                    connection_id: None,
                }));
            }
        }
        let n = records.len();
        if let Some(last) = self.hand_over(records).await? {
            self.last_handed = Some(last);
        }
        emit(BackfillPoints {
            source: &self.source,
            table: "tracker_readings",
            n: n as u64,
        });
        Ok(n as i64)
    }
}

/// One `tracker/list` item; unknown fields are ignored.
pub(super) fn tracker(v: &Value) -> Option<Tracker> {
    let id = crate::protocol::navixy::decode::as_id(v.get("id"))?;
    let source = v.get("source")?;
    Some(Tracker {
        id,
        source_id: crate::protocol::navixy::decode::as_id(source.get("id"))?,
        blocked: source.get("blocked").and_then(Value::as_bool) == Some(true),
    })
}

/// A sensor whose history can be read: (id, reading_kind, name, units). Named as the
/// live `readings_batch` rows are: a metering input by its input `name` (REST
/// `input_name`, else the label), a virtual sensor by its label (REST `name`).
fn sensor(s: &Value) -> Option<(i64, &'static str, String, Option<String>)> {
    let id = crate::protocol::navixy::decode::as_id(s.get("id"))?;
    let text = |k: &str| {
        s.get(k)
            .and_then(Value::as_str)
            .filter(|t| !t.is_empty())
            .map(str::to_string)
    };
    let (kind, name) = match s.get("type").and_then(Value::as_str)? {
        "metering" => ("input", text("input_name").or_else(|| text("name"))),
        "virtual" => ("virtual_sensor", text("name")),
        _ => return None,
    };
    Some((
        id,
        kind,
        name.unwrap_or_else(|| id.to_string()),
        text("units"),
    ))
}
