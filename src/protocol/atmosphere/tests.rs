use super::*;

fn pairs(url: &Url) -> Vec<(String, String)> {
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

fn p(k: &str, v: &str) -> (String, String) {
    (k.to_string(), v.to_string())
}

#[test]
fn connect_url_sends_what_the_reference_client_sends() {
    let base = Url::parse("wss://api.eu.navixy.com/v2/event/subscription").unwrap();
    let url = connect_url(&base, false);
    assert_eq!(
        url.as_str(),
        "wss://api.eu.navixy.com/v2/event/subscription?X-Atmosphere-tracking-id=0\
         &X-Atmosphere-Framework=2.3.6-javascript&X-Atmosphere-Transport=websocket\
         &Content-Type=application/json&X-atmo-protocol=true"
    );
    assert!(!url.as_str().contains("X-Heartbeat-Server"));
    assert!(!url.as_str().contains("TrackMessageSize"));
}

#[test]
fn connect_url_track_message_size_only_when_asked() {
    let base = Url::parse("ws://127.0.0.1:9000/event/subscription").unwrap();
    let got = pairs(&connect_url(&base, true));
    assert_eq!(
        got,
        vec![
            p("X-Atmosphere-tracking-id", "0"),
            p("X-Atmosphere-Framework", "2.3.6-javascript"),
            p("X-Atmosphere-Transport", "websocket"),
            p("X-Atmosphere-TrackMessageSize", "true"),
            p("Content-Type", "application/json"),
            p("X-atmo-protocol", "true"),
        ]
    );
}

#[test]
fn connect_url_keeps_foreign_params_and_replaces_owned_ones() {
    let base = Url::parse(
        "wss://h/v2/event/subscription?region=eu&X-Atmosphere-tracking-id=abc&X-Heartbeat-Server=0",
    )
    .unwrap();
    let got = pairs(&connect_url(&base, false));
    assert_eq!(got[0], p("region", "eu"));
    assert_eq!(
        got.iter()
            .filter(|(k, _)| k == "X-Atmosphere-tracking-id")
            .count(),
        1
    );
    assert!(got.contains(&p("X-Atmosphere-tracking-id", "0")));
    assert!(!got.iter().any(|(k, _)| k == "X-Heartbeat-Server"));
    assert_eq!(got.len(), 6);
}

#[test]
fn handshake_plain() {
    let h = parse_handshake("7f0c2a9e-1b44-4c1e-9d6a-2f3b8c0d5e11|30000|X|", false).unwrap();
    assert_eq!(h.tracking_id, "7f0c2a9e-1b44-4c1e-9d6a-2f3b8c0d5e11");
    assert_eq!(h.interval, Duration::from_secs(30));
    assert_eq!(h.padding, "X");
    assert_eq!(h.remainder, "");
}

#[test]
fn handshake_with_trailing_message() {
    let frame = r#"7f0c2a9e-1b44-4c1e-9d6a-2f3b8c0d5e11|30000|X|{"type":"event","event":"logout","data":"a|b"}"#;
    let h = parse_handshake(frame, false).unwrap();
    assert_eq!(h.interval, Duration::from_millis(30000));
    assert_eq!(
        h.remainder,
        r#"{"type":"event","event":"logout","data":"a|b"}"#
    );
}

#[test]
fn handshake_length_prefixed_when_framing_is_on() {
    let frame = "45|7f0c2a9e-1b44-4c1e-9d6a-2f3b8c0d5e11|30000|X|3|abc";
    let h = parse_handshake(frame, true).unwrap();
    assert_eq!(h.tracking_id, "7f0c2a9e-1b44-4c1e-9d6a-2f3b8c0d5e11");
    assert_eq!(h.padding, "X");
    assert_eq!(h.remainder, "3|abc");
    // Unprefixed handshakes are accepted with framing on too, and vice versa.
    let h = parse_handshake("abc-1|20000|X|", true).unwrap();
    assert_eq!(
        (h.tracking_id.as_str(), h.interval),
        ("abc-1", Duration::from_secs(20))
    );
    let h = parse_handshake("14|abc-1|20000|X|", false).unwrap();
    assert_eq!(h.tracking_id, "abc-1");
}

#[test]
fn not_a_handshake() {
    for frame in [
        "X",
        "",
        r#"{"type":"event","event":"state","data":{}}"#,
        r#"{"a":"x|1|y|"}"#,
        "uuid|soon|X|",
        "uuid|30000",
    ] {
        assert!(parse_handshake(frame, false).is_err(), "{frame}");
        assert!(parse_handshake(frame, true).is_err(), "{frame}");
    }
}

#[test]
fn heartbeat_every_interval_regardless_of_traffic() {
    let t0 = Instant::now();
    let iv = Duration::from_secs(30);
    let mut hb = Heartbeat::start(iv, "X", t0);
    assert_eq!(hb.due(), Some(t0 + iv));
    assert_eq!(hb.poll(t0), None);
    assert_eq!(hb.poll(t0 + iv - Duration::from_millis(1)), None);
    assert_eq!(hb.poll(t0 + iv).as_deref(), Some("X"));
    assert_eq!(hb.due(), Some(t0 + 2 * iv));
    // Slightly late tick: the schedule does not drift.
    assert_eq!(
        hb.poll(t0 + 2 * iv + Duration::from_millis(40)).as_deref(),
        Some("X")
    );
    assert_eq!(hb.due(), Some(t0 + 3 * iv));
    // Very late tick: one heartbeat, then the schedule restarts from now.
    let late = t0 + 10 * iv;
    assert_eq!(hb.poll(late).as_deref(), Some("X"));
    assert_eq!(hb.poll(late), None);
    assert_eq!(hb.due(), Some(late + iv));
}

#[test]
fn heartbeat_interval_zero_disables() {
    let t0 = Instant::now();
    let mut hb = Heartbeat::start(Duration::ZERO, "X", t0);
    assert_eq!(hb.due(), None);
    assert_eq!(hb.poll(t0 + Duration::from_secs(3600)), None);
}

#[test]
fn inbound_heartbeat_recognition() {
    assert!(is_heartbeat("X", "X"));
    assert!(is_heartbeat("X\n", "X"));
    assert!(is_heartbeat("", "X"));
    assert!(is_heartbeat("   ", "X"));
    assert!(!is_heartbeat("XX", "X"));
    assert!(!is_heartbeat("{}", "X"));
    // With framing the framer strips `1|`.
    let mut f = Framer::new(1000);
    let msgs = res(f.push("1|X")).unwrap();
    assert_eq!(msgs, vec!["X"]);
    assert!(is_heartbeat(&msgs[0], "X"));
}

/// A push as a `Result`, for tests that expect either messages or an error only.
fn res(d: Deframed) -> Result<Vec<String>, FramingError> {
    match d.broken {
        None => Ok(d.messages),
        Some(b) => Err(b.error),
    }
}

#[test]
fn framing_counts_utf16_units_not_bytes() {
    let mut f = Framer::new(1000);
    // "ü" is 2 bytes, 1 unit; the emoji is 4 bytes, 2 units.
    let a = r#"{"n":"Zürich"}"#;
    let b = r#"{"n":"🚚"}"#;
    assert_eq!(a.encode_utf16().count(), 14);
    assert_eq!(b.encode_utf16().count(), 10);
    let msgs = res(f.push(&format!("14|{a}10|{b}1|X"))).unwrap();
    assert_eq!(msgs, vec![a, b, "X"]);
    assert!(!f.is_mid_message());
}

#[test]
fn framing_split_message_and_split_length_digits() {
    let msg = r#"{"type":"event","event":"state","data":{"emoji":"🛰️","city":"Düsseldorf"}}"#;
    let n = msg.encode_utf16().count();
    let framed = format!("{n}|{msg}{n}|{msg}");
    // Feed it in every possible pair of cuts at char boundaries: same result.
    let bounds: Vec<usize> = framed.char_indices().map(|(i, _)| i).collect();
    for &cut in &bounds {
        let mut f = Framer::new(1000);
        let mut got = res(f.push(&framed[..cut])).unwrap();
        got.extend(res(f.push(&framed[cut..])).unwrap());
        assert_eq!(got, vec![msg, msg], "cut at {cut}");
        assert!(!f.is_mid_message());
    }
    // Length digits split explicitly: "7" then "5|…".
    let mut f = Framer::new(1000);
    let long = "a".repeat(75);
    assert!(res(f.push("7")).unwrap().is_empty());
    assert!(f.is_mid_message());
    assert_eq!(res(f.push(&format!("5|{long}"))).unwrap(), vec![long]);
}

#[test]
fn framing_rejects_garbage_and_oversize() {
    let mut f = Framer::new(100);
    assert_eq!(res(f.push("{\"a\":1}")), Err(FramingError::InvalidLength));
    assert!(!f.is_mid_message(), "reset after error");
    assert_eq!(res(f.push("|x")), Err(FramingError::InvalidLength));
    assert_eq!(
        res(f.push("101|")),
        Err(FramingError::TooLarge {
            size: 101,
            max: 100
        })
    );
    // Declared length too large is detected before the body arrives.
    assert!(matches!(
        res(f.push("99999")),
        Err(FramingError::TooLarge { .. })
    ));
    assert!(matches!(
        res(f.push("999999999999999999999999|")),
        Err(FramingError::InvalidLength) | Err(FramingError::TooLarge { .. })
    ));
    // Within the declared units but beyond the byte bound (3-byte chars).
    let mut f = Framer::new(100);
    assert!(matches!(
        res(f.push(&format!("60|{}", "€".repeat(60)))),
        Err(FramingError::TooLarge { .. })
    ));
    // A length ending inside a surrogate pair.
    let mut f = Framer::new(100);
    assert_eq!(res(f.push("1|🚚")), Err(FramingError::SplitsCodePoint));
}

#[test]
fn framing_skips_empty_messages() {
    let mut f = Framer::new(100);
    assert_eq!(res(f.push("0|2|ab")).unwrap(), vec!["ab"]);
}

fn texts(pieces: &[Piece]) -> Vec<String> {
    pieces
        .iter()
        .map(|p| match p {
            Piece::Message { text, .. } => format!("ok:{text}"),
            Piece::Malformed { text, .. } => format!("bad:{text}"),
        })
        .collect()
}

#[test]
fn reassembly_of_a_split_message() {
    let mut r = Reassembler::new(1000);
    assert!(
        r.push(r#"{"type":"event","data":[{"a":"#)
            .unwrap()
            .is_empty()
    );
    assert!(r.is_mid_message());
    assert!(r.push(r#"1},{"b":"#).unwrap().is_empty());
    let got = r.push(r#""ü"}]}"#).unwrap();
    assert_eq!(
        texts(&got),
        vec![r#"ok:{"type":"event","data":[{"a":1},{"b":"ü"}]}"#]
    );
    match &got[0] {
        Piece::Message { text } => {
            let value: serde_json::Value = serde_json::from_str(text).unwrap();
            assert_eq!(value["data"][1]["b"], "ü");
        }
        other => panic!("{other:?}"),
    }
    assert!(!r.is_mid_message());
    // A whole message passes straight through.
    assert_eq!(texts(&r.push("[1,2]").unwrap()), vec!["ok:[1,2]"]);
}

#[test]
fn reassembly_reports_syntax_errors_and_resets() {
    let mut r = Reassembler::new(1000);
    assert_eq!(texts(&r.push("not json").unwrap()), vec!["bad:not json"]);
    assert!(!r.is_mid_message());
    // Buffered start, then a frame that cannot continue it but is whole on its own.
    assert!(r.push(r#"{"a":"x"#).unwrap().is_empty());
    let got = r.push(r#"{"b":2}"#).unwrap();
    assert_eq!(texts(&got), vec![r#"bad:{"a":"x"#, r#"ok:{"b":2}"#]);
    assert!(!r.is_mid_message());
    assert!(r.push("   ").unwrap().is_empty());
}

#[test]
fn reassembly_is_bounded() {
    let mut r = Reassembler::new(50);
    assert!(r.push(r#"{"a":""#).unwrap().is_empty());
    let err = r.push(&"x".repeat(60)).unwrap_err();
    assert_eq!(err.max, 50);
    assert!(err.size > 50);
    assert!(!r.is_mid_message());
    // A first frame already over the bound is refused too.
    let mut r = Reassembler::new(10);
    assert!(r.push(r#"{"a":"0123456789"#).is_err());
    // The malformed start of a message, replaced by a new one that overflows at
    // once: the malformed text still comes back, with the error.
    let mut r = Reassembler::new(3);
    assert!(r.push("t").unwrap().is_empty());
    let err = r.push("\" {{").unwrap_err();
    assert_eq!((err.size, err.max), (4, 3));
    assert_eq!(texts(&err.before), vec!["bad:t"]);
    assert!(!r.is_mid_message());
    // After the error, the next whole message is fine.
    assert_eq!(texts(&r.push("{}").unwrap()), vec!["ok:{}"]);
}

#[test]
fn framing_error_keeps_the_messages_before_it_and_the_unread_text() {
    let mut f = Framer::new(100);
    let got = f.push("3|abc2|de{garbage}");
    assert_eq!(got.messages, vec!["abc", "de"]);
    let broken = got.broken.expect("the framing error is reported");
    assert_eq!(broken.error, FramingError::InvalidLength);
    assert_eq!(broken.unread, "{garbage}");
    assert!(!f.is_mid_message(), "reset after error");
    // The part of a message already buffered is handed back too.
    let mut f = Framer::new(100);
    assert_eq!(res(f.push("2|ab3|ü")).unwrap(), vec!["ab"]);
    let got = f.push("x🚚");
    assert!(got.messages.is_empty());
    let broken = got.broken.unwrap();
    assert_eq!(broken.error, FramingError::SplitsCodePoint);
    assert_eq!(broken.unread, "üx🚚");
    // Oversize by declared length: the header and what followed are kept.
    let mut f = Framer::new(10);
    let got = f.push("1|a11|abcdefghijk");
    assert_eq!(got.messages, vec!["a"]);
    let broken = got.broken.unwrap();
    assert!(matches!(
        broken.error,
        FramingError::TooLarge { size: 11, max: 10 }
    ));
    assert_eq!(broken.unread, "11|abcdefghijk");
}

/// A message cut at every byte boundary, and in three pieces at every pair of
/// boundaries, comes out whole, once.
fn reassembles_at_every_cut(msg: &str) {
    let bounds: Vec<usize> = (1..msg.len())
        .filter(|&i| msg.is_char_boundary(i))
        .collect();
    let whole = vec![format!("ok:{msg}")];
    for &cut in &bounds {
        let mut r = Reassembler::new(10_000);
        let mut got = r.push(&msg[..cut]).unwrap();
        assert!(got.is_empty(), "complete after {:?}: {got:?}", &msg[..cut]);
        got.extend(r.push(&msg[cut..]).unwrap());
        assert_eq!(texts(&got), whole, "cut after {:?}", &msg[..cut]);
        assert!(!r.is_mid_message());
    }
    for (i, &a) in bounds.iter().enumerate() {
        for &b in &bounds[i + 1..] {
            let mut r = Reassembler::new(10_000);
            let mut got = r.push(&msg[..a]).unwrap();
            got.extend(r.push(&msg[a..b]).unwrap());
            got.extend(r.push(&msg[b..]).unwrap());
            assert_eq!(texts(&got), whole, "cuts at {a} and {b}");
        }
    }
}

#[test]
fn reassembly_survives_a_cut_inside_a_number_string_or_escape() {
    reassembles_at_every_cut(
        r#"{"type":"event","event":"state_batch","data":[{"source_id":-12,"gps":{"location":{"lat":48.2082,"lng":-1.5e-3},"speed":0,"alt":1E+2}}]}"#,
    );
    reassembles_at_every_cut(r#"{"a":"x\"y\\\u00e9\n","b":[true,false,null,[]],"c":{}}"#);
    reassembles_at_every_cut(r#"["Zürich 🚚",0.5,-0]"#);
}

#[test]
fn reassembly_looks_at_each_byte_a_bounded_number_of_times() {
    // 20 000 states in 100-byte frames: re-parsing the buffer at every frame
    // would examine about 400 000 times the message size.
    let item =
        r#"{"source_id":90017,"gps":{"location":{"lat":48.2082,"lng":16.3738},"speed":36.5}}"#;
    let items = vec![item; 20_000].join(",");
    let msg = format!(r#"{{"type":"event","event":"state_batch","data":[{items}]}}"#);
    let mut r = Reassembler::new(msg.len());
    let mut got = Vec::new();
    for chunk in msg.as_bytes().chunks(100) {
        got.extend(r.push(std::str::from_utf8(chunk).unwrap()).unwrap());
    }
    assert_eq!(got, vec![Piece::Message { text: msg.clone() }]);
    // Once by the scanner, once by serde.
    assert_eq!(r.examined(), 2 * msg.len() as u64);
}

#[test]
fn reassembly_keeps_serdes_wording_for_syntax_errors() {
    let mut r = Reassembler::new(1000);
    let got = r.push(r#"{"a":1.}"#).unwrap();
    match &got[..] {
        [Piece::Malformed { text, error }] => {
            assert_eq!(text, r#"{"a":1.}"#);
            assert!(error.contains("line 1 column"), "{error}");
        }
        other => panic!("{other:?}"),
    }
    // Two values in one frame are not one message (as before: the whole frame).
    assert_eq!(texts(&r.push("{} {}").unwrap()), vec!["bad:{} {}"]);
    // A number cut before its exponent waits for the rest.
    let mut r = Reassembler::new(1000);
    assert!(r.push("{\"a\":").unwrap().is_empty());
    assert_eq!(texts(&r.push("1.5e3}").unwrap()), vec!["ok:{\"a\":1.5e3}"]);
}
