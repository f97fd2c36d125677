//! `[retention]`: only rows older than a table's limit go, in small batches, open
//! connections stay, and pruning runs beside a busy writer without stalling it.

use crate::support::*;
use chrono::{DateTime, Duration as Age, Utc};
use std::sync::Arc;
use std::time::Duration;
use wsvault::config::RetentionConfig;
use wsvault::ids::next_id;
use wsvault::ops::retention::{Retention, prune_once};
use wsvault::record::{Connection, Event, Record, SessionEvent};
use wsvault::store::{Store, Writer};

fn ev(source: &str, at: DateTime<Utc>) -> Record {
    Record::Event(Event {
        id: next_id(),
        source: Arc::from(source),
        connection_id: Some(1),
        received_at: at,
        kind: "state_batch".into(),
        payload: r#"{"x":1}"#.into(),
        item_count: None,
    })
}

fn conn(source: &str, opened: DateTime<Utc>, closed: Option<DateTime<Utc>>) -> Record {
    Record::Connection(Connection {
        id: next_id(),
        source: Arc::from(source),
        url: "ws://127.0.0.1/x".into(),
        opened_at: opened,
        closed_at: closed,
        close_code: closed.map(|_| 1000),
        close_reason: closed.map(|_| "bye".into()),
    })
}

fn lifecycle(source: &str, at: DateTime<Utc>) -> Record {
    Record::SessionEvent(SessionEvent {
        id: next_id(),
        source: Arc::from(source),
        connection_id: Some(1),
        occurred_at: at,
        event: "subscribed".into(),
        initiator: None,
        code: None,
        reason: None,
        detail: None,
    })
}

/// [`crate::support::write_all`], asserting nothing was lost or rejected.
async fn write_all(store: &Store, cfg: &wsvault::config::StorageConfig, records: Vec<Record>) {
    let report = crate::support::write_all(store, cfg, records).await;
    assert_eq!(report.lost + report.rejected, 0);
}

async fn n(store: &Store, sql: &str) -> i64 {
    fetch_cells(store, sql).await[0][0].i64()
}

fn retention(tables: &[(&str, Age)], batch: usize, interval: Duration) -> RetentionConfig {
    RetentionConfig {
        tables: tables
            .iter()
            .map(|(t, a)| (t.to_string(), a.to_std().unwrap()))
            .collect(),
        interval,
        batch,
    }
}

each_backend!(prunes_only_rows_older_than_the_limit, current_thread);
async fn prunes_only_rows_older_than_the_limit(backend: Backend) {
    for db in test_databases(backend).await {
        let store = db.store().await;
        let now = Utc::now();
        let old = now - Age::hours(2);
        let new = now - Age::minutes(1);
        let mut records = Vec::new();
        for source in ["a", "b"] {
            for i in 0..25 {
                records.push(ev(source, old - Age::seconds(i)));
                records.push(lifecycle(source, old - Age::seconds(i)));
            }
            for i in 0..5 {
                records.push(ev(source, new - Age::seconds(i)));
            }
        }
        records.push(conn("a", old - Age::hours(1), Some(old))); // closed long ago: goes
        records.push(conn("a", old - Age::hours(1), None)); // still open: stays
        records.push(conn("b", old, Some(new))); // closed recently: stays
        write_all(&store, &db.cfg, records).await;

        let cfg = retention(
            &[("events", Age::hours(1)), ("connections", Age::hours(1))],
            4,
            Duration::from_secs(60),
        );
        let deleted = prune_once(&store, &cfg, now).await.unwrap();
        assert_eq!(
            deleted,
            vec![("events".to_string(), 50), ("connections".to_string(), 1)],
            "[{}]",
            db.label
        );
        assert_eq!(
            n(&store, "SELECT count(*) FROM events").await,
            10,
            "[{}]",
            db.label
        );
        let oldest = fetch_cells(&store, "SELECT min(received_at) FROM events").await[0][0].ts();
        assert!(oldest >= now - Age::hours(1), "[{}] {oldest}", db.label);
        assert_eq!(
            n(&store, "SELECT count(*) FROM connections").await,
            2,
            "[{}]",
            db.label
        );
        assert_eq!(
            n(
                &store,
                "SELECT count(*) FROM connections WHERE closed_at IS NULL"
            )
            .await,
            1,
            "[{}] the open connection stays",
            db.label
        );
        assert_eq!(
            n(&store, "SELECT count(*) FROM session_events").await,
            50,
            "[{}] tables without a limit are untouched",
            db.label
        );
        // Nothing left to prune: a second run deletes nothing.
        let again = prune_once(&store, &cfg, now).await.unwrap();
        assert!(again.iter().all(|(_, n)| *n == 0), "{again:?}");

        // The timer task prunes on its own and stops on request.
        let task = Retention::start(
            store.clone(),
            retention(
                &[("session_events", Age::hours(1))],
                7,
                Duration::from_millis(50),
            ),
        )
        .expect("a table has a limit");
        wait_until(Duration::from_secs(20), "session_events pruned", || async {
            n(&store, "SELECT count(*) FROM session_events").await == 0
        })
        .await;
        task.stop().await;
        assert!(Retention::start(store.clone(), RetentionConfig::default()).is_none());
        store.close().await;
    }
}

