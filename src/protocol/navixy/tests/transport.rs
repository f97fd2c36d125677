//! Connection lifecycle: URL, handshake, heartbeats, framing, timeouts, close.

use super::*;

#[test]
fn connect_url_has_atmosphere_params_and_no_secret() {
    let p = proto();
    let url = p.connect_url(Utc::now());
    assert_eq!(
        url.as_str(),
        "wss://api.eu.navixy.com/v2/event/subscription?X-Atmosphere-tracking-id=0\
         &X-Atmosphere-Framework=2.3.6-javascript&X-Atmosphere-Transport=websocket\
         &Content-Type=application/json&X-atmo-protocol=true"
    );
    assert!(!url.as_str().contains(HASH));
    let framed = proto_with(RawEvents::Envelope, true).connect_url(Utc::now());
    assert!(
        framed
            .as_str()
            .contains("X-Atmosphere-TrackMessageSize=true")
    );
    assert_eq!(p.secrets(), vec![HASH.to_string()]);
}

#[test]
fn handshake_timeout_asks_for_a_reconnect_once() {
    let clock = Clock::new();
    let mut p = proto();
    assert!(p.on_open(&clock.ctx()).is_empty());
    assert_eq!(p.next_deadline(), Some(clock.t0 + Duration::from_secs(15)));
    assert!(
        p.on_tick(&clock.at(Duration::from_millis(14_999)))
            .is_empty()
    );
    let out = p.on_tick(&clock.at(Duration::from_secs(15)));
    assert!(
        matches!(&out[..], [Output::Reconnect { reason }] if reason.contains("handshake")),
        "{out:?}"
    );
    assert!(p.on_tick(&clock.at(Duration::from_secs(16))).is_empty());
    assert_eq!(p.next_deadline(), None);
}

#[test]
fn handshake_then_subscribe_then_heartbeats_on_schedule() {
    let clock = Clock::new();
    let mut p = proto();
    let out = connected(&mut p, &clock);
    let sent = sends(&out);
    assert_eq!(sent.len(), 1);
    let msg = json(sent[0]);
    assert_eq!(msg["action"], "subscribe");
    assert_eq!(msg["hash"], HASH);
    assert_eq!(msg["requests"].as_array().unwrap().len(), 4);
    assert_eq!(
        p.tracking_id(),
        Some("7f0c2a9e-1b44-4c1e-9d6a-2f3b8c0d5e11")
    );
    // The handshake deadline is gone; the subscribe deadline (10 s) comes first,
    // then the heartbeat (30 s).
    assert_eq!(p.next_deadline(), Some(clock.t0 + Duration::from_secs(10)));
    subscribed_response(&mut p, &clock);
    assert_eq!(p.next_deadline(), Some(clock.t0 + Duration::from_secs(30)));
    assert!(p.on_tick(&clock.at(Duration::from_secs(29))).is_empty());
    // Traffic does not postpone the client heartbeat.
    let state = r#"{"type":"event","event":"state","data":{"source_id":1,"last_update":"2026-03-02 08:14:41"}}"#;
    p.on_text(&clock.at(Duration::from_secs(29)), state);
    assert_eq!(
        sends(&p.on_tick(&clock.at(Duration::from_secs(30)))),
        vec!["X"]
    );
    assert_eq!(p.next_deadline(), Some(clock.t0 + Duration::from_secs(60)));
    assert!(p.on_tick(&clock.at(Duration::from_secs(45))).is_empty());
    assert_eq!(
        sends(&p.on_tick(&clock.at(Duration::from_secs(60)))),
        vec!["X"]
    );
}

fn subscribed_response(p: &mut NavixyProtocol, clock: &Clock) {
    let out = p.on_text(
        &clock.ctx(),
        r#"{"type":"response","action":"subscription/subscribe","data":{"state_batch":{"success":true,"value":{}}}}"#,
    );
    assert!(out.contains(&Output::Subscribed));
}

