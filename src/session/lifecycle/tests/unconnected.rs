//! Transitions while no socket is open: logins, connects, backoffs, commands.

use super::*;

const NOT_CONNECTED: &str = "closed by wsvault while not connected";

#[test]
fn connect_failures_back_off_and_count_as_failed_attempts() {
    let mut t = T::plain();
    t.cmd(0, Command::Run);
    let failed = Input::ConnectFailed {
        reason: "invalid peer certificate: UnknownIssuer".into(),
    };
    let reason = "connect failed: invalid peer certificate: UnknownIssuer";
    let backoff = [
        t.row(10, (SocketError, None), None, 0, reason),
        wait(Delay::Next, true),
    ];
    assert_eq!(t.feed(10, failed), backoff);
    // Never opened: still `connecting`, not `retrying`.
    assert_eq!(
        t.feed(500, Input::WaitOver),
        [Publish(State::Connecting), Connect]
    );
    // SIGUSR2 during a backoff goes at once.
    t.feed(
        510,
        Input::ConnectFailed {
            reason: "refused".into(),
        },
    );
    assert_eq!(
        t.cmd(520, Command::Run),
        [Publish(State::Connecting), Connect]
    );
    // A connection after failed attempts is no resume: nothing was suspended.
    t.feed(530, connected(1));
    let subscribed = t.feed(540, Input::Subscribed);
    assert!(
        !subscribed
            .iter()
            .any(|e| matches!(e, Effect::Record(Row::Event(r)) if r.event == Resumed)),
        "{subscribed:?}"
    );
}

#[test]
fn suspend_while_not_connected_has_no_connection_or_code() {
    let mut t = T::plain();
    t.cmd(0, Command::Run);
    t.feed(
        10,
        Input::ConnectFailed {
            reason: "refused".into(),
        },
    );
    let reason = "suspended by operator while not connected";
    let suspended = [
        Publish(State::Suspended),
        t.row(20, MANUAL, None, 0, reason),
    ];
    assert_eq!(t.cmd(20, Command::Suspend), suspended);
    assert_eq!(t.cmd(25, Command::Suspend), [Publish(State::Suspended)]);
    // No frame was ever seen: no blind period to report at the resume.
    t.cmd(30, Command::Run);
    t.feed(40, connected(1));
    let resumed = [
        Publish(State::Subscribed),
        t.event(50, Subscribed, Some(1)),
        t.resumed_row(50, 1, 20, Initiator::Manual),
        Effect::FirstFrame(t.at(50)),
    ];
    assert_eq!(t.feed(50, Input::Subscribed), resumed);
}

#[test]
fn a_command_interrupting_a_connect_is_acted_on_without_socket_error() {
    let mut t = T::plain();
    t.cmd(0, Command::Run);
    let reason = "suspended by operator while not connected";
    let suspended = [Publish(State::Suspended), t.row(5, MANUAL, None, 0, reason)];
    assert_eq!(t.cmd(5, Command::Suspend), suspended);
    let mut t = T::plain();
    t.cmd(0, Command::Run);
    let closed = [t.row(5, CLOSED, None, 0, NOT_CONNECTED), Exit];
    assert_eq!(t.cmd(5, Command::Stop), closed);
}

#[test]
fn login_refusals_wait_as_the_answer_says() {
    let seven = Duration::from_secs(7);
    let cases = [
        (LoginRetry::Backoff, Delay::Next),
        (LoginRetry::Cap, Delay::Cap),
        (LoginRetry::After(seven), Delay::Exactly(seven)),
    ];
    for (retry, delay) in cases {
        let mut t = T::new(true, false);
        assert_eq!(t.cmd(0, Command::Run), [Login]);
        let reason = "no".to_string();
        let refused = [
            t.row(10, (AuthFailed, None), None, 0, "no"),
            wait(delay, false),
        ];
        assert_eq!(t.feed(10, Input::LoginFailed { reason, retry }), refused);
        assert_eq!(t.feed(20, Input::WaitOver), [Login]);
    }
}

