//! Fills a fresh database with the [`timeline`](super::timeline) history **through
//! the writer**, in time order, the way the daemon writes: records go into a
//! [`RecordSink`] and the library's batching writer commits them; `gaps` rows, which
//! the daemon's backfill writes directly, are written through the same
//! `backfill::gaps` calls. The tables therefore have the layout (insert order, page
//! splits, PostgreSQL `COPY` batches) of a database the daemon grew.

use super::timeline::{
    BROKER, ENGINE, FLEETS, READINGS_PER_MESSAGE, SOURCES, STATES_PER_MESSAGE, Shape, Sparse, mix,
};
use crate::bench::BenchError;
use crate::config::StorageConfig;
use crate::record::{
    Connection, Event, Notification, Origin, Record, SecuritySession, SecuritySessionChange,
    SessionEvent, SourceName, TrackerReading, TrackerState,
};
use crate::store::{RecordSink, Store, Writer};
use chrono::{DateTime, Duration, Utc};
use std::sync::Arc;
use std::time::Instant;

/// What the fill wrote and how long the writer took.
#[derive(Debug, Default)]
pub struct Filled {
    pub records: u64,
    pub gaps: u64,
    pub secs: f64,
}

/// Per-source connection state while the history is replayed.
struct Conn {
    source: SourceName,
    id: i64,
    opened: DateTime<Utc>,
    seq: i64,
    drops: u64,
}

struct Replay<'a> {
    shape: &'a Shape,
    store: &'a Store,
    conns: Vec<Conn>,
    out: Vec<(DateTime<Utc>, Record)>,
    gaps: u64,
}

/// Writes the history of `shape` into `store`, printing progress to stderr.
pub async fn fill(
    store: &Store,
    cfg: &StorageConfig,
    shape: &Shape,
    label: &str,
) -> Result<Filled, BenchError> {
    let started = Instant::now();
    let (sink, writer) = Writer::spawn(store.clone(), cfg);
    let mut replay = Replay {
        shape,
        store,
        conns: SOURCES
            .iter()
            .map(|s| Conn {
                source: Arc::from(*s),
                id: 0,
                opened: shape.start,
                seq: 0,
                drops: 0,
            })
            .collect(),
        out: Vec::new(),
        gaps: 0,
    };
    for src in 0..SOURCES.len() {
        replay.open(src, shape.start - Duration::seconds(1), None);
    }
    let schedule = shape.schedule();
    let mut next = 0;
    let mut records = 0u64;
    let mut shown = 0;
    for k in 0..shape.ticks {
        let until = shape.tick_time(k + 1);
        while next < schedule.len() && schedule[next].0 < until {
            replay.sparse(schedule[next].0, schedule[next].1).await?;
            next += 1;
        }
        replay.round(k);
        records += replay.flush(&sink).await?;
        let pct = (k + 1) * 10 / shape.ticks;
        if pct > shown {
            shown = pct;
            eprintln!(
                "[{label}] fill: {}0 % ({records} records, {:.0} s)",
                pct,
                started.elapsed().as_secs_f64()
            );
        }
    }
    for (at, ev) in &schedule[next..] {
        replay.sparse(*at, *ev).await?;
    }
    records += replay.flush(&sink).await?;
    drop(sink);
    let report = writer.join().await;
    if report.lost + report.rejected > 0 {
        return Err(BenchError::Daemon(format!(
            "the writer lost {} and rejected {} of the fill's records",
            report.lost, report.rejected
        )));
    }
    Ok(Filled {
        records,
        gaps: replay.gaps,
        secs: started.elapsed().as_secs_f64(),
    })
}

fn navixy_time(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S").to_string()
}

