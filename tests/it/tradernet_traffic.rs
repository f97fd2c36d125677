//! Issue 4, traffic and secrets: with `traffic = true` every frame in both
//! directions is in `traffic`, while the SID, the API keys and the signatures
//! appear nowhere in the database (SQLite file bytes, PostgreSQL row text) nor in
//! the daemon's log, even when the server echoes them back. Both SID and signed
//! API-key authentication; the daemon's own User-Agent gets past the edge.

use std::time::Duration;

use crate::support::*;
use serde_json::{Value, json};
use wsvault::sim::tradernet::{SessionSpec, TradernetControl, TradernetSim, TradernetSimConfig};
use wsvault::store::Store;

const SOURCE: &str = "broker";
const SID: &str = "sid-TOPSECRET-7f3a9c51";
const PUBLIC: &str = "pub-KEY-4b1d0e77aa";
const PRIVATE: &str = "priv-KEY-9e2c41f0bb";

/// How the test source authenticates.
#[derive(Clone, Copy)]
enum Auth {
    Sid,
    Key,
}

each_backend!(sid_auth_traffic_is_complete_and_secret_free);
async fn sid_auth_traffic_is_complete_and_secret_free(backend: Backend) {
    for db in test_databases(backend).await {
        traffic(&db, Auth::Sid).await;
    }
}

each_backend!(api_key_auth_traffic_is_complete_and_secret_free);
async fn api_key_auth_traffic_is_complete_and_secret_free(backend: Backend) {
    for db in test_databases(backend).await {
        traffic(&db, Auth::Key).await;
    }
}

/// The `X-NtApi-Sig` values of every upgrade request the simulator saw.
fn signatures(ctl: &TradernetControl) -> Vec<String> {
    ctl.stats()
        .connect_targets
        .iter()
        .filter_map(|t| {
            let u = url::Url::parse(&format!("ws://x{t}")).ok()?;
            u.query_pairs()
                .find(|(k, _)| k == "X-NtApi-Sig")
                .map(|(_, v)| v.into_owned())
        })
        .collect()
}

/// Waits until the daemon stored as many received frames as the simulator sent
/// and nothing more arrives.
async fn settle(store: &Store, daemon: &Daemon, ctl: &TradernetControl) {
    let received = "SELECT count(*) FROM traffic WHERE direction = 'received'";
    let settled = || async {
        let sent = ctl.stats().frames_sent as i64;
        let stored = scalar(store, received).await;
        if stored != sent {
            return (stored, sent, false);
        }
        tokio::time::sleep(Duration::from_millis(150)).await;
        let still = ctl.stats().frames_sent as i64 == sent && scalar(store, received).await == sent;
        (stored, sent, still)
    };
    let what = "traffic to match the simulator, and still after 150 ms (stored, sent, still)";
    wait_for(LIMIT, what, Some(daemon), settled, |s| s.2).await;
}