#[test]
fn handshake_with_trailing_message_in_the_same_frame() {
    let clock = Clock::new();
    let mut p = proto();
    p.on_open(&clock.ctx());
    let frame = format!(
        "{HANDSHAKE}{}",
        r#"{"type":"event","event":"lifecycle","data":{"source_id":123,"lifecycle_event":"block"}}"#
    );
    let out = p.on_text(&clock.ctx(), &frame);
    assert_eq!(sends(&out).len(), 1, "subscribe sent");
    let ev = events(&out);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, "lifecycle");
    assert!(
        out.iter().any(
            |o| matches!(o, Output::Record(Record::TrackerLifecycle(l)) if l.source_id == 123)
        )
    );
}

#[test]
fn inbound_heartbeats_produce_nothing() {
    let clock = Clock::new();
    let mut p = proto();
    subscribed(&mut p, &clock);
    assert!(p.on_text(&clock.ctx(), "X").is_empty());
    assert!(p.on_text(&clock.ctx(), "").is_empty());
    let mut framed = proto_with(RawEvents::Envelope, true);
    framed.on_open(&clock.ctx());
    framed.on_text(&clock.ctx(), HANDSHAKE);
    assert!(framed.on_text(&clock.ctx(), "1|X").is_empty());
    assert!(framed.on_text(&clock.ctx(), "1|X1|X").is_empty());
}

#[test]
fn framed_messages_with_utf16_lengths_split_across_frames() {
    let clock = Clock::new();
    let mut p = proto_with(RawEvents::Full, true);
    p.on_open(&clock.ctx());
    // Length-prefixed handshake with the first message's length digits trailing.
    let handshake = "45|7f0c2a9e-1b44-4c1e-9d6a-2f3b8c0d5e11|30000|X|";
    let a =
        r#"{"type":"event","event":"state","data":{"source_id":1,"movement_status":"Zürich 🚚"}}"#;
    let b = r#"{"type":"event","event":"state","data":{"source_id":2}}"#;
    let stream = format!(
        "{}|{a}1|X{}|{b}",
        a.encode_utf16().count(),
        b.encode_utf16().count()
    );
    assert_ne!(a.len(), a.encode_utf16().count());
    let (first, rest) = stream.split_at(1); // cuts the length digits
    let out = p.on_text(&clock.ctx(), &format!("{handshake}{first}"));
    assert_eq!(sends(&out).len(), 1);
    assert!(states(&out).is_empty());
    let cut = rest.find("🚚").unwrap() + "🚚".len();
    let out1 = p.on_text(&clock.ctx(), &rest[..cut]);
    assert!(states(&out1).is_empty(), "message still incomplete");
    let out2 = p.on_text(&clock.ctx(), &rest[cut..]);
    let st = states(&out2);
    assert_eq!(st.len(), 2);
    assert_eq!(st[0].movement_status.as_deref(), Some("Zürich 🚚"));
    assert_eq!(st[1].source_id, 2);
    assert_eq!(events(&out2).len(), 2, "two whole messages in full mode");
    assert_eq!(events(&out2)[0].payload, a);
}

