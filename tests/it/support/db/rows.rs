//! Reading stored rows back as [`Record`]s on either backend.
//!
//! Rows are fetched with one SELECT per table and decoded column by column into
//! backend-neutral [`Cell`]s (PostgreSQL `jsonb` comes back as JSON text, SQLite time
//! text is parsed with the store's own parser), then rebuilt into records, so a test
//! can compare what it sent with what is stored using `==` after [`normalize`].

use chrono::{DateTime, Utc};
use sqlx::{AssertSqlSafe, Column, Row, TypeInfo, ValueRef};
use std::sync::Arc;
use wsvault::record::*;
use wsvault::store::{Store, parse_ts};

/// One decoded column value.
#[derive(Debug, Clone, PartialEq)]
pub enum Cell {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Time(DateTime<Utc>),
}

impl Cell {
    pub fn i64(&self) -> i64 {
        self.opt_i64().expect("non-null integer")
    }
    pub fn opt_i64(&self) -> Option<i64> {
        match self {
            Cell::Null => None,
            Cell::Int(v) => Some(*v),
            other => panic!("expected integer, got {other:?}"),
        }
    }
    pub fn opt_f64(&self) -> Option<f64> {
        match self {
            Cell::Null => None,
            Cell::Real(v) => Some(*v),
            Cell::Int(v) => Some(*v as f64),
            other => panic!("expected real, got {other:?}"),
        }
    }
    pub fn text(&self) -> String {
        self.opt_text().expect("non-null text")
    }
    pub fn opt_text(&self) -> Option<String> {
        match self {
            Cell::Null => None,
            Cell::Text(v) => Some(v.clone()),
            other => panic!("expected text, got {other:?}"),
        }
    }
    pub fn ts(&self) -> DateTime<Utc> {
        self.opt_ts().expect("non-null time")
    }
    pub fn opt_ts(&self) -> Option<DateTime<Utc>> {
        match self {
            Cell::Null => None,
            Cell::Time(t) => Some(*t),
            Cell::Text(s) => Some(parse_ts(s).expect("stored time parses")),
            other => panic!("expected time, got {other:?}"),
        }
    }
    pub fn source(&self) -> SourceName {
        Arc::from(self.text())
    }
}

/// Runs `sql` and decodes every row into cells.
pub async fn fetch_cells(store: &Store, sql: &str) -> Vec<Vec<Cell>> {
    if let Some(pool) = store.sqlite_pool() {
        let rows = sqlx::query(AssertSqlSafe(sql.to_string()))
            .fetch_all(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| {
                        let raw = row.try_get_raw(i).expect("column");
                        if raw.is_null() {
                            return Cell::Null;
                        }
                        match raw.type_info().name() {
                            "INTEGER" => Cell::Int(row.get(i)),
                            "REAL" => Cell::Real(row.get(i)),
                            _ => Cell::Text(row.get(i)),
                        }
                    })
                    .collect()
            })
            .collect()
    } else {
        let pool = store.postgres_pool().expect("one of the pools");
        let rows = sqlx::query(AssertSqlSafe(sql.to_string()))
            .fetch_all(pool)
            .await
            .unwrap_or_else(|e| panic!("{sql}: {e}"));
        rows.iter()
            .map(|row| {
                (0..row.len())
                    .map(|i| {
                        if row.try_get_raw(i).expect("column").is_null() {
                            return Cell::Null;
                        }
                        match row.column(i).type_info().name() {
                            "INT8" => Cell::Int(row.get(i)),
                            "INT4" => Cell::Int(row.get::<i32, _>(i).into()),
                            "FLOAT8" => Cell::Real(row.get(i)),
                            "TIMESTAMPTZ" => Cell::Time(row.get(i)),
                            "JSONB" | "JSON" => {
                                Cell::Text(row.get::<serde_json::Value, _>(i).to_string())
                            }
                            _ => Cell::Text(row.get(i)),
                        }
                    })
                    .collect()
            })
            .collect()
    }
}

/// Row count of `table` (or any FROM clause).
pub async fn count(store: &Store, table: &str) -> i64 {
    fetch_cells(store, &format!("SELECT count(*) FROM {table}")).await[0][0].i64()
}

/// A single integer cell (0 when NULL, e.g. `max` of no rows).
pub async fn scalar(store: &Store, sql: &str) -> i64 {
    match &fetch_cells(store, sql).await[0][0] {
        Cell::Null => 0,
        c => c.i64(),
    }
}

/// Every row of `table`, as records, in insertion (`id`) order.
pub async fn read_table(store: &Store, table: &str) -> Vec<Record> {
    let cols = match table {
        "connections" => "id, source, url, opened_at, closed_at, close_code, close_reason",
        "session_events" => {
            "id, source, connection_id, occurred_at, event, initiator, code, reason, detail"
        }
        "events" => "id, source, connection_id, received_at, kind, payload, item_count",
        "tracker_states" => {
            "source, source_id, state_time, received_at, lat, lng, speed, heading, \
             connection_status, movement_status, payload, event_id, connection_id"
        }
        "tracker_readings" => {
            "source, tracker_id, reading_kind, name, value, value_num, units, update_time, \
             received_at, payload, event_id, connection_id"
        }
        "tracker_lifecycle" => {
            "id, source, source_id, lifecycle_event, received_at, event_id, connection_id"
        }
        "security_sessions" => {
            "source, session_id, owner_login, user_login, safety_type_id, key_current, \
             started_at, expires_at, ip, ip_client, first_seen_at, last_seen_at, ended_at, payload"
        }
        "security_session_changes" => {
            "source, session_id, change, observed_at, event_id, connection_id"
        }
        "notifications" => "id, source, connection_id, seq, received_at, method, params",
        "traffic" => "id, source, connection_id, at, direction, payload",
        "rejected" => "id, source, kind, received_at, error, payload",
        other => panic!("unknown table {other}"),
    };
    let rows = fetch_cells(store, &format!("SELECT {cols} FROM {table} ORDER BY id")).await;
    rows.into_iter().map(|c| to_record(table, &c)).collect()
}

