//! End to end, Navixy authentication: the real `wsvault` binary against the
//! in-process simulator, on SQLite and (when configured) PostgreSQL.
//!
//! - a refused hash is recorded (`subscribe_error`), retried only at the backoff cap,
//!   and recovered from once the server accepts it again;
//! - `logout` with a login configured: exactly one new `user/auth` call and a
//!   subscribe with the new hash; with `only_if_attached`, no new login at all;
//! - a second-factor answer and a wrong password (102) stop logins for good;
//! - logins stay within `max_logins_per_10min`.

use std::time::{Duration, Instant};

use crate::support::navixy::*;
use crate::support::*;
use wsvault::sim::navixy::NavixySimConfig;

each_backend!(wrong_hash_is_recorded_and_retried_only_at_the_backoff_cap);
async fn wrong_hash_is_recorded_and_retried_only_at_the_backoff_cap(backend: Backend) {
    for db in test_databases(backend).await {
        let sim = start_sim(NavixySimConfig {
            reject_hash: true,
            ..small_fleet()
        })
        .await;
        let source = navixy_source(SOURCE, &sim, &format!("{}\n{ALL_DATA}", api_key_line()));
        let sup = "backoff_initial = \"100ms\"\nbackoff_max = \"2s\"";
        let mut run = Run::start(&db, &config(&db.cfg.url, "", sup, &source)).await;
        let control = sim.control().clone();

        // A dead API key cannot be fixed by retrying soon: attempts come at the cap
        // (2 s, jittered down to no less than 1.5 s), never faster.
        wait_sim(&control, "the first attempt", SOON, |s| s.connections == 1).await;
        let first = Instant::now();
        wait_sim(&control, "the fourth attempt", SOON, |s| s.connections == 4).await;
        let three_gaps = first.elapsed();
        assert!(
            three_gaps >= Duration::from_millis(3 * 1400),
            "[{}] 3 retries took only {three_gaps:?}",
            db.label
        );
        assert!(
            three_gaps <= Duration::from_secs(15),
            "[{}] {three_gaps:?}",
            db.label
        );
        let s = control.stats();
        assert_eq!(s.subscribe_errors, s.subscribes, "[{}]", db.label);

        let rows = run
            .wait_lifecycle(SOURCE, "three subscribe_error rows", |r| {
                n_events(r, "subscribe_error") >= 3
            })
            .await;
        let err = rows.iter().find(|r| r.event == "subscribe_error").unwrap();
        assert_eq!(err.code, Some(3), "[{}] {err:?}", db.label);
        assert_eq!(err.reason.as_deref(), Some("Wrong hash"), "[{}]", db.label);
        assert!(
            n_events(&rows, "auth_failed") >= 3,
            "[{}] {rows:#?}",
            db.label
        );
        assert_eq!(n_events(&rows, "subscribed"), 0, "[{}] {rows:#?}", db.label);
        assert!(run.alive(), "[{}]", db.label);

        // Once the server accepts the key again the session recovers by itself.
        control.set_reject_hash(false);
        run.wait_lifecycle(SOURCE, "subscribed, resumed", |r| {
            n_events(r, "subscribed") == 1 && n_events(r, "resumed") == 1
        })
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

each_backend!(logout_logs_in_exactly_once_more_and_subscribes_with_the_new_hash);
async fn logout_logs_in_exactly_once_more_and_subscribes_with_the_new_hash(backend: Backend) {
    for db in test_databases(backend).await {
        let sim = start_sim(small_fleet()).await;
        let source = navixy_source(SOURCE, &sim, &login_lines("demo-password"));
        let mut run = Run::start(&db, &config(&db.cfg.url, "", "", &source)).await;
        let control = sim.control().clone();
        run.wait_lifecycle(SOURCE, "subscribed", |r| n_events(r, "subscribed") == 1)
            .await;
        assert_eq!(control.stats().auth_calls, 1, "[{}]", db.label);

        assert_eq!(control.send_logout(), 1);
        wait_sim(&control, "a subscribe with a new hash", SOON, |s| {
            s.subscribes == 2
        })
        .await;
        let rows = run
            .wait_lifecycle(SOURCE, "resumed", |r| n_events(r, "resumed") == 1)
            .await;
        // Give a wrong implementation time to log in again: a few heartbeats.
        let beats = control.stats().heartbeats_received;
        wait_sim(&control, "more heartbeats", SOON, |s| {
            s.heartbeats_received >= beats + 5
        })
        .await;

        let s = control.stats();
        assert_eq!(s.auth_calls, 2, "[{}] exactly one new login", db.label);
        assert_eq!(s.subscribes, 2, "[{}]", db.label);
        assert_eq!(
            s.subscribe_errors, 0,
            "[{}] never subscribed with the dead hash",
            db.label
        );
        let hashes = hashes_used(&s);
        assert_eq!(hashes.len(), 2, "[{}]", db.label);
        assert_ne!(hashes[0], hashes[1], "[{}]", db.label);
        assert!(!control.hash_valid(&hashes[0]) && control.hash_valid(&hashes[1]));
        // The dead session is closed cleanly, as its `connections` row says.
        assert_eq!(s.close_frames, vec![Some(1000)], "[{}]", db.label);
        let closed =
            fetch_cells(&run.store, "SELECT close_code FROM connections ORDER BY id").await;
        assert_eq!(closed[0][0].opt_i64(), Some(1000), "[{}]", db.label);

        let events: Vec<&str> = rows.iter().map(|r| r.event.as_str()).collect();
        let logout = rows
            .iter()
            .position(|r| {
                r.event == "notification"
                    && r.reason.as_deref().is_some_and(|t| t.contains("logout"))
            })
            .unwrap_or_else(|| panic!("[{}] no logout notification: {events:?}", db.label));
        assert!(
            events[logout..].starts_with(&["notification", "auth_failed", "suspended"]),
            "[{}] {events:?}",
            db.label
        );
        assert_eq!(events.last(), Some(&"resumed"), "[{}] {events:?}", db.label);
        let stored = run.count("tracker_states").await;
        run.wait_count("tracker_states", |n| n > stored).await;
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

each_backend!(only_if_attached_never_logs_in_again);
async fn only_if_attached_never_logs_in_again(backend: Backend) {
    for db in test_databases(backend).await {
        let sim = start_sim(small_fleet()).await;
        let source = navixy_source(
            SOURCE,
            &sim,
            &format!("only_if_attached = true\n{}", login_lines("demo-password")),
        );
        let mut run = Run::start(&db, &config(&db.cfg.url, "", "", &source)).await;
        let control = sim.control().clone();
        run.wait_lifecycle(SOURCE, "subscribed", |r| n_events(r, "subscribed") == 1)
            .await;
        control.send_logout();
        // It may retry with the hash it has (at the cap), but never log in again.
        wait_sim(&control, "two retries with the old hash", SOON, |s| {
            s.subscribe_errors >= 2
        })
        .await;
        let s = control.stats();
        assert_eq!(s.auth_calls, 1, "[{}]", db.label);
        let hashes = hashes_used(&s);
        assert!(
            hashes.iter().all(|h| *h == hashes[0]),
            "[{}] {hashes:?}",
            db.label
        );
        let rows = run.lifecycle(SOURCE).await;
        assert_eq!(n_events(&rows, "resumed"), 0, "[{}] {rows:#?}", db.label);
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

each_backend!(logins_stay_within_max_logins_per_10min);
async fn logins_stay_within_max_logins_per_10min(backend: Backend) {
    for db in test_databases(backend).await {
        let sim = start_sim(small_fleet()).await;
        let source = navixy_source(
            SOURCE,
            &sim,
            &format!("max_logins_per_10min = 2\n{}", login_lines("demo-password")),
        );
        let mut run = Run::start(&db, &config(&db.cfg.url, "", "", &source)).await;
        let control = sim.control().clone();
        wait_sim(&control, "the first subscribe", SOON, |s| s.subscribes == 1).await;
        control.send_logout();
        wait_sim(&control, "the second login's subscribe", SOON, |s| {
            s.subscribes == 2
        })
        .await;
        control.send_logout();
        let rows = run
            .wait_lifecycle(SOURCE, "a refused third login", |r| {
                r.iter().any(|x| {
                    x.event == "auth_failed"
                        && x.reason
                            .as_deref()
                            .is_some_and(|t| t.contains("login limit of 2"))
                })
            })
            .await;
        let s = control.stats();
        assert_eq!(
            s.auth_calls, 2,
            "[{}] the third login is held back",
            db.label
        );
        assert_eq!(s.subscribes, 2, "[{}] {rows:#?}", db.label);
        assert!(run.alive(), "[{}]", db.label);
        let (status, log) = run.stop().await;
        assert!(
            status.success(),
            "[{}] exit {status}; log:\n{}",
            db.label,
            tail(&log)
        );
        assert!(
            log.contains("login limit of 2 per 10 minutes"),
            "[{}]",
            db.label
        );
        sim.shutdown().await;
    }
}

/// Runs a login source whose login cannot succeed and checks that exactly one
/// `user/auth` call is made, an `auth_failed` row names `reason`, and nothing else
/// happens while a retry loop would have made several more calls.
async fn login_refused_for_good(
    backend: Backend,
    sim_cfg: NavixySimConfig,
    password: &str,
    reason: &str,
) {
    for db in test_databases(backend).await {
        let sim = start_sim(sim_cfg.clone()).await;
        let source = navixy_source(SOURCE, &sim, &login_lines(password));
        let sup = "backoff_initial = \"50ms\"\nbackoff_max = \"200ms\"";
        let mut run = Run::start(&db, &config(&db.cfg.url, "", sup, &source)).await;
        let control = sim.control().clone();
        let rows = run
            .wait_lifecycle(SOURCE, "auth_failed", |r| n_events(r, "auth_failed") == 1)
            .await;
        let failed = rows.iter().find(|r| r.event == "auth_failed").unwrap();
        assert!(
            failed.reason.as_deref().is_some_and(|t| t.contains(reason)),
            "[{}] {failed:?}",
            db.label
        );
        // With a 200 ms backoff cap a retry loop would make ~10 calls in 2 s; there is
        // no event to wait for when nothing must happen, so this window is a sleep.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let s = control.stats();
        assert_eq!(s.auth_calls, 1, "[{}] no second login", db.label);
        assert_eq!(s.connections, 0, "[{}] no socket without a hash", db.label);
        let rows = run.lifecycle(SOURCE).await;
        assert_eq!(
            n_events(&rows, "auth_failed"),
            1,
            "[{}] {rows:#?}",
            db.label
        );
        assert!(
            run.alive(),
            "[{}] the daemon stays up for other sources",
            db.label
        );
        assert!(
            run.log().contains(reason),
            "[{}] the log says why: {}",
            db.label,
            tail(&run.log())
        );
        let (status, log) = run.stop().await;
        assert!(
            status.success(),
            "[{}] exit {status}; log:\n{}",
            db.label,
            tail(&log)
        );
        assert!(
            !log.contains(password),
            "[{}] password in the log",
            db.label
        );
        sim.shutdown().await;
    }
}

each_backend!(second_factor_stops_logins);
async fn second_factor_stops_logins(backend: Backend) {
    let cfg = NavixySimConfig {
        two_factor: true,
        ..small_fleet()
    };
    login_refused_for_good(backend, cfg, "demo-password", "second factor").await;
}

each_backend!(wrong_password_102_is_not_retried);
async fn wrong_password_102_is_not_retried(backend: Backend) {
    login_refused_for_good(backend, small_fleet(), "not-the-Pa55word", "102").await;
}
