//! End to end, a Navixy source under network faults: the real `wsvault` binary
//! against the in-process simulator, on SQLite and (when configured) PostgreSQL.
//!
//! - five drops: each a `suspended{network}` then `resumed`, a new subscribe, and the
//!   re-sent snapshots add no duplicate typed rows;
//! - drops in the middle of a fast stream: still no duplicates, and every tracker's
//!   latest state is stored;
//! - a silent server is caught by the idle deadline and resumed once it speaks;
//! - a server refusing the subscribe (busy) is retried until it accepts.

use std::time::Duration;

use crate::support::navixy::*;
use crate::support::*;
use wsvault::sim::navixy::NavixySimConfig;

each_backend!(five_drops_resubscribe_without_duplicate_rows);
async fn five_drops_resubscribe_without_duplicate_rows(backend: Backend) {
    const TRACKERS: u64 = 20;
    for db in test_databases(backend).await {
        let sim = start_sim(NavixySimConfig {
            trackers: TRACKERS as usize,
            rate: 400.0,
            batch_size: 10,
            heartbeat_interval: Duration::from_millis(200),
            server_heartbeat: Duration::from_millis(200),
            ..NavixySimConfig::default()
        })
        .await;
        let source = navixy_source(SOURCE, &sim, &format!("{}\n{ALL_DATA}", api_key_line()));
        let mut run = Run::start(&db, &config(&db.cfg.url, "", "", &source)).await;
        let control = sim.control().clone();
        wait_sim(&control, "the first subscribe", SOON, |s| s.subscribes == 1).await;

        for round in 1..=5u64 {
            // Let updates flow, then hold them so nothing is in flight at the drop:
            // everything generated must then be stored, and the snapshot the server
            // re-sends after the reconnect holds only states already stored.
            let before = control.stats().states_generated;
            wait_sim(&control, "updates flowing", SOON, |s| {
                s.states_generated >= before + 100
            })
            .await;
            control.pause_updates(true);
            wait_db_matches_sim(&run, &control, SOON).await;
            assert_eq!(control.drop_now(), 1, "[{}] round {round}", db.label);
            wait_sim(&control, "a new subscribe", SOON, |s| {
                s.subscribes == round + 1
            })
            .await;
            wait_sim(&control, "the re-sent snapshot", SOON, |s| {
                s.state_items_sent == s.states_generated + round * TRACKERS
            })
            .await;
            run.wait_lifecycle(SOURCE, "resumed", |r| {
                n_events(r, "resumed") == round as usize
            })
            .await;
            control.pause_updates(false);
        }
        control.pause_updates(true);
        wait_db_matches_sim(&run, &control, SOON).await;

        let s = control.stats();
        assert_eq!(s.subscribes, 6, "[{}]", db.label);
        assert_eq!(s.drops, 5, "[{}]", db.label);
        assert_eq!(
            s.state_items_sent,
            s.states_generated + 5 * TRACKERS,
            "[{}] each reconnect re-sent the whole snapshot",
            db.label
        );
        assert_eq!(
            run.count("tracker_states").await as u64,
            s.states_generated,
            "[{}]",
            db.label
        );
        assert_eq!(
            run.count("tracker_readings").await as u64,
            s.reading_values_generated,
            "[{}]",
            db.label
        );
        assert_eq!(duplicate_keys(&run.store).await, 0, "[{}]", db.label);
        assert_eq!(run.count("connections").await, 6, "[{}]", db.label);

        // Lifecycle: after the first subscription, exactly suspended{network} → resumed
        // five times, each resume on a new connection.
        let rows = run.lifecycle(SOURCE).await;
        let transitions: Vec<&Ev> = rows
            .iter()
            .filter(|r| r.event == "suspended" || r.event == "resumed")
            .collect();
        assert_eq!(transitions.len(), 10, "[{}] {rows:#?}", db.label);
        for pair in transitions.chunks(2) {
            assert_eq!(pair[0].event, "suspended", "[{}] {rows:#?}", db.label);
            assert_eq!(
                pair[0].initiator.as_deref(),
                Some("network"),
                "[{}]",
                db.label
            );
            assert_eq!(pair[1].event, "resumed", "[{}] {rows:#?}", db.label);
            assert_ne!(
                pair[0].connection_id, pair[1].connection_id,
                "[{}]",
                db.label
            );
        }
        assert_eq!(n_events(&rows, "subscribed"), 6, "[{}]", db.label);
        assert!(run.alive(), "[{}]", db.label);
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

each_backend!(drops_mid_stream_keep_latest_states_and_add_no_duplicates);
async fn drops_mid_stream_keep_latest_states_and_add_no_duplicates(backend: Backend) {
    const TRACKERS: usize = 50;
    const UPDATES: u64 = 40;
    for db in test_databases(backend).await {
        let sim = start_sim(NavixySimConfig {
            trackers: TRACKERS,
            updates: Some(UPDATES),
            rate: 1000.0,
            batch_size: 25,
            heartbeat_interval: Duration::from_millis(200),
            server_heartbeat: Duration::from_millis(200),
            ..NavixySimConfig::default()
        })
        .await;
        let source = navixy_source(SOURCE, &sim, &format!("{}\n{ALL_DATA}", api_key_line()));
        let run = Run::start(&db, &config(&db.cfg.url, "", "", &source)).await;
        let control = sim.control().clone();
        wait_sim(&control, "the first subscribe", SOON, |s| s.subscribes == 1).await;
        let total = (TRACKERS as u64) * (UPDATES + 1);
        let mut drops = 0;
        while drops < 5 {
            let at = control.stats().states_generated;
            wait_sim(&control, "some progress", SOON, |s| {
                s.states_generated >= (at + 150).min(total)
            })
            .await;
            if control.stats().states_generated >= total {
                break;
            }
            drops += control.drop_now();
            wait_sim(&control, "a new subscribe", SOON, |s| {
                s.subscribes == drops as u64 + 1
            })
            .await;
        }
        assert!(
            drops >= 3,
            "[{}] only {drops} drops before the stream ended",
            db.label
        );
        wait_sim(&control, "every update generated", SOON, |s| {
            s.states_generated == total
        })
        .await;

        // The last snapshot (or the live stream) carried every tracker's final state.
        let finals =
            "tracker_states WHERE state_time = (SELECT max(state_time) FROM tracker_states)";
        run.wait_count(finals, |n| n == TRACKERS as i64).await;
        let stored = run.count("tracker_states").await as u64;
        assert!(stored <= total, "[{}] {stored} > {total}", db.label);
        assert_eq!(duplicate_keys(&run.store).await, 0, "[{}]", db.label);
        let rows = run
            .wait_lifecycle(SOURCE, "every resume", |r| n_events(r, "resumed") == drops)
            .await;
        assert_eq!(
            n_events(&rows, "suspended"),
            drops,
            "[{}] {rows:#?}",
            db.label
        );
        sim.shutdown().await;
    }
}

each_backend!(silent_server_hits_the_idle_deadline_and_resumes);
async fn silent_server_hits_the_idle_deadline_and_resumes(backend: Backend) {
    for db in test_databases(backend).await {
        let sim = start_sim(NavixySimConfig {
            server_heartbeat: Duration::from_millis(100),
            ..small_fleet()
        })
        .await;
        let source = navixy_source(SOURCE, &sim, &format!("{}\n{ALL_DATA}", api_key_line()));
        let sup = "idle_timeout = \"500ms\"\nhandshake_timeout = \"1s\"";
        let mut run = Run::start(&db, &config(&db.cfg.url, "", sup, &source)).await;
        let control = sim.control().clone();
        run.wait_lifecycle(SOURCE, "subscribed", |r| n_events(r, "subscribed") == 1)
            .await;
        // Healthy but quiet-ish: server heartbeats every 100 ms keep a 500 ms
        // deadline from firing.
        let quiet = run.lifecycle(SOURCE).await;
        assert_eq!(
            n_events(&quiet, "suspended"),
            0,
            "[{}] {quiet:#?}",
            db.label
        );

        control.set_silent(true);
        let rows = run
            .wait_lifecycle(SOURCE, "a suspension by the idle deadline", |r| {
                r.iter().any(|x| {
                    x.event == "suspended"
                        && x.initiator.as_deref() == Some("network")
                        && x.reason
                            .as_deref()
                            .is_some_and(|t| t.contains("idle deadline"))
                })
            })
            .await;
        assert_eq!(n_events(&rows, "resumed"), 0, "[{}] {rows:#?}", db.label);
        run.wait_log("no frame for 500ms (idle deadline)", SOON)
            .await;

        let stored = run.count("tracker_states").await;
        control.set_silent(false);
        run.wait_lifecycle(SOURCE, "resumed", |r| n_events(r, "resumed") == 1)
            .await;
        run.wait_count("tracker_states", |n| n > stored).await;
        assert!(run.alive(), "[{}]", db.label);
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

each_backend!(a_busy_server_refusing_the_subscribe_is_retried_until_it_accepts);
async fn a_busy_server_refusing_the_subscribe_is_retried_until_it_accepts(backend: Backend) {
    for db in test_databases(backend).await {
        let sim = start_sim(small_fleet()).await;
        let control = sim.control().clone();
        control.refuse_next_subscribes(2, 15, "Too many requests");
        let source = navixy_source(SOURCE, &sim, &format!("{}\n{ALL_DATA}", api_key_line()));
        let mut run = Run::start(&db, &config(&db.cfg.url, "", "", &source)).await;
        let rows = run
            .wait_lifecycle(SOURCE, "subscribed after two refusals", |r| {
                n_events(r, "subscribed") == 1
            })
            .await;
        let s = control.stats();
        assert_eq!((s.subscribes, s.subscribe_errors), (3, 2), "[{}]", db.label);
        assert_eq!(
            s.connections, 3,
            "[{}] one connection per attempt",
            db.label
        );
        let errors: Vec<&Ev> = rows
            .iter()
            .filter(|r| r.event == "subscribe_error")
            .collect();
        assert_eq!(errors.len(), 2, "[{}] {rows:#?}", db.label);
        assert!(
            errors.iter().all(|e| e.code == Some(15)),
            "[{}] {rows:#?}",
            db.label
        );
        let suspended: Vec<&Ev> = rows.iter().filter(|r| r.event == "suspended").collect();
        assert_eq!(suspended.len(), 2, "[{}] {rows:#?}", db.label);
        assert!(
            suspended
                .iter()
                .all(|r| r.initiator.as_deref() == Some("network")
                    && r.reason
                        .as_deref()
                        .is_some_and(|t| t.contains("Too many requests"))),
            "[{}] {rows:#?}",
            db.label
        );
        assert_eq!(
            n_events(&rows, "auth_failed"),
            0,
            "[{}] the key is fine",
            db.label
        );
        run.wait_lifecycle(SOURCE, "resumed", |r| n_events(r, "resumed") == 1)
            .await;
        run.wait_count("tracker_states", |n| n >= 5).await;
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

/// A database stall with a tiny writer queue: the session must stop reading the
/// socket (back-pressure) yet keep sending heartbeats, not reconnect, and lose nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_continue_while_a_database_stall_holds_the_stream_back() {
    use sqlx::Connection as _;
    let db = &sqlite_database();
    let path = db.sqlite_path().expect("the first test database is SQLite");
    let sim = start_sim(NavixySimConfig {
        trackers: 20,
        rate: 100.0,
        batch_size: 10,
        heartbeat_interval: Duration::from_millis(100),
        server_heartbeat: Duration::from_millis(100),
        ..NavixySimConfig::default()
    })
    .await;
    let source = navixy_source(SOURCE, &sim, &format!("{}\n{ALL_DATA}", api_key_line()));
    let sup = "idle_timeout = \"500ms\"";
    let storage =
        "batch_size = 5\nqueue_capacity = 5\nbusy_timeout = \"20ms\"\nretry_max = \"50ms\"";
    let mut run = Run::start(db, &config(&db.cfg.url, storage, sup, &source)).await;
    let control = sim.control().clone();
    wait_sim(&control, "the first subscribe", SOON, |s| s.subscribes == 1).await;
    run.wait_count("tracker_states", |n| n > 0).await;

    // Another connection takes the write lock; the writer can only retry.
    let opts = sqlx::sqlite::SqliteConnectOptions::new()
        .filename(&path)
        .busy_timeout(Duration::from_secs(10));
    let mut holder = sqlx::sqlite::SqliteConnection::connect_with(&opts)
        .await
        .unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .unwrap();
    // A second of updates is far more than the queue (5), the batch in hand (5)
    // and one frame (10) hold, so the session has stopped reading by now.
    let generated = control.stats().states_generated;
    wait_sim(
        &control,
        "a second of updates during the stall",
        SOON,
        |s| s.states_generated >= generated + 100,
    )
    .await;
    let beats = control.stats().heartbeats_received;
    wait_sim(
        &control,
        "heartbeats while the stream is held back",
        Duration::from_secs(10),
        |s| s.heartbeats_received >= beats + 5,
    )
    .await;
    assert_eq!(
        control.stats().connections,
        1,
        "no reconnect during the stall"
    );

    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();
    control.pause_updates(true);
    wait_db_matches_sim(&run, &control, SOON).await;
    assert_eq!(duplicate_keys(&run.store).await, 0);
    let rows = run.lifecycle(SOURCE).await;
    assert_eq!(n_events(&rows, "suspended"), 0, "{rows:#?}");
    assert_eq!(control.stats().connections, 1);
    let (status, log) = run.stop().await;
    assert!(status.success(), "exit {status}; log:\n{}", tail(&log));
    sim.shutdown().await;
}
