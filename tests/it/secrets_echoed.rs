//! Issue 16, point 12: secrets the server echoes, secrets cut by a frame boundary,
//! and secrets in dependency logs at `RUST_LOG=trace`. The real `wsvault` binary
//! against in-process simulators, on SQLite and (when configured) PostgreSQL.
//!
//! "Nowhere" is checked the blunt way: every column of every table, every byte of
//! the SQLite files, the whole log and `wsvault status` output are searched for any
//! [`WINDOW`]-character piece of the secret, so a secret stored in two halves
//! fails as surely as a whole one.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use crate::support::navixy::*;
use crate::support::*;
use chrono::Utc;
use wsvault::record::{Record, SessionEvent};
use wsvault::sim::jsonrpc::{JsonRpcSim, JsonRpcSimConfig};
use wsvault::sim::navixy::NavixySimConfig;
use wsvault::sim::tradernet::{TradernetSim, TradernetSimConfig};
use wsvault::store::{Store, TABLES};

const KEY: &str = "c0ffee5ec7e7c0ffee5ec7e7c0ffee77";
/// Frames of the simulator are cut every this many characters: less than the
/// hash's 32, so every copy of it the server sends is cut at least once.
const SPLIT: usize = 24;
/// No stored or printed text may hold this many consecutive characters of a
/// secret. The daemon guarantees less (at most 3 in clear where a frame boundary
/// falls right after a secret's first characters, see `src/redact/stream.rs`);
/// 8 keeps the test free of coincidental matches with ordinary data.
const WINDOW: usize = 8;

/// Every `WINDOW`-character piece of `secret` found in `text`.
fn pieces_in(text: &str, secret: &str) -> Vec<String> {
    let chars: Vec<char> = secret.chars().collect();
    chars
        .windows(WINDOW.min(chars.len()))
        .map(|w| w.iter().collect::<String>())
        .filter(|w| text.contains(w.as_str()))
        .collect()
}

/// Every column of every row of every table, as text.
async fn everything_stored(store: &Store) -> String {
    let mut all = String::new();
    for table in TABLES {
        for row in fetch_cells(store, &format!("SELECT * FROM {table}")).await {
            all.push_str(&format!("{table}: {row:?}\n"));
        }
    }
    all
}

/// Runs a one-shot `wsvault` command; returns stdout and stderr together.
async fn wsvault(dir: &Path, args: &[&str]) -> String {
    let dir = dir.to_path_buf();
    let args: Vec<String> = args.iter().map(|s| s.to_string()).collect();
    tokio::task::spawn_blocking(move || {
        let out = Command::new(binary())
            .args(&args)
            .current_dir(&dir)
            .env("RUST_LOG", "trace")
            .output()
            .unwrap();
        assert!(out.status.success(), "wsvault {args:?}: {out:?}");
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    })
    .await
    .unwrap()
}