each_backend!(pruning_does_not_stall_the_writer);
async fn pruning_does_not_stall_the_writer(backend: Backend) {
    for db in test_databases(backend).await {
        let store = db.store().await;
        let now = Utc::now();
        let old: Vec<Record> = (0..3000)
            .map(|i| ev("a", now - Age::hours(3) - Age::milliseconds(i)))
            .collect();
        write_all(&store, &db.cfg, old).await;

        let (sink, writer) = Writer::spawn(store.clone(), &db.cfg);
        let stats = writer.stats();
        let cfg = retention(&[("events", Age::hours(1))], 50, Duration::from_secs(60));
        let pruner = {
            let store = store.clone();
            tokio::spawn(async move { prune_once(&store, &cfg, Utc::now()).await })
        };
        for i in 0..1000 {
            sink.send(ev("a", now + Age::milliseconds(i)))
                .await
                .unwrap();
            if i % 100 == 0 {
                tokio::task::yield_now().await;
            }
        }
        let deleted = pruner.await.unwrap().unwrap();
        assert_eq!(
            deleted,
            vec![("events".to_string(), 3000)],
            "[{}]",
            db.label
        );
        drop(sink);
        let report = writer.join().await;
        assert_eq!(report.written, 1000, "[{}] {report:?}", db.label);
        assert_eq!(report.lost, 0);
        assert!(
            stats.is_healthy(),
            "[{}] {:?}",
            db.label,
            stats.last_error()
        );
        assert_eq!(
            n(&store, "SELECT count(*) FROM events").await,
            1000,
            "[{}]",
            db.label
        );
        store.close().await;
    }
}

each_backend!(the_daemons_task_prunes_configured_sources_and_at_start_removed_ones);
/// The daemon's task ([`Retention::start_for`]) prunes the configured sources'
/// rows without reading which sources a table holds, and at its first run also the
/// rows of a source no longer configured, which would otherwise stay forever.
async fn the_daemons_task_prunes_configured_sources_and_at_start_removed_ones(backend: Backend) {
    for db in test_databases(backend).await {
        let store = db.store().await;
        let old = Utc::now() - Age::hours(2);
        let records = ["kept", "removed"]
            .iter()
            .flat_map(|s| (0..5).map(move |i| lifecycle(s, old + Age::seconds(i))))
            .collect();
        write_all(&store, &db.cfg, records).await;
        let cfg = retention(
            &[("session_events", Age::hours(1))],
            2,
            Duration::from_millis(50),
        );
        let task = Retention::start_for(store.clone(), cfg, vec!["kept".into()])
            .expect("a table has a limit");
        wait_until(Duration::from_secs(20), "the first run", || async {
            n(&store, "SELECT count(*) FROM session_events").await == 0
        })
        .await;
        // Later runs look at the configured source only. (Newer than what the first
        // run deleted: a run resumes its walk there.)
        let again = ["kept", "removed"]
            .iter()
            .map(|s| lifecycle(s, old + Age::seconds(10)))
            .collect();
        write_all(&store, &db.cfg, again).await;
        let sql = "SELECT count(*) FROM session_events WHERE source = 'kept'";
        wait_until(
            Duration::from_secs(20),
            "kept's new old row pruned",
            || async { n(&store, sql).await == 0 },
        )
        .await;
        task.stop().await;
        assert_eq!(
            n(
                &store,
                "SELECT count(*) FROM session_events WHERE source = 'removed'"
            )
            .await,
            1,
            "[{}] only the first run looks beyond the configured sources",
            db.label
        );
        store.close().await;
    }
}