impl Replay<'_> {
    /// Hands the collected records to the writer in time order.
    async fn flush(&mut self, sink: &RecordSink) -> Result<u64, BenchError> {
        self.out.sort_by_key(|(t, _)| *t);
        let n = self.out.len() as u64;
        for (_, r) in self.out.drain(..) {
            sink.send(r)
                .await
                .map_err(|e| BenchError::Daemon(format!("fill: {e}")))?;
        }
        Ok(n)
    }

    fn push(&mut self, r: Record) {
        self.out.push((r.received_at(), r));
    }

    /// Round `k`: every reporting tracker's state, and on even rounds a reading,
    /// grouped into messages as a Navixy `state_batch` / `readings_batch` carries them.
    fn round(&mut self, k: u64) {
        let shape = *self.shape;
        let base = shape.tick_time(k);
        for fleet in 0..FLEETS.len() {
            let ids: Vec<u64> = (0..shape.trackers)
                .filter(|i| shape.fleet(*i) == fleet && shape.reports(*i, k))
                .collect();
            for chunk in ids.chunks(STATES_PER_MESSAGE) {
                let at = base + shape.offset(chunk[0]) + Duration::seconds(1);
                let (event, conn) = self.message(fleet, at, "state_batch", chunk.len());
                for &i in chunk {
                    let mut s = self.state(fleet, i, k, base + shape.offset(i), at);
                    s.link_to(event, conn);
                    self.push(s);
                }
            }
            let reading = match k % 4 {
                0 => Some(("input", "Fuel level", "l")),
                2 => Some(("counter", "odometer", "km")),
                _ => None,
            };
            let Some(kind) = reading else { continue };
            for chunk in ids.chunks(READINGS_PER_MESSAGE) {
                let at = base + shape.offset(chunk[0]) + Duration::milliseconds(1500);
                let (event, conn) = self.message(fleet, at, "readings_batch", chunk.len());
                for &i in chunk {
                    let mut r = self.reading(fleet, i, k, kind, base + shape.offset(i), at);
                    r.link_to(event, conn);
                    self.push(r);
                }
            }
        }
    }

    /// The `events` row of one message (envelope only, as `raw_events = "envelope"`);
    /// returns its id and connection for the typed rows' link.
    fn message(
        &mut self,
        src: usize,
        at: DateTime<Utc>,
        kind: &str,
        items: usize,
    ) -> (Option<i64>, Option<i64>) {
        let c = &self.conns[src];
        let link = (Some(crate::ids::next_id()), Some(c.id));
        let ev = Record::Event(Event {
            id: link.0.unwrap_or_default(),
            source: c.source.clone(),
            connection_id: link.1,
            received_at: at,
            kind: kind.to_string(),
            payload: format!(r#"{{"type":"event","event":"{kind}"}}"#),
            item_count: Some(items as i64),
        });
        self.push(ev);
        link
    }

    fn state(&self, fleet: usize, i: u64, k: u64, t: DateTime<Utc>, at: DateTime<Utc>) -> Record {
        let h = mix(i, k);
        let lat = 40.0 + (i % 100) as f64 * 0.1 + ((k * 7 + i) % 1000) as f64 * 1e-4;
        let lng = 10.0 + (i / 100) as f64 * 0.1 + ((k * 3 + i) % 1000) as f64 * 1e-4;
        let speed = (h % 90) as f64;
        let heading = (h % 360) as f64;
        let moving = if speed > 5.0 { "moving" } else { "parked" };
        let ts = navixy_time(t);
        let payload = format!(
            r#"{{"source_id":{sid},"gps":{{"updated":"{ts}","signal_level":100,"location":{{"lat":{lat:.6},"lng":{lng:.6}}},"heading":{heading},"speed":{speed},"alt":{alt}}},"connection_status":"active","movement_status":"{moving}","last_update":"{ts}","battery_level":{bat},"inputs":[false,true,false]}}"#,
            sid = 90_000 + i,
            alt = h % 800,
            bat = 50 + h % 50,
        );
        Record::TrackerState(TrackerState {
            source: self.conns[fleet].source.clone(),
            source_id: 90_000 + i as i64,
            state_time: t,
            received_at: at,
            lat: Some(lat),
            lng: Some(lng),
            speed: Some(speed),
            heading: Some(heading),
            connection_status: Some("active".into()),
            movement_status: Some(moving.into()),
            payload,
            origin: Origin::Live,
            event_id: None,
            connection_id: None,
        })
    }

    fn reading(
        &self,
        fleet: usize,
        i: u64,
        k: u64,
        (kind, name, units): (&str, &str, &str),
        t: DateTime<Utc>,
        at: DateTime<Utc>,
    ) -> Record {
        let value = if kind == "input" {
            20.0 + (mix(i, k) % 600) as f64 / 10.0
        } else {
            (k * 13 + i) as f64 / 10.0
        };
        let tracker_id = 500 + i as i64;
        Record::TrackerReading(TrackerReading {
            source: self.conns[fleet].source.clone(),
            tracker_id,
            reading_kind: kind.into(),
            name: name.into(),
            value: format!("{value}"),
            value_num: Some(value),
            units: Some(units.into()),
            update_time: t,
            received_at: at,
            payload: format!(
                r#"{{"tracker_id":{tracker_id},"type":"{kind}","label":"{name}","value":{value},"units":"{units}","update_time":"{}"}}"#,
                navixy_time(t)
            ),
            origin: Origin::Live,
            event_id: None,
            connection_id: None,
        })
    }

    fn lifecycle(&mut self, src: usize, at: DateTime<Utc>, event: &str, down: bool) {
        let c = &self.conns[src];
        let ev = Record::SessionEvent(SessionEvent {
            id: crate::ids::next_id(),
            source: c.source.clone(),
            connection_id: Some(c.id),
            occurred_at: at,
            event: event.into(),
            initiator: down.then(|| "network".to_string()),
            code: down.then_some(1006),
            reason: down.then(|| "connection reset without a close frame".to_string()),
            detail: None,
        });
        self.push(ev);
    }

    /// A new connection of source `src` opened at `at`, subscribed right after; a
    /// resume of the suspension at `resumes` when given (its `resumed` row names it,
    /// as the session's does).
    fn open(&mut self, src: usize, at: DateTime<Utc>, resumes: Option<DateTime<Utc>>) {
        let c = &mut self.conns[src];
        c.id = crate::ids::next_id();
        c.opened = at;
        c.seq = 0;
        let conn = Record::Connection(Connection {
            id: c.id,
            source: c.source.clone(),
            url: format!("wss://{}.example/ws", c.source),
            opened_at: at,
            closed_at: None,
            close_code: None,
            close_reason: None,
        });
        self.push(conn);
        self.lifecycle(src, at, "opened", false);
        let sub = at + Duration::milliseconds(300);
        self.lifecycle(src, sub, "subscribed", false);
        if let Some(dropped) = resumes {
            self.lifecycle(src, sub, "resumed", false);
            if let Some((_, Record::SessionEvent(e))) = self.out.last_mut() {
                e.detail = Some(format!(
                    r#"{{"suspended_at":"{}","initiator":"network"}}"#,
                    crate::store::format_ts(&dropped)
                ));
            }
        }
    }

    async fn sparse(&mut self, at: DateTime<Utc>, ev: Sparse) -> Result<(), BenchError> {
        match ev {
            Sparse::SessionOpen(j) => self.session(j, false),
            Sparse::SessionEnd(j) => self.session(j, true),
            Sparse::Notification(j) => {
                let c = &mut self.conns[3];
                c.seq += 1;
                let n = Record::Notification(Notification {
                    id: crate::ids::next_id(),
                    source: Arc::from(ENGINE),
                    connection_id: Some(c.id),
                    seq: c.seq,
                    received_at: at,
                    method: "OnDeltaChanged".into(),
                    params: format!(r#"{{"handles":[{}]}}"#, j % 10),
                });
                self.push(n);
            }
            Sparse::Drop(src) => {
                self.lifecycle(src, at, "suspended", true);
                let c = &self.conns[src];
                let closed = Record::Connection(Connection {
                    id: c.id,
                    source: c.source.clone(),
                    url: format!("wss://{}.example/ws", c.source),
                    opened_at: c.opened,
                    closed_at: Some(at),
                    close_code: Some(1006),
                    close_reason: Some("connection reset without a close frame".into()),
                });
                self.push(closed);
            }
            Sparse::Resume { src, dropped } => {
                self.open(src, at, Some(dropped));
                let nth = self.conns[src].drops;
                self.conns[src].drops += 1;
                if src < FLEETS.len() {
                    self.gap(src, dropped, at, nth).await?;
                }
            }
        }
        Ok(())
    }

    /// The `gaps` row the backfill keeps for a fleet's blind period, taken through
    /// its states as the worker does: pending, running, then done (one in ten
    /// partial, one in thirty failed).
    async fn gap(
        &mut self,
        src: usize,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        nth: u64,
    ) -> Result<(), BenchError> {
        use crate::backfill::gaps;
        let sql = |e| BenchError::Sql {
            what: "writing a gaps row",
            source: e,
        };
        let source = SOURCES[src];
        let id = gaps::insert(self.store, source, from, to, "network")
            .await
            .map_err(sql)?;
        gaps::start(self.store, id).await.map_err(sql)?;
        let trackers = self.shape.trackers.div_ceil(2) as i64;
        let points = (to - from).num_seconds() * trackers / self.shape.tick().num_seconds().max(1);
        gaps::progress(self.store, id, trackers, trackers, points, None)
            .await
            .map_err(sql)?;
        let (status, error) = match nth % 30 {
            0 => ("failed", Some("HTTP 503 after 5 attempts")),
            n if n % 10 == 5 => ("partial", Some("limit_exceeded")),
            _ => ("done", None),
        };
        gaps::set_status(self.store, id, status, error)
            .await
            .map_err(sql)?;
        self.gaps += 1;
        Ok(())
    }

    /// Session `j` opening (`opened` change) or ending (`ended`), with the Tradernet
    /// `sessions` message that told of it.
    fn session(&mut self, j: u64, end: bool) {
        let s = self.shape.session(j);
        let at = if end {
            s.ended.unwrap_or(s.opened)
        } else {
            s.opened
        };
        self.message(2, at, "sessions", 1);
        let source: SourceName = Arc::from(BROKER);
        let seen = s.opened + Duration::seconds(1);
        self.push(Record::SecuritySession(SecuritySession {
            source: source.clone(),
            session_id: s.session_id,
            owner_login: Some("owner".into()),
            user_login: Some(s.user.clone()),
            safety_type_id: Some(1),
            key_current: Some("sms".into()),
            started_at: Some(s.opened),
            expires_at: Some(s.opened + Duration::hours(24)),
            ip: Some(s.ip.clone()),
            ip_client: Some(s.ip.clone()),
            first_seen_at: seen,
            last_seen_at: if end { at } else { seen },
            ended_at: end.then_some(at),
            payload: format!(
                r#"{{"id":{},"login":"{}","ip_client":"{}"}}"#,
                s.session_id, s.user, s.ip
            ),
        }));
        self.push(Record::SecuritySessionChange(SecuritySessionChange {
            source,
            session_id: s.session_id,
            change: if end { "ended" } else { "opened" }.into(),
            observed_at: if end { at } else { seen },
            event_id: None,
            connection_id: None,
        }));
    }
}
