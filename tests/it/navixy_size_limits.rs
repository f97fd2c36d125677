//! `max_message_bytes` bounds the upstream *message*, not the WebSocket frame that
//! carries it with Atmosphere's `length|` prefix; and a server that re-sends a
//! message wsvault refuses cannot make it reconnect in a tight loop. The real
//! binary against the in-process simulator, on SQLite and (when configured)
//! PostgreSQL.

use crate::support::navixy::*;
use crate::support::*;
use std::time::Duration;
use wsvault::sim::navixy::sized_event;

const MAX: usize = 65_536;

/// A framed source (`track_message_size`) with `max_message_bytes = MAX`.
fn framed_source(sim: &wsvault::sim::navixy::NavixySim) -> String {
    navixy_source(
        SOURCE,
        sim,
        &format!(
            "{}\n{ALL_DATA}\ntrack_message_size = true\nmax_message_bytes = {MAX}",
            api_key_line()
        ),
    )
}

each_backend!(a_framed_message_of_exactly_max_message_bytes_is_stored);
async fn a_framed_message_of_exactly_max_message_bytes_is_stored(backend: Backend) {
    for db in test_databases(backend).await {
        let sim = start_sim(small_fleet()).await;
        let sup = "";
        let mut run = Run::start(&db, &config(&db.cfg.url, "", sup, &framed_source(&sim))).await;
        let control = sim.control().clone();
        run.wait_lifecycle(SOURCE, "subscribed", |r| n_events(r, "subscribed") == 1)
            .await;

        // `65536|{…}` on the wire: 6 bytes more than the message.
        assert_eq!(sized_event(MAX).len(), MAX);
        assert_eq!(control.send_oversized(MAX), 1);
        run.wait_count("events WHERE kind = 'sim_oversized'", |n| n == 1)
            .await;
        let rows = run.lifecycle(SOURCE).await;
        assert_eq!(n_events(&rows, "suspended"), 0, "[{}] {rows:#?}", db.label);
        assert_eq!(control.stats().connections, 1, "[{}]", db.label);
        let (status, log) = run.stop().await;
        assert!(status.success(), "[{}] {}", db.label, tail(&log));
        sim.shutdown().await;
    }
}

each_backend!(a_message_refused_on_every_connection_backs_off_exponentially);
async fn a_message_refused_on_every_connection_backs_off_exponentially(backend: Backend) {
    for db in test_databases(backend).await {
        let sim = start_sim(small_fleet()).await;
        let control = sim.control().clone();
        // Every connection gets one byte too many right after its subscription.
        control.send_after_each_subscribe(Some(sized_event(MAX + 1)));
        // `stable_after = 0s`: every subscribed connection counts as stable, which
        // used to restart the backoff at `backoff_initial` after each refusal.
        let sup = "backoff_initial = \"50ms\"\nbackoff_max = \"10s\"\nstable_after = \"0s\"";
        let mut run = Run::start(&db, &config(&db.cfg.url, "", sup, &framed_source(&sim))).await;
        wait_sim(&control, "five connections", SOON, |s| s.connections >= 5).await;
        let times = control.stats().connect_times;
        let gaps: Vec<Duration> = times.windows(2).map(|w| w[1] - w[0]).collect();
        // The 1st refusal may restart the sequence (50..100 ms); from the 2nd in a
        // row it keeps growing: ≥ 100, ≥ 200, ≥ 400 ms. A loop restarting at
        // `backoff_initial` each time waits under 100 ms plus a connect.
        assert!(
            gaps[2] >= Duration::from_millis(200) && gaps[3] >= Duration::from_millis(400),
            "[{}] gaps between connections: {gaps:?}",
            db.label
        );
        // Each refusal is recorded, naming the limit.
        let rows = run
            .wait_lifecycle(SOURCE, "four refusals recorded", |r| {
                r.iter()
                    .filter(|r| {
                        r.event == "suspended"
                            && r.reason
                                .as_deref()
                                .is_some_and(|t| t.contains("max_message_bytes"))
                    })
                    .count()
                    >= 4
            })
            .await;
        assert_eq!(
            run.count("events WHERE kind = 'sim_oversized'").await,
            0,
            "[{}] {rows:#?}",
            db.label
        );
        assert!(run.alive(), "[{}]", db.label);
        control.send_after_each_subscribe(None);
        let (status, log) = run.stop().await;
        assert!(status.success(), "[{}] {}", db.label, tail(&log));
        sim.shutdown().await;
    }
}
