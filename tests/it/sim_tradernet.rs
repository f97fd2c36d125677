//! The Tradernet simulator speaks Tradernet's documented protocol and its
//! schedule, switches and ground truth behave as documented.

use std::time::Duration;

use crate::support::ws::*;
use futures_util::SinkExt;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use wsvault::sim::tradernet::{
    DEFAULT_API_KEY, DEFAULT_SID, ScheduledSession, SessionChangeKind, SessionSpec, TradernetSim,
    TradernetSimConfig,
};

async fn start(cfg: TradernetSimConfig) -> TradernetSim {
    TradernetSim::start("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap()
}

/// Connects with a valid SID and checks the prod userData.
async fn open_authed(sim: &TradernetSim) -> Client {
    let mut ws = connect(&sim.url_with_sid(DEFAULT_SID)).await;
    let user_data = next_json(&mut ws).await;
    assert_eq!(user_data[0], "userData");
    assert_eq!(user_data[1]["mode"], "prod");
    ws
}

fn ids(frame: &Value) -> Vec<u64> {
    assert_eq!(frame[0], "sessions", "{frame}");
    frame[1]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn library_user_agents_are_refused_and_recorded() {
    let sim = start(TradernetSimConfig::default()).await;
    let url = sim.url_with_sid(DEFAULT_SID);
    for ua in [
        None,
        Some("tungstenite-rs/0.30"),
        Some("python-requests/2.31"),
    ] {
        match connect_ua(&url, ua).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 403)
            }
            other => panic!("{ua:?} should be refused, got {other:?}"),
        }
    }
    assert!(connect_ua(&url, Some("wsvault/0.1.0")).await.is_ok());
    let ctl = sim.control();
    assert!(ctl.wait_until(|s| s.connections == 1, SOON).await);
    let stats = ctl.stats();
    assert_eq!(stats.rejected_upgrades, 3);
    assert_eq!(stats.user_agents.len(), 4);
    assert_eq!(stats.user_agents[3].as_deref(), Some("wsvault/0.1.0"));
    assert!(stats.connect_targets[3].starts_with("/?SID="));
}

