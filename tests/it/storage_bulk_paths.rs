//! The bulk paths of the writer with batches big enough to take PostgreSQL's
//! optimistic binary `COPY`: every column round-trips (NULLs, escapes, times on both
//! sides of 2000 with sub-microsecond parts), and a batch that repeats stored rows or
//! repeats itself falls back to `ON CONFLICT DO NOTHING` without losing the new rows.
//! The same assertions run on SQLite, whose path is unchanged, so both backends are
//! held to one contract.

use crate::support::*;
use chrono::{DateTime, SubsecRound, TimeZone, Utc};
use std::sync::Arc;
use wsvault::record::{Event, Record, TrackerReading, TrackerState};
use wsvault::store::{Backend, CopyCounts};

/// A time with a sub-microsecond part; `n` even lands before 2000, odd after.
fn odd_time(n: i64) -> DateTime<Utc> {
    let base = if n % 2 == 0 {
        Utc.with_ymd_and_hms(1999, 12, 31, 23, 59, 0).unwrap()
    } else {
        Utc.with_ymd_and_hms(2031, 7, 1, 12, 0, 0).unwrap()
    };
    base + chrono::Duration::seconds(n) + chrono::Duration::nanoseconds(123_456_789)
}

/// What `backend` keeps of `t`: whole microseconds. PostgreSQL truncates toward
/// 2000-01-01 (sqlx binds microseconds since then, and `COPY` must bind the same);
/// SQLite's text form keeps the first six digits of the fraction (toward the past).
/// The two differ only for sub-microsecond times before 2000.
fn stored(backend: Backend, t: DateTime<Utc>) -> DateTime<Utc> {
    match backend {
        Backend::Postgres => {
            let epoch = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
            let micros = (t - epoch).num_microseconds().unwrap();
            epoch + chrono::Duration::microseconds(micros)
        }
        Backend::Sqlite => t.trunc_subsecs(6),
    }
}

