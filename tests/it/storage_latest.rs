//! What migration 0007 and the writer keep beside the history, on both backends:
//! `tracker_latest` (one row per tracker, moved only forward, never pruned, naming
//! the stored state's id) after PostgreSQL's `COPY` and `ON CONFLICT` paths alike;
//! `events_hourly` counting each inserted event once, however often a batch is
//! written; the `event_id` link the cookbook follows to the raw message; and the
//! migration filling both tables from rows stored before it.

use crate::support::*;
use chrono::{DateTime, Duration as Age, DurationRound, TimeDelta, Utc};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;
use wsvault::config::RetentionConfig;
use wsvault::ids::next_id;
use wsvault::ops::retention::prune_sources;
use wsvault::record::{Event, Origin, Record};
use wsvault::store::{Backend, Param, Store};

/// A state of `source`/`id` at `t` (received a second later) with latitude `lat`.
pub(crate) fn state(source: &str, id: i64, t: DateTime<Utc>, lat: f64) -> Record {
    match tracker_state(source, id, 0) {
        Record::TrackerState(mut s) => {
            s.state_time = t;
            s.received_at = t + Age::seconds(1);
            s.lat = Some(lat);
            Record::TrackerState(s)
        }
        other => other,
    }
}

/// (state_id, state_time, lat) of `source`/`id` in `tracker_latest`, if listed.
pub(crate) async fn latest(
    store: &Store,
    source: &str,
    id: i64,
) -> Option<(i64, DateTime<Utc>, f64)> {
    let rows = fetch_cells(
        store,
        &format!(
            "SELECT state_id, state_time, lat FROM tracker_latest \
             WHERE source = '{source}' AND source_id = {id}"
        ),
    )
    .await;
    rows.first()
        .map(|r| (r[0].i64(), r[1].ts(), r[2].opt_f64().unwrap_or(f64::NAN)))
}

/// The id of the stored state `source`/`id`/`t`.
pub(crate) async fn stored_id(store: &Store, source: &str, id: i64, t: DateTime<Utc>) -> i64 {
    let rows: Vec<(i64,)> = store
        .fetch_all(
            "SELECT id FROM tracker_states WHERE source = $1 AND source_id = $2 \
             AND state_time = $3",
            &[Param::Text(source), Param::Int(id), Param::Time(t)],
        )
        .await
        .unwrap();
    rows.first().map(|r| r.0).expect("the state is stored")
}

pub(crate) fn micros(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::microseconds(1)).unwrap()
}