each_backend!(a_hash_the_server_echoes_or_splits_is_stored_and_printed_nowhere);
async fn a_hash_the_server_echoes_or_splits_is_stored_and_printed_nowhere(backend: Backend) {
    for db in test_databases(backend).await {
        let label = db.label;
        let sim = start_sim(NavixySimConfig {
            api_keys: vec![KEY.into()],
            split_frames_at: Some(SPLIT),
            ..small_fleet()
        })
        .await;
        // The first subscribe is refused with the hash in the description (echoed
        // into `session_events.reason` and `events`), in frames cut inside the hash.
        sim.control()
            .refuse_next_subscribes(1, 8, &format!("queue full for hash {KEY}"));
        let sources = navixy_source(
            SOURCE,
            &sim,
            &format!("api_key_hash = \"{KEY}\"\ntrack_message_size = true\n{ALL_DATA}"),
        );
        let cfg = config(
            &db.cfg.url,
            "traffic = true\nraw_events = \"full\"",
            "",
            &sources,
        );
        let mut run = Run::start(&db, &cfg).await;
        run.wait_lifecycle(SOURCE, "the refusal and a subscription", |r| {
            n_events(r, "subscribe_error") >= 1 && n_events(r, "subscribed") >= 1
        })
        .await;
        // A typed row with the hash: `tracker_lifecycle.lifecycle_event` is verbatim.
        assert_eq!(
            sim.control().send_lifecycle(1, &format!("block-{KEY}")),
            1,
            "[{label}]"
        );
        run.wait_count("tracker_lifecycle", |n| n >= 1).await;
        let (status, log) = run.stop().await;
        assert!(
            status.success(),
            "[{label}] exit {status}; log:\n{}",
            tail(&log)
        );

        let stored = everything_stored(&run.store).await;
        assert_eq!(
            pieces_in(&stored, KEY),
            Vec::<String>::new(),
            "[{label}] the hash is stored:\n{stored}"
        );
        assert_eq!(pieces_in(&log, KEY), Vec::<String>::new(), "[{label}] log");
        // Masked, not lost: the echo, the typed row and the cut frames are there.
        assert!(
            run.count(
                "session_events WHERE event = 'subscribe_error' \
                 AND reason = 'queue full for hash ***'"
            )
            .await
                >= 1,
            "[{label}] {stored}"
        );
        assert_eq!(
            run.count("tracker_lifecycle WHERE lifecycle_event = 'block-***'")
                .await,
            1,
            "[{label}]"
        );
        let cut = run
            .count("traffic WHERE direction = 'received' AND payload LIKE '%***%'")
            .await;
        assert!(cut >= 4, "[{label}] {cut} received frames masked");
        if let Some(path) = db.sqlite_path() {
            let mut bytes = Vec::new();
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                if let Ok(b) = std::fs::read(&p) {
                    bytes.extend(b);
                }
            }
            let text = String::from_utf8_lossy(&bytes);
            assert_eq!(pieces_in(&text, KEY), Vec::<String>::new(), "[sqlite] file");
        }

        // `status` masks what it prints, even rows stored before the writer masked
        // them: this one is written by a writer of this test process, which has not
        // been told the hash, and is the newest lifecycle event of the source.
        write_all(
            &run.store,
            &db.cfg,
            vec![Record::SessionEvent(SessionEvent {
                id: wsvault::ids::next_id(),
                source: SOURCE.into(),
                connection_id: None,
                occurred_at: Utc::now() + chrono::Duration::hours(1),
                event: "subscribe_error".into(),
                initiator: None,
                code: Some(8),
                reason: Some(format!("stored long ago: {KEY}")),
                detail: None,
            })],
        )
        .await;
        let config_path = run.dir.path().join("wsvault.toml");
        let printed = wsvault(
            run.dir.path(),
            &["status", "--config", &config_path.display().to_string()],
        )
        .await;
        assert!(
            printed.contains("subscribe_error (stored long ago: ***)"),
            "[{label}] {printed}"
        );
        assert_eq!(pieces_in(&printed, KEY), Vec::<String>::new(), "[{label}]");
        sim.shutdown().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn trace_logs_of_every_dependency_hold_no_secret() {
    const SID: &str = "sid-TRACE-5ecrE7-0a1b2c3d";
    const PUBLIC: &str = "pub-TRACE-77e1d00d";
    const PRIVATE: &str = "priv-TRACE-99f00baa";
    const TOKEN: &str = "tok-TRACE-4d1ab0b0cafe";
    let db = &sqlite_database();
    let navixy = start_sim(NavixySimConfig {
        api_keys: vec![KEY.into()],
        split_frames_at: Some(SPLIT),
        ..small_fleet()
    })
    .await;
    let tradernet = TradernetSim::start(
        "127.0.0.1:0".parse().unwrap(),
        TradernetSimConfig {
            sids: vec![SID.into()],
            api_keys: vec![(PUBLIC.into(), PRIVATE.into())],
            ..TradernetSimConfig::default()
        },
    )
    .await
    .unwrap();
    let rpc = JsonRpcSim::start(
        "127.0.0.1:0".parse().unwrap(),
        JsonRpcSimConfig {
            interval: Duration::from_millis(50),
            ..JsonRpcSimConfig::default()
        },
    )
    .await
    .unwrap();
    let sources = format!(
        r#"{navixy}
[[sources]]
name = "by-sid"
kind = "tradernet"
url = "{tn}"
sid = "{SID}"

[[sources]]
name = "by-key"
kind = "tradernet"
url = "{tn}"
public_key = "{PUBLIC}"
private_key = "{PRIVATE}"

[[sources]]
name = "rpc"
kind = "jsonrpc"
url = "{rpc}"
headers = {{ Authorization = "Bearer {TOKEN}" }}
requests = [ {{ method = "GetActiveDoc", handle = -1, params = [] }} ]
"#,
        navixy = navixy_source(
            SOURCE,
            &navixy,
            &format!("api_key_hash = \"{KEY}\"\ntrack_message_size = true\n{ALL_DATA}"),
        ),
        tn = tradernet.ws_url(),
        rpc = rpc.ws_url(),
    );
    let cfg = config(&db.cfg.url, "traffic = true", "", &sources);
    let dir = tempfile::tempdir().unwrap();
    let config_path = dir.path().join("wsvault.toml");
    std::fs::write(&config_path, &cfg).unwrap();
    // Migrated first, so the daemon's own migration is a no-op.
    let store = db.store().await;
    let daemon = Daemon::start_with(dir.path(), &config_path, &[("RUST_LOG", "trace")]);
    let mut run = Run {
        store,
        daemon: Some(daemon),
        dir,
    };
    for source in [SOURCE, "by-sid", "by-key", "rpc"] {
        run.wait_lifecycle(source, "subscribed", |r| n_events(r, "subscribed") >= 1)
            .await;
    }
    // The server echoes each secret back.
    tradernet
        .control()
        .send_error(&format!("session {SID} and key {PUBLIC} refused"));
    rpc.control().send_raw(
        &serde_json::json!({"jsonrpc": "2.0", "id": 99,
            "error": {"code": 401, "message": format!("Bearer {TOKEN} expired")}})
        .to_string(),
    );
    run.wait_count(
        "events WHERE source = 'rpc' AND payload LIKE '%expired%'",
        |n| n >= 1,
    )
    .await;
    let (status, log) = run.stop().await;
    assert!(status.success(), "exit {status}; log:\n{}", tail(&log));

    // The dependencies did log (their frame dumps, at trace, are capped).
    assert!(
        log.contains("Client handshake done"),
        "tungstenite's debug lines are in the log:\n{}",
        tail(&log)
    );
    let signatures: Vec<String> = tradernet
        .control()
        .stats()
        .connect_targets
        .iter()
        .filter_map(|t| {
            let u = url::Url::parse(&format!("ws://x{t}")).ok()?;
            u.query_pairs()
                .find(|(k, _)| k == "X-NtApi-Sig")
                .map(|(_, v)| v.into_owned())
        })
        .collect();
    assert!(!signatures.is_empty(), "the key source signed its connects");
    let mut secrets = vec![KEY, SID, PUBLIC, PRIVATE, TOKEN];
    secrets.extend(signatures.iter().map(String::as_str));
    for secret in secrets {
        assert_eq!(
            pieces_in(&log, secret),
            Vec::<String>::new(),
            "a secret is in the trace log"
        );
        let hex = hex::encode(secret);
        assert!(!log.contains(&hex), "a secret is in the log in hex");
    }
    navixy.shutdown().await;
    tradernet.shutdown().await;
    rpc.shutdown().await;
}
