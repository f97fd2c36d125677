//! The JSON-RPC simulator sends OnConnected, numbered notifications in order,
//! answers requests, and its fault switches behave as documented.

use std::time::Duration;

use crate::support::ws::*;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use wsvault::sim::jsonrpc::{JsonRpcSim, JsonRpcSimConfig};

async fn start(cfg: JsonRpcSimConfig) -> JsonRpcSim {
    JsonRpcSim::start("127.0.0.1:0".parse().unwrap(), cfg)
        .await
        .unwrap()
}

fn fast() -> JsonRpcSimConfig {
    JsonRpcSimConfig {
        interval: Duration::from_millis(20),
        ..JsonRpcSimConfig::default()
    }
}

#[tokio::test]
async fn on_connected_then_every_notification_in_order() {
    let sim = start(JsonRpcSimConfig {
        count: Some(10),
        ..fast()
    })
    .await;
    let mut req = sim.ws_url().into_client_request().unwrap();
    req.headers_mut().insert(
        "X-Qlik-User",
        "UserDirectory=SIM; UserId=tester".parse().unwrap(),
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(
        next_json(&mut ws).await,
        json!({"jsonrpc": "2.0", "method": "OnConnected", "params": {"qSessionState": "SESSION_CREATED"}})
    );
    let methods = ["OnProgress", "OnChange", "OnTick"];
    for n in 1..=10u64 {
        let msg = next_json(&mut ws).await;
        assert_eq!(msg["params"]["n"], n);
        assert_eq!(msg["method"], methods[((n - 1) % 3) as usize]);
        assert!(msg.get("id").is_none());
    }
    assert!(
        quiet_for(&mut ws, Duration::from_millis(100)).await,
        "count is a limit"
    );
    let stats = sim.control().stats();
    assert_eq!(stats.notifications_generated, 10);
    let ns: Vec<u64> = stats.notifications_sent.iter().map(|s| s.n).collect();
    assert_eq!(ns, (1..=10).collect::<Vec<_>>());
    let conn = &stats.connection_log[0];
    assert_eq!(conn.target, "/app/engineData");
    assert!(
        conn.headers
            .iter()
            .any(|(k, v)| k.eq_ignore_ascii_case("x-qlik-user") && v.contains("tester"))
    );
}

#[tokio::test]
async fn requests_get_results_errors_and_are_recorded() {
    let sim = start(JsonRpcSimConfig {
        interval: Duration::from_secs(60),
        error_method: Some("OpenDoc".into()),
        ..JsonRpcSimConfig::default()
    })
    .await;
    let mut ws = connect(&sim.ws_url()).await;
    assert_eq!(next_json(&mut ws).await["method"], "OnConnected");
    send(
        &mut ws,
        r#"{"jsonrpc":"2.0","id":1,"method":"GetActiveDoc","handle":-1,"params":[]}"#,
    )
    .await;
    assert_eq!(
        next_json(&mut ws).await,
        json!({"jsonrpc": "2.0", "id": 1, "result": {"qReturn": {"method": "GetActiveDoc", "handle": -1, "params": []}}})
    );
    send(
        &mut ws,
        r#"{"jsonrpc":"2.0","id":2,"method":"OpenDoc","handle":-1,"params":["x"]}"#,
    )
    .await;
    let err = next_json(&mut ws).await;
    assert_eq!(err["id"], 2);
    assert!(err.get("result").is_none());
    assert!(err["error"]["code"].is_i64() && err["error"]["message"].is_string());
    send(&mut ws, "not json").await;
    assert_eq!(next_json(&mut ws).await["error"]["code"], -32700);

    let stats = sim.control().stats();
    assert_eq!(stats.requests_received, 2);
    let methods: Vec<&Value> = stats.connection_log[0]
        .requests
        .iter()
        .map(|r| &r["method"])
        .collect();
    assert_eq!(methods, [&json!("GetActiveDoc"), &json!("OpenDoc")]);
    assert_eq!(stats.other_client_frames, ["not json"]);
}

#[tokio::test]
async fn reconnect_attaches_and_numbering_pauses_without_connections() {
    let sim = start(JsonRpcSimConfig {
        attach_on_reconnect: true,
        ..fast()
    })
    .await;
    let ctl = sim.control();
    let mut ws = connect(&sim.ws_url()).await;
    assert_eq!(
        next_json(&mut ws).await["params"]["qSessionState"],
        "SESSION_CREATED"
    );
    assert_eq!(next_json(&mut ws).await["params"]["n"], 1);
    assert_eq!(ctl.drop_now(), 1);
    assert_eq!(wait_end(&mut ws, SOON).await, Ending::Reset);
    assert!(ctl.wait_until(|s| s.open_connections == 0, SOON).await);
    let generated = ctl.stats().notifications_generated;
    // Five intervals without a connection generate nothing.
    assert!(
        !ctl.wait_until(
            |s| s.notifications_generated > generated,
            Duration::from_millis(100)
        )
        .await
    );

    let mut ws = connect(&sim.ws_url()).await;
    assert_eq!(
        next_json(&mut ws).await["params"]["qSessionState"],
        "SESSION_ATTACHED"
    );
    let n = next_json(&mut ws).await["params"]["n"].as_u64().unwrap();
    assert_eq!(n, generated + 1, "numbering resumes where it paused");
    assert_eq!(ctl.stats().connection_log.len(), 2);
}

#[tokio::test]
async fn silence_malformed_and_drop_period() {
    let sim = start(fast()).await;
    let ctl = sim.control();
    let mut ws = connect(&sim.ws_url()).await;
    assert_eq!(next_json(&mut ws).await["method"], "OnConnected");
    ctl.set_silent(true);
    while next_text(&mut ws, Duration::from_millis(100))
        .await
        .is_some()
    {}
    assert!(quiet_for(&mut ws, Duration::from_millis(150)).await);
    ctl.set_silent(false);
    assert!(next_json(&mut ws).await["params"]["n"].is_u64());
    ctl.send_malformed();
    loop {
        let text = next_text(&mut ws, SOON).await.unwrap();
        if serde_json::from_str::<Value>(&text).is_err() {
            break;
        }
    }
    ctl.set_drop_every(Some(Duration::from_millis(100)));
    let mut ws2 = connect(&sim.ws_url()).await;
    assert_eq!(wait_end(&mut ws2, SOON).await, Ending::Reset);
    assert_eq!(wait_end(&mut ws, SOON).await, Ending::Reset);
    assert!(ctl.wait_until(|s| s.drops == 2, SOON).await);
}

#[test]
fn cli_flags_map_onto_the_config() {
    use clap::Parser;
    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: wsvault::sim::jsonrpc::JsonRpcSimArgs,
    }
    let cli = Cli::parse_from([
        "sim",
        "--interval",
        "50ms",
        "--count",
        "9",
        "--method",
        "OnA",
        "--method",
        "OnB",
        "--attach-on-reconnect",
        "--error-method",
        "OpenDoc",
    ]);
    let cfg = JsonRpcSimConfig::from(cli.args);
    assert_eq!(cfg.interval, Duration::from_millis(50));
    assert_eq!(cfg.count, Some(9));
    assert_eq!(cfg.methods, ["OnA", "OnB"]);
    assert!(cfg.attach_on_reconnect);
    assert_eq!(cfg.error_method.as_deref(), Some("OpenDoc"));
}
