//! Subscribe message construction, `response` and `error` frames.

use super::*;
use crate::config::NavixyRequestType::*;

#[test]
fn subscribe_message_matches_the_documented_example() {
    let cfg = navixy_cfg(NavixyAuth::ApiKeyHash(Secret::new(HASH)), false);
    let got = json(&subscribe::request_message("subscribe", HASH, &cfg));
    let want = json(
        r#"{"action": "subscribe", "hash": "0123456789abcdef0123456789abcdef",
 "requests": [
   {"type": "state_batch", "target": {"type": "all"}, "rate_limit": "5s", "format": "full"},
   {"type": "readings_batch", "target": {"type": "selected", "tracker_ids": [501, 502]}, "rate_limit": "5s"},
   {"type": "state", "trackers": [501, 502], "format": "compact"},
   {"type": "iot_monitor", "target": {"type": "selected", "tracker_ids": [501]}, "rate_limit": "5s"}
 ]}"#,
    );
    assert_eq!(got, want);
}

#[test]
fn subscribe_message_both_targets_for_every_type_and_options() {
    let mut cfg = navixy_cfg(NavixyAuth::ApiKeyHash(Secret::new(HASH)), false);
    cfg.iso_datetime = true;
    cfg.subscriptions = vec![
        sub(StateBatch, NavixyTarget::Selected(vec![7])),
        sub(ReadingsBatch, NavixyTarget::All),
        NavixySubscription {
            sensor_type: Some("fuel".into()),
            include_components: Some(false),
            ..sub(ReadingsBatch, NavixyTarget::Selected(vec![8, 9]))
        },
        sub(IotMonitor, NavixyTarget::All),
        sub(State, NavixyTarget::Selected(vec![1])),
    ];
    let got = json(&subscribe::request_message("subscribe", HASH, &cfg));
    let want = json(
        r#"{"action":"subscribe","hash":"0123456789abcdef0123456789abcdef","iso_datetime":true,
 "requests":[
   {"type":"state_batch","target":{"type":"selected","tracker_ids":[7]}},
   {"type":"readings_batch","target":{"type":"all"}},
   {"type":"readings_batch","target":{"type":"selected","tracker_ids":[8,9]},"sensor_type":"fuel","include_components":false},
   {"type":"iot_monitor","target":{"type":"all"}},
   {"type":"state","trackers":[1]}
 ]}"#,
    );
    assert_eq!(got, want);
}

const RESPONSE_DOC: &str = r#"{"type": "response", "action": "subscription/subscribe", "events": ["state_batch"],
 "data": {"state_batch": {"success": true, "value": {"501": "normal", "502": "blocked", "503": "unknown", "504": "disallowed"}}}}"#;

fn statuses(out: &[Output]) -> Vec<(String, Value)> {
    session_events(out)
        .iter()
        .filter(|e| e.event == "subscribe_status")
        .map(|e| {
            (
                e.reason.clone().unwrap(),
                json(e.detail.as_deref().unwrap()),
            )
        })
        .collect()
}