each_backend!(
    latest_moves_forward_only_and_outlives_retention,
    current_thread
);
async fn latest_moves_forward_only_and_outlives_retention(backend: Backend) {
    for db in test_databases(backend).await {
        let store = db.store().await;
        let l = db.label;
        let t0 = micros(Utc::now()) - Age::hours(3);
        let at = |s: i64| t0 + Age::seconds(s);

        // A small batch (PostgreSQL: `UNNEST … ON CONFLICT`): two states of
        // tracker 1 (the newer first) and one of tracker 2.
        let small = vec![
            state("s", 1, at(20), 1.20),
            state("s", 1, at(10), 1.10),
            state("s", 2, at(5), 2.05),
        ];
        write_all(&store, &db.cfg, small).await;
        let id_1_20 = stored_id(&store, "s", 1, at(20)).await;
        assert_eq!(
            latest(&store, "s", 1).await,
            Some((id_1_20, at(20), 1.20)),
            "[{l}]"
        );

        // An older state arriving later (a backfill) and a redelivery of the newest
        // with other values: neither moves it.
        let mut late = state("s", 1, at(15), 1.15);
        if let Record::TrackerState(s) = &mut late {
            s.origin = Origin::Backfill;
        }
        write_all(&store, &db.cfg, vec![late, state("s", 1, at(20), 9.99)]).await;
        assert_eq!(
            latest(&store, "s", 1).await,
            Some((id_1_20, at(20), 1.20)),
            "[{l}]"
        );

        // A batch big enough for `COPY`: 40 trackers move forward at once.
        let big: Vec<Record> = (1..=40)
            .map(|id| state("s", id, at(100 + id), id as f64))
            .collect();
        let (report, copies) = write_counting_copies(&store, &db.cfg, big).await;
        assert_eq!(report.lost + report.rejected, 0, "[{l}]");
        if backend == Backend::Postgres {
            assert_eq!(copies.copied, 1, "[{l}] the batch went in by COPY");
        }
        for id in 1..=40 {
            let want = stored_id(&store, "s", id, at(100 + id)).await;
            assert_eq!(
                latest(&store, "s", id).await,
                Some((want, at(100 + id), id as f64)),
                "[{l}] tracker {id} after COPY"
            );
        }

        // The same 40 again plus newer states for 5 of them: `COPY` is refused on
        // the duplicates and the batch goes through `ON CONFLICT`; a redelivered
        // state keeps the first row's id.
        let mut again: Vec<Record> = (1..=40)
            .map(|id| state("s", id, at(100 + id), -1.0))
            .collect();
        again.extend((1..=5).map(|id| state("s", id, at(200 + id), 200.0)));
        let (report, copies) = write_counting_copies(&store, &db.cfg, again).await;
        assert_eq!(report.lost + report.rejected, 0, "[{l}]");
        if backend == Backend::Postgres {
            assert_eq!(copies.refused, 1, "[{l}] the duplicates made COPY refuse");
        }
        for id in 1..=40 {
            let t = if id <= 5 { at(200 + id) } else { at(100 + id) };
            let lat = if id <= 5 { 200.0 } else { id as f64 };
            let want = stored_id(&store, "s", id, t).await;
            assert_eq!(
                latest(&store, "s", id).await,
                Some((want, t, lat)),
                "[{l}] {id}"
            );
        }

        // Retention removes the whole history of tracker 2's source: the tracker
        // is still listed, by the table and by the view.
        let cfg = RetentionConfig {
            tables: vec![("tracker_states".into(), Duration::from_secs(60))],
            interval: Duration::from_secs(60),
            batch: 7,
        };
        prune_sources(&store, &cfg, &["s".to_string()], Utc::now())
            .await
            .unwrap();
        assert_eq!(count(&store, "tracker_states").await, 0, "[{l}] pruned");
        assert_eq!(count(&store, "tracker_latest").await, 40, "[{l}]");
        let view = scalar(
            &store,
            "SELECT count(*) FROM latest_tracker_states WHERE source = 's'",
        )
        .await;
        assert_eq!(view, 40, "[{l}] the view lists pruned trackers");
        store.close().await;
    }
}

fn ev(source: &str, kind: &str, t: DateTime<Utc>) -> Record {
    Record::Event(Event {
        id: next_id(),
        source: Arc::from(source),
        connection_id: Some(1),
        received_at: t,
        kind: kind.into(),
        payload: "{}".into(),
        item_count: None,
    })
}

/// `events_hourly` as (source, kind, hour) → n.
async fn hourly(store: &Store) -> BTreeMap<(String, String, DateTime<Utc>), i64> {
    fetch_cells(store, "SELECT source, kind, hour, n FROM events_hourly")
        .await
        .into_iter()
        .map(|r| ((r[0].text(), r[1].text(), r[2].ts()), r[3].i64()))
        .collect()
}

fn hour(t: DateTime<Utc>) -> DateTime<Utc> {
    t.duration_trunc(TimeDelta::hours(1)).unwrap()
}

