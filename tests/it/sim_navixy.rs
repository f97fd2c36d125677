//! The Navixy simulator speaks Navixy's documented protocol: handshake,
//! heartbeats, login, subscribe, snapshot, updates and their formats.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::support::ws::navixy::*;
use crate::support::ws::*;
use serde_json::{Value, json};
use wsvault::sim::navixy::{
    DEFAULT_API_KEY, NavixySimConfig, READING_VALUES_PER_ITEM, TrackerStatus,
};

#[tokio::test]
async fn handshake_heartbeats_and_connect_query() {
    let sim = start(NavixySimConfig {
        server_heartbeat: Duration::from_millis(100),
        ..quick()
    })
    .await;
    let (mut ws, handshake) = open(&sim).await;
    let parts: Vec<&str> = handshake.split('|').collect();
    assert_eq!(parts.len(), 4, "{handshake}");
    assert_eq!(parts[0].len(), 36);
    assert_eq!(&parts[1..], ["200", "X", ""]);
    // Server heartbeat after 100 ms of write silence.
    assert_eq!(next_text(&mut ws, SOON).await.as_deref(), Some("X"));
    send(&mut ws, "X").await;
    send(&mut ws, "X").await;
    let ctl = sim.control();
    assert!(ctl.wait_until(|s| s.heartbeats_received == 2, SOON).await);
    let stats = ctl.stats();
    assert_eq!(stats.heartbeat_times.len(), 2);
    assert!(stats.heartbeats_sent >= 1);
    assert_eq!(stats.connections, 1);
    assert_eq!(stats.last_connect_query.as_deref(), Some(QUERY));
    sim.shutdown().await;
}

#[tokio::test]
async fn old_framework_version_is_refused_with_501() {
    let sim = start(quick()).await;
    let url = format!("{}?X-Atmosphere-Framework=2.2.0-javascript", sim.ws_url());
    match connect_ua(&url, None).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
            assert_eq!(resp.status(), 501);
            assert!(resp.headers().contains_key("X-Atmosphere-error"));
        }
        other => panic!("expected HTTP 501, got {other:?}"),
    }
    assert_eq!(sim.control().stats().rejected_upgrades, 1);
}

