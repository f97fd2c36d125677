//! Issue 4, manual suspension: SIGUSR1 suspends every source once (initiator manual,
//! close code 4000) and nothing reconnects while suspended, however long that lasts
//! compared with the backoff; SIGUSR2 resumes every source and data flows again.
//! One Tradernet, one JSON-RPC and one Navixy source run in the same daemon.

use std::time::Duration;

use crate::support::*;
use wsvault::sim::jsonrpc::{JsonRpcSim, JsonRpcSimConfig};
use wsvault::sim::navixy::{self, NavixySim, NavixySimConfig};
use wsvault::sim::tradernet::{DEFAULT_SID, SessionSpec, TradernetSim, TradernetSimConfig};
use wsvault::store::Store;

const SOURCES: [&str; 3] = ["broker", "engine", "fleet"];

/// Longer than `backoff_max` (300 ms, the tests' default) several times over.
const QUIET_WINDOW: Duration = Duration::from_millis(2000);

each_backend!(usr1_suspends_each_source_once_and_usr2_resumes_them);
async fn usr1_suspends_each_source_once_and_usr2_resumes_them(backend: Backend) {
    for db in test_databases(backend).await {
        suspend_and_resume(&db).await;
    }
}

struct Sims {
    tradernet: TradernetSim,
    jsonrpc: JsonRpcSim,
    navixy: NavixySim,
}

impl Sims {
    async fn start() -> Sims {
        let any = "127.0.0.1:0".parse().unwrap();
        Sims {
            tradernet: TradernetSim::start(any, TradernetSimConfig::default())
                .await
                .unwrap(),
            jsonrpc: JsonRpcSim::start(
                any,
                JsonRpcSimConfig {
                    interval: Duration::from_millis(50),
                    ..JsonRpcSimConfig::default()
                },
            )
            .await
            .unwrap(),
            navixy: NavixySim::start(
                any,
                NavixySimConfig {
                    trackers: 2,
                    updates: None,
                    rate: 20.0,
                    readings: false,
                    heartbeat_interval: Duration::from_millis(500),
                    ..NavixySimConfig::default()
                },
            )
            .await
            .unwrap(),
        }
    }

    /// Connections each simulator accepted so far: (tradernet, jsonrpc, navixy).
    fn connections(&self) -> (u64, u64, u64) {
        (
            self.tradernet.control().stats().connections,
            self.jsonrpc.control().stats().connections,
            self.navixy.control().stats().connections,
        )
    }

    fn open_connections(&self) -> (u64, u64, u64) {
        (
            self.tradernet.control().stats().open_connections,
            self.jsonrpc.control().stats().open_connections,
            self.navixy.control().stats().open_connections,
        )
    }

    fn sources(&self) -> String {
        format!(
            r#"
[[sources]]
name = "broker"
kind = "tradernet"
url = "{tradernet}"
sid = "{DEFAULT_SID}"

[[sources]]
name = "engine"
kind = "jsonrpc"
url = "{jsonrpc}"
requests = [ {{ method = "GetActiveDoc", handle = -1, params = [] }} ]

[[sources]]
name = "fleet"
kind = "navixy"
url = "{navixy}"
api_key_hash = "{hash}"
"#,
            tradernet = self.tradernet.ws_url(),
            jsonrpc = self.jsonrpc.ws_url(),
            navixy = self.navixy.ws_url(),
            hash = navixy::DEFAULT_API_KEY,
        )
    }
}

/// The lifecycle steps of `source` (other rows, e.g. warnings, left out).
async fn steps(store: &Store, source: &str) -> Vec<Ev> {
    events(store, source)
        .await
        .into_iter()
        .filter(|e| {
            ["opened", "subscribed", "suspended", "resumed", "closed"].contains(&e.event.as_str())
        })
        .collect()
}

async fn wait_all(store: &Store, daemon: &Daemon, what: &str, pred: impl Fn(&[Ev]) -> bool) {
    for source in SOURCES {
        wait_events(store, daemon, source, what, |e| pred(e)).await;
    }
}

