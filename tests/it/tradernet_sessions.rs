//! Issue 4, Tradernet security sessions: the recorded opened/ended history matches
//! the simulator's ground truth exactly, across a forced disconnect during which a
//! session ended and another opened, and across a daemon restart (sessions that
//! ended while wsvault was down get `ended_at` and an `ended` row). `expires_at` is
//! the moment of receipt plus `expire`, i.e. the simulator's expiry time.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::support::*;
use chrono::{DateTime, TimeDelta, Utc};
use wsvault::sim::tradernet::{
    DEFAULT_SID, SessionChangeKind, SessionSpec, TradernetControl, TradernetSim, TradernetSimConfig,
};
use wsvault::store::Store;

const SOURCE: &str = "broker";
const LIFETIME: Duration = Duration::from_secs(6 * 3600);

each_backend!(recorded_history_matches_ground_truth_across_drop_and_restart);
async fn recorded_history_matches_ground_truth_across_drop_and_restart(backend: Backend) {
    for db in test_databases(backend).await {
        history(&db).await;
    }
}

/// One `security_sessions` row.
#[derive(Debug)]
struct Row {
    started_at: Option<DateTime<Utc>>,
    expires_at: Option<DateTime<Utc>>,
    first_seen_at: DateTime<Utc>,
    last_seen_at: DateTime<Utc>,
    ended_at: Option<DateTime<Utc>>,
}

async fn rows(store: &Store) -> BTreeMap<u64, Row> {
    let sql = format!(
        "SELECT session_id, started_at, expires_at, first_seen_at, last_seen_at, ended_at \
         FROM security_sessions WHERE source = '{SOURCE}'"
    );
    fetch_cells(store, &sql)
        .await
        .into_iter()
        .map(|r| {
            let row = Row {
                started_at: r[1].opt_ts(),
                expires_at: r[2].opt_ts(),
                first_seen_at: r[3].ts(),
                last_seen_at: r[4].ts(),
                ended_at: r[5].opt_ts(),
            };
            (r[0].i64() as u64, row)
        })
        .collect()
}

/// `(session_id, change) -> observed_at` of every recorded change.
async fn changes(store: &Store) -> BTreeMap<(u64, String), DateTime<Utc>> {
    let sql = format!(
        "SELECT session_id, change, observed_at FROM security_session_changes \
         WHERE source = '{SOURCE}'"
    );
    fetch_cells(store, &sql)
        .await
        .into_iter()
        .map(|r| ((r[0].i64() as u64, r[1].text()), r[2].ts()))
        .collect()
}

/// The simulator's ground truth in the same shape, with the time of each change.
fn truth(ctl: &TradernetControl) -> BTreeMap<(u64, String), DateTime<Utc>> {
    ctl.stats()
        .history
        .into_iter()
        .map(|c| {
            let change = match c.change {
                SessionChangeKind::Opened => "opened",
                SessionChangeKind::Ended => "ended",
            };
            ((c.session_id, change.to_string()), c.at)
        })
        .collect()
}

/// Waits until the recorded changes equal the ground truth.
async fn wait_match(store: &Store, daemon: &Daemon, ctl: &TradernetControl, what: &str) {
    let recorded_and_truth = || async {
        let got: Vec<_> = changes(store).await.into_keys().collect();
        let want: Vec<_> = truth(ctl).into_keys().collect();
        (got, want)
    };
    let what = format!("{what} (last: recorded changes, ground truth)");
    wait_for(
        LIMIT,
        &what,
        Some(daemon),
        recorded_and_truth,
        |(got, want)| got == want,
    )
    .await;
}

fn spec(ip: &str) -> SessionSpec {
    SessionSpec {
        ip_client: ip.to_string(),
        ..SessionSpec::default()
    }
}