#[test]
fn documented_response_subscribes_and_records_non_normal_statuses() {
    let clock = Clock::new();
    let mut p = proto();
    connected(&mut p, &clock);
    let out = p.on_text(&clock.ctx(), RESPONSE_DOC);
    assert_eq!(out.iter().filter(|o| **o == Output::Subscribed).count(), 1);
    let mut got = statuses(&out);
    got.sort_by(|a, b| a.0.cmp(&b.0));
    assert_eq!(
        got,
        vec![
            (
                "blocked".into(),
                json(r#"{"tracker_id":502,"request":"state_batch"}"#)
            ),
            (
                "disallowed".into(),
                json(r#"{"tracker_id":504,"request":"state_batch"}"#)
            ),
            (
                "unknown".into(),
                json(r#"{"tracker_id":503,"request":"state_batch"}"#)
            ),
        ]
    );
    let ev = events(&out);
    assert_eq!(
        (ev.len(), ev[0].kind.as_str(), ev[0].payload.as_str()),
        (1, "response", RESPONSE_DOC)
    );
    // Once per connection.
    let again = p.on_text(&clock.ctx(), RESPONSE_DOC);
    assert!(!again.contains(&Output::Subscribed));
    assert_eq!(
        p.next_deadline(),
        Some(clock.t0 + Duration::from_secs(30)),
        "subscribe deadline cleared"
    );
}

#[test]
fn response_without_success_and_without_value_wrapper() {
    let clock = Clock::new();
    let mut p = proto();
    connected(&mut p, &clock);
    let out = p.on_text(
        &clock.ctx(),
        r#"{"type":"response","action":"subscription/subscribe","events":["state"],"data":{"state":{"501":"normal","502":"blocked"}}}"#,
    );
    assert!(out.contains(&Output::Subscribed));
    assert_eq!(
        statuses(&out),
        vec![(
            "blocked".into(),
            json(r#"{"tracker_id":502,"request":"state"}"#)
        )]
    );
    // With success but no value wrapper.
    let mut p = proto();
    connected(&mut p, &clock);
    let out = p.on_text(
        &clock.ctx(),
        r#"{"type":"response","action":"subscription/subscribe","data":{"readings_batch":{"success":true,"503":"unknown"}}}"#,
    );
    assert!(out.contains(&Output::Subscribed));
    assert_eq!(statuses(&out).len(), 1);
    // No data at all.
    let mut p = proto();
    connected(&mut p, &clock);
    let out = p.on_text(
        &clock.ctx(),
        r#"{"type":"response","action":"subscription/subscribe"}"#,
    );
    assert!(out.contains(&Output::Subscribed));
}

#[test]
fn refused_and_unsubscribe_responses_do_not_subscribe() {
    let clock = Clock::new();
    let mut p = proto();
    connected(&mut p, &clock);
    let out = p.on_text(
        &clock.ctx(),
        r#"{"type":"response","action":"subscription/subscribe","data":{"state_batch":{"success":false,"status":{"code":7,"description":"Invalid parameters"}}}}"#,
    );
    assert!(!out.contains(&Output::Subscribed));
    let se = session_events(&out);
    assert_eq!(se.len(), 1);
    assert_eq!(
        (se[0].event.as_str(), se[0].code),
        ("subscribe_error", Some(7))
    );
    assert_eq!(se[0].reason.as_deref(), Some("Invalid parameters"));
    assert_eq!(warnings(&out).len(), 1);
    let out = p.on_text(
        &clock.ctx(),
        r#"{"type":"response","action":"subscription/unsubscribe","data":{"state_batch":{"success":true}}}"#,
    );
    assert!(!out.contains(&Output::Subscribed));
    assert_eq!(events(&out)[0].kind, "response");
}

#[test]
fn error_with_null_action_and_string_data() {
    let clock = Clock::new();
    let mut p = proto();
    connected(&mut p, &clock);
    let frame = r#"{"type":"error","action":"null","status":{"code":7,"description":"Invalid parameters"},"data":"Unexpected token"}"#;
    let out = p.on_text(&clock.ctx(), frame);
    let se = session_events(&out);
    assert_eq!(se.len(), 1);
    assert_eq!(se[0].event, "subscribe_error");
    assert_eq!(se[0].code, Some(7));
    assert_eq!(se[0].reason.as_deref(), Some("Invalid parameters"));
    assert_eq!(
        json(se[0].detail.as_deref().unwrap()),
        json(r#"{"action":"null","data":"Unexpected token"}"#)
    );
    assert!(!credential_dead(&out));
    assert_eq!(warnings(&out).len(), 1);
    assert!(!out.contains(&Output::Subscribed));
    let ev = events(&out);
    assert_eq!(
        (ev[0].kind.as_str(), ev[0].payload.as_str()),
        ("error", frame)
    );
    // Without data at all.
    let out = p.on_text(
        &clock.ctx(),
        r#"{"type":"error","action":"null","status":{"code":8,"description":"Queue error"}}"#,
    );
    assert_eq!(session_events(&out)[0].code, Some(8));
}

#[test]
fn error_codes_3_and_4_kill_the_credential() {
    for (code, text) in [
        (3, "Wrong hash"),
        (4, "User or API key not found or session ended"),
    ] {
        let clock = Clock::new();
        let mut p = proto();
        connected(&mut p, &clock);
        let frame = format!(
            r#"{{"type":"error","action":"subscription/subscribe","status":{{"code":{code},"description":"{text}"}},"data":{{"events":["state"],"trackers":[501],"hash":"{HASH}"}}}}"#
        );
        let out = p.on_text(&clock.ctx(), &frame);
        assert!(credential_dead(&out), "code {code}");
        let se = session_events(&out);
        assert_eq!(
            (se[0].event.as_str(), se[0].code),
            ("subscribe_error", Some(code))
        );
        // An echoed hash never reaches a record.
        assert!(!se[0].detail.as_deref().unwrap().contains(HASH));
        assert!(!events(&out)[0].payload.contains(HASH));
        assert_eq!(json(&events(&out)[0].payload)["data"]["trackers"][0], 501);
    }
}

fn reconnects(out: &[Output]) -> usize {
    out.iter()
        .filter(|o| matches!(o, Output::Reconnect { .. }))
        .count()
}

#[test]
fn a_refused_subscribe_reconnects_but_a_later_error_does_not() {
    let clock = Clock::new();
    // A failed response to the subscribe: nothing is subscribed, so try again.
    let mut p = proto();
    connected(&mut p, &clock);
    let out = p.on_text(
        &clock.ctx(),
        r#"{"type":"response","action":"subscription/subscribe","data":{"state_batch":{"success":false,"status":{"code":15,"description":"Too many requests"}}}}"#,
    );
    assert_eq!(reconnects(&out), 1);
    // An error frame (not about the credential) to the subscribe: the same.
    let mut p = proto();
    connected(&mut p, &clock);
    let out = p.on_text(
        &clock.ctx(),
        r#"{"type":"error","action":"subscription/subscribe","status":{"code":8,"description":"Queue error"}}"#,
    );
    assert_eq!(reconnects(&out), 1);
    assert!(!credential_dead(&out));
    assert_eq!(session_events(&out)[0].code, Some(8));
    // Once subscribed, an error is recorded and the connection kept.
    let mut p = proto();
    subscribed(&mut p, &clock);
    let out = p.on_text(
        &clock.ctx(),
        r#"{"type":"error","action":"null","status":{"code":7,"description":"Invalid parameters"}}"#,
    );
    assert_eq!(reconnects(&out), 0);
    assert_eq!(warnings(&out).len(), 1);
    // Before the handshake nothing was asked for, so nothing was refused.
    let mut p = proto();
    assert!(p.on_open(&clock.ctx()).is_empty());
    let out = p.on_text(
        &clock.ctx(),
        r#"{"type":"error","action":"null","status":{"code":8,"description":"Queue error"}}"#,
    );
    assert_eq!(reconnects(&out), 0);
}