each_backend!(
    events_hourly_counts_each_inserted_event_once,
    current_thread
);
async fn events_hourly_counts_each_inserted_event_once(backend: Backend) {
    for db in test_databases(backend).await {
        let store = db.store().await;
        let l = db.label;
        let t0 = hour(Utc::now()) - Age::hours(5);
        // 30 events over three hours and two kinds (PostgreSQL: `COPY`), then 3
        // more (`UNNEST`).
        let big: Vec<Record> = (0..30)
            .map(|i| {
                let kind = if i % 3 == 0 {
                    "response"
                } else {
                    "state_batch"
                };
                ev("a", kind, t0 + Age::minutes(i * 5) + Age::microseconds(1))
            })
            .collect();
        let small: Vec<Record> = (0..3)
            .map(|i| ev("b", "state_batch", t0 + Age::minutes(59) + Age::seconds(i)))
            .collect();
        let mut want: BTreeMap<(String, String, DateTime<Utc>), i64> = BTreeMap::new();
        for r in big.iter().chain(&small) {
            if let Record::Event(e) = r {
                *want
                    .entry((e.source.to_string(), e.kind.clone(), hour(e.received_at)))
                    .or_default() += 1;
            }
        }
        let (_, copies) = write_counting_copies(&store, &db.cfg, big.clone()).await;
        if backend == Backend::Postgres {
            assert_eq!(copies.copied, 1, "[{l}]");
        }
        write_all(&store, &db.cfg, small.clone()).await;
        assert_eq!(hourly(&store).await, want, "[{l}]");

        // A retried or duplicated batch (same ids): nothing is counted twice, on
        // the bulk path, the record-by-record path and PostgreSQL's fallback.
        let (_, copies) = write_counting_copies(&store, &db.cfg, big).await;
        if backend == Backend::Postgres {
            assert_eq!(copies.refused, 1, "[{l}]");
        }
        write_all(&store, &db.cfg, small).await;
        assert_eq!(hourly(&store).await, want, "[{l}] after the duplicates");
        assert_eq!(count(&store, "events").await, 33, "[{l}]");
        store.close().await;
    }
}

each_backend!(
    raw_message_lookup_follows_event_id_and_survives_pruning,
    current_thread
);
async fn raw_message_lookup_follows_event_id_and_survives_pruning(backend: Backend) {
    for db in test_databases(backend).await {
        let store = db.store().await;
        let l = db.label;
        let t = micros(Utc::now()) - Age::hours(2);
        let message = ev("fleet-eu", "state_batch", t);
        let Record::Event(e) = &message else {
            unreachable!()
        };
        let event_id = e.id;
        // As the daemon stamps them: the typed rows of a message carry its receipt time.
        let same_time = |mut r: Record| {
            if let Record::TrackerState(s) = &mut r {
                s.received_at = t;
            }
            r
        };
        let mut linked = same_time(state("fleet-eu", 7, t, 1.0));
        linked.link_to(Some(event_id), Some(1));
        let unlinked = same_time(state("fleet-eu", 8, t, 2.0)); // raw_events = "off", backfill
        write_all(&store, &db.cfg, vec![message, linked, unlinked]).await;

        // The other way, README's statement: the typed rows of the message, found by
        // the (source, received_at) index and picked out by event_id.
        let reverse = format!(
            "SELECT s.source_id FROM events AS e JOIN tracker_states AS s \
             ON s.source = e.source AND s.received_at = e.received_at AND s.event_id = e.id \
             WHERE e.id = {event_id}"
        );
        let rows = fetch_cells(&store, &reverse).await;
        assert_eq!(
            rows.len(),
            1,
            "[{l}] one typed row of the message: {rows:?}"
        );
        assert_eq!(rows[0][0].opt_i64(), Some(7), "[{l}] the linked state");

        // The cookbook's statement, for each of the two states.
        let q = wsvault::bench::cookbook::QUESTIONS
            .iter()
            .find(|q| q.name == "the raw message behind a typed row")
            .unwrap();
        let sql = match backend {
            Backend::Sqlite => q.sqlite,
            Backend::Postgres => q.postgres,
        };
        let lookup = |id: i64| sql.replace("s.id = 1000", &format!("s.id = {id}"));
        let id7 = stored_id(&store, "fleet-eu", 7, t).await;
        let id8 = stored_id(&store, "fleet-eu", 8, t).await;
        let rows = fetch_cells(&store, &lookup(id7)).await;
        assert_eq!(rows.len(), 1, "[{l}]");
        assert_eq!(
            rows[0][0].opt_i64(),
            Some(event_id),
            "[{l}] the linked message"
        );
        let rows = fetch_cells(&store, &lookup(id8)).await;
        assert_eq!(rows.len(), 1, "[{l}] an unlinked row is still answered");
        assert_eq!(rows[0][0].opt_i64(), None, "[{l}] with no message");

        // Retention of `events` shorter than of the states: the link dangles, the
        // documented query answers NULL instead of dropping the row.
        let cfg = RetentionConfig {
            tables: vec![("events".into(), Duration::from_secs(60))],
            interval: Duration::from_secs(60),
            batch: 100,
        };
        prune_sources(&store, &cfg, &["fleet-eu".to_string()], Utc::now())
            .await
            .unwrap();
        assert_eq!(count(&store, "events").await, 0, "[{l}]");
        let rows = fetch_cells(&store, &lookup(id7)).await;
        assert_eq!(rows.len(), 1, "[{l}]");
        assert_eq!(rows[0][0].opt_i64(), None, "[{l}] pruned message");
        store.close().await;
    }
}

