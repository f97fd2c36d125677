//! End to end, the happy path of a Navixy source: the real `wsvault` binary against
//! the in-process simulator, on SQLite and (when configured) PostgreSQL.
//!
//! - the subscribe message the server receives is exactly the configured requests,
//!   and client heartbeats arrive at the handshake's interval;
//! - 200 trackers × 50 updates end as exactly the distinct states and readings the
//!   simulator generated;
//! - SIGTERM unsubscribes, closes with 1000, records `closed` and exits 0.

mod common;
mod navixy_support;

use std::time::Duration;

use navixy_support::*;
use serde_json::json;
use wsvault::sim::navixy::{DEFAULT_API_KEY, NavixySimConfig};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_equals_config_and_heartbeats_keep_the_interval() {
    for db in common::test_databases().await {
        let sim = start_sim(NavixySimConfig {
            trackers: 5,
            rate: 20.0,
            heartbeat_interval: Duration::from_millis(200),
            ..NavixySimConfig::default()
        })
        .await;
        let source = navixy_source(
            SOURCE,
            &sim,
            &format!(
                r#"{}
subscriptions = [
  {{ type = "state_batch", target = "all", rate_limit = "5s", format = "full" }},
  {{ type = "readings_batch", target = "selected", tracker_ids = [501, 502], rate_limit = "2s", sensor_type = "fuel", include_components = false }},
  {{ type = "state", tracker_ids = [503, 504], format = "compact" }},
  {{ type = "iot_monitor", target = "selected", tracker_ids = [501], rate_limit = "10s" }},
]"#,
                api_key_line()
            ),
        );
        let mut run = Run::start(&db, &config(&db, "", &supervisor(""), &source)).await;
        let control = sim.control().clone();
        wait_sim(&control, "a subscribe and 10 heartbeats", SOON, |s| {
            s.subscribes >= 1 && s.heartbeats_received >= 10
        })
        .await;

        let stats = control.stats();
        let expected = json!({
            "action": "subscribe",
            "hash": DEFAULT_API_KEY,
            "requests": [
                {"type": "state_batch", "target": {"type": "all"}, "rate_limit": "5s", "format": "full"},
                {"type": "readings_batch", "target": {"type": "selected", "tracker_ids": [501, 502]},
                 "rate_limit": "2s", "sensor_type": "fuel", "include_components": false},
                {"type": "state", "trackers": [503, 504], "format": "compact"},
                {"type": "iot_monitor", "target": {"type": "selected", "tracker_ids": [501]}, "rate_limit": "10s"},
            ]
        });
        assert_eq!(stats.subscribe_messages, vec![expected], "[{}]", db.label);
        assert_eq!(
            stats.subscribes, 1,
            "[{}] one connection, one subscribe",
            db.label
        );
        assert_eq!(
            stats.last_connect_query.as_deref(),
            Some(
                "X-Atmosphere-tracking-id=0&X-Atmosphere-Framework=2.3.6-javascript\
                 &X-Atmosphere-Transport=websocket&Content-Type=application/json&X-atmo-protocol=true"
            ),
            "[{}] the reference client's query, no hash, no X-Heartbeat-Server",
            db.label
        );
        assert!(
            stats.other_client_frames.is_empty(),
            "[{}] {:?}",
            db.label,
            stats.other_client_frames
        );

        // Heartbeats: a fixed-rate schedule of 200 ms. One late beat may be followed by
        // a closer one, so single gaps get loose bounds and the mean a tight one.
        let times = &stats.heartbeat_times;
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        let mean = (times[times.len() - 1] - times[0]) / gaps.len() as u32;
        assert!(
            mean >= Duration::from_millis(180) && mean <= Duration::from_millis(280),
            "[{}] mean heartbeat gap {mean:?} (gaps {gaps:?})",
            db.label
        );
        assert!(
            gaps.iter()
                .all(|g| *g >= Duration::from_millis(40) && *g <= Duration::from_millis(1000)),
            "[{}] heartbeat gaps {gaps:?}",
            db.label
        );

        // The subscription is confirmed and data flows into the typed tables.
        let rows = run
            .wait_lifecycle(SOURCE, "subscribed", |r| n_events(r, "subscribed") == 1)
            .await;
        assert_eq!(rows[0].event, "opened", "[{}] {rows:?}", db.label);
        run.wait_count("tracker_states", SOON, |n| n >= 5).await;
        run.wait_count("tracker_readings", SOON, |n| n >= 8).await;
        // Readings were asked for trackers 501 and 502 only.
        assert_eq!(
            run.count("tracker_readings WHERE tracker_id NOT IN (501, 502)")
                .await,
            0,
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_trackers_fifty_updates_are_stored_exactly() {
    const TRACKERS: usize = 200;
    const UPDATES: u64 = 50;
    for db in common::test_databases().await {
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
        let mut run = Run::start(&db, &config(&db, "", &supervisor(""), &source)).await;
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
        let items = common::fetch_cells(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_unsubscribes_closes_1000_and_exits_0() {
    for db in common::test_databases().await {
        let sim = start_sim(small_fleet()).await;
        let source = navixy_source(SOURCE, &sim, &format!("{}\n{ALL_DATA}", api_key_line()));
        let mut run = Run::start(&db, &config(&db, "", &supervisor(""), &source)).await;
        let control = sim.control().clone();
        run.wait_lifecycle(SOURCE, "subscribed", |r| n_events(r, "subscribed") == 1)
            .await;
        run.wait_count("tracker_states", SOON, |n| n >= 5).await;

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
        let conns = common::fetch_cells(
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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_keep_their_interval_while_a_slow_writer_lags_behind_the_stream() {
    // Batches of one record make the writer the bottleneck, so the socket always
    // has data waiting while the flood lasts: heartbeats must still go out on time.
    const TRACKERS: usize = 300;
    const UPDATES: u64 = 20;
    for db in common::test_databases().await {
        let sim = start_sim(NavixySimConfig {
            trackers: TRACKERS,
            updates: Some(UPDATES),
            rate: 0.0,
            batch_size: 10,
            readings: false,
            heartbeat_interval: Duration::from_millis(200),
            server_heartbeat: Duration::from_secs(10),
            ..NavixySimConfig::default()
        })
        .await;
        let source = navixy_source(
            SOURCE,
            &sim,
            &format!(
                "{}\nsubscriptions = [{{ type = \"state_batch\", target = \"all\" }}]",
                api_key_line()
            ),
        );
        let storage = "batch_size = 1\nqueue_capacity = 20\ntraffic = true";
        let mut run = Run::start(&db, &config(&db, storage, &supervisor(""), &source)).await;
        let control = sim.control().clone();
        let total = TRACKERS as u64 * (UPDATES + 1);
        wait_sim(
            &control,
            "every update generated",
            Duration::from_secs(120),
            |s| s.states_generated == total,
        )
        .await;
        wait_db_matches_sim(&run, &control, Duration::from_secs(120)).await;
        let (status, log) = run.stop().await;
        assert!(
            status.success(),
            "[{}] exit {status}; log:\n{}",
            db.label,
            tail(&log)
        );

        // When each heartbeat left, from the daemon's own traffic rows, over the time
        // data was arriving.
        let span = common::fetch_cells(
            &run.store,
            "SELECT min(received_at), max(received_at) FROM tracker_states",
        )
        .await;
        let (first, last) = (span[0][0].ts(), span[0][1].ts());
        let beats: Vec<_> = common::fetch_cells(
            &run.store,
            "SELECT at FROM traffic WHERE direction = 'sent' AND payload = 'X' ORDER BY at",
        )
        .await
        .into_iter()
        .map(|c| c[0].ts())
        .filter(|t| *t >= first && *t <= last)
        .collect();
        let flood = (last - first).to_std().unwrap();
        assert!(
            flood >= Duration::from_secs(1),
            "[{}] the flood lasted only {flood:?}; make it longer",
            db.label
        );
        let gaps: Vec<Duration> = beats
            .windows(2)
            .map(|w| (w[1] - w[0]).to_std().unwrap())
            .collect();
        let expected = flood.as_millis() / 200;
        assert!(
            beats.len() as u128 * 4 >= expected * 3,
            "[{}] {} heartbeats during a {flood:?} flood (expected ~{expected}); gaps {gaps:?}",
            db.label,
            beats.len()
        );
        assert!(
            // A due heartbeat waits at most for the frame being handled (10 states).
            gaps.iter().all(|g| *g <= Duration::from_millis(1000)),
            "[{}] heartbeat gaps {gaps:?}",
            db.label
        );
        sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_while_waiting_to_reconnect_exits_at_once_and_records_closed() {
    for db in common::test_databases().await {
        let sim = start_sim(NavixySimConfig {
            reject_hash: true,
            ..small_fleet()
        })
        .await;
        let source = navixy_source(SOURCE, &sim, &format!("{}\n{ALL_DATA}", api_key_line()));
        let sup = supervisor("backoff_initial = \"5s\"\nbackoff_max = \"10s\"");
        let mut run = Run::start(&db, &config(&db, "", &sup, &source)).await;
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
