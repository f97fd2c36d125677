//! End to end, frames a Navixy source does not expect: the real `wsvault` binary
//! against the in-process simulator, on SQLite and (when configured) PostgreSQL.
//!
//! - a malformed frame, an unknown event and an 8 MiB message are recorded and the
//!   session keeps running on the same connection;
//! - a message above `max_message_bytes` is logged and the session reconnects.

use crate::support::navixy::*;
use crate::support::*;

/// `length(payload)` in characters on either backend.
fn payload_len(db: &TestDb, kind: &str) -> String {
    let expr = if db.label == "postgres" {
        "length(payload::text)"
    } else {
        "length(payload)"
    };
    format!("SELECT CAST({expr} AS BIGINT) FROM events WHERE kind = '{kind}'")
}

each_backend!(malformed_unknown_and_8mib_frames_are_recorded_and_the_session_goes_on);
async fn malformed_unknown_and_8mib_frames_are_recorded_and_the_session_goes_on(backend: Backend) {
    for db in test_databases(backend).await {
        let sim = start_sim(small_fleet()).await;
        let source = navixy_source(SOURCE, &sim, &format!("{}\n{ALL_DATA}", api_key_line()));
        let sup = "max_message_bytes = 16777216";
        let mut run = Run::start(&db, &config(&db.cfg.url, "", sup, &source)).await;
        let control = sim.control().clone();
        run.wait_lifecycle(SOURCE, "subscribed", |r| n_events(r, "subscribed") == 1)
            .await;

        assert_eq!(control.send_malformed(), 1);
        assert_eq!(control.send_unknown_event(), 1);
        assert_eq!(control.send_oversized(8 << 20), 1);
        run.wait_count("events WHERE kind = 'malformed'", |n| n == 1)
            .await;
        run.wait_count("events WHERE kind = 'sim_unknown'", |n| n == 1)
            .await;
        run.wait_count("events WHERE kind = 'sim_oversized'", |n| n == 1)
            .await;
        let len = fetch_cells(&run.store, &payload_len(&db, "sim_oversized")).await;
        assert!(
            len[0][0].i64() >= (8 << 20) - 16,
            "[{}] stored {} chars",
            db.label,
            len[0][0].i64()
        );
        let malformed = fetch_cells(
            &run.store,
            "SELECT payload FROM events WHERE kind = 'malformed'",
        )
        .await;
        assert!(
            malformed[0][0].text().contains("not json"),
            "[{}] {:?}",
            db.label,
            malformed[0][0]
        );

        // The session went on: same connection, data still stored, process alive.
        let stored = run.count("tracker_states").await;
        run.wait_count("tracker_states", |n| n >= stored + 20).await;
        let rows = run.lifecycle(SOURCE).await;
        assert_eq!(n_events(&rows, "suspended"), 0, "[{}] {rows:#?}", db.label);
        assert_eq!(control.stats().subscribes, 1, "[{}]", db.label);
        assert!(run.alive(), "[{}]", db.label);
        let log = run.log();
        assert!(
            log.contains("sim_unknown"),
            "[{}] unknown event logged",
            db.label
        );
        assert!(
            log.contains("malformed"),
            "[{}] malformed frame logged",
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

each_backend!(message_over_max_message_bytes_is_logged_and_the_session_reconnects);
async fn message_over_max_message_bytes_is_logged_and_the_session_reconnects(backend: Backend) {
    for db in test_databases(backend).await {
        let sim = start_sim(small_fleet()).await;
        let source = navixy_source(SOURCE, &sim, &format!("{}\n{ALL_DATA}", api_key_line()));
        let sup = "max_message_bytes = 1048576";
        let mut run = Run::start(&db, &config(&db.cfg.url, "", sup, &source)).await;
        let control = sim.control().clone();
        run.wait_lifecycle(SOURCE, "subscribed", |r| n_events(r, "subscribed") == 1)
            .await;

        assert_eq!(control.send_oversized(8 << 20), 1);
        let rows = run
            .wait_lifecycle(SOURCE, "suspended for size, then resumed", |r| {
                n_events(r, "resumed") == 1
            })
            .await;
        let suspended: Vec<&Ev> = rows.iter().filter(|r| r.event == "suspended").collect();
        assert_eq!(suspended.len(), 1, "[{}] {rows:#?}", db.label);
        assert!(
            suspended[0]
                .reason
                .as_deref()
                .is_some_and(|t| t.contains("max_message_bytes")),
            "[{}] {rows:#?}",
            db.label
        );
        run.wait_log("max_message_bytes", SOON).await;
        assert_eq!(run.count("events WHERE kind = 'sim_oversized'").await, 0);
        let stored = run.count("tracker_states").await;
        run.wait_count("tracker_states", |n| n >= stored + 20).await;
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
