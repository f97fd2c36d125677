//! Issue 4, Tradernet faults: a demo `userData` (dead SID) is an `auth_failed` row
//! followed by retries spaced by the backoff cap, never a crash nor a tight loop, and
//! the source recovers once the SID works again; `error` frames are stored and
//! noted in the lifecycle; a subscribe left unanswered gives one `warning` row and
//! keeps the connection; silence past the idle deadline is a network suspension.

use std::time::Duration;

use crate::support::*;
use chrono::TimeDelta;
use wsvault::sim::tradernet::{DEFAULT_SID, TradernetSim, TradernetSimConfig};

const SOURCE: &str = "broker";

async fn sim(cfg: TradernetSimConfig) -> TradernetSim {
    TradernetSim::start("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap()
}

fn source(sim: &TradernetSim, extra: &str) -> String {
    format!(
        r#"
[[sources]]
name = "{SOURCE}"
kind = "tradernet"
url = "{url}"
sid = "{DEFAULT_SID}"
{extra}
"#,
        url = sim.ws_url()
    )
}

each_backend!(demo_user_data_is_an_auth_failure_retried_at_the_backoff_cap);
async fn demo_user_data_is_an_auth_failure_retried_at_the_backoff_cap(backend: Backend) {
    for db in test_databases(backend).await {
        demo(&db).await;
    }
}

async fn demo(db: &TestDb) {
    let label = db.label;
    let sim = sim(TradernetSimConfig {
        demo: true,
        ..TradernetSimConfig::default()
    })
    .await;
    let ctl = sim.control().clone();
    let store = db.store().await;
    let dir = tempfile::tempdir().unwrap();
    // backoff_max 400 ms: a dead credential waits 300..400 ms between attempts.
    // only_if_attached: "never log in again"; Tradernet has no login to redo, so the
    // same SID is retried at the cap, exactly as without the flag.
    let extra = "only_if_attached = true";
    let cfg = config(
        &db.cfg.url,
        "",
        "backoff_max = \"400ms\"",
        &source(&sim, extra),
    );
    let mut daemon = Daemon::start(dir.path(), &cfg);

    wait_events(&store, &daemon, SOURCE, "three auth failures", |e| {
        n_events(e, "auth_failed") >= 3
    })
    .await;
    let c0 = ctl.stats().connections;
    let window = Duration::from_millis(2000);
    tokio::time::sleep(window).await;
    let tries = ctl.stats().connections - c0;
    // At most one attempt per 300 ms (plus the one in progress), and still trying.
    assert!(
        (1..=(2000 / 300 + 1)).contains(&tries),
        "{label}: {tries} attempts in {window:?}"
    );
    assert!(daemon.running(), "{label}: daemon died:\n{}", daemon.log());

    // Lifecycle rows first: every connection they name is then already stored.
    let evs = events(&store, SOURCE).await;
    let conns = connections(&store, SOURCE).await;
    for pair in conns.windows(2) {
        let gap = pair[1].opened_at - pair[0].closed_at.expect("closed");
        assert!(
            gap >= TimeDelta::milliseconds(300),
            "{label}: retried {gap} after a dead credential"
        );
    }
    let failed: Vec<&Ev> = evs.iter().filter(|e| e.event == "auth_failed").collect();
    for f in &failed {
        assert!(
            f.reason
                .as_deref()
                .unwrap_or_default()
                .contains("demo userData"),
            "{label}: {f:?}"
        );
        // Tied to the connection that got the demo payload, which was then closed.
        let conn = conns.iter().find(|c| Some(c.id) == f.connection_id);
        assert!(
            conn.is_some_and(|c| c.closed_at.is_some()),
            "{label}: {f:?}"
        );
    }
    assert_eq!(n_events(&evs, "subscribed"), 0, "{label}");
    // Each demo payload is kept as an event.
    let user_data = scalar(
        &store,
        "SELECT count(*) FROM events WHERE kind = 'userData'",
    )
    .await;
    assert!(user_data >= failed.len() as i64, "{label}");

    // Each connection with the dead SID was closed cleanly by the daemon (1000), and
    // the rows say so.
    let closes = ctl.stats().client_close_codes;
    assert!(closes.len() >= failed.len(), "{label}: {closes:?}");
    assert!(closes.iter().all(|c| *c == 1000), "{label}: {closes:?}");
    for f in &failed {
        let conn = conns
            .iter()
            .find(|c| Some(c.id) == f.connection_id)
            .unwrap();
        assert_eq!(conn.close_code, Some(1000), "{label}");
        let s = evs
            .iter()
            .find(|e| e.event == "suspended" && e.connection_id == f.connection_id)
            .unwrap_or_else(|| panic!("{label}: no suspension after {f:?}"));
        assert_eq!(
            (s.initiator.as_deref(), s.code),
            (Some("network"), Some(1000))
        );
    }
    // Every attempt carried the configured SID, nothing else.
    let targets = ctl.stats().connect_targets;
    assert!(
        targets.iter().all(|t| t == &format!("/?SID={DEFAULT_SID}")),
        "{label}: {targets:?}"
    );
    // The SID works again: the next attempt subscribes and the source resumes.
    ctl.set_demo(false);
    wait_events(&store, &daemon, SOURCE, "recovery", |e| {
        n_events(e, "subscribed") == 1 && n_events(e, "resumed") == 1
    })
    .await;

    // An error frame is stored whole and noted in the lifecycle.
    assert_eq!(ctl.send_error("Too many requests, slow down"), 1, "{label}");
    // (The demo connections' refusals are `error` frames too, recorded the same
    // way; this one is told apart by its text.)
    const NOTE: &str = "error: Too many requests, slow down";
    let is_note = |e: &Ev| e.event == "notification" && e.reason.as_deref() == Some(NOTE);
    wait_events(&store, &daemon, SOURCE, "the error notification", |e| {
        e.iter().filter(|x| is_note(x)).count() == 1
    })
    .await;
    let evs = events(&store, SOURCE).await;
    let note = evs.iter().find(|e| is_note(e)).unwrap();
    assert_eq!(
        note.reason.as_deref(),
        Some("error: Too many requests, slow down"),
        "{label}"
    );
    let stored = fetch_cells(
        &store,
        "SELECT payload, connection_id FROM events WHERE kind = 'error' AND CAST(payload AS TEXT) LIKE '%slow down%'",
    )
    .await;
    assert_eq!(stored.len(), 1, "{label}");
    let payload: serde_json::Value = serde_json::from_str(&stored[0][0].text()).unwrap();
    assert_eq!(
        payload,
        serde_json::json!(["error", "Too many requests, slow down"]),
        "{label}"
    );
    assert_eq!(stored[0][1].opt_i64(), note.connection_id, "{label}");
    daemon.stop().await;
    sim.shutdown().await;
}

each_backend!(unanswered_subscribe_gives_one_warning_and_keeps_the_connection);
async fn unanswered_subscribe_gives_one_warning_and_keeps_the_connection(backend: Backend) {
    for db in test_databases(backend).await {
        unanswered(&db).await;
    }
}

async fn unanswered(db: &TestDb) {
    let label = db.label;
    let sim = sim(TradernetSimConfig {
        answer_subscribe: false,
        ..TradernetSimConfig::default()
    })
    .await;
    let ctl = sim.control().clone();
    let store = db.store().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = r#"
sessions_timeout = "300ms"
idle_timeout = "1s"
ping_interval = "200ms"
"#;
    let daemon = Daemon::start(
        dir.path(),
        &config(&db.cfg.url, "", "", &source(&sim, extra)),
    );
    let evs = wait_events(&store, &daemon, SOURCE, "the warning", |e| {
        n_events(e, "warning") == 1
    })
    .await;
    let warning = evs.iter().find(|e| e.event == "warning").unwrap();
    assert_eq!(
        warning.reason.as_deref(),
        Some("no sessions frame within 300ms after subscribing"),
        "{label}"
    );
    let conns = connections(&store, SOURCE).await;
    assert_eq!(warning.connection_id, Some(conns[0].id), "{label}");
    // The connection stays (pings are answered) well past the idle deadline, and
    // the warning is not repeated.
    let moved = ctl
        .wait_until(|s| s.connections > 1, Duration::from_millis(2500))
        .await;
    assert!(!moved, "{label}: reconnected after the warning");
    let evs = events(&store, SOURCE).await;
    assert_eq!(names(&evs), ["opened", "warning"], "{label}: {evs:#?}");
    assert!(ctl.stats().pings_received >= 5, "{label}");
    assert_eq!(ctl.stats().subscribes, 1, "{label}");
    let log = daemon.stop().await;
    assert!(
        log.contains("no sessions frame within 300ms"),
        "{label}: {log}"
    );
    sim.shutdown().await;
}

each_backend!(silence_past_the_idle_deadline_is_a_network_suspension);
async fn silence_past_the_idle_deadline_is_a_network_suspension(backend: Backend) {
    for db in test_databases(backend).await {
        silence(&db).await;
    }
}

async fn silence(db: &TestDb) {
    let label = db.label;
    let sim = sim(TradernetSimConfig::default()).await;
    let ctl = sim.control().clone();
    let store = db.store().await;
    let dir = tempfile::tempdir().unwrap();
    let extra = r#"
idle_timeout = "800ms"
ping_interval = "200ms"
"#;
    let daemon = Daemon::start(
        dir.path(),
        &config(&db.cfg.url, "", "", &source(&sim, extra)),
    );
    wait_events(&store, &daemon, SOURCE, "the subscription", |e| {
        n_events(e, "subscribed") == 1
    })
    .await;
    // Silent: no frames, pings unanswered, socket open.
    ctl.set_silent(true);
    let evs = wait_events(&store, &daemon, SOURCE, "the idle suspension", |e| {
        n_events(e, "suspended") == 1
    })
    .await;
    let s = evs.iter().find(|e| e.event == "suspended").unwrap();
    assert_eq!(s.initiator.as_deref(), Some("network"), "{label}");
    assert_eq!(s.code, Some(1006), "{label}");
    let reason = s.reason.clone().unwrap_or_default();
    assert!(reason.contains("idle deadline"), "{label}: {reason}");
    let conns = connections(&store, SOURCE).await;
    let silent_for = s.at - conns[0].opened_at;
    assert!(
        silent_for >= TimeDelta::milliseconds(800),
        "{label}: gave up after {silent_for}"
    );
    ctl.set_silent(false);
    wait_events(&store, &daemon, SOURCE, "the resume", |e| {
        n_events(e, "resumed") == 1
    })
    .await;
    daemon.stop().await;
    sim.shutdown().await;
}
