//! The writer against real databases: every record variant round-trips, typed rows
//! deduplicate, a large push is stored exactly, and a refused record goes to
//! `rejected` without failing its batch-mates. Each test runs on SQLite and, when
//! `WSVAULT_TEST_POSTGRES_URL` is set, on a fresh PostgreSQL database.

use crate::support::*;
use std::time::Duration;
use wsvault::record::{Record, SecuritySessionChange};
use wsvault::store::{Store, TABLES, Writer};

each_backend!(every_variant_reads_back_equal, current_thread);
async fn every_variant_reads_back_equal(backend: Backend) {
    for db in test_databases(backend).await {
        let store = db.store().await;
        store.migrate().await.expect("migrating twice is a no-op");
        let records = one_of_each("fleet");
        let report = write_all(&store, &db.cfg, records.clone()).await;
        assert_eq!(report.written, records.len() as u64, "{}", db.label);
        assert_eq!((report.rejected, report.lost), (0, 0), "{}", db.label);
        for expected in records {
            let stored = read_table(&store, expected.kind()).await;
            assert_eq!(stored.len(), 1, "{}: {}", db.label, expected.kind());
            assert_eq!(
                normalize(stored[0].clone()),
                normalize(expected.clone()),
                "{}: {} round trip",
                db.label,
                expected.kind()
            );
        }
        let counts = store.table_counts().await.unwrap();
        assert_eq!(counts.len(), TABLES.len());
        assert!(
            counts.iter().all(|(_, n)| *n == 1),
            "{}: {counts:?}",
            db.label
        );
        store.close().await;
    }
}

each_backend!(
    typed_rows_deduplicate_and_events_keep_every_message,
    current_thread
);
async fn typed_rows_deduplicate_and_events_keep_every_message(backend: Backend) {
    for db in test_databases(backend).await {
        let store = db.store().await;
        let state = tracker_state("fleet", 1, 100);
        let reading = tracker_reading("fleet", "input", 100);
        let change = Record::SecuritySessionChange(SecuritySessionChange {
            source: "broker".into(),
            session_id: 9,
            change: "opened".into(),
            observed_at: at(5, 5),
            event_id: None,
            connection_id: None,
        });
        let first = security_session("broker", 9, 10, None);
        let mut batch = vec![state.clone(), reading.clone(), change.clone(), first];
        batch.extend([event("fleet", 1), event("fleet", 1)]);
        // Same batch and a later batch: both must be no-ops for typed rows.
        batch.extend([state.clone(), reading.clone()]);
        write_all(&store, &db.cfg, batch).await;

        // The session reappears later and has ended; then it is seen again, live.
        let mut ended = security_session("broker", 9, 20, Some(21));
        if let Record::SecuritySession(s) = &mut ended {
            s.first_seen_at = at(20, 0); // must not overwrite the first value
            s.ip = Some("10.9.9.9".into());
        }
        write_all(&store, &db.cfg, vec![state, reading, change, ended]).await;

        assert_eq!(count(&store, "tracker_states").await, 1, "{}", db.label);
        assert_eq!(count(&store, "tracker_readings").await, 1, "{}", db.label);
        assert_eq!(
            count(&store, "security_session_changes").await,
            1,
            "{}",
            db.label
        );
        assert_eq!(count(&store, "events").await, 2, "{}", db.label);
        let sessions = read_table(&store, "security_sessions").await;
        assert_eq!(sessions.len(), 1, "{}", db.label);
        let Record::SecuritySession(s) = &sessions[0] else {
            unreachable!()
        };
        assert_eq!(
            s.first_seen_at,
            at(10, 0),
            "{}: first_seen_at keeps the first value",
            db.label
        );
        assert_eq!(
            (s.last_seen_at, s.ended_at),
            (at(20, 0), Some(at(21, 0))),
            "{}",
            db.label
        );
        assert_eq!(s.ip.as_deref(), Some("10.9.9.9"), "{}", db.label);
        assert!(
            store
                .active_security_sessions("broker")
                .await
                .unwrap()
                .is_empty()
        );

        let again = security_session("broker", 9, 30, None);
        write_all(&store, &db.cfg, vec![again.clone()]).await;
        let active = store.active_security_sessions("broker").await.unwrap();
        assert_eq!(active.len(), 1, "{}: ended_at went back to NULL", db.label);
        let Record::SecuritySession(mut want) = again else {
            unreachable!()
        };
        want.first_seen_at = at(10, 0);
        assert_eq!(
            normalize(Record::SecuritySession(active[0].clone())),
            normalize(Record::SecuritySession(want)),
            "{}",
            db.label
        );
        assert!(
            store
                .active_security_sessions("other")
                .await
                .unwrap()
                .is_empty()
        );
        store.close().await;
    }
}

