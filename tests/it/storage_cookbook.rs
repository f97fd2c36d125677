//! What migration 0006 and the retention walk promise, on both backends: the
//! skip-scan `latest_tracker_states` view returns exactly each tracker's newest
//! state; retention deletes the configured sources' expired rows in batches, also
//! past more equal times than a batch holds, and its delete statement reaches the
//! rows through the `(source, time)` index, never a sequential scan.

use crate::support::*;
use chrono::{DateTime, Duration as Age, Utc};
use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;
use wsvault::config::RetentionConfig;
use wsvault::ids::next_id;
use wsvault::ops::retention::{Pruner, delete_statement, prune_once, prune_sources};
use wsvault::record::{Event, Record};
use wsvault::store::{Backend, Store};

fn state(source: &str, source_id: i64, secs: i64) -> Record {
    match tracker_state(source, source_id, secs) {
        Record::TrackerState(mut s) => {
            s.lat = Some(source_id as f64 + secs as f64 / 1e6);
            Record::TrackerState(s)
        }
        other => other,
    }
}

fn ev(source: &str, at: DateTime<Utc>) -> Record {
    Record::Event(Event {
        id: next_id(),
        source: Arc::from(source),
        connection_id: Some(1),
        received_at: at,
        kind: "state_batch".into(),
        payload: r#"{"x":1}"#.into(),
        item_count: Some(1),
    })
}

type Newest = BTreeSet<(String, i64, String)>;

/// (source, source_id, state_time as text) of every row `sql` returns.
async fn triples(store: &Store, sql: &str) -> Newest {
    fetch_cells(store, sql)
        .await
        .into_iter()
        .map(|r| (r[0].text(), r[1].i64(), r[2].ts().to_rfc3339()))
        .collect()
}

each_backend!(latest_view_returns_each_trackers_newest_state);
async fn latest_view_returns_each_trackers_newest_state(backend: Backend) {
    for db in test_databases(backend).await {
        let store = db.store().await;
        let view = "SELECT source, source_id, state_time FROM latest_tracker_states";
        assert!(triples(&store, view).await.is_empty(), "[{}]", db.label);
        let mut records = Vec::new();
        // Sources sort around each other; ids with holes; one tracker with a single
        // state; a tracker whose older states arrive after its newest (a backfill).
        for (source, ids) in [
            ("a", vec![1, 5, 9]),
            ("b", vec![3]),
            ("c", vec![1, 2, 3, 4]),
        ] {
            for id in ids {
                let n = 1 + (id % 4) * 3;
                for secs in (0..n).rev() {
                    records.push(state(source, id, 100 * id + secs));
                }
            }
        }
        records.push(state("c", 2, 5)); // late, older than c/2's newest
        let report = write_all(&store, &db.cfg, records).await;
        assert_eq!(report.lost + report.rejected, 0, "[{}]", db.label);

        let expected = triples(
            &store,
            "SELECT source, source_id, max(state_time) FROM tracker_states \
             GROUP BY source, source_id",
        )
        .await;
        assert_eq!(expected.len(), 8, "[{}]", db.label);
        assert_eq!(triples(&store, view).await, expected, "[{}]", db.label);
        // Whole rows: the view's other columns belong to the same state.
        let rows = fetch_cells(
            &store,
            "SELECT v.lat, t.lat FROM latest_tracker_states AS v \
             JOIN tracker_states AS t ON t.id = v.id",
        )
        .await;
        assert_eq!(rows.len(), 8);
        for r in rows {
            assert_eq!(r[0].opt_f64(), r[1].opt_f64(), "[{}]", db.label);
        }
        store.close().await;
    }
}

fn retention(tables: &[&str], age: Age, batch: usize) -> RetentionConfig {
    RetentionConfig {
        tables: tables
            .iter()
            .map(|t| (t.to_string(), age.to_std().unwrap()))
            .collect(),
        interval: Duration::from_secs(60),
        batch,
    }
}

each_backend!(retention_prunes_configured_sources_past_ties_larger_than_a_batch);
async fn retention_prunes_configured_sources_past_ties_larger_than_a_batch(backend: Backend) {
    for db in test_databases(backend).await {
        let store = db.store().await;
        let now = Utc::now();
        let old = now - Age::hours(3);
        let mut records = Vec::new();
        for _ in 0..12 {
            records.push(ev("a", old)); // more equal times than one batch
        }
        for i in 1..=3 {
            records.push(ev("a", old + Age::seconds(i)));
        }
        for source in ["b", "c"] {
            for i in 0..4 {
                records.push(ev(source, old - Age::minutes(i)));
            }
        }
        for source in ["a", "b", "c"] {
            records.push(ev(source, now - Age::minutes(1)));
        }
        let report = write_all(&store, &db.cfg, records).await;
        assert_eq!(report.lost + report.rejected, 0);

        let cfg = retention(&["events"], Age::hours(1), 5);
        let sources = vec!["a".to_string(), "b".to_string()];
        let deleted = prune_sources(&store, &cfg, &sources, now).await.unwrap();
        assert_eq!(deleted, vec![("events".to_string(), 19)], "[{}]", db.label);
        let left = fetch_cells(
            &store,
            "SELECT source, count(*) FROM events GROUP BY source ORDER BY source",
        )
        .await;
        let left: Vec<(String, i64)> = left.iter().map(|r| (r[0].text(), r[1].i64())).collect();
        assert_eq!(
            left,
            vec![("a".into(), 1), ("b".into(), 1), ("c".into(), 5)],
            "[{}] only listed sources lose rows, only expired ones",
            db.label
        );
        // Without a list, the sources are found in the table itself.
        let deleted = prune_once(&store, &cfg, now).await.unwrap();
        assert_eq!(deleted, vec![("events".to_string(), 4)], "[{}]", db.label);
        assert_eq!(count(&store, "events").await, 3, "[{}]", db.label);
        store.close().await;
    }
}

