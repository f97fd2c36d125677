//! Blind periods of a Navixy source are filled back from the REST history (issue 12):
//! the real binary against the simulator's moving fleet, on SQLite and PostgreSQL.
//!
//! Each test makes the daemon blind for a few report intervals (a silent upstream,
//! or the daemon killed), then checks that `tracker_states` hold exactly the
//! simulator's history of every tracker over the whole stored span: every point
//! once, none missing, the recovered ones marked `origin = 'backfill'`, and the gap
//! `done`. Waits poll the database or the simulator; nothing depends on speed.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::*;
use chrono::{DateTime, Utc};
use wsvault::sim::navixy::{DEFAULT_API_KEY, NavixySim, NavixySimConfig};
use wsvault::store::Store;

const TRACKERS: usize = 4;

fn sim_config(readings: bool, trackers: usize) -> NavixySimConfig {
    NavixySimConfig {
        trackers,
        report_interval: Some(Duration::from_secs(1)),
        readings,
        heartbeat_interval: Duration::from_millis(300),
        server_heartbeat: Duration::from_millis(300),
        ..NavixySimConfig::default()
    }
}

fn source(sim: &NavixySim, readings: bool, extra: &str) -> String {
    let subs = if readings {
        r#"
[[sources.subscriptions]]
type = "state_batch"
target = "all"
[[sources.subscriptions]]
type = "readings_batch"
target = "all"
"#
    } else {
        ""
    };
    format!(
        r#"
[[sources]]
name = "fleet"
kind = "navixy"
url = "{ws}"
api_key_hash = "{DEFAULT_API_KEY}"
idle_timeout = "1s"
handshake_timeout = "500ms"
backfill_delay = "200ms"
backfill_timeout = "2s"
{extra}
{subs}"#,
        ws = sim.ws_url()
    )
}

/// Polls until a gap of `cause` is `status`; panics with the gaps and the log after
/// twice [`LIMIT`].
async fn wait_gap(store: &Store, daemon: &Daemon, cause: &str, status: &str) {
    let what = format!("a {status} {cause} gap (last: every gap's cause, status, error)");
    let gaps = || fetch_cells(store, "SELECT cause, status, error FROM gaps");
    let found = |gaps: &Vec<Vec<Cell>>| {
        gaps.iter()
            .any(|g| g[0].text() == cause && g[1].text() == status)
    };
    wait_for(LIMIT * 2, &what, Some(daemon), gaps, found).await;
}

fn time(c: &Cell) -> DateTime<Utc> {
    c.ts()
}

/// Every tracker's stored states equal the simulator's history over the stored span.
async fn assert_exact_history(db: &TestDb, store: &Store, sim: &NavixySim, trackers: usize) {
    for idx in 0..trackers {
        let source_id = 90000 + idx as i64;
        let rows = fetch_cells(
            store,
            &format!(
                "SELECT state_time FROM tracker_states WHERE source = 'fleet' \
                 AND source_id = {source_id} ORDER BY state_time"
            ),
        )
        .await;
        let stored: Vec<DateTime<Utc>> = rows.iter().map(|r| time(&r[0])).collect();
        let (Some(first), Some(last)) = (stored.first(), stored.last()) else {
            panic!("{}: tracker {source_id} has no states", db.label);
        };
        let want: BTreeSet<DateTime<Utc>> = sim
            .control()
            .history(idx, *first, *last)
            .into_iter()
            .map(|(_, t)| t)
            .collect();
        let got: BTreeSet<DateTime<Utc>> = stored.iter().copied().collect();
        assert_eq!(got.len(), stored.len(), "{}: duplicates", db.label);
        let missing: Vec<_> = want.difference(&got).collect();
        let extra: Vec<_> = got.difference(&want).collect();
        assert!(
            missing.is_empty() && extra.is_empty(),
            "{}: tracker {source_id}: missing {missing:?}, not in history {extra:?}",
            db.label
        );
    }
}