each_backend!(
    connection_close_fills_fields_and_never_clears_them,
    current_thread
);
async fn connection_close_fills_fields_and_never_clears_them(backend: Backend) {
    for db in test_databases(backend).await {
        let store = db.store().await;
        let mut records = one_of_each("fleet");
        records.truncate(1);
        let Record::Connection(closed) = records.remove(0) else {
            unreachable!()
        };
        let mut open = closed.clone();
        open.closed_at = None;
        open.close_code = None;
        open.close_reason = None;
        let rows = vec![
            Record::Connection(open.clone()),
            Record::Connection(closed.clone()),
            Record::Connection(open),
        ];
        write_all(&store, &db.cfg, rows).await;
        let stored = read_table(&store, "connections").await;
        assert_eq!(stored, vec![Record::Connection(closed)], "{}", db.label);
        store.close().await;
    }
}

each_backend!(partial_batch_commits_after_flush_interval, current_thread);
async fn partial_batch_commits_after_flush_interval(backend: Backend) {
    for db in test_databases(backend).await {
        let store = db.store().await;
        let (sink, handle) = Writer::spawn(store.clone(), &db.cfg);
        for n in 0..3 {
            sink.send(event("slow", n)).await.unwrap();
        }
        // The sink stays open: only the flush interval can commit these.
        let s = store.clone();
        wait_until(Duration::from_secs(5), "a time-based flush", || {
            let s = s.clone();
            async move { count(&s, "events").await == 3 }
        })
        .await;
        let stats = handle.stats();
        // The rows are visible to other connections a moment before the writer has
        // the commit's acknowledgement and counts the batch.
        wait_until(Duration::from_secs(5), "the batch counted", || async {
            stats.batches.load(std::sync::atomic::Ordering::Relaxed) >= 1
        })
        .await;
        assert_eq!(
            stats.batches.load(std::sync::atomic::Ordering::Relaxed),
            1,
            "{}",
            db.label
        );
        assert!(
            stats.is_healthy() && stats.last_commit_unix_ms().is_some(),
            "{}",
            db.label
        );
        assert_eq!(sink.queue_depth(), 0, "{}", db.label);
        drop(sink);
        assert_eq!(handle.join().await.written, 3, "{}", db.label);
        store.close().await;
    }
}

each_backend!(hundred_thousand_records_arrive_exactly, current_thread);
async fn hundred_thousand_records_arrive_exactly(backend: Backend) {
    for db in test_databases(backend).await {
        let store = db.store().await;
        let (sink, handle) = Writer::spawn(store.clone(), &db.cfg);
        let producers: Vec<_> = (0..4)
            .map(|p| {
                let sink = sink.clone();
                tokio::spawn(async move {
                    for n in 0..25_000 {
                        sink.send(event("bulk", p * 25_000 + n)).await.unwrap();
                    }
                })
            })
            .collect();
        drop(sink);
        for p in producers {
            p.await.unwrap();
        }
        let report = tokio::time::timeout(Duration::from_secs(120), handle.join())
            .await
            .expect("drain finishes");
        assert_eq!(report.written, 100_000, "{}", db.label);
        assert_eq!(count(&store, "events").await, 100_000, "{}", db.label);
        // A backlog goes in group commits: at most `commit_max_rows` per transaction.
        assert!(
            report.batches >= (100_000 / db.cfg.commit_max_rows) as u64,
            "{}: transactions of at most {} records",
            db.label,
            db.cfg.commit_max_rows
        );
        store.close().await;
    }
}

each_backend!(
    refused_records_go_to_rejected_and_batch_mates_commit,
    current_thread
);
async fn refused_records_go_to_rejected_and_batch_mates_commit(backend: Backend) {
    for db in test_databases(backend).await {
        let store = db.store().await;
        let mut cfg = db.config();
        cfg.batch_size = 52;
        cfg.flush_interval = Duration::from_secs(30); // the batch closes on size only
        let mut records: Vec<Record> = (0..25).map(|n| tracker_state("fleet", 3, n)).collect();
        records.push(tracker_reading("fleet", "bogus", 1));
        records.extend((0..25).map(|n| event("fleet", n)));
        let mut bad_json = event("fleet", 99);
        if let Record::Event(e) = &mut bad_json {
            e.payload = "{not json".into();
        }
        records.push(bad_json);
        let report = write_all(&store, &cfg, records).await;

        assert_eq!(report.batches, 1, "{}: one transaction", db.label);
        assert_eq!(
            (report.written, report.rejected, report.lost),
            (50, 2, 0),
            "{}",
            db.label
        );
        assert_eq!(count(&store, "tracker_states").await, 25, "{}", db.label);
        assert_eq!(count(&store, "events").await, 25, "{}", db.label);
        assert_eq!(count(&store, "tracker_readings").await, 0, "{}", db.label);
        let rejected = read_table(&store, "rejected").await;
        assert_eq!(rejected.len(), 2, "{}", db.label);
        let mut by_kind: Vec<_> = rejected
            .iter()
            .map(|r| match r {
                Record::Rejected(r) => r.clone(),
                _ => unreachable!(),
            })
            .collect();
        by_kind.sort_by(|a, b| a.kind.cmp(&b.kind));
        let (ev, rd) = (&by_kind[0], &by_kind[1]);
        assert_eq!(
            (ev.kind.as_str(), rd.kind.as_str()),
            ("events", "tracker_readings")
        );
        assert!(
            rd.error.contains("reading_kind"),
            "{}: {}",
            db.label,
            rd.error
        );
        assert!(rd.payload.contains("bogus"), "{}: {}", db.label, rd.payload);
        assert!(
            ev.error.to_lowercase().contains("json"),
            "{}: {}",
            db.label,
            ev.error
        );
        assert!(
            ev.payload.contains("{not json"),
            "{}: {}",
            db.label,
            ev.payload
        );
        assert_eq!(ev.received_at, at(99, 99), "{}", db.label);
        store.close().await;
    }
}