fn state(n: i64) -> TrackerState {
    let odd = n % 3 == 0;
    TrackerState {
        source: Arc::from("fleet"),
        source_id: 1000 + n % 7,
        state_time: odd_time(n),
        received_at: at(n, 17),
        lat: (!odd).then_some(-33.868_820_1 + n as f64 * 1e-7),
        lng: (!odd).then_some(151.209_295),
        speed: Some(n as f64 / 3.0),
        heading: odd.then_some(359.999),
        connection_status: (!odd).then(|| "act\tive \\ \"q\" ünï".to_string()),
        movement_status: odd.then(|| "line\nbreak".to_string()),
        payload: format!(r#"{{"n":{n},"s":"tab\there \\ back ✓"}}"#),
        origin: wsvault::record::Origin::Live,
        event_id: None,
        connection_id: None,
    }
}

fn reading(n: i64) -> TrackerReading {
    TrackerReading {
        source: Arc::from("fleet"),
        tracker_id: 20 + n % 5,
        reading_kind: ["input", "state", "virtual_sensor", "counter"][(n % 4) as usize].into(),
        name: format!("sensor {n} \\ \t"),
        value: if n % 2 == 0 {
            format!("{n}.25")
        } else {
            "\"on\"".into()
        },
        value_num: (n % 2 == 0).then_some(n as f64 + 0.25),
        units: (n % 3 == 0).then(|| "l/100km".to_string()),
        update_time: odd_time(n),
        received_at: at(n, 3),
        payload: format!(r#"{{"label":"sensor {n}","v":[1,2,{{"x":null}}]}}"#),
        origin: wsvault::record::Origin::Live,
        event_id: None,
        connection_id: None,
    }
}

fn envelope(n: i64) -> Event {
    Event {
        id: wsvault::ids::next_id(),
        source: Arc::from("fleet"),
        connection_id: (n % 2 == 0).then_some(n),
        received_at: odd_time(n),
        kind: "state_batch".into(),
        payload: format!(r#"{{"event":"state_batch","n":{n},"u":"\u00e9 escaped"}}"#),
        item_count: (n % 2 == 1).then_some(n),
    }
}

fn as_stored(backend: Backend, r: Record) -> Record {
    let stored = |t| stored(backend, t);
    let r = normalize(r);
    match r {
        Record::TrackerState(mut s) => {
            s.state_time = stored(s.state_time);
            Record::TrackerState(s)
        }
        Record::TrackerReading(mut s) => {
            s.update_time = stored(s.update_time);
            Record::TrackerReading(s)
        }
        Record::Event(mut e) => {
            e.received_at = stored(e.received_at);
            Record::Event(e)
        }
        other => other,
    }
}

each_backend!(big_batches_round_trip_every_column, current_thread);
async fn big_batches_round_trip_every_column(backend: Backend) {
    for db in test_databases(backend).await {
        let store = db.store().await;
        let states: Vec<Record> = (0..40).map(|n| Record::TrackerState(state(n))).collect();
        let readings: Vec<Record> = (0..40)
            .map(|n| Record::TrackerReading(reading(n)))
            .collect();
        let events: Vec<Record> = (0..40).map(|n| Record::Event(envelope(n))).collect();
        let mut all = states.clone();
        all.extend(readings.clone());
        all.extend(events.clone());
        let (report, copies) = write_counting_copies(&store, &db.cfg, all).await;
        assert_eq!(
            (report.written, report.rejected, report.batches),
            (120, 0, 1),
            "{}",
            db.label
        );
        for (table, want) in [
            ("tracker_states", states),
            ("tracker_readings", readings),
            ("events", events),
        ] {
            let got: Vec<Record> = read_table(&store, table).await;
            let want: Vec<Record> = want
                .into_iter()
                .map(|r| as_stored(db.backend(), r))
                .collect();
            let got: Vec<Record> = got.into_iter().map(normalize).collect();
            assert_eq!(got, want, "{}: {table} round trip", db.label);
        }
        if db.backend() == Backend::Postgres {
            assert_eq!(
                copies,
                CopyCounts {
                    copied: 1,
                    refused: 0
                },
                "the batch went in by COPY, not by the fallback"
            );
        }
        store.close().await;
    }
}

each_backend!(
    batches_repeating_stored_or_own_rows_keep_only_the_new_ones,
    current_thread
);
async fn batches_repeating_stored_or_own_rows_keep_only_the_new_ones(backend: Backend) {
    for db in test_databases(backend).await {
        let store = db.store().await;
        let first: Vec<Record> = (0..30).map(|n| Record::TrackerState(state(n))).collect();
        write_all(&store, &db.cfg, first.clone()).await;
        assert_eq!(count(&store, "tracker_states").await, 30, "{}", db.label);

        // A re-sent snapshot (the 30 stored rows) followed by 30 new rows, one batch.
        let mut second = first.clone();
        second.extend((30..60).map(|n| Record::TrackerState(state(n))));
        second.extend((0..20).map(|n| Record::TrackerReading(reading(n))));
        let (report, copies) = write_counting_copies(&store, &db.cfg, second).await;
        assert_eq!(
            (report.rejected, report.lost, report.batches),
            (0, 0, 1),
            "{}",
            db.label
        );
        assert_eq!(count(&store, "tracker_states").await, 60, "{}", db.label);
        assert_eq!(count(&store, "tracker_readings").await, 20, "{}", db.label);
        if db.backend() == Backend::Postgres {
            assert_eq!(
                copies,
                CopyCounts {
                    copied: 0,
                    refused: 1
                },
                "the re-sent rows made COPY refuse the second batch"
            );
        }

        // A batch holding each new row twice, and the same rows once more, one at a
        // time: the record-sized path must see them as the same rows as the bulk one.
        let twice: Vec<Record> = (60..80)
            .flat_map(|n| {
                [
                    Record::TrackerState(state(n)),
                    Record::TrackerState(state(n)),
                ]
            })
            .collect();
        write_all(&store, &db.cfg, twice).await;
        assert_eq!(count(&store, "tracker_states").await, 80, "{}", db.label);
        for n in [60, 61, 79] {
            write_all(&store, &db.cfg, vec![Record::TrackerState(state(n))]).await;
        }
        assert_eq!(
            count(&store, "tracker_states").await,
            80,
            "{}: sub-microsecond times must match across paths",
            db.label
        );

        // After those refusals, a batch of only new rows is stored in full.
        let fresh: Vec<Record> = (80..120).map(|n| Record::TrackerState(state(n))).collect();
        let report = write_all(&store, &db.cfg, fresh).await;
        assert_eq!(report.written, 40, "{}", db.label);
        assert_eq!(count(&store, "tracker_states").await, 120, "{}", db.label);
        store.close().await;
    }
}