/// Makes the upstream silent until the daemon has noticed (a `suspended` row) and
/// the fleet moved on by `steps` reports, then lets it talk again.
async fn blind_for(store: &Store, sim: &NavixySim, steps: u64) {
    let before = scalar(
        store,
        "SELECT count(*) FROM session_events WHERE event = 'suspended'",
    )
    .await;
    let k0 = sim.control().fleet()[0].latest_update;
    sim.control().set_silent(true);
    wait_until(LIMIT, "a suspension", || async {
        scalar(
            store,
            "SELECT count(*) FROM session_events WHERE event = 'suspended'",
        )
        .await
            > before
    })
    .await;
    wait_until(LIMIT, "the fleet to move on", || async {
        sim.control().fleet()[0].latest_update >= k0 + steps
    })
    .await;
    sim.control().set_silent(false);
}

each_backend!(a_dropped_connection_is_filled_with_exactly_the_history);
async fn a_dropped_connection_is_filled_with_exactly_the_history(backend: Backend) {
    for db in test_databases(backend).await {
        let sim = NavixySim::start("127.0.0.1:0".parse().unwrap(), sim_config(false, TRACKERS))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        // Migrated before the daemon starts: two first migrations at once race (issue 16).
        let store = db.store().await;
        let daemon = Daemon::start(
            dir.path(),
            &config(&db.cfg.url, "", "", &source(&sim, false, "")),
        );
        wait_count(
            &store,
            Some(&daemon),
            "session_events WHERE event = 'subscribed'",
            |n| n == 1,
        )
        .await;
        blind_for(&store, &sim, 4).await;
        wait_gap(&store, &daemon, "network", "done").await;
        // Let live states arrive after the gap so the span ends in live data.
        let k = sim.control().fleet()[0].latest_update;
        wait_until(LIMIT, "more live states", || async {
            sim.control().fleet()[0].latest_update >= k + 2
        })
        .await;
        let log = daemon.stop().await;
        assert_exact_history(&db, &store, &sim, TRACKERS).await;
        let backfilled = scalar(
            &store,
            "SELECT count(*) FROM tracker_states WHERE origin = 'backfill'",
        )
        .await;
        assert!(
            backfilled >= (TRACKERS as i64) * 2,
            "{}: only {backfilled} backfilled rows; log:\n{log}",
            db.label
        );
        let gap = fetch_cells(
            &store,
            "SELECT trackers_total, trackers_done, points, error FROM gaps",
        )
        .await;
        assert_eq!(gap.len(), 1, "{}: {gap:?}", db.label);
        assert_eq!(gap[0][0].i64(), TRACKERS as i64, "{}", db.label);
        assert_eq!(gap[0][1].i64(), TRACKERS as i64, "{}", db.label);
        assert_eq!(gap[0][2].i64(), backfilled, "{}: points", db.label);
        assert!(!log.contains(DEFAULT_API_KEY), "{}: key in log", db.label);
        sim.shutdown().await;
    }
}

/// A simulator of [`TRACKERS`] trackers and a daemon recording it into `db` (migrated
/// first: two first migrations at once race, issue 16), once it has subscribed.
async fn subscribed(db: &TestDb) -> (NavixySim, tempfile::TempDir, Store, String, Daemon) {
    let sim = NavixySim::start("127.0.0.1:0".parse().unwrap(), sim_config(false, TRACKERS))
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let store = db.store().await;
    let cfg = config(&db.cfg.url, "", "", &source(&sim, false, ""));
    let daemon = Daemon::start(dir.path(), &cfg);
    wait_count(
        &store,
        Some(&daemon),
        "session_events WHERE event = 'subscribed'",
        |n| n == 1,
    )
    .await;
    (sim, dir, store, cfg, daemon)
}

