//! End to end, a Navixy source's data path and shutdown: the real `wsvault` binary
//! against the in-process simulator, on SQLite and (when configured) PostgreSQL.
//!
//! - 200 trackers × 50 updates end as exactly the distinct states and readings the
//!   simulator generated;
//! - SIGTERM unsubscribes, closes with 1000 (on the wire too), records `closed` and
//!   exits 0; during a backoff wait it exits at once and still records `closed`.

use std::time::Duration;

use crate::support::navixy::*;
use crate::support::*;
use serde_json::json;
use wsvault::sim::navixy::NavixySimConfig;

each_backend!(two_hundred_trackers_fifty_updates_are_stored_exactly);
async fn two_hundred_trackers_fifty_updates_are_stored_exactly(backend: Backend) {
    const TRACKERS: usize = 200;
    const UPDATES: u64 = 50;
    for db in test_databases(backend).await {
        let sim = start_sim(NavixySimConfig {
            trackers: TRACKERS,
            updates: Some(UPDATES),
            rate: 0.0,
            batch_size: 100,
            heartbeat_interval: Duration::from_secs(5),
            server_heartbeat: Duration::from_secs(1),
            ..NavixySimConfig::default()
        })
        .await;
        let source = navixy_source(SOURCE, &sim, &format!("{}\n{ALL_DATA}", api_key_line()));
        let mut run = Run::start(&db, &config(&db.cfg.url, "", "", &source)).await;
        let control = sim.control().clone();
        let total_states = TRACKERS as u64 * (UPDATES + 1);
        wait_sim(
            &control,
            "every update generated",
            Duration::from_secs(120),
            |s| s.states_generated == total_states,
        )
        .await;
        wait_db_matches_sim(&run, &control, Duration::from_secs(120)).await;

        let s = control.stats();
        assert_eq!(s.states_generated, total_states);
        assert_eq!(s.reading_values_generated, total_states * 4);
        assert_eq!(s.subscribes, 1, "[{}] no reconnect expected", db.label);
        assert_eq!(
            run.count("tracker_states").await as u64,
            total_states,
            "[{}]",
            db.label
        );
        assert_eq!(
            run.count("tracker_readings").await as u64,
            s.reading_values_generated,
            "[{}]",
            db.label
        );
        assert_eq!(
            run.count("(SELECT DISTINCT source_id FROM tracker_states) t")
                .await,
            TRACKERS as i64,
            "[{}]",
            db.label
        );
        assert_eq!(duplicate_keys(&run.store).await, 0, "[{}]", db.label);
        // Every batch message was kept as an envelope with its item count.
        let items = fetch_cells(
            &run.store,
            "SELECT CAST(sum(item_count) AS BIGINT) FROM events WHERE kind = 'state_batch'",
        )
        .await;
        assert_eq!(
            items[0][0].opt_i64(),
            Some(total_states as i64),
            "[{}]",
            db.label
        );
        let (status, log) = run.stop().await;
        assert!(
            status.success(),
            "[{}] exit {status}; log:\n{}",
            db.label,
            tail(&log)
        );
        sim.shutdown().await;
    }
}

each_backend!(sigterm_unsubscribes_closes_1000_and_exits_0);
async fn sigterm_unsubscribes_closes_1000_and_exits_0(backend: Backend) {
    for db in test_databases(backend).await {
        let sim = start_sim(small_fleet()).await;
        let source = navixy_source(SOURCE, &sim, &format!("{}\n{ALL_DATA}", api_key_line()));
        let mut run = Run::start(&db, &config(&db.cfg.url, "", "", &source)).await;
        let control = sim.control().clone();
        run.wait_lifecycle(SOURCE, "subscribed", |r| n_events(r, "subscribed") == 1)
            .await;
        run.wait_count("tracker_states", |n| n >= 5).await;

        let (status, log) = run.stop().await;
        assert_eq!(
            status.code(),
            Some(0),
            "[{}] log:\n{}",
            db.label,
            tail(&log)
        );
        wait_sim(&control, "the unsubscribe", SOON, |s| {
            !s.unsubscribe_messages.is_empty()
        })
        .await;
        let s = control.stats();
        assert_eq!(s.unsubscribe_messages.len(), 1, "[{}]", db.label);
        assert_eq!(
            s.close_frames,
            vec![Some(1000)],
            "[{}] closed with 1000 on the wire",
            db.label
        );
        let mut unsub = s.unsubscribe_messages[0].clone();
        let mut sub = s.subscribe_messages[0].clone();
        assert_eq!(unsub["action"], "unsubscribe");
        unsub["action"] = json!(null);
        sub["action"] = json!(null);
        assert_eq!(
            unsub, sub,
            "[{}] unsubscribe mirrors the subscribe",
            db.label
        );

        let rows = run.lifecycle(SOURCE).await;
        let last = rows.last().expect("lifecycle rows");
        assert_eq!(last.event, "closed", "[{}] {rows:#?}", db.label);
        assert_eq!(last.code, Some(1000), "[{}] {rows:#?}", db.label);
        assert_eq!(n_events(&rows, "suspended"), 0, "[{}] {rows:#?}", db.label);
        let conns = fetch_cells(
            &run.store,
            "SELECT close_code, closed_at FROM connections ORDER BY id",
        )
        .await;
        assert_eq!(conns.len(), 1, "[{}]", db.label);
        assert_eq!(conns[0][0].opt_i64(), Some(1000), "[{}]", db.label);
        assert!(
            conns[0][1].opt_ts().is_some(),
            "[{}] closed_at set",
            db.label
        );
        sim.shutdown().await;
    }
}

each_backend!(sigterm_while_waiting_to_reconnect_exits_at_once_and_records_closed);
async fn sigterm_while_waiting_to_reconnect_exits_at_once_and_records_closed(backend: Backend) {
    for db in test_databases(backend).await {
        let sim = start_sim(NavixySimConfig {
            reject_hash: true,
            ..small_fleet()
        })
        .await;
        let source = navixy_source(SOURCE, &sim, &format!("{}\n{ALL_DATA}", api_key_line()));
        let sup = "backoff_initial = \"5s\"\nbackoff_max = \"10s\"";
        let mut run = Run::start(&db, &config(&db.cfg.url, "", sup, &source)).await;
        run.wait_lifecycle(SOURCE, "a suspension", |r| n_events(r, "suspended") == 1)
            .await;
        let asked = std::time::Instant::now();
        let (status, log) = run.stop().await;
        assert_eq!(
            status.code(),
            Some(0),
            "[{}] log:\n{}",
            db.label,
            tail(&log)
        );
        assert!(
            asked.elapsed() < Duration::from_secs(5),
            "[{}] the backoff wait was not cut short: {:?}",
            db.label,
            asked.elapsed()
        );
        let rows = run.lifecycle(SOURCE).await;
        assert_eq!(n_events(&rows, "closed"), 1, "[{}] {rows:#?}", db.label);
        let last = rows.last().unwrap();
        assert_eq!(
            (last.event.as_str(), last.code, last.connection_id),
            ("closed", None, None),
            "[{}] {rows:#?}",
            db.label
        );
        assert_eq!(sim.control().stats().connections, 1, "[{}]", db.label);
        sim.shutdown().await;
    }
}