#[test]
fn framing_violation_reconnects() {
    let clock = Clock::new();
    let mut p = proto_with(RawEvents::Envelope, true);
    p.on_open(&clock.ctx());
    p.on_text(&clock.ctx(), HANDSHAKE);
    let out = p.on_text(&clock.ctx(), "999999|{");
    assert!(out.iter().any(
        |o| matches!(o, Output::Reconnect { reason } if reason.contains("max_message_bytes"))
    ));
    assert_eq!(warnings(&out).len(), 1);
    let out = p.on_text(&clock.ctx(), r#"{"type":"event"}"#);
    assert!(out.iter().any(|o| matches!(o, Output::Reconnect { .. })));
}

#[test]
fn unframed_split_message_is_reassembled_and_bounded() {
    let clock = Clock::new();
    let mut p = proto();
    subscribed(&mut p, &clock);
    let msg = r#"{"type":"event","event":"state_batch","data":[{"source_id":5,"gps":{"location":{"lat":1.5,"lng":2.5}}}]}"#;
    let (a, b) = msg.split_at(40);
    assert!(p.on_text(&clock.ctx(), a).is_empty());
    // The padding alone mid-message is a heartbeat, not part of the message.
    assert!(p.on_text(&clock.ctx(), "X").is_empty());
    let out = p.on_text(&clock.ctx(), b);
    assert_eq!(states(&out).len(), 1);
    assert_eq!(states(&out)[0].lat, Some(1.5));
    // Over max_message_bytes (64 KiB) while still incomplete: reconnect.
    assert!(
        p.on_text(&clock.ctx(), r#"{"type":"event","data":[""#)
            .is_empty()
    );
    let out = p.on_text(&clock.ctx(), &"x".repeat(70 * 1024));
    assert!(out.iter().any(|o| matches!(o, Output::Reconnect { .. })));
}

#[test]
fn malformed_frame_is_kept_and_the_session_goes_on() {
    let clock = Clock::new();
    let mut p = proto();
    subscribed(&mut p, &clock);
    let out = p.on_text(&clock.ctx(), "<html>502 Bad Gateway</html>");
    let ev = events(&out);
    assert_eq!(ev.len(), 1);
    assert_eq!(ev[0].kind, "malformed");
    assert_eq!(ev[0].payload, text_as_json("<html>502 Bad Gateway</html>"));
    assert_eq!(warnings(&out).len(), 1);
    assert!(!out.iter().any(|o| matches!(o, Output::Reconnect { .. })));
    let out = p.on_text(
        &clock.ctx(),
        r#"{"type":"event","event":"state","data":{"source_id":9}}"#,
    );
    assert_eq!(states(&out).len(), 1);
}

#[test]
fn frame_before_handshake_is_kept_and_handshake_still_awaited() {
    let clock = Clock::new();
    let mut p = proto();
    p.on_open(&clock.ctx());
    let out = p.on_text(&clock.ctx(), "garbage");
    assert_eq!(events(&out)[0].kind, "malformed");
    assert!(sends(&out).is_empty());
    let out = p.on_text(&clock.ctx(), HANDSHAKE);
    assert_eq!(sends(&out).len(), 1);
}

#[test]
fn frames_before_handshake_warn_once_per_connection_but_are_all_kept() {
    let clock = Clock::new();
    let mut p = proto();
    p.on_open(&clock.ctx());
    let mut warned = 0;
    for i in 0..5 {
        let out = p.on_text(&clock.ctx(), &format!("garbage {i}"));
        assert_eq!(events(&out).len(), 1, "frame {i} is kept");
        assert_eq!(events(&out)[0].kind, "malformed");
        warned += warnings(&out)
            .iter()
            .filter(|w| w.contains("before the handshake"))
            .count();
    }
    assert_eq!(warned, 1);
    // A new connection warns again.
    p.on_open(&clock.ctx());
    let out = p.on_text(&clock.ctx(), "garbage again");
    let again = warnings(&out);
    assert_eq!(
        again
            .iter()
            .filter(|w| w.contains("before the handshake"))
            .count(),
        1,
        "{again:?}"
    );
    assert_eq!(events(&out).len(), 1);
}

#[test]
fn login_source_without_hash_does_not_subscribe() {
    let clock = Clock::new();
    let cfg = navixy_cfg(
        NavixyAuth::Login {
            login: "ops".into(),
            password: Secret::new("pw-secret"),
        },
        false,
    );
    let mut p = NavixyProtocol::new(&source_cfg(&cfg), &cfg, opts(RawEvents::Envelope));
    assert!(p.secrets().is_empty());
    let out = connected(&mut p, &clock);
    assert!(sends(&out).is_empty());
    assert!(credential_dead(&out));
    // The session logs in and reconnects.
    p.set_credential(Secret::new("11111111111111111111111111111111"));
    let out = connected(&mut p, &clock);
    assert_eq!(
        json(sends(&out)[0])["hash"],
        "11111111111111111111111111111111"
    );
    // A renewed hash replaces it; the old one is still redacted.
    p.set_credential(Secret::new("22222222222222222222222222222222"));
    assert_eq!(
        p.secrets(),
        vec![
            "22222222222222222222222222222222".to_string(),
            "11111111111111111111111111111111".to_string()
        ]
    );
    assert!(!p.secrets().iter().any(|s| s.contains("pw-secret")));
}

#[test]
fn api_key_source_ignores_set_credential() {
    let mut p = proto();
    p.set_credential(Secret::new("ffffffffffffffffffffffffffffffff"));
    assert_eq!(p.secrets(), vec![HASH.to_string()]);
}

#[test]
fn subscribe_unanswered_warns_once() {
    let clock = Clock::new();
    let mut p = proto();
    connected(&mut p, &clock);
    assert!(p.on_tick(&clock.at(Duration::from_secs(9))).is_empty());
    let out = p.on_tick(&clock.at(Duration::from_secs(10)));
    assert_eq!(warnings(&out).len(), 1);
    assert_eq!(session_events(&out)[0].event, "warning");
    assert!(p.on_tick(&clock.at(Duration::from_secs(11))).is_empty());
}

#[test]
fn close_unsubscribes_with_the_same_structure() {
    let clock = Clock::new();
    let mut p = proto();
    assert!(p.on_close(&clock.ctx()).is_empty(), "never subscribed");
    subscribed(&mut p, &clock);
    let out = p.on_close(&clock.ctx());
    let sent = sends(&out);
    assert_eq!(sent.len(), 1);
    let unsub = json(sent[0]);
    let mut sub = json(&subscribe::request_message(
        "subscribe",
        HASH,
        &navixy_cfg(NavixyAuth::ApiKeyHash(Secret::new(HASH)), false),
    ));
    sub["action"] = "unsubscribe".into();
    assert_eq!(unsub, sub);
    assert!(p.on_close(&clock.ctx()).is_empty(), "only once");
    assert_eq!(p.next_deadline(), None);
}

#[test]
fn reopen_resets_the_connection_state() {
    let clock = Clock::new();
    let mut p = proto();
    subscribed(&mut p, &clock);
    assert!(p.is_subscribed());
    assert!(p.on_open(&clock.ctx()).is_empty());
    assert!(!p.is_subscribed());
    assert_eq!(p.tracking_id(), None);
    // Tracker states before a new handshake are not mistaken for it, and a new
    // subscription is confirmed again.
    subscribed(&mut p, &clock);
}

#[test]
fn framing_violation_keeps_the_messages_before_it_and_the_garbage() {
    let clock = Clock::new();
    let mut p = proto_with(RawEvents::Envelope, true);
    p.on_open(&clock.ctx());
    p.on_text(&clock.ctx(), HANDSHAKE);
    let msg =
        |id: i64| format!(r#"{{"type":"event","event":"state","data":{{"source_id":{id}}}}}"#);
    let (a, b) = (msg(1), msg(2));
    let frame = format!("{}|{a}{}|{b}<html>oops</html>", a.len(), b.len());
    let out = p.on_text(&clock.ctx(), &frame);
    let ids: Vec<i64> = states(&out).iter().map(|s| s.source_id).collect();
    assert_eq!(
        ids,
        vec![1, 2],
        "complete messages before the violation are kept"
    );
    let ev = events(&out);
    let kinds: Vec<&str> = ev.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds, vec!["state", "state", "malformed"]);
    assert_eq!(ev[2].payload, text_as_json("<html>oops</html>"));
    let reason = out
        .iter()
        .find_map(|o| match o {
            Output::Reconnect { reason } => Some(reason.as_str()),
            _ => None,
        })
        .expect("a framing violation still reconnects");
    assert!(
        reason.contains("length|") && reason.contains("malformed"),
        "{reason}"
    );
    assert_eq!(warnings(&out).len(), 1);
}

#[test]
fn unframed_message_split_inside_numbers_is_reassembled() {
    let clock = Clock::new();
    let mut p = proto();
    subscribed(&mut p, &clock);
    let msg = r#"{"type":"event","event":"state_batch","data":[{"source_id":5,"gps":{"location":{"lat":-1.5e1,"lng":2.25},"speed":-0.5}}]}"#;
    for cut in 1..msg.len() {
        let mut out = p.on_text(&clock.ctx(), &msg[..cut]);
        out.extend(p.on_text(&clock.ctx(), &msg[cut..]));
        let st = states(&out);
        assert_eq!(st.len(), 1, "cut after {:?}: {out:?}", &msg[..cut]);
        assert_eq!(
            (st[0].lat, st[0].lng, st[0].speed),
            (Some(-15.0), Some(2.25), Some(-0.5))
        );
        assert!(!events(&out).iter().any(|e| e.kind == "malformed"));
    }
}
