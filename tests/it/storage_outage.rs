//! The writer through database outages: PostgreSQL behind a `TcpProxy` that is cut
//! for about 3 s, SQLite with its file held by `BEGIN EXCLUSIVE` on another
//! connection for about 3 s. Every record must arrive exactly once, with retries
//! counted; a force-stop during an outage must count what it could not write.

use crate::support::*;
use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use wsvault::record::Record;
use wsvault::store::{Store, Writer};

/// (store the writer uses, store for checks, the outage switch) for `db`.
async fn setup(db: &TestDb) -> (Store, Store, Outage, wsvault::config::StorageConfig) {
    let direct = db.store().await;
    let outage = Outage::for_db(db).await;
    let mut cfg = db.config();
    if db.sqlite_path().is_some() {
        // One pool for writer and checks; the outage is a lock on the file.
        return (direct.clone(), direct, outage, cfg);
    }
    // PostgreSQL: the writer's pool goes through the outage's proxy.
    cfg.url = outage.url().to_string();
    let writer_store = store_for(&cfg).await;
    (writer_store, direct, outage, cfg)
}

each_backend!(
    outage_mid_stream_loses_and_duplicates_nothing,
    current_thread
);
async fn outage_mid_stream_loses_and_duplicates_nothing(backend: Backend) {
    for db in test_databases(backend).await {
        let (writer_store, check, mut outage, cfg) = setup(&db).await;
        let (sink, handle) = Writer::spawn(writer_store.clone(), &cfg);
        let stats = handle.stats();
        let stop = Arc::new(AtomicBool::new(false));
        let producer = {
            let stop = stop.clone();
            tokio::spawn(async move {
                let mut ids = Vec::new();
                let mut n = 0;
                while !stop.load(Ordering::Relaxed) {
                    for _ in 0..100 {
                        let r = event("outage", n);
                        if let Record::Event(e) = &r {
                            ids.push(e.id);
                        }
                        sink.send(r).await.unwrap();
                        n += 1;
                    }
                    tokio::time::sleep(Duration::from_millis(5)).await;
                }
                ids
            })
        };

        let s = stats.clone();
        wait_until(Duration::from_secs(10), "first commits", || {
            let s = s.clone();
            async move { s.written() >= 2_000 }
        })
        .await;
        let cut_at = Instant::now();
        outage.begin().await;
        let s = stats.clone();
        wait_until(Duration::from_secs(5), "a failed attempt", || {
            let s = s.clone();
            async move { s.retries.load(Ordering::Relaxed) > 0 && !s.is_healthy() }
        })
        .await;
        // The outage itself lasts ~3 s: this is the scenario, not a wait for a condition.
        tokio::time::sleep_until((cut_at + Duration::from_secs(3)).into()).await;
        let written_during = stats.written();
        outage.end().await;
        let s = stats.clone();
        wait_until(Duration::from_secs(10), "recovery", || {
            let s = s.clone();
            async move { s.is_healthy() && s.written() > written_during }
        })
        .await;
        stop.store(true, Ordering::Relaxed);
        let sent = producer.await.unwrap();
        let report = tokio::time::timeout(Duration::from_secs(30), handle.join())
            .await
            .expect("writer drains after the outage");

        assert!(report.retries > 0, "{}: {report:?}", db.label);
        assert_eq!(report.lost, 0, "{}: {report:?}", db.label);
        assert_eq!(
            report.written,
            sent.len() as u64,
            "{}: {report:?}",
            db.label
        );
        let stored = fetch_cells(&check, "SELECT id FROM events").await;
        let stored: Vec<i64> = stored.iter().map(|r| r[0].i64()).collect();
        let unique: HashSet<i64> = stored.iter().copied().collect();
        assert_eq!(unique.len(), stored.len(), "{}: duplicates", db.label);
        assert_eq!(
            unique,
            sent.into_iter().collect(),
            "{}: every record once",
            db.label
        );
        writer_store.close().await;
        check.close().await;
    }
}

each_backend!(force_stop_during_outage_counts_lost_records, current_thread);
async fn force_stop_during_outage_counts_lost_records(backend: Backend) {
    for db in test_databases(backend).await {
        let (writer_store, check, mut outage, cfg) = setup(&db).await;
        let (sink, handle) = Writer::spawn(writer_store.clone(), &cfg);
        let stats = handle.stats();
        outage.begin().await;
        for n in 0..1_000 {
            sink.send(event("forced", n)).await.unwrap();
        }
        let s = stats.clone();
        wait_until(Duration::from_secs(5), "a failed attempt", || {
            let s = s.clone();
            async move { s.retries.load(Ordering::Relaxed) > 0 }
        })
        .await;
        handle.force_stop();
        let started = Instant::now();
        let report = tokio::time::timeout(Duration::from_secs(10), handle.join())
            .await
            .expect("force-stop ends the writer promptly");
        assert!(started.elapsed() < Duration::from_secs(5), "{}", db.label);
        assert_eq!(
            (report.written, report.lost),
            (0, 1_000),
            "{}: {report:?}",
            db.label
        );
        assert!(sink.send(event("forced", 1)).await.is_err(), "{}", db.label);
        assert!(stats.last_error().is_some(), "{}", db.label);
        outage.end().await;
        assert_eq!(count(&check, "events").await, 0, "{}", db.label);
        writer_store.close().await;
        check.close().await;
    }
}

each_backend!(
    full_queue_pushes_back_until_the_database_returns,
    current_thread
);
async fn full_queue_pushes_back_until_the_database_returns(backend: Backend) {
    for db in test_databases(backend).await {
        let (writer_store, check, mut outage, mut cfg) = setup(&db).await;
        cfg.queue_capacity = 100;
        cfg.batch_size = 50;
        let (sink, handle) = Writer::spawn(writer_store.clone(), &cfg);
        outage.begin().await;
        // Fill the writer's batch and the queue; the first send that does not finish
        // promptly is the back-pressure the sessions rely on.
        let mut sent = 0;
        let blocked = loop {
            let s = sink.clone();
            let mut send = tokio::spawn(async move { s.send(event("bp", 0)).await });
            if tokio::time::timeout(Duration::from_millis(300), &mut send)
                .await
                .is_err()
            {
                break send;
            }
            sent += 1;
            assert!(sent <= 150, "{}: the queue never filled", db.label);
        };
        assert_eq!(sink.queue_depth(), 100, "{}", db.label);
        assert_eq!(handle.stats().queue_depth(), 100, "{}", db.label);
        assert!(sent >= 100, "{}: {sent}", db.label);
        outage.end().await;
        let waited = tokio::time::timeout(Duration::from_secs(10), blocked).await;
        assert!(matches!(waited, Ok(Ok(Ok(())))), "{}: {waited:?}", db.label);
        drop(sink);
        let report = tokio::time::timeout(Duration::from_secs(20), handle.join())
            .await
            .expect("drains");
        assert_eq!(report.written, sent + 1, "{}: {report:?}", db.label);
        assert_eq!(
            count(&check, "events").await as u64,
            sent + 1,
            "{}",
            db.label
        );
        writer_store.close().await;
        check.close().await;
    }
}
