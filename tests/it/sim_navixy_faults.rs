//! The Navixy simulator's rate, pause and fault switches (drops without a close
//! frame, silence, injected frames) behave as documented.

use std::time::Duration;

use crate::support::ws::navixy::*;
use crate::support::ws::*;
use serde_json::{Value, json};
use wsvault::sim::navixy::{DEFAULT_API_KEY, NavixySimConfig};

#[tokio::test]
async fn drops_are_bare_tcp_drops() {
    let sim = start(quick()).await;
    let ctl = sim.control();
    let (mut ws, _) = open(&sim).await;
    assert_eq!(ctl.drop_now(), 1);
    assert_eq!(wait_end(&mut ws, SOON).await, Ending::Reset);

    ctl.set_drop_every(Some(Duration::from_millis(100)));
    let (mut ws, _) = open(&sim).await;
    assert_eq!(wait_end(&mut ws, SOON).await, Ending::Reset);
    assert!(
        ctl.wait_until(|s| s.drops == 2 && s.open_connections == 0, SOON)
            .await
    );
}

#[tokio::test]
async fn silence_stops_heartbeats_and_data_until_lifted() {
    let sim = start(NavixySimConfig {
        server_heartbeat: Duration::from_millis(50),
        updates: None,
        ..quick()
    })
    .await;
    let ctl = sim.control();
    let (mut ws, _) = open(&sim).await;
    send(&mut ws, &subscribe_msg(DEFAULT_API_KEY, json!({}))).await;
    assert_eq!(next_json(&mut ws).await["type"], "response");
    ctl.set_silent(true);
    // Drain what was in flight, then nothing at all: no heartbeat (due every 50 ms), no data.
    while next_text(&mut ws, Duration::from_millis(200))
        .await
        .is_some()
    {}
    assert!(quiet_for(&mut ws, Duration::from_millis(300)).await);
    let generated = ctl.stats().states_generated;
    ctl.set_silent(false);
    assert!(next_text(&mut ws, SOON).await.is_some());
    assert!(
        ctl.wait_until(|s| s.states_generated > generated, SOON)
            .await
    );
}

#[tokio::test]
async fn injected_frames_reach_the_client() {
    let sim = start(NavixySimConfig {
        updates: Some(0),
        ..quick()
    })
    .await;
    let ctl = sim.control();
    let (mut ws, _) = open(&sim).await;
    ctl.send_malformed();
    assert!(serde_json::from_str::<Value>(&next_text(&mut ws, SOON).await.unwrap()).is_err());
    ctl.send_raw("hello");
    assert_eq!(next_text(&mut ws, SOON).await.as_deref(), Some("hello"));
    ctl.send_unknown_event();
    assert_eq!(next_json(&mut ws).await["event"], "sim_unknown");
    ctl.send_lifecycle(90001, "block");
    assert_eq!(
        next_json(&mut ws).await,
        json!({"type": "event", "event": "lifecycle", "data": {"source_id": 90001, "lifecycle_event": "block"}})
    );
    ctl.send_oversized(8 * 1024 * 1024);
    let big = next_text(&mut ws, SOON).await.unwrap();
    assert_eq!(big.len(), 8 * 1024 * 1024);
    assert_eq!(
        serde_json::from_str::<Value>(&big).unwrap()["event"],
        "sim_oversized"
    );
}

#[tokio::test]
async fn rate_pause_and_resume() {
    let sim = start(NavixySimConfig {
        trackers: 1,
        updates: None,
        rate: 50.0,
        readings: false,
        ..quick()
    })
    .await;
    let ctl = sim.control();
    let (mut ws, _) = open(&sim).await;
    let began = std::time::Instant::now();
    send(&mut ws, &subscribe_msg(DEFAULT_API_KEY, json!({}))).await;
    // Initial state + 10 updates at 50/s take at least 200 ms.
    assert!(ctl.wait_until(|s| s.states_generated >= 11, SOON).await);
    assert!(
        began.elapsed() >= Duration::from_millis(190),
        "{:?}",
        began.elapsed()
    );
    assert_eq!(ctl.stats().reading_items_generated, 0);

    ctl.pause_updates(true);
    let paused_at = ctl.stats().states_generated;
    assert!(
        !ctl.wait_until(
            |s| s.states_generated > paused_at + 1,
            Duration::from_millis(150)
        )
        .await
    );
    ctl.pause_updates(false);
    assert!(
        ctl.wait_until(|s| s.states_generated > paused_at + 2, SOON)
            .await
    );
    let seen = ctl.fleet()[0].latest_update;
    assert!(seen >= 12, "{seen}");
}

#[tokio::test]
async fn unlimited_rate_delivers_every_generated_state() {
    let sim = start(NavixySimConfig {
        trackers: 10,
        updates: Some(200),
        rate: 0.0,
        batch_size: 50,
        ..quick()
    })
    .await;
    let (mut ws, _) = open(&sim).await;
    send(&mut ws, &subscribe_msg(DEFAULT_API_KEY, json!({}))).await;
    assert_eq!(next_json(&mut ws).await["type"], "response");
    let mut seen = Seen::default();
    while seen.states.len() < 2010 || seen.readings.len() < 2010 {
        let frame = next_json(&mut ws).await;
        assert!(frame["data"].as_array().unwrap().len() <= 50);
        seen.absorb(&frame);
    }
    let stats = sim.control().stats();
    assert_eq!(stats.states_generated, 2010);
    assert_eq!(stats.state_items_sent, 2010, "no duplicates, no losses");
    assert!(quiet_for(&mut ws, Duration::from_millis(100)).await);
}

#[tokio::test]
async fn drop_happens_even_while_a_send_is_blocked_by_a_non_reading_client() {
    let sim = start(NavixySimConfig {
        updates: Some(0),
        ..quick()
    })
    .await;
    let ctl = sim.control();
    let (mut ws, _) = open(&sim).await;
    // 32 MiB cannot fit in loopback socket buffers: the send blocks while we do not read.
    ctl.send_oversized(32 * 1024 * 1024);
    ctl.send_raw("queued behind the big frame");
    assert!(
        !ctl.wait_until(|s| s.frames_sent >= 2, Duration::from_millis(100))
            .await,
        "the big frame must still be in flight"
    );
    assert_eq!(ctl.drop_now(), 1);
    assert!(
        ctl.wait_until(|s| s.drops == 1 && s.open_connections == 0, SOON)
            .await
    );
    assert_eq!(wait_end(&mut ws, SOON).await, Ending::Reset);
}