async fn data_counts(store: &Store) -> (i64, i64, i64) {
    (
        scalar(store, "SELECT count(*) FROM security_sessions").await,
        scalar(store, "SELECT count(*) FROM notifications").await,
        scalar(store, "SELECT count(*) FROM tracker_states").await,
    )
}

async fn suspend_and_resume(db: &TestDb) {
    let label = db.label;
    let sims = Sims::start().await;
    let store = db.store().await;
    let dir = tempfile::tempdir().unwrap();
    let daemon = Daemon::start(dir.path(), &config(&db.cfg.url, "", "", &sims.sources()));

    wait_all(&store, &daemon, "first subscription", |e| {
        n_events(e, "subscribed") == 1
    })
    .await;
    // Some data of each kind before the suspension.
    wait_for(
        LIMIT,
        &format!("{label}: some data of each kind"),
        Some(&daemon),
        || data_counts(&store),
        |&(s, nt, t)| s >= 2 && nt >= 3 && t >= 2,
    )
    .await;

    daemon.signal("USR1");
    wait_all(&store, &daemon, "the manual suspension", |e| {
        n_events(e, "suspended") == 1
    })
    .await;
    let closed = sims
        .tradernet
        .control()
        .wait_until(|s| s.open_connections == 0, LIMIT)
        .await
        && sims
            .jsonrpc
            .control()
            .wait_until(|s| s.open_connections == 0, LIMIT)
            .await
        && sims
            .navixy
            .control()
            .wait_until(|s| s.open_connections == 0, LIMIT)
            .await;
    held(closed, &daemon, "every connection closed");
    let before = sims.connections();
    let data_before = data_counts(&store).await;
    // A Tradernet session opened while suspended is seen only after the resume.
    let late = sims
        .tradernet
        .control()
        .open_session(SessionSpec::default());

    // Nothing reconnects during a window several times the backoff cap.
    let reconnected = sims
        .jsonrpc
        .control()
        .wait_until(|s| s.connections > before.1, QUIET_WINDOW)
        .await;
    assert!(!reconnected, "{label}: jsonrpc reconnected while suspended");
    assert_eq!(
        sims.connections(),
        before,
        "{label}: reconnect while suspended"
    );
    assert_eq!(sims.open_connections(), (0, 0, 0), "{label}");
    for source in SOURCES {
        let evs = steps(&store, source).await;
        assert_eq!(
            names(&evs),
            ["opened", "subscribed", "suspended"],
            "{label} {source}: {evs:#?}"
        );
    }
    assert_eq!(data_counts(&store).await, data_before, "{label}");

    daemon.signal("USR2");
    wait_all(&store, &daemon, "the resume", |e| {
        n_events(e, "resumed") == 1
    })
    .await;
    assert_eq!(
        sims.connections(),
        (before.0 + 1, before.1 + 1, before.2 + 1),
        "{label}: exactly one new connection per source"
    );
    // Data flows again on every source.
    let counts_and_late = || async {
        let late_seen = scalar(
            &store,
            &format!("SELECT count(*) FROM security_session_changes WHERE session_id = {late}"),
        )
        .await;
        (data_counts(&store).await, late_seen)
    };
    wait_for(
        LIMIT,
        &format!("{label}: data after resume (before: {data_before:?})"),
        Some(&daemon),
        counts_and_late,
        |&((s, nt, t), late_seen)| {
            s > data_before.0 && nt > data_before.1 + 2 && t > data_before.2 && late_seen == 1
        },
    )
    .await;
    let log = daemon.stop().await;

    for source in SOURCES {
        let evs = steps(&store, source).await;
        assert_eq!(
            names(&evs),
            [
                "opened",
                "subscribed",
                "suspended",
                "opened",
                "subscribed",
                "resumed",
                "closed"
            ],
            "{label} {source}: {evs:#?}"
        );
        let s = &evs[2];
        assert_eq!(
            (s.initiator.as_deref(), s.code),
            (Some("manual"), Some(4000)),
            "{label} {source}: {s:?}"
        );
        let conns = connections(&store, source).await;
        assert_eq!(conns.len(), 2, "{label} {source}");
        assert_eq!(conns[0].close_code, Some(4000), "{label} {source}");
        assert_eq!(s.connection_id, Some(conns[0].id), "{label} {source}");
        assert_eq!(evs[5].connection_id, Some(conns[1].id), "{label} {source}");
        assert_eq!(conns[1].close_code, Some(1000), "{label} {source}");
    }
    // On the wire: the suspension closed with 4000, the shutdown with 1000.
    assert_eq!(
        sims.tradernet.control().stats().client_close_codes,
        [4000, 1000],
        "{label}"
    );
    assert!(log.contains("suspending every source"), "{label}");
    assert!(log.contains("resuming every source"), "{label}");
    sims.tradernet.shutdown().await;
    sims.jsonrpc.shutdown().await;
    sims.navixy.shutdown().await;
}

