//! Credentials a server echoes back are masked before storing, and `only_if_attached`
//! flags a resume that lands on a fresh server session.

use super::*;

#[test]
fn echoed_header_credentials_are_masked_before_storing() {
    let clock = Clock(Instant::now());
    let mut p = build(vec![], RawEvents::Envelope);
    p.on_open(&clock.at(0, 1));
    let note = r#"{"jsonrpc":"2.0","method":"OnAuthenticationInformation","params":{"auth":"Bearer tok-123"}}"#;
    let out = p.on_text(&clock.at(1, 1), note);
    let Some(Output::Record(Record::Notification(n))) = out.first() else {
        panic!("{out:?}")
    };
    assert_eq!(n.params, r#"{"auth":"***"}"#);
    let err = r#"{"jsonrpc":"2.0","id":7,"error":{"code":401,"message":"token tok-123 expired"}}"#;
    let out = p.on_text(&clock.at(2, 1), err);
    let ev = events(&out);
    assert_eq!(
        ev[0].payload,
        r#"{"jsonrpc":"2.0","id":7,"error":{"code":401,"message":"token *** expired"}}"#
    );
    let reasons: Vec<String> = out
        .iter()
        .filter_map(|o| match o {
            Output::Record(Record::SessionEvent(e)) => e.reason.clone(),
            _ => None,
        })
        .collect();
    assert_eq!(reasons, ["error response to id 7: token *** expired"]);
}

#[test]
fn only_if_attached_warns_when_a_resume_gets_a_fresh_session() {
    let clock = Clock(Instant::now());
    let created =
        r#"{"jsonrpc":"2.0","method":"OnConnected","params":{"qSessionState":"SESSION_CREATED"}}"#;
    let attached =
        r#"{"jsonrpc":"2.0","method":"OnConnected","params":{"qSessionState":"SESSION_ATTACHED"}}"#;
    let warnings = |out: &[Output]| {
        out.iter()
            .filter(
                |o| matches!(o, Output::Record(Record::SessionEvent(e)) if e.event == "warning"),
            )
            .count()
    };
    for only in [false, true] {
        let mut p = build_with(vec![], RawEvents::Envelope, only);
        p.on_open(&clock.at(0, 1));
        // The first connection is no resume: a fresh session is expected.
        assert_eq!(warnings(&p.on_text(&clock.at(1, 1), created)), 0);
        p.on_open(&clock.at(2, 2));
        assert_eq!(warnings(&p.on_text(&clock.at(3, 2), attached)), 0);
        p.on_open(&clock.at(4, 3));
        let out = p.on_text(&clock.at(5, 3), created);
        assert_eq!(
            warnings(&out),
            usize::from(only),
            "only_if_attached = {only}"
        );
        // The notification itself is stored either way.
        assert!(
            out.iter()
                .any(|o| matches!(o, Output::Record(Record::Notification(_))))
        );
    }
}
