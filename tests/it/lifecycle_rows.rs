//! Issue 4, lifecycle rows: every transition of a source is a `session_events` row
//! tied to a `connections` row, and the connection row is completed on close. A
//! server close with 1000 and a bare TCP drop are both network suspensions that
//! resume on their own after a backoff. Runs the real daemon against the JSON-RPC
//! simulator on SQLite and (when configured) PostgreSQL.

use std::time::Duration;

use crate::support::*;
use wsvault::sim::jsonrpc::{JsonRpcSim, JsonRpcSimConfig};

const SOURCE: &str = "engine";

each_backend!(server_close_1000_and_bare_drop_are_network_suspensions_that_resume);
async fn server_close_1000_and_bare_drop_are_network_suspensions_that_resume(backend: Backend) {
    for db in test_databases(backend).await {
        close_and_drop(&db).await;
    }
}

async fn close_and_drop(db: &TestDb) {
    let label = db.label;
    let sim = JsonRpcSim::start(
        "127.0.0.1:0".parse().unwrap(),
        JsonRpcSimConfig {
            interval: Duration::from_millis(50),
            ..JsonRpcSimConfig::default()
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
kind = "jsonrpc"
url = "{url}"
backoff_initial = "300ms"
backoff_max = "1s"
requests = [ {{ method = "GetActiveDoc", handle = -1, params = [] }} ]
"#,
        url = sim.ws_url()
    );
    let daemon = Daemon::start(dir.path(), &config(&db.cfg.url, "", "", &sources));

    wait_events(&store, &daemon, SOURCE, "first subscription", |e| {
        n_events(e, "subscribed") == 1
    })
    .await;
    assert_eq!(ctl.close_now(1000, "engine restarting"), 1, "{label}");
    wait_events(&store, &daemon, SOURCE, "resume after close 1000", |e| {
        n_events(e, "resumed") == 1
    })
    .await;
    held(
        ctl.wait_until(|s| s.open_connections == 1 && s.connections == 2, LIMIT)
            .await,
        &daemon,
        "the second connection",
    );
    assert_eq!(ctl.drop_now(), 1, "{label}");
    wait_events(&store, &daemon, SOURCE, "resume after a bare drop", |e| {
        n_events(e, "resumed") == 2
    })
    .await;
    let log = daemon.stop().await;

    let evs = events(&store, SOURCE).await;
    let conns = connections(&store, SOURCE).await;
    assert_eq!(conns.len(), 3, "{label}: {conns:#?}");
    assert_eq!(
        names(&evs),
        [
            "opened",
            "subscribed",
            "suspended",
            "opened",
            "subscribed",
            "resumed",
            "suspended",
            "opened",
            "subscribed",
            "resumed",
            "closed"
        ],
        "{label}: {evs:#?}"
    );
    // Each row belongs to the connection it happened on, in order.
    let per_conn: Vec<Option<i64>> = evs.iter().map(|e| e.connection_id).collect();
    let (c1, c2, c3) = (Some(conns[0].id), Some(conns[1].id), Some(conns[2].id));
    assert_eq!(
        per_conn,
        [c1, c1, c1, c2, c2, c2, c2, c3, c3, c3, c3],
        "{label}"
    );

    // Server close 1000: a network suspension with the server's code, not a close.
    let s1 = &evs[2];
    assert_eq!(s1.initiator.as_deref(), Some("network"), "{label}: {s1:?}");
    assert_eq!(s1.code, Some(1000), "{label}: {s1:?}");
    let r1 = s1.reason.as_deref().unwrap_or_default();
    assert!(
        r1.contains("1000") && r1.contains("engine restarting"),
        "{r1}"
    );
    assert_eq!(conns[0].close_code, Some(1000), "{label}");
    assert_eq!(conns[0].close_reason.as_deref(), Some(r1), "{label}");

    // Bare drop: a network suspension; RFC 6455 calls a close without a close frame 1006.
    let s2 = &evs[6];
    assert_eq!(s2.initiator.as_deref(), Some("network"), "{label}: {s2:?}");
    assert_eq!(s2.code, Some(1006), "{label}: {s2:?}");
    assert_eq!(conns[1].close_code, Some(1006), "{label}");
    assert_eq!(conns[1].close_reason, s2.reason, "{label}");

    // Shutdown: closed by us with 1000.
    let closed = &evs[10];
    assert_eq!(closed.code, Some(1000), "{label}: {closed:?}");
    assert_eq!(closed.initiator, None, "{label}");
    assert_eq!(conns[2].close_code, Some(1000), "{label}");

    // Every connection row is complete, and its times bracket its events.
    for c in &conns {
        let closed_at = c.closed_at.unwrap_or_else(|| panic!("{label}: {c:?}"));
        assert!(closed_at >= c.opened_at, "{label}: {c:?}");
        assert!(c.close_reason.is_some(), "{label}: {c:?}");
        assert_eq!(c.url, sim.ws_url(), "{label}");
        for e in evs.iter().filter(|e| e.connection_id == Some(c.id)) {
            assert!(e.at >= c.opened_at, "{label}: {e:?} before {c:?}");
        }
    }
    // Resumes waited out the backoff (300 ms at least) after each suspension.
    for (susp, next) in [(&evs[2], &conns[1]), (&evs[6], &conns[2])] {
        let gap = next.opened_at - susp.at;
        assert!(
            gap >= chrono::TimeDelta::milliseconds(300),
            "{label}: reconnected {gap} after the suspension"
        );
    }
    // The simulator saw exactly those three connections, and the daemon said why.
    assert_eq!(ctl.stats().connections, 3, "{label}");
    assert!(log.contains("treated as a drop"), "{label}: {log}");
    sim.shutdown().await;
}