#[test]
fn a_fatal_login_answer_fails_until_a_command() {
    let mut t = T::new(true, false);
    t.cmd(0, Command::Run);
    let fatal = Input::LoginFailed {
        reason: "login refused for good (102)".into(),
        retry: LoginRetry::Never,
    };
    let failed = [
        t.row(
            10,
            (AuthFailed, None),
            None,
            0,
            "login refused for good (102)",
        ),
        Publish(State::Failed),
    ];
    assert_eq!(t.feed(10, fatal), failed);
    // Only a command gets it out: SIGUSR2 (or a reload) tries again.
    assert_eq!(t.cmd(20, Command::Run), [Publish(State::Connecting), Login]);
}

#[test]
fn stop_during_a_backoff_writes_closed_without_a_connection() {
    let mut t = T::plain();
    t.subscribe(0, 1);
    t.feed(40, reset("reset"));
    let closed = [t.row(50, CLOSED, None, 0, NOT_CONNECTED), Exit];
    assert_eq!(t.cmd(50, Command::Stop), closed);
}

#[test]
fn stop_while_disconnected_writes_closed_without_a_connection() {
    // Suspended.
    let mut t = T::plain();
    t.cmd(0, Command::Suspend);
    let closed = [t.row(50, CLOSED, None, 0, NOT_CONNECTED), Exit];
    assert_eq!(t.cmd(50, Command::Stop), closed);
    // Failed for good.
    let mut t = T::new(true, false);
    t.cmd(0, Command::Run);
    let retry = LoginRetry::Never;
    t.feed(
        10,
        Input::LoginFailed {
            reason: "102".into(),
            retry,
        },
    );
    let closed = [
        Publish(State::Connecting),
        t.row(50, CLOSED, None, 0, NOT_CONNECTED),
        Exit,
    ];
    assert_eq!(t.cmd(50, Command::Stop), closed);
    // Before anything started.
    let mut t = T::plain();
    let closed = [t.row(0, CLOSED, None, 0, NOT_CONNECTED), Exit];
    assert_eq!(t.cmd(0, Command::Stop), closed);
}

#[test]
fn handover_while_not_connected_ends_without_a_connection() {
    let mut t = T::plain();
    t.cmd(0, Command::Run);
    t.feed(
        10,
        Input::ConnectFailed {
            reason: "refused".into(),
        },
    );
    let reason = "lease handed over while not connected";
    let handed = [t.row(20, HANDOVER, None, 0, reason), Exit];
    assert_eq!(t.cmd(20, Command::Handover), handed);
    assert!(t.feed(30, Input::WaitOver).is_empty(), "ended");
}

#[test]
fn a_blind_period_starts_at_the_first_suspension_and_keeps_its_cause() {
    let mut t = T::plain();
    t.subscribe(0, 1);
    t.feed(30, Input::Frame);
    t.feed(40, reset("reset"));
    // Suspended during the backoff: still one blind period, from the last frame
    // before the drop, caused by the network.
    t.cmd(50, Command::Suspend);
    t.cmd(60, Command::Run);
    t.feed(70, connected(2));
    let resumed = t.resumed(80, 2, (40, Initiator::Network), 30, Cause::Network);
    assert_eq!(t.feed(80, Input::Subscribed), resumed);
}

#[test]
fn resumed_names_when_the_suspension_began_and_who_began_it() {
    let mut t = T::plain();
    t.subscribe(0, 1);
    t.cmd(40, Command::Suspend);
    t.feed(50, Input::Closed);
    t.cmd(70, Command::Run);
    t.feed(80, connected(2));
    let effects = t.feed(90, Input::Subscribed);
    let detail = effects.iter().find_map(|e| match e {
        Effect::Record(Row::Event(r)) if r.event == Resumed => r.resumes.map(|s| s.detail()),
        _ => None,
    });
    let detail: serde_json::Value =
        serde_json::from_str(&detail.expect("a resumed row with its suspension")).unwrap();
    assert_eq!(detail["suspended_at"], "2026-03-02T12:00:00.050000Z");
    assert_eq!(detail["initiator"], "manual");
    // The `resumed` row carries it as `detail` once it becomes a record.
    let row = effects.iter().find_map(|e| match e {
        Effect::Record(r @ Row::Event(ev)) if ev.event == Resumed => Some(r.clone()),
        _ => None,
    });
    let record = row.unwrap().into_record(&"s".into());
    let crate::record::Record::SessionEvent(ev) = record else {
        panic!("a session event")
    };
    assert_eq!(
        ev.detail
            .as_deref()
            .map(serde_json::from_str::<serde_json::Value>)
            .unwrap()
            .unwrap(),
        detail
    );
}