each_backend!(
    migration_fills_latest_and_hourly_from_stored_rows,
    current_thread
);
async fn migration_fills_latest_and_hourly_from_stored_rows(backend: Backend) {
    for db in test_databases(backend).await {
        let l = db.label;
        // The schema as the previous version left it (migrations up to 0006) ...
        let store = Store::connect(&db.cfg).await.unwrap();
        let dir = match backend {
            Backend::Sqlite => "migrations/sqlite",
            Backend::Postgres => "migrations/postgres",
        };
        let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join(dir);
        let mut older = sqlx::migrate::Migrator::new(path).await.unwrap();
        older.migrations = older
            .migrations
            .iter()
            .filter(|m| m.version < 7)
            .cloned()
            .collect::<Vec<_>>()
            .into();
        match backend {
            Backend::Sqlite => older.run(store.sqlite_pool().unwrap()).await,
            Backend::Postgres => older.run(store.postgres_pool().unwrap()).await,
        }
        .unwrap();
        // ... with rows that version wrote.
        let h = hour(Utc::now()) - Age::hours(3);
        for (id, secs, lat) in [(1, 10, 1.1), (1, 20, 1.2), (1, 15, 1.15), (2, 5, 2.0)] {
            let t = h + Age::seconds(secs);
            store
                .execute(
                    &format!(
                        "INSERT INTO tracker_states (source, source_id, state_time, \
                         received_at, lat, payload) VALUES ($1, $2, $3, $3, {lat}, '{{}}')"
                    ),
                    &[Param::Text("a"), Param::Int(id), Param::Time(t)],
                )
                .await
                .unwrap();
        }
        for (kind, minutes) in [("x", 1), ("x", 59), ("y", 2), ("x", 61)] {
            store
                .execute(
                    "INSERT INTO events (id, source, received_at, kind, payload) \
                     VALUES ($1, 'a', $2, $3, '{}')",
                    &[
                        Param::Int(next_id()),
                        Param::Time(h + Age::minutes(minutes)),
                        Param::Text(kind),
                    ],
                )
                .await
                .unwrap();
        }
        // This version's migration fills both tables from them.
        store.migrate().await.unwrap();
        let id_1_20 = stored_id(&store, "a", 1, h + Age::seconds(20)).await;
        assert_eq!(
            latest(&store, "a", 1).await,
            Some((id_1_20, h + Age::seconds(20), 1.2)),
            "[{l}]"
        );
        assert_eq!(
            latest(&store, "a", 2).await.map(|x| x.1),
            Some(h + Age::seconds(5)),
            "[{l}]"
        );
        let want: BTreeMap<_, _> = [
            (("a".to_string(), "x".to_string(), h), 2),
            (("a".to_string(), "y".to_string(), h), 1),
            (("a".to_string(), "x".to_string(), h + Age::hours(1)), 1),
        ]
        .into_iter()
        .collect();
        assert_eq!(hourly(&store).await, want, "[{l}]");
        store.close().await;
    }
}