fn to_record(table: &str, c: &[Cell]) -> Record {
    match table {
        "connections" => Record::Connection(Connection {
            id: c[0].i64(),
            source: c[1].source(),
            url: c[2].text(),
            opened_at: c[3].ts(),
            closed_at: c[4].opt_ts(),
            close_code: c[5].opt_i64(),
            close_reason: c[6].opt_text(),
        }),
        "session_events" => Record::SessionEvent(SessionEvent {
            id: c[0].i64(),
            source: c[1].source(),
            connection_id: c[2].opt_i64(),
            occurred_at: c[3].ts(),
            event: c[4].text(),
            initiator: c[5].opt_text(),
            code: c[6].opt_i64(),
            reason: c[7].opt_text(),
            detail: c[8].opt_text(),
        }),
        "events" => Record::Event(Event {
            id: c[0].i64(),
            source: c[1].source(),
            connection_id: c[2].opt_i64(),
            received_at: c[3].ts(),
            kind: c[4].text(),
            payload: c[5].text(),
            item_count: c[6].opt_i64(),
        }),
        "tracker_states" => Record::TrackerState(TrackerState {
            source: c[0].source(),
            source_id: c[1].i64(),
            state_time: c[2].ts(),
            received_at: c[3].ts(),
            lat: c[4].opt_f64(),
            lng: c[5].opt_f64(),
            speed: c[6].opt_f64(),
            heading: c[7].opt_f64(),
            connection_status: c[8].opt_text(),
            movement_status: c[9].opt_text(),
            payload: c[10].text(),
            origin: wsvault::record::Origin::Live,
            event_id: c[11].opt_i64(),
            connection_id: c[12].opt_i64(),
        }),
        "tracker_readings" => Record::TrackerReading(TrackerReading {
            source: c[0].source(),
            tracker_id: c[1].i64(),
            reading_kind: c[2].text(),
            name: c[3].text(),
            value: c[4].text(),
            value_num: c[5].opt_f64(),
            units: c[6].opt_text(),
            update_time: c[7].ts(),
            received_at: c[8].ts(),
            payload: c[9].text(),
            origin: wsvault::record::Origin::Live,
            event_id: c[10].opt_i64(),
            connection_id: c[11].opt_i64(),
        }),
        "tracker_lifecycle" => Record::TrackerLifecycle(TrackerLifecycle {
            id: c[0].i64(),
            source: c[1].source(),
            source_id: c[2].i64(),
            lifecycle_event: c[3].text(),
            received_at: c[4].ts(),
            event_id: c[5].opt_i64(),
            connection_id: c[6].opt_i64(),
        }),
        "security_sessions" => Record::SecuritySession(SecuritySession {
            source: c[0].source(),
            session_id: c[1].i64(),
            owner_login: c[2].opt_text(),
            user_login: c[3].opt_text(),
            safety_type_id: c[4].opt_i64(),
            key_current: c[5].opt_text(),
            started_at: c[6].opt_ts(),
            expires_at: c[7].opt_ts(),
            ip: c[8].opt_text(),
            ip_client: c[9].opt_text(),
            first_seen_at: c[10].ts(),
            last_seen_at: c[11].ts(),
            ended_at: c[12].opt_ts(),
            payload: c[13].text(),
        }),
        "security_session_changes" => Record::SecuritySessionChange(SecuritySessionChange {
            source: c[0].source(),
            session_id: c[1].i64(),
            change: c[2].text(),
            observed_at: c[3].ts(),
            event_id: c[4].opt_i64(),
            connection_id: c[5].opt_i64(),
        }),
        "notifications" => Record::Notification(Notification {
            id: c[0].i64(),
            source: c[1].source(),
            connection_id: c[2].opt_i64(),
            seq: c[3].i64(),
            received_at: c[4].ts(),
            method: c[5].text(),
            params: c[6].text(),
        }),
        "traffic" => Record::Traffic(Traffic {
            id: c[0].i64(),
            source: c[1].source(),
            connection_id: c[2].opt_i64(),
            at: c[3].ts(),
            direction: c[4].text(),
            payload: c[5].text(),
        }),
        _ => Record::Rejected(Rejected {
            id: c[0].i64(),
            source: c[1].source(),
            kind: c[2].text(),
            received_at: c[3].ts(),
            error: c[4].text(),
            payload: c[5].text(),
        }),
    }
}

fn norm(json: &mut String) {
    if let Ok(v) = serde_json::from_str::<serde_json::Value>(json) {
        *json = v.to_string();
    }
}

/// `r` with every JSON column re-serialized canonically (sorted keys, no spaces), so
/// records compare equal whatever the backend did to the JSON's formatting.
pub fn normalize(mut r: Record) -> Record {
    match &mut r {
        Record::SessionEvent(x) => {
            if let Some(d) = x.detail.as_mut() {
                norm(d)
            }
        }
        Record::Event(x) => norm(&mut x.payload),
        Record::TrackerState(x) => norm(&mut x.payload),
        Record::TrackerReading(x) => {
            norm(&mut x.value);
            norm(&mut x.payload)
        }
        Record::SecuritySession(x) => norm(&mut x.payload),
        Record::Notification(x) => norm(&mut x.params),
        _ => {}
    }
    r
}