each_backend!(views_show_latest_states_and_active_sessions, current_thread);
async fn views_show_latest_states_and_active_sessions(backend: Backend) {
    for db in test_databases(backend).await {
        let store = db.store().await;
        let records = vec![
            tracker_state("fleet", 1, 100),
            tracker_state("fleet", 1, 101),
            tracker_state("fleet", 1, 99),
            tracker_state("fleet", 2, 50),
            tracker_state("other", 1, 500),
            security_session("broker", 1, 10, None),
            security_session("broker", 2, 10, Some(11)),
        ];
        write_all(&store, &db.cfg, records).await;
        let latest = fetch_cells(
            &store,
            "SELECT source, source_id, state_time FROM latest_tracker_states \
             ORDER BY source, source_id",
        )
        .await;
        let latest: Vec<_> = latest
            .iter()
            .map(|r| (r[0].text(), r[1].i64(), r[2].ts()))
            .collect();
        let want = vec![
            ("fleet".to_string(), 1, at(101, 123_456)),
            ("fleet".to_string(), 2, at(50, 123_456)),
            ("other".to_string(), 1, at(500, 123_456)),
        ];
        assert_eq!(latest, want, "{}", db.label);
        let active = fetch_cells(&store, "SELECT session_id FROM active_security_sessions").await;
        assert_eq!(active, vec![vec![Cell::Int(1)]], "{}", db.label);
        store.close().await;
    }
}

#[tokio::test]
async fn sqlite_times_are_fixed_width_utc_text_that_sqlite_understands() {
    let db = &sqlite_database();
    let store = db.store().await;
    write_all(&store, &db.cfg, vec![tracker_state("fleet", 1, 0)]).await;
    let rows = fetch_cells(
        &store,
        "SELECT state_time, typeof(state_time), strftime('%Y-%m-%d %H:%M:%f', state_time) \
         FROM tracker_states",
    )
    .await;
    assert_eq!(rows[0][0], Cell::Text("2024-05-01T00:00:00.123456Z".into()));
    assert_eq!(rows[0][1], Cell::Text("text".into()));
    assert_eq!(rows[0][2], Cell::Text("2024-05-01 00:00:00.123".into()));
    store.close().await;

    // `sqlite:` without slashes works too and creates the file.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("plain.db");
    let store = store_for(&storage_config(format!("sqlite:{}", path.display()))).await;
    assert!(path.exists());
    assert_eq!(store.backend(), wsvault::store::Backend::Sqlite);
    store.close().await;
}

#[tokio::test]
async fn sqlite_wal_is_checkpointed_beside_the_writer() {
    let db = &sqlite_database();
    let path = db.sqlite_path().expect("the first test database is SQLite");
    let store = db.store().await;
    let before = std::fs::metadata(&path).unwrap().len();
    let (sink, handle) = Writer::spawn(store.clone(), &db.cfg);
    let stats = handle.stats();
    for n in 0..5_000 {
        sink.send(event("wal", n)).await.unwrap();
    }
    // 5 000 rows are two rounds of the checkpoint task's 2 000-row trigger, and far
    // below the ~40 MiB at which the writer's own autocheckpoint would run.
    wait_until(
        Duration::from_secs(20),
        "two background checkpoints",
        || {
            let stats = stats.clone();
            async move {
                stats
                    .wal_checkpoints
                    .load(std::sync::atomic::Ordering::Relaxed)
                    >= 2
            }
        },
    )
    .await;
    let after = std::fs::metadata(&path).unwrap().len();
    assert!(
        after > before + 200_000,
        "the checkpoints copied committed rows into the database file: {before} -> {after} bytes"
    );
    drop(sink);
    let report = handle.join().await;
    assert_eq!((report.written, report.lost), (5_000, 0));
    assert_eq!(count(&store, "events").await, 5_000);
    store.close().await;
}

#[tokio::test]
async fn connect_refuses_unknown_schemes_and_hides_passwords() {
    let cfg = storage_config("mysql://u:hunter22@127.0.0.1/db");
    let err = Store::connect(&cfg).await.unwrap_err().to_string();
    assert!(
        err.contains("unsupported scheme") && !err.contains("hunter22"),
        "{err}"
    );

    let cfg = storage_config("postgres://u:hunter22@127.0.0.1:1/db");
    let err = Store::connect(&cfg).await.unwrap_err().to_string();
    assert!(
        err.contains("cannot open") && !err.contains("hunter22"),
        "{err}"
    );
}