each_backend!(a_pruner_resumes_where_it_stopped_without_skipping_newer_rows);
async fn a_pruner_resumes_where_it_stopped_without_skipping_newer_rows(backend: Backend) {
    for db in test_databases(backend).await {
        let store = db.store().await;
        let t0 = Utc::now() - Age::hours(10);
        let cfg = retention(&["events", "session_events"], Age::hours(1), 3);
        let sources = vec!["a".to_string()];
        let mut pruner = Pruner::default();
        let first: Vec<Record> = (0..7).map(|i| ev("a", t0 + Age::minutes(i))).collect();
        write_all(&store, &db.cfg, first).await;
        let now = t0 + Age::hours(2);
        let deleted = pruner.run(&store, &cfg, Some(&sources), now).await.unwrap();
        assert_eq!(
            deleted,
            vec![("events".into(), 7), ("session_events".into(), 0)],
            "[{}]",
            db.label
        );
        // Rows that arrive later: at the time the last run stopped at, between it and
        // the old cutoff, and after the old cutoff (t0 + 60 min).
        let later: Vec<Record> = [6, 6, 30, 31, 70, 80]
            .iter()
            .map(|m| ev("a", t0 + Age::minutes(*m)))
            .collect();
        write_all(&store, &db.cfg, later).await;
        let deleted = pruner
            .run(&store, &cfg, Some(&sources), now + Age::minutes(15))
            .await
            .unwrap();
        assert_eq!(deleted[0], ("events".into(), 5), "[{}]", db.label);
        assert_eq!(count(&store, "events").await, 1, "[{}]", db.label);
        store.close().await;
    }
}

/// The plan of retention's delete statement for `events`; PostgreSQL as the custom
/// and the generic plan (what a prepared statement may switch to).
async fn delete_plans(store: &Store, batch: usize) -> Vec<String> {
    let sql = delete_statement(store, "events", batch).unwrap();
    if let Some(pool) = store.sqlite_pool() {
        let rows = sqlx::query(sqlx::AssertSqlSafe(format!("EXPLAIN QUERY PLAN {sql}")))
            .bind("a")
            .bind("2024-05-01T00:00:00.000000Z")
            .fetch_all(pool)
            .await
            .unwrap();
        use sqlx::Row as _;
        return vec![
            rows.iter()
                .map(|r| r.get::<String, _>(3))
                .collect::<Vec<_>>()
                .join("\n"),
        ];
    }
    let pool = store.postgres_pool().unwrap();
    let mut conn = pool.acquire().await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("PREPARE prune AS {sql}")))
        .execute(&mut *conn)
        .await
        .unwrap();
    let mut plans = Vec::new();
    for mode in ["force_custom_plan", "force_generic_plan"] {
        let explain = format!(
            "SET plan_cache_mode = {mode}; \
             EXPLAIN EXECUTE prune('a', '0001-01-01T00:00:00Z', '2024-05-01T02:00:00Z')"
        );
        use sqlx::Row as _;
        let rows = sqlx::raw_sql(sqlx::AssertSqlSafe(explain))
            .fetch_all(&mut *conn)
            .await
            .unwrap();
        plans.push(
            rows.iter()
                .filter_map(|r| r.try_get::<String, _>(0).ok())
                .collect::<Vec<_>>()
                .join("\n"),
        );
    }
    plans
}

each_backend!(retention_deletes_through_the_source_time_index);
async fn retention_deletes_through_the_source_time_index(backend: Backend) {
    for db in test_databases(backend).await {
        let store = db.store().await;
        // Enough rows, two sources, that a plan without the index would scan them.
        let records: Vec<Record> = (0..30_000)
            .map(|i| ev(["a", "b"][i % 2], at(i as i64 / 2, 0)))
            .collect();
        let report = write_all(&store, &db.cfg, records).await;
        assert_eq!(report.lost + report.rejected, 0);
        if let Some(pool) = store.postgres_pool() {
            sqlx::query("VACUUM ANALYZE events")
                .execute(pool)
                .await
                .unwrap();
        }
        for plan in delete_plans(&store, 5_000).await {
            match db.backend() {
                Backend::Sqlite => assert!(
                    plan.lines().any(|l| l.starts_with("SEARCH events USING")
                        && l.ends_with(
                            "INDEX events_source_received_at_kind (source=? AND received_at<?)"
                        )),
                    "[{}] {plan}",
                    db.label
                ),
                Backend::Postgres => {
                    assert!(!plan.contains("Seq Scan"), "[{}] {plan}", db.label);
                    assert!(
                        plan.contains("Index Cond: ((source = ") && plan.contains("Tid"),
                        "[{}] {plan}",
                        db.label
                    );
                }
            }
        }
        store.close().await;
    }
}