each_backend!(a_killed_daemon_leaves_a_down_gap_that_is_filled);
async fn a_killed_daemon_leaves_a_down_gap_that_is_filled(backend: Backend) {
    for db in test_databases(backend).await {
        let (sim, dir, store, cfg, daemon) = subscribed(&db).await;
        let k = sim.control().fleet()[0].latest_update;
        wait_until(LIMIT, "live states", || async {
            sim.control().fleet()[0].latest_update >= k + 2
        })
        .await;
        daemon.signal("KILL");
        daemon.wait(LIMIT).await;
        let k = sim.control().fleet()[0].latest_update;
        wait_until(LIMIT, "the fleet to move while wsvault is down", || async {
            sim.control().fleet()[0].latest_update >= k + 4
        })
        .await;
        let daemon = Daemon::start(dir.path(), &cfg);
        wait_gap(&store, &daemon, "down", "done").await;
        let k = sim.control().fleet()[0].latest_update;
        wait_until(LIMIT, "more live states", || async {
            sim.control().fleet()[0].latest_update >= k + 2
        })
        .await;
        daemon.stop().await;
        assert_exact_history(&db, &store, &sim, TRACKERS).await;
        assert!(
            scalar(
                &store,
                "SELECT count(*) FROM tracker_states WHERE origin = 'backfill'"
            )
            .await
                >= TRACKERS as i64 * 3,
            "{}",
            db.label
        );
        sim.shutdown().await;
    }
}

each_backend!(a_daemon_killed_before_its_first_frame_was_stored_leaves_a_gap_from_its_connection);
/// A daemon killed after it connected but before any frame reached the database
/// (its writer had not committed yet) leaves only its `connections` row; the next
/// run's blind period starts at that connection, so the frames it lost come back.
async fn a_daemon_killed_before_its_first_frame_was_stored_leaves_a_gap_from_its_connection(
    backend: Backend,
) {
    for db in test_databases(backend).await {
        let (sim, dir, store, cfg, daemon) = subscribed(&db).await;
        daemon.signal("KILL");
        daemon.wait(LIMIT).await;
        // What a kill before the first commit of frames leaves: the connection only.
        for table in [
            "events",
            "tracker_states",
            "tracker_readings",
            "tracker_lifecycle",
        ] {
            store
                .execute(&format!("DELETE FROM {table}"), &[])
                .await
                .unwrap();
        }
        let opened = fetch_cells(&store, "SELECT max(opened_at) FROM connections").await[0][0].ts();
        let daemon = Daemon::start(dir.path(), &cfg);
        wait_gap(&store, &daemon, "down", "done").await;
        let from = fetch_cells(&store, "SELECT from_time FROM gaps WHERE cause = 'down'").await;
        assert_eq!(from.len(), 1, "{}", db.label);
        assert_eq!(time(&from[0][0]), opened, "{}", db.label);
        daemon.stop().await;
        sim.shutdown().await;
    }
}

each_backend!(rate_limits_and_span_limits_do_not_stop_a_backfill);
async fn rate_limits_and_span_limits_do_not_stop_a_backfill(backend: Backend) {
    for db in test_databases(backend).await {
        let sim = NavixySim::start("127.0.0.1:0".parse().unwrap(), sim_config(false, TRACKERS))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        // Migrated before the daemon starts: two first migrations at once race (issue 16).
        let store = db.store().await;
        let daemon = Daemon::start(
            dir.path(),
            &config(
                &db.cfg.url,
                "",
                "",
                &source(&sim, false, "backfill_rate = 4"),
            ),
        );
        wait_count(
            &store,
            Some(&daemon),
            "session_events WHERE event = 'subscribed'",
            |n| n == 1,
        )
        .await;
        sim.control().rest_too_many(6);
        sim.control().rest_server_errors(2);
        sim.control().rest_span_limit(Some(Duration::from_secs(2)));
        blind_for(&store, &sim, 5).await;
        wait_gap(&store, &daemon, "network", "done").await;
        let stats = sim.control().stats();
        daemon.stop().await;
        assert!(stats.rest_faults_served >= 8, "{}: {stats:?}", db.label);
        assert!(
            stats.rest_max_per_second <= 5,
            "{}: {} calls in one second with backfill_rate = 4",
            db.label,
            stats.rest_max_per_second
        );
        assert_exact_history(&db, &store, &sim, TRACKERS).await;
        sim.shutdown().await;
    }
}