async fn traffic(db: &TestDb, auth: Auth) {
    let label = db.label;
    let sim = TradernetSim::start(
        "127.0.0.1:0".parse().unwrap(),
        TradernetSimConfig {
            sids: vec![SID.into()],
            api_keys: vec![(PUBLIC.into(), PRIVATE.into())],
            // Pushes only on change: the frame count is then fully determined.
            push_interval: Duration::from_secs(3600),
            ..TradernetSimConfig::default()
        },
    )
    .await
    .unwrap();
    let ctl = sim.control().clone();
    let store = db.store().await;
    let dir = tempfile::tempdir().unwrap();
    let credentials = match auth {
        Auth::Sid => format!("sid = \"{SID}\""),
        Auth::Key => format!("public_key = \"{PUBLIC}\"\nprivate_key = \"{PRIVATE}\""),
    };
    let sources = format!(
        r#"
[[sources]]
name = "{SOURCE}"
kind = "tradernet"
url = "{url}"
traffic = true
ping_interval = "30s"
{credentials}
"#,
        url = sim.ws_url()
    );
    let daemon = Daemon::start(dir.path(), &config(&db.cfg.url, "", "", &sources));

    wait_events(&store, &daemon, SOURCE, "the subscription", |e| {
        n_events(e, "subscribed") == 1
    })
    .await;
    // A push on change, a quote on another channel, and errors echoing every secret.
    ctl.open_session(SessionSpec::default());
    // The push first (a change and a command could otherwise race in the simulator).
    held(
        ctl.wait_until(|s| s.session_pushes == 2, LIMIT).await,
        &daemon,
        "the push on change",
    );
    let sig = signatures(&ctl).pop().unwrap_or_default();
    let echo = match auth {
        Auth::Sid => format!("session {SID} is not valid here"),
        Auth::Key => format!("key {PUBLIC} / {PRIVATE} signature {sig} refused"),
    };
    assert_eq!(ctl.send_error(&echo), 1, "{label}");
    assert_eq!(
        ctl.send_raw(r#"["q",{"c":"AAPL.US","ltp":187.5}]"#),
        1,
        "{label}"
    );
    wait_events(&store, &daemon, SOURCE, "the error notification", |e| {
        n_events(e, "notification") == 1
    })
    .await;
    // A second connection (and, with keys, possibly a second signature).
    assert_eq!(ctl.drop_now(), 1, "{label}");
    wait_events(&store, &daemon, SOURCE, "the resume", |e| {
        n_events(e, "resumed") == 1
    })
    .await;
    settle(&store, &daemon, &ctl).await;
    let log = daemon.stop().await;

    // Every frame, both directions, on the connection it travelled.
    let stats = ctl.stats();
    let conns = connections(&store, SOURCE).await;
    assert_eq!(conns.len(), 2, "{label}");
    let rows = fetch_cells(
        &store,
        &format!(
            "SELECT direction, payload, connection_id FROM traffic \
             WHERE source = '{SOURCE}' ORDER BY id"
        ),
    )
    .await;
    let sent: Vec<String> = rows
        .iter()
        .filter(|r| r[0].text() == "sent")
        .map(|r| r[1].text())
        .collect();
    assert_eq!(sent, stats.client_frames, "{label}");
    assert_eq!(sent, [r#"["sessions"]"#, r#"["sessions"]"#], "{label}");
    let received: Vec<Value> = rows
        .iter()
        .filter(|r| r[0].text() == "received")
        .map(|r| serde_json::from_str(&r[1].text()).unwrap())
        .collect();
    assert_eq!(received.len() as u64, stats.frames_sent, "{label}");
    let kinds: Vec<&str> = received.iter().map(|v| v[0].as_str().unwrap()).collect();
    assert_eq!(
        kinds,
        [
            "userData", "sessions", "sessions", "error", "q", "userData", "sessions"
        ],
        "{label}"
    );
    for c in &conns {
        let on_conn = rows.iter().filter(|r| r[2].opt_i64() == Some(c.id)).count();
        assert!(on_conn >= 3, "{label}: {on_conn} frames on {c:?}");
    }
    // Every received frame is also an `events` row (sessions pushes as envelopes).
    assert_eq!(
        scalar(&store, "SELECT count(*) FROM events").await,
        received.len() as i64,
        "{label}"
    );
    // The echoed secrets were masked in both the traffic row and the event.
    let masked = match auth {
        Auth::Sid => json!(["error", "session *** is not valid here"]),
        Auth::Key => json!(["error", "key *** / *** signature *** refused"]),
    };
    assert_eq!(received[3], masked, "{label}");
    let event = fetch_cells(&store, "SELECT payload FROM events WHERE kind = 'error'").await;
    let event: Value = serde_json::from_str(&event[0][0].text()).unwrap();
    assert_eq!(event, masked, "{label}");
    let note = events(&store, SOURCE).await;
    let note = note.iter().find(|e| e.event == "notification").unwrap();
    assert!(
        note.reason.as_deref().unwrap_or_default().contains("***"),
        "{label}: {note:?}"
    );
    // Stored URLs carry the mask, not the credential.
    for c in &conns {
        match auth {
            Auth::Sid => assert_eq!(c.url, format!("{}?SID=***", sim.ws_url()), "{label}"),
            Auth::Key => {
                assert!(
                    c.url.contains("X-NtApi-PublicKey=***"),
                    "{label}: {}",
                    c.url
                );
                assert!(c.url.contains("X-NtApi-Sig=***"), "{label}: {}", c.url);
                assert!(c.url.contains("X-NtApi-Timestamp="), "{label}: {}", c.url);
            }
        }
    }

    // The secrets themselves: nowhere in the database, nowhere in the log.
    let mut secrets: Vec<String> = vec![SID.into(), PUBLIC.into(), PRIVATE.into()];
    let sigs = signatures(&ctl);
    assert_eq!(sigs.len(), if matches!(auth, Auth::Key) { 2 } else { 0 });
    secrets.extend(sigs);
    let secrets: Vec<&str> = secrets.iter().map(String::as_str).collect();
    assert_nowhere(db, &store, &secrets, "AAPL.US", &log).await;

    // Our own User-Agent got past the edge on every attempt.
    let agent = format!("wsvault/{}", env!("CARGO_PKG_VERSION"));
    assert_eq!(stats.rejected_upgrades, 0, "{label}");
    assert!(
        stats
            .user_agents
            .iter()
            .all(|a| a.as_deref() == Some(&agent)),
        "{label}: {:?}",
        stats.user_agents
    );
    assert_eq!(stats.auth_ok, 2, "{label}");
    sim.shutdown().await;
}