#[tokio::test]
async fn login_issues_fresh_hashes_and_refuses_wrong_passwords() {
    let cfg = quick();
    let (login, password) = (cfg.login.clone(), cfg.password.clone());
    let sim = start(cfg).await;
    let http = reqwest::Client::new();
    let call = |pw: &str| {
        http.post(sim.auth_url())
            .json(&json!({"login": login, "password": pw}))
            .send()
    };
    let a: Value = call(&password).await.unwrap().json().await.unwrap();
    let b: Value = call(&password).await.unwrap().json().await.unwrap();
    assert_eq!(a["success"], true);
    assert_eq!(a["type"], "authenticated");
    let (ha, hb) = (a["hash"].as_str().unwrap(), b["hash"].as_str().unwrap());
    assert_eq!(ha.len(), 32);
    assert!(ha.bytes().all(|c| c.is_ascii_hexdigit()));
    assert_ne!(ha, hb);
    assert!(sim.control().hash_valid(ha) && sim.control().hash_valid(hb));

    let resp = call("wrong").await.unwrap();
    assert_eq!(resp.status(), 400);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(
        body,
        json!({"success": false, "status": {"code": 102, "description": "Wrong login or password"}})
    );
    assert_eq!(sim.control().stats().auth_calls, 3);
    assert_eq!(sim.control().stats().hashes_issued, 2);

    let sim2 = start(NavixySimConfig {
        two_factor: true,
        ..quick()
    })
    .await;
    let body: Value = http
        .post(sim2.auth_url())
        .json(&json!({"login": login, "password": password}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        body,
        json!({"success": true, "type": "second_factor_required"})
    );
}

#[tokio::test]
async fn subscribe_gets_response_snapshot_then_every_update() {
    let sim = start(NavixySimConfig {
        status_overrides: vec![(503, TrackerStatus::Blocked), (999, TrackerStatus::Unknown)],
        ..quick()
    })
    .await;
    let (mut ws, _) = open(&sim).await;
    send(&mut ws, &subscribe_msg(DEFAULT_API_KEY, json!({}))).await;
    let resp = next_json(&mut ws).await;
    assert_eq!(resp["type"], "response");
    assert_eq!(resp["action"], "subscription/subscribe");
    assert_eq!(resp["events"], json!(["state_batch", "readings_batch"]));
    assert_eq!(
        resp["data"]["state_batch"],
        json!({"success": true, "value": {"501": "normal", "502": "normal", "503": "blocked", "999": "unknown"}})
    );
    // Two normal trackers, 1 initial + 2 updates each.
    let mut seen = Seen::default();
    while seen.states.len() < 6 || seen.readings.len() < 6 {
        seen.absorb(&next_json(&mut ws).await);
    }
    assert_eq!(seen.states.len(), 6);
    assert!(seen.wrapped > 0 && seen.bare > 0);
    let sources: BTreeSet<u64> = seen.states.iter().map(|(s, _)| *s).collect();
    assert_eq!(sources, BTreeSet::from([90000, 90001]));
    let t = &seen.states.iter().next().unwrap().1;
    assert_eq!(t.len(), 19, "naive yyyy-MM-dd HH:mm:ss: {t}");
    assert_eq!(&t[10..11], " ");
    let ctl = sim.control();
    let stats = ctl.stats();
    assert_eq!(stats.states_generated, 6);
    assert_eq!(stats.reading_items_generated, 6);
    assert_eq!(stats.reading_values_generated, 6 * READING_VALUES_PER_ITEM);
    assert_eq!(stats.subscribes, 1);
    assert_eq!(stats.subscribe_messages[0]["hash"], DEFAULT_API_KEY);
    assert_eq!(ctl.fleet()[0].latest_update, 2);
    assert_eq!(ctl.fleet()[2].latest_update, 0);
    // Nothing more after the last update.
    assert!(quiet_for(&mut ws, Duration::from_millis(150)).await);

    // A new connection gets the snapshot again: the latest state of each tracker.
    let (mut ws2, _) = open(&sim).await;
    send(&mut ws2, &subscribe_msg(DEFAULT_API_KEY, json!({}))).await;
    assert_eq!(next_json(&mut ws2).await["type"], "response");
    let mut again = Seen::default();
    while again.states.len() < 2 || again.readings.len() < 2 {
        again.absorb(&next_json(&mut ws2).await);
    }
    assert!(again.states.is_subset(&seen.states));
    let latest: BTreeSet<&String> = again.states.iter().map(|(_, t)| t).collect();
    assert_eq!(
        latest.len(),
        1,
        "both trackers at their 2nd update: {latest:?}"
    );
    assert_eq!(
        ctl.stats().states_generated,
        6,
        "a snapshot is not new data"
    );
}

#[tokio::test]
async fn iso_datetime_seq_compact_and_old_response_shape() {
    let sim = start(NavixySimConfig {
        trackers: 1,
        updates: Some(0),
        seq: true,
        utc_offset_secs: 3600,
        response_shape: wsvault::sim::navixy::ResponseShape::Bare,
        ..quick()
    })
    .await;
    let (mut ws, _) = open(&sim).await;
    send(
        &mut ws,
        &subscribe_msg(DEFAULT_API_KEY, json!({"iso_datetime": true})),
    )
    .await;
    let resp = next_json(&mut ws).await;
    assert_eq!(resp["data"]["state_batch"], json!({"501": "normal"}));
    let frame = next_json(&mut ws).await;
    let item = &frame["data"][0];
    let state = if item["type"] == "source_state_event" {
        &item["state"]
    } else {
        item
    };
    let t = state["last_update"].as_str().unwrap();
    assert!(t.ends_with("+01:00") && t.contains('T'), "{t}");
    assert_eq!(state["additional"]["seq"]["value"], 0);
    assert!(state["gsm"].is_object() && state["gps"]["location"]["lat"].is_f64());

    // Deprecated single-state form with compact format.
    let (mut ws2, _) = open(&sim).await;
    let msg = json!({"action": "subscribe", "hash": DEFAULT_API_KEY, "requests": [
        {"type": "state", "trackers": [501], "format": "compact"}]});
    send(&mut ws2, &msg.to_string()).await;
    assert_eq!(next_json(&mut ws2).await["type"], "response");
    let frame = next_json(&mut ws2).await;
    assert_eq!(frame["event"], "state");
    assert_eq!(frame["data"]["source_id"], 90000);
    assert!(frame["data"].get("gsm").is_none(), "compact has no gsm");
}

#[tokio::test]
async fn wrong_hash_reject_switch_and_logout_revocation() {
    let sim = start(NavixySimConfig {
        updates: Some(0),
        ..quick()
    })
    .await;
    let ctl = sim.control();
    let (mut ws, _) = open(&sim).await;
    send(
        &mut ws,
        &subscribe_msg("ffffffffffffffffffffffffffffffff", json!({})),
    )
    .await;
    let err = next_json(&mut ws).await;
    assert_eq!(err["type"], "error");
    assert_eq!(err["action"], "subscription/subscribe");
    assert_eq!(
        err["status"],
        json!({"code": 3, "description": "Wrong hash"})
    );

    ctl.set_reject_hash(true);
    send(&mut ws, &subscribe_msg(DEFAULT_API_KEY, json!({}))).await;
    assert_eq!(next_json(&mut ws).await["status"]["code"], 3);
    ctl.set_reject_hash(false);
    send(&mut ws, &subscribe_msg(DEFAULT_API_KEY, json!({}))).await;
    assert_eq!(next_json(&mut ws).await["type"], "response");
    while next_json(&mut ws).await["event"] != "readings_batch" {}

    assert_eq!(ctl.send_logout(), 1);
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "event", "event": "logout", "data": "session closed"})
    );
    assert!(!ctl.hash_valid(DEFAULT_API_KEY));
    send(&mut ws, &subscribe_msg(DEFAULT_API_KEY, json!({}))).await;
    assert_eq!(next_json(&mut ws).await["status"]["code"], 3);
    let stats = ctl.stats();
    assert_eq!((stats.subscribes, stats.subscribe_errors), (4, 3));

    send(
        &mut ws,
        r#"{"action":"unsubscribe","hash":"x","requests":[{"type":"state_batch"}]}"#,
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await["action"],
        "subscription/unsubscribe"
    );
    assert!(
        ctl.wait_until(|s| s.unsubscribe_messages.len() == 1, SOON)
            .await
    );
}

