//! End to end, what a Navixy source puts on the wire and how it reads it: the real
//! `wsvault` binary against the in-process simulator, on SQLite and (when
//! configured) PostgreSQL.
//!
//! - the connect query and the subscribe message are exactly what the reference
//!   client sends for the configured requests;
//! - client heartbeats keep the handshake's interval, also while a flood of data
//!   waits on a slow writer;
//! - `length|message` framing with split frames and naive local timestamps are
//!   stored exactly.

use std::time::Duration;

use crate::support::navixy::*;
use crate::support::*;
use serde_json::json;
use wsvault::sim::navixy::{DEFAULT_API_KEY, NavixySimConfig};

each_backend!(subscribe_equals_config_and_heartbeats_keep_the_interval);
async fn subscribe_equals_config_and_heartbeats_keep_the_interval(backend: Backend) {
    for db in test_databases(backend).await {
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
        let mut run = Run::start(&db, &config(&db.cfg.url, "", "", &source)).await;
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
        run.wait_count("tracker_states", |n| n >= 5).await;
        run.wait_count("tracker_readings", |n| n >= 8).await;
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

each_backend!(heartbeats_keep_their_interval_while_a_slow_writer_lags_behind_the_stream);
async fn heartbeats_keep_their_interval_while_a_slow_writer_lags_behind_the_stream(
    backend: Backend,
) {
    // Batches of one record make the writer the bottleneck, so the socket always
    // has data waiting while the flood lasts: heartbeats must still go out on time.
    const UPDATES: u64 = 20;
    for db in test_databases(backend).await {
        // PostgreSQL commits one-record batches far slower: fewer trackers give a
        // flood of a few seconds on either backend.
        let trackers: usize = if db.label == "postgres" { 60 } else { 300 };
        let sim = start_sim(NavixySimConfig {
            trackers,
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
        let mut run = Run::start(&db, &config(&db.cfg.url, storage, "", &source)).await;
        let control = sim.control().clone();
        let total = trackers as u64 * (UPDATES + 1);
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
        let span = fetch_cells(
            &run.store,
            "SELECT min(received_at), max(received_at) FROM tracker_states",
        )
        .await;
        let (first, last) = (span[0][0].ts(), span[0][1].ts());
        let beats: Vec<_> = fetch_cells(
            &run.store,
            "SELECT at FROM traffic WHERE direction = 'sent' AND payload = 'X' ORDER BY at",
        )
        .await
        .into_iter()
        .map(|c| c[0].ts())
        .filter(|t| *t >= first && *t <= last)
        .collect();
        let flood = (last - first).to_std().unwrap();
        // However fast the machine drained it, every 200 ms of flood must have had
        // its heartbeat (a short flood simply asserts fewer of them).
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

each_backend!(framed_split_messages_and_naive_local_times_are_stored_exactly);
async fn framed_split_messages_and_naive_local_times_are_stored_exactly(backend: Backend) {
    // `length|message` framing with messages split over 700-character frames (as
    // old servers do), and naive timestamps in the user's zone (UTC+2).
    const TRACKERS: usize = 30;
    const UPDATES: u64 = 10;
    let epoch = chrono::DateTime::parse_from_rfc3339("2026-01-15T10:00:00Z")
        .unwrap()
        .to_utc();
    for db in test_databases(backend).await {
        let sim = start_sim(NavixySimConfig {
            trackers: TRACKERS,
            updates: Some(UPDATES),
            rate: 0.0,
            batch_size: 7,
            split_frames_at: Some(700),
            utc_offset_secs: 7200,
            epoch: Some(epoch),
            heartbeat_interval: Duration::from_millis(200),
            ..NavixySimConfig::default()
        })
        .await;
        let source = navixy_source(
            SOURCE,
            &sim,
            &format!(
                "{}\ntrack_message_size = true\ntimezone = \"Etc/GMT-2\"\n{ALL_DATA}",
                api_key_line()
            ),
        );
        let mut run = Run::start(&db, &config(&db.cfg.url, "", "", &source)).await;
        let control = sim.control().clone();
        let total = TRACKERS as u64 * (UPDATES + 1);
        wait_sim(&control, "every update generated", SOON, |s| {
            s.states_generated == total
        })
        .await;
        wait_db_matches_sim(&run, &control, SOON).await;
        assert!(
            control
                .stats()
                .last_connect_query
                .is_some_and(|q| q.contains("X-Atmosphere-TrackMessageSize=true")),
            "[{}]",
            db.label
        );
        assert_eq!(duplicate_keys(&run.store).await, 0, "[{}]", db.label);
        let span = fetch_cells(
            &run.store,
            "SELECT (SELECT min(state_time) FROM tracker_states), \
                    (SELECT max(state_time) FROM tracker_states), \
                    (SELECT min(update_time) FROM tracker_readings), \
                    (SELECT max(update_time) FROM tracker_readings)",
        )
        .await;
        let last = epoch + chrono::Duration::seconds(UPDATES as i64);
        let got: Vec<_> = span[0].iter().map(|c| c.ts()).collect();
        assert_eq!(got, vec![epoch, last, epoch, last], "[{}]", db.label);
        assert_eq!(
            run.count("events WHERE kind = 'malformed'").await,
            0,
            "[{}]",
            db.label
        );
        let rows = run.lifecycle(SOURCE).await;
        assert_eq!(n_events(&rows, "suspended"), 0, "[{}] {rows:#?}", db.label);
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