each_backend!(live_ingest_and_heartbeats_go_on_during_a_backfill);
async fn live_ingest_and_heartbeats_go_on_during_a_backfill(backend: Backend) {
    const FLEET: usize = 150;
    for db in test_databases(backend).await {
        let sim = NavixySim::start("127.0.0.1:0".parse().unwrap(), sim_config(false, FLEET))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        // Migrated before the daemon starts: two first migrations at once race (issue 16).
        let store = db.store().await;
        let mut cfg = config(
            &db.cfg.url,
            "",
            "",
            &source(&sim, false, "backfill_rate = 50"),
        );
        cfg = cfg.replace("batch_size = 200", "batch_size = 32\nqueue_capacity = 64");
        let daemon = Daemon::start(dir.path(), &cfg);
        wait_count(
            &store,
            Some(&daemon),
            "session_events WHERE event = 'subscribed'",
            |n| n == 1,
        )
        .await;
        // Slow answers make the backfill last several report intervals.
        sim.control().rest_slow(Some(Duration::from_millis(20)));
        blind_for(&store, &sim, 3).await;
        wait_until(LIMIT, "the backfill to start", || async {
            scalar(&store, "SELECT count(*) FROM gaps WHERE status = 'running'").await > 0
        })
        .await;
        let hb = sim.control().stats().heartbeats_received;
        let live_before = scalar(
            &store,
            "SELECT count(*) FROM tracker_states WHERE origin = 'live'",
        )
        .await;
        wait_gap(&store, &daemon, "network", "done").await;
        let stats = sim.control().stats();
        let live_after = scalar(
            &store,
            "SELECT count(*) FROM tracker_states WHERE origin = 'live'",
        )
        .await;
        daemon.stop().await;
        assert!(
            stats.heartbeats_received > hb,
            "{}: no heartbeat during the backfill",
            db.label
        );
        assert!(
            live_after > live_before,
            "{}: no live ingest during the backfill",
            db.label
        );
        let opened = scalar(
            &store,
            "SELECT count(*) FROM session_events WHERE event = 'subscribed'",
        )
        .await;
        assert_eq!(opened, 2, "{}: reconnected during the backfill", db.label);
        assert_exact_history(&db, &store, &sim, FLEET).await;
        sim.shutdown().await;
    }
}

each_backend!(sensor_values_of_a_gap_come_back_through_sensor_data_read);
async fn sensor_values_of_a_gap_come_back_through_sensor_data_read(backend: Backend) {
    for db in test_databases(backend).await {
        let sim = NavixySim::start("127.0.0.1:0".parse().unwrap(), sim_config(true, 2))
            .await
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        // Migrated before the daemon starts: two first migrations at once race (issue 16).
        let store = db.store().await;
        let daemon = Daemon::start(
            dir.path(),
            &config(&db.cfg.url, "", "", &source(&sim, true, "")),
        );
        wait_count(
            &store,
            Some(&daemon),
            "session_events WHERE event = 'subscribed'",
            |n| n == 1,
        )
        .await;
        blind_for(&store, &sim, 4).await;
        wait_gap(&store, &daemon, "network", "done").await;
        let k = sim.control().fleet()[0].latest_update;
        wait_until(LIMIT, "more live readings", || async {
            sim.control().fleet()[0].latest_update >= k + 2
        })
        .await;
        daemon.stop().await;
        for (idx, tracker_id) in [(0usize, 501i64), (1, 502)] {
            for name in ["fuel_level", "Engine"] {
                let rows = fetch_cells(
                    &store,
                    &format!(
                        "SELECT update_time FROM tracker_readings WHERE tracker_id = {tracker_id} \
                         AND name = '{name}' ORDER BY update_time"
                    ),
                )
                .await;
                let got: BTreeSet<DateTime<Utc>> = rows.iter().map(|r| time(&r[0])).collect();
                assert_eq!(got.len(), rows.len(), "{}: duplicate readings", db.label);
                let (first, last) = (rows[0][0].ts(), rows[rows.len() - 1][0].ts());
                let want: BTreeSet<DateTime<Utc>> = sim
                    .control()
                    .history(idx, first, last)
                    .into_iter()
                    .map(|(_, t)| t)
                    .collect();
                assert_eq!(got, want, "{}: {name} of tracker {tracker_id}", db.label);
            }
        }
        let backfilled = scalar(
            &store,
            "SELECT count(*) FROM tracker_readings WHERE origin = 'backfill'",
        )
        .await;
        assert!(backfilled >= 2 * 2 * 2, "{}: {backfilled}", db.label);
        sim.shutdown().await;
    }
}