async fn history(db: &TestDb) {
    let label = db.label;
    let sim = TradernetSim::start(
        "127.0.0.1:0".parse().unwrap(),
        TradernetSimConfig {
            push_interval: Duration::from_millis(400),
            session_lifetime: LIFETIME,
            ..TradernetSimConfig::default()
        },
    )
    .await
    .unwrap();
    let ctl = sim.control().clone();
    let store = db.store().await;
    let dir = tempfile::tempdir().unwrap();
    let sources = format!(
        r#"
[[sources]]
name = "{SOURCE}"
kind = "tradernet"
url = "{url}"
sid = "{DEFAULT_SID}"
idle_timeout = "1500ms"
ping_interval = "200ms"
sessions_timeout = "5s"
"#,
        url = sim.ws_url()
    );
    let cfg = config(&db.cfg.url, "", "", &sources);
    let daemon = Daemon::start(dir.path(), &cfg);

    // The two sessions open at start, then one opened and one ended while connected.
    let initial = ctl.open_session_ids();
    assert_eq!(initial.len(), 2, "{label}");
    wait_match(&store, &daemon, &ctl, "the initial sessions").await;
    let c = ctl.open_session(spec("192.0.2.3"));
    wait_match(&store, &daemon, &ctl, "a session opened while connected").await;
    assert!(ctl.end_session(initial[0]), "{label}");
    wait_match(&store, &daemon, &ctl, "a session ended while connected").await;

    // Forced disconnect: the server goes silent and drops the socket; while the
    // daemon cannot hear it, one session ends and another opens.
    ctl.set_silent(true);
    assert_eq!(ctl.drop_now(), 1, "{label}");
    wait_events(&store, &daemon, SOURCE, "the network suspension", |e| {
        n_events(e, "suspended") >= 1
    })
    .await;
    assert!(ctl.end_session(initial[1]), "{label}");
    let d = ctl.open_session(spec("192.0.2.4"));
    let recorded_meanwhile = changes(&store).await.len();
    ctl.set_silent(false);
    wait_match(&store, &daemon, &ctl, "the changes made while disconnected").await;
    assert_eq!(
        recorded_meanwhile, 4,
        "{label}: recorded while disconnected"
    );
    let evs = wait_events(&store, &daemon, SOURCE, "the resume", |e| {
        n_events(e, "resumed") == 1
    })
    .await;
    let first = evs
        .iter()
        .find(|e| e.event == "suspended")
        .expect("a suspension");
    assert_eq!(first.initiator.as_deref(), Some("network"), "{label}");
    assert_eq!(first.code, Some(1006), "{label}: {first:?}");
    daemon.stop().await;

    // Restart: while the daemon is down, one session ends and another opens.
    assert!(ctl.end_session(c), "{label}");
    let e = ctl.open_session(spec("192.0.2.5"));
    let daemon = Daemon::start(dir.path(), &cfg);
    wait_match(&store, &daemon, &ctl, "the changes made while stopped").await;
    let log = daemon.stop().await;

    // Exactly the ground truth: every id opened once, the ended ones ended once.
    let truth = truth(&ctl);
    let recorded = changes(&store).await;
    assert_eq!(
        recorded.keys().collect::<Vec<_>>(),
        truth.keys().collect::<Vec<_>>(),
        "{label}"
    );
    assert_eq!(recorded.len(), 8, "{label}: 5 opened + 3 ended");
    for (key, sim_at) in &truth {
        // A change is observed after it happened (same clock, millisecond-truncated
        // on the simulator side).
        assert!(
            recorded[key] >= *sim_at - TimeDelta::milliseconds(1),
            "{label}: {key:?} observed at {} before it happened at {sim_at}",
            recorded[key]
        );
    }
    let rows = rows(&store).await;
    assert_eq!(
        rows.keys().copied().collect::<Vec<_>>(),
        [initial[0], initial[1], c, d, e],
        "{label}"
    );
    for (id, row) in &rows {
        let opened = recorded[&(*id, "opened".to_string())];
        assert_eq!(row.first_seen_at, opened, "{label} {id}");
        let ended = recorded.get(&(*id, "ended".to_string()));
        assert_eq!(row.ended_at.as_ref(), ended, "{label} {id}");
        assert!(row.last_seen_at >= row.first_seen_at, "{label} {id}");
        if let Some(ended) = ended {
            assert!(row.last_seen_at <= *ended, "{label} {id}");
        }
        // start_datetime is the simulator's opening time (naive UTC, milliseconds).
        let sim_start = truth[&(*id, "opened".to_string())];
        assert_eq!(row.started_at, Some(sim_start), "{label} {id}");
        // expires_at = received_at + expire = the simulator's expiry, give or take
        // the time the frame spent between the simulator's clock and ours.
        let expiry = sim_start + TimeDelta::from_std(LIFETIME).unwrap();
        let off = row.expires_at.expect("expires_at") - expiry;
        assert!(
            off >= TimeDelta::milliseconds(-2) && off <= TimeDelta::seconds(3),
            "{label} {id}: expires_at off by {off}"
        );
    }
    // The active view holds exactly what the simulator has open.
    let active: Vec<u64> = fetch_cells(
        &store,
        &format!(
            "SELECT session_id FROM active_security_sessions \
             WHERE source = '{SOURCE}' ORDER BY session_id"
        ),
    )
    .await
    .iter()
    .map(|r| r[0].i64() as u64)
    .collect();
    assert_eq!(active, ctl.open_session_ids(), "{label}");
    assert_eq!(active, [d, e], "{label}");
    // Pushes are kept as envelopes with their item count.
    let pushes = scalar(
        &store,
        "SELECT count(*) FROM events WHERE kind = 'sessions' AND item_count IS NOT NULL",
    )
    .await;
    assert!(pushes >= 5, "{label}: {pushes} sessions events");
    // No missing-sessions warning: every subscribe was answered.
    assert_eq!(
        n_events(&events(&store, SOURCE).await, "warning"),
        0,
        "{label}: {log}"
    );
    sim.shutdown().await;
}