#[tokio::test]
async fn track_message_size_frames_every_message_and_splits_frames() {
    let sim = start(NavixySimConfig {
        server_heartbeat: Duration::from_millis(100),
        split_frames_at: Some(64),
        updates: Some(0),
        ..quick()
    })
    .await;
    let url = format!(
        "{}?{QUERY}&X-Atmosphere-TrackMessageSize=true",
        sim.ws_url()
    );
    let mut ws = connect(&url).await;
    let handshake = next_text(&mut ws, SOON).await.unwrap();
    let (len, rest) = handshake.split_once('|').unwrap();
    assert_eq!(len.parse::<usize>().unwrap(), rest.encode_utf16().count());
    assert!(rest.ends_with("|200|X|"));
    assert_eq!(next_text(&mut ws, SOON).await.as_deref(), Some("1|X"));

    send(&mut ws, &subscribe_msg(DEFAULT_API_KEY, json!({}))).await;
    // Reassemble length-prefixed messages from 64-char frames.
    let mut buf = String::new();
    let mut messages = Vec::new();
    while messages.len() < 2 {
        let frame = next_text(&mut ws, SOON).await.unwrap();
        assert!(frame.chars().count() <= 64);
        buf.push_str(&frame);
        while let Some((len, rest)) = buf.split_once('|') {
            let n: usize = len.parse().unwrap();
            if rest.encode_utf16().count() < n {
                break;
            }
            let msg: String = rest.chars().take(n).collect();
            buf = rest[msg.len()..].to_owned();
            if msg != "X" {
                messages.push(serde_json::from_str::<Value>(&msg).unwrap());
            }
        }
    }
    assert_eq!(messages[0]["type"], "response");
    assert_eq!(messages[1]["event"], "state_batch");
}

#[test]
fn cli_flags_map_onto_the_config() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: wsvault::sim::navixy::NavixySimArgs,
    }
    let cli = Cli::parse_from([
        "sim",
        "--trackers",
        "7",
        "--updates",
        "3",
        "--rate",
        "100",
        "--blocked",
        "501,502",
        "--drop-every",
        "5s",
        "--server-heartbeat",
        "250ms",
        "--seq",
        "--no-readings",
        "--utc-offset-secs",
        "-3600",
    ]);
    let cfg = NavixySimConfig::from(cli.args);
    assert_eq!((cfg.trackers, cfg.updates, cfg.rate), (7, Some(3), 100.0));
    assert_eq!(
        cfg.status_overrides,
        vec![(501, TrackerStatus::Blocked), (502, TrackerStatus::Blocked)]
    );
    assert_eq!(cfg.drop_every, Some(Duration::from_secs(5)));
    assert_eq!(cfg.server_heartbeat, Duration::from_millis(250));
    assert!(cfg.seq && !cfg.readings);
    assert_eq!(cfg.utc_offset_secs, -3600);
    assert_eq!(cfg.api_keys, vec![DEFAULT_API_KEY.to_owned()]);
}