each_backend!(usr1_while_reconnecting_is_recorded_and_stops_the_attempts);
async fn usr1_while_reconnecting_is_recorded_and_stops_the_attempts(backend: Backend) {
    for db in test_databases(backend).await {
        suspend_while_down(&db).await;
    }
}

/// An upstream that accepts TCP connections and drops them at once (every
/// WebSocket upgrade fails); counts the attempts.
async fn dead_upstream() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicU64>,
) {
    use std::sync::atomic::{AtomicU64, Ordering};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let count = std::sync::Arc::new(AtomicU64::new(0));
    let seen = count.clone();
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            drop(stream);
        }
    });
    (addr, count)
}

async fn suspend_while_down(db: &TestDb) {
    use std::sync::atomic::Ordering;
    let label = db.label;
    let (addr, attempts) = dead_upstream().await;
    let store = db.store().await;
    let dir = tempfile::tempdir().unwrap();
    let sources = format!(
        r#"
[[sources]]
name = "engine"
kind = "jsonrpc"
url = "ws://{addr}/app"
"#
    );
    let daemon = Daemon::start(dir.path(), &config(&db.cfg.url, "", "", &sources));
    wait_events(&store, &daemon, "engine", "failed attempts", |e| {
        n_events(e, "socket_error") >= 2
    })
    .await;

    daemon.signal("USR1");
    let evs = wait_events(&store, &daemon, "engine", "the manual suspension", |e| {
        n_events(e, "suspended") == 1
    })
    .await;
    let s = evs.iter().find(|e| e.event == "suspended").unwrap();
    assert_eq!(s.initiator.as_deref(), Some("manual"), "{label}: {s:?}");
    // Nothing was open, so nothing was closed: no connection, no close code.
    assert_eq!((s.connection_id, s.code), (None, None), "{label}: {s:?}");
    // An attempt already under way may finish; after that, silence.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let before = attempts.load(Ordering::SeqCst);
    tokio::time::sleep(QUIET_WINDOW).await;
    assert_eq!(
        attempts.load(Ordering::SeqCst),
        before,
        "{label}: attempts while suspended"
    );
    let quiet = events(&store, "engine").await;
    assert_eq!(n_events(&quiet, "suspended"), 1, "{label}");
    let errors_while_suspended = n_events(&quiet, "socket_error");

    // Resumed: the attempts start again (and fail, the upstream is still down).
    daemon.signal("USR2");
    wait_events(
        &store,
        &daemon,
        "engine",
        "attempts after the resume",
        |e| n_events(e, "socket_error") >= errors_while_suspended + 2,
    )
    .await;
    assert!(attempts.load(Ordering::SeqCst) > before, "{label}");

    // Stopped while not connected: still a `closed` row, the last one.
    daemon.stop().await;
    let evs = events(&store, "engine").await;
    let last = evs.last().unwrap();
    assert_eq!(last.event, "closed", "{label}: {evs:#?}");
    assert_eq!(last.connection_id, None, "{label}");
    assert_eq!(n_events(&evs, "closed"), 1, "{label}");
    assert_eq!(n_events(&evs, "opened"), 0, "{label}");
}