#[tokio::test]
async fn sid_subscribe_returns_the_documented_session_objects() {
    let sim = start(TradernetSimConfig::default()).await;
    let mut ws = open_authed(&sim).await;
    send(&mut ws, r#"["sessions"]"#).await;
    let frame = next_json(&mut ws).await;
    assert_eq!(ids(&frame), vec![8_812_000, 8_812_001]);
    let s = &frame[1][0];
    let mut keys: Vec<&str> = s.as_object().unwrap().keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        [
            "expire",
            "expire_datetime",
            "id",
            "ip",
            "ip_client",
            "key_current",
            "owner_login",
            "safety_type_id",
            "start_datetime",
            "user_login"
        ]
    );
    let start = s["start_datetime"].as_str().unwrap();
    assert_eq!(start.len(), 23, "naive UTC with millis: {start}");
    assert!(chrono::NaiveDateTime::parse_from_str(start, "%Y-%m-%dT%H:%M:%S%.3f").is_ok());
    let expire = s["expire"].as_i64().unwrap();
    assert!(expire > 86_000_000 && expire <= 86_400_000, "{expire}");
    assert_eq!(s["key_current"], "Login, password");
    assert_eq!(s["owner_login"], "ops@example.com");
    let stats = sim.control().stats();
    assert_eq!(
        (stats.auth_ok, stats.subscribes, stats.session_pushes),
        (1, 1, 1)
    );
    assert_eq!(stats.client_frames, vec![r#"["sessions"]"#.to_owned()]);
}

#[tokio::test]
async fn api_key_signature_is_verified() {
    let sim = start(TradernetSimConfig::default()).await;
    let ts = chrono::Utc::now().timestamp().to_string();
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(DEFAULT_API_KEY.1.as_bytes()).unwrap();
    mac.update(ts.as_bytes());
    let sig = hex::encode(mac.finalize().into_bytes());
    let base = format!(
        "{}?X-NtApi-PublicKey={}&X-NtApi-Timestamp={ts}",
        sim.ws_url(),
        DEFAULT_API_KEY.0
    );

    let mut ws = connect(&format!("{base}&X-NtApi-Sig={sig}")).await;
    assert_eq!(next_json(&mut ws).await[1]["mode"], "prod");
    let mut ws = connect(&sim.url_with_key(DEFAULT_API_KEY.0, DEFAULT_API_KEY.1)).await;
    assert_eq!(next_json(&mut ws).await[1]["mode"], "prod");
    let mut bad = connect(&format!("{base}&X-NtApi-Sig={}", "0".repeat(64))).await;
    assert_eq!(
        next_json(&mut bad).await,
        json!(["userData", {"isDemo": true, "mode": "demo"}])
    );
    let stats = sim.control().stats();
    assert_eq!((stats.auth_ok, stats.auth_failed), (2, 1));
}

#[tokio::test]
async fn missing_bad_sid_or_demo_switch_refuse_the_sessions_channel() {
    let sim = start(TradernetSimConfig::default()).await;
    for url in [sim.ws_url(), sim.url_with_sid("dead-sid")] {
        let mut ws = connect(&url).await;
        assert_eq!(
            next_json(&mut ws).await,
            json!(["userData", {"isDemo": true, "mode": "demo"}])
        );
        send(&mut ws, r#"["sessions"]"#).await;
        assert_eq!(next_json(&mut ws).await[0], "error");
    }
    sim.control().set_demo(true);
    let mut ws = connect(&sim.url_with_sid(DEFAULT_SID)).await;
    assert_eq!(next_json(&mut ws).await[1]["isDemo"], true);
    send(&mut ws, r#"["sessions"]"#).await;
    assert_eq!(next_json(&mut ws).await[0], "error");
    assert_eq!(sim.control().stats().refused_subscribes, 3);
}

#[tokio::test]
async fn schedule_and_manual_changes_are_pushed_at_once_and_recorded() {
    let spec = |ip: &str| SessionSpec {
        ip_client: ip.into(),
        ..SessionSpec::default()
    };
    let sim = start(TradernetSimConfig {
        schedule: vec![
            ScheduledSession {
                open_after: Duration::ZERO,
                close_after: Some(Duration::from_millis(400)),
                spec: spec("192.0.2.1"),
            },
            ScheduledSession {
                open_after: Duration::from_millis(200),
                close_after: None,
                spec: spec("192.0.2.2"),
            },
        ],
        push_interval: Duration::from_secs(60),
        ..TradernetSimConfig::default()
    })
    .await;
    let ctl = sim.control();
    let mut ws = open_authed(&sim).await;
    send(&mut ws, r#"["sessions", []]"#).await;
    assert_eq!(ids(&next_json(&mut ws).await), vec![8_812_000]);
    assert_eq!(ids(&next_json(&mut ws).await), vec![8_812_000, 8_812_001]);
    assert_eq!(ids(&next_json(&mut ws).await), vec![8_812_001]);

    let id = ctl.open_session(SessionSpec {
        id: Some(42),
        key_current: json!(7),
        ..SessionSpec::default()
    });
    assert_eq!(id, 42);
    let frame = next_json(&mut ws).await;
    assert_eq!(ids(&frame), vec![42, 8_812_001]);
    assert_eq!(frame[1][0]["key_current"], 7);
    assert!(ctl.end_session(42) && ctl.end_session(8_812_001));
    assert!(!ctl.end_session(42));
    // Changes in quick succession may be coalesced into one push: the last one is empty.
    while !ids(&next_json(&mut ws).await).is_empty() {}

    let history: Vec<(u64, SessionChangeKind)> = ctl
        .stats()
        .history
        .iter()
        .map(|c| (c.session_id, c.change))
        .collect();
    use SessionChangeKind::*;
    assert_eq!(
        history,
        [
            (8_812_000, Opened),
            (8_812_001, Opened),
            (8_812_000, Ended),
            (42, Opened),
            (42, Ended),
            (8_812_001, Ended)
        ]
    );
    assert!(ctl.open_session_ids().is_empty());
}

#[tokio::test]
async fn periodic_pushes_expiry_and_session_alias() {
    let sim = start(TradernetSimConfig {
        push_interval: Duration::from_millis(100),
        schedule: vec![ScheduledSession {
            open_after: Duration::ZERO,
            close_after: None,
            spec: SessionSpec {
                lifetime: Some(Duration::from_millis(500)),
                ..SessionSpec::default()
            },
        }],
        ..TradernetSimConfig::default()
    })
    .await;
    let mut ws = open_authed(&sim).await;
    send(&mut ws, r#"["session"]"#).await;
    let first = next_json(&mut ws).await;
    let second = next_json(&mut ws).await;
    assert_eq!(ids(&first), ids(&second));
    assert!(second[1][0]["expire"].as_i64() < first[1][0]["expire"].as_i64());
    // The session expires by itself after 500 ms.
    let ctl = sim.control();
    assert!(ctl.wait_until(|s| s.history.len() == 2, SOON).await);
    assert_eq!(ctl.stats().history[1].change, SessionChangeKind::Ended);
    loop {
        if next_json(&mut ws).await == json!(["sessions", []]) {
            break;
        }
    }
}

#[tokio::test]
async fn unanswered_subscribe_sends_nothing() {
    let sim = start(TradernetSimConfig {
        answer_subscribe: false,
        ..TradernetSimConfig::default()
    })
    .await;
    let mut ws = open_authed(&sim).await;
    send(&mut ws, r#"["sessions"]"#).await;
    assert!(sim.control().wait_until(|s| s.subscribes == 1, SOON).await);
    assert!(quiet_for(&mut ws, Duration::from_millis(200)).await);
    sim.control().set_answer_subscribe(true);
    send(&mut ws, r#"["sessions"]"#).await;
    assert_eq!(next_json(&mut ws).await[0], "sessions");
}

#[tokio::test]
async fn faults_drop_silence_pings_and_injected_frames() {
    let sim = start(TradernetSimConfig::default()).await;
    let ctl = sim.control();
    let mut ws = open_authed(&sim).await;

    ws.send(Message::Ping(b"p1".to_vec().into())).await.unwrap();
    match tokio::time::timeout(SOON, futures_util::StreamExt::next(&mut ws)).await {
        Ok(Some(Ok(Message::Pong(p)))) => assert_eq!(&p[..], b"p1"),
        other => panic!("expected pong, got {other:?}"),
    }
    ctl.set_silent(true);
    ws.send(Message::Ping(b"p2".to_vec().into())).await.unwrap();
    assert!(
        quiet_for(&mut ws, Duration::from_millis(300)).await,
        "a silent server does not pong"
    );
    ctl.set_silent(false);
    match tokio::time::timeout(SOON, futures_util::StreamExt::next(&mut ws)).await {
        Ok(Some(Ok(Message::Pong(p)))) => assert_eq!(&p[..], b"p2"),
        other => panic!("expected late pong, got {other:?}"),
    }
    assert_eq!(ctl.stats().pings_received, 2);

    ctl.send_malformed();
    assert!(serde_json::from_str::<Value>(&next_text(&mut ws, SOON).await.unwrap()).is_err());
    ctl.send_error("boom");
    assert_eq!(next_json(&mut ws).await, json!(["error", "boom"]));

    ctl.drop_now();
    assert_eq!(wait_end(&mut ws, SOON).await, Ending::Reset);
    ctl.set_drop_every(Some(Duration::from_millis(100)));
    let mut ws = open_authed(&sim).await;
    assert_eq!(wait_end(&mut ws, SOON).await, Ending::Reset);
    assert!(
        ctl.wait_until(|s| s.drops == 2 && s.open_connections == 0, SOON)
            .await
    );
}

#[test]
fn cli_flags_map_onto_the_config() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: wsvault::sim::tradernet::TradernetSimArgs,
    }
    let cli = Cli::parse_from([
        "sim",
        "--sid",
        "a",
        "--sid",
        "b",
        "--api-key",
        "pub:priv",
        "--initial-sessions",
        "3",
        "--push-interval",
        "2s",
        "--churn-every",
        "30s",
        "--no-answer",
    ]);
    let cfg = TradernetSimConfig::from(cli.args);
    assert_eq!(cfg.sids, ["a", "b"]);
    assert_eq!(cfg.api_keys, [("pub".to_owned(), "priv".to_owned())]);
    assert_eq!(cfg.schedule.len(), 3);
    assert_eq!(cfg.push_interval, Duration::from_secs(2));
    assert_eq!(cfg.churn_every, Some(Duration::from_secs(30)));
    assert!(!cfg.answer_subscribe && !cfg.demo);
}

#[tokio::test]
async fn churn_opens_and_ends_sessions_by_itself() {
    let sim = start(TradernetSimConfig {
        schedule: vec![],
        churn_every: Some(Duration::from_millis(50)),
        churn_lifetime: Duration::from_millis(80),
        ..TradernetSimConfig::default()
    })
    .await;
    let ctl = sim.control();
    let ended = |s: &wsvault::sim::tradernet::TradernetStats| {
        s.history
            .iter()
            .filter(|c| c.change == SessionChangeKind::Ended)
            .count()
            >= 2
    };
    assert!(ctl.wait_until(ended, SOON).await);
    let history = ctl.stats().history;
    assert_eq!(history[0].change, SessionChangeKind::Opened);
    let first_end = history
        .iter()
        .find(|c| c.change == SessionChangeKind::Ended)
        .unwrap();
    assert_eq!(first_end.session_id, history[0].session_id);
}
