//! Transitions of an open connection: subscription, drops, closes we decide on.

use super::*;

#[test]
fn open_subscribe_and_first_frame() {
    let mut t = T::plain();
    assert_eq!(
        t.cmd(0, Command::Run),
        [Publish(State::Connecting), Connect]
    );
    assert!(
        t.feed(5, Input::Frame).is_empty(),
        "a frame only moves the clock"
    );
    let opened = [
        Publish(State::Open),
        Effect::Record(Row::Opened(t.conn(1, 10))),
        t.event(10, Opened, Some(1)),
    ];
    assert_eq!(t.feed(10, connected(1)), opened);
    assert!(t.life.connected());
    // The run's first frame closes the `down` gap; nothing was suspended, so no
    // `resumed` and no blind period.
    let subscribed = [
        Publish(State::Subscribed),
        t.event(20, Subscribed, Some(1)),
        Effect::FirstFrame(t.at(5)),
    ];
    assert_eq!(t.feed(20, Input::Subscribed), subscribed);
    // A second confirmation on the same connection is one more row, nothing else.
    let again = [Publish(State::Subscribed), t.event(30, Subscribed, Some(1))];
    assert_eq!(t.feed(30, Input::Subscribed), again);
}

#[test]
fn network_drop_is_suspended_network_then_resumed() {
    let mut t = T::plain();
    t.subscribe(0, 1);
    t.feed(40, Input::Frame);
    let reason = "I/O error: connection reset by peer";
    assert_eq!(t.feed(50, reset(reason)), t.dropped(1, 0, 50, 1006, reason));
    assert!(!t.life.connected());
    assert_eq!(
        t.feed(600, Input::WaitOver),
        [Publish(State::Retrying), Connect]
    );
    assert_eq!(t.feed(610, connected(2))[0], Reopened);
    // The blind period runs from the last frame before the drop.
    let resumed = t.resumed(620, 2, (50, Initiator::Network), 40, Cause::Network);
    assert_eq!(t.feed(620, Input::Subscribed), resumed);
}

#[test]
fn server_closes_idle_deadline_and_protocol_reconnects_are_drops() {
    let closed = |code, reason: &str| Input::CloseReceived {
        code,
        reason: reason.into(),
    };
    let cases = [
        (
            closed(Some(1000), "restarting"),
            1000,
            "server closed normally (1000: restarting); treated as a drop",
        ),
        (closed(Some(1001), ""), 1001, "server closed with 1001"),
        (
            closed(None, ""),
            1005,
            "server closed without a status code",
        ),
        (
            Input::IdleDeadline {
                idle: Duration::from_millis(500),
            },
            1006,
            "no frame for 500ms (idle deadline)",
        ),
        (
            Input::ReconnectAsked {
                reason: "no handshake within 15s".into(),
            },
            1006,
            "no handshake within 15s",
        ),
    ];
    for (input, code, reason) in cases {
        let mut t = T::plain();
        t.subscribe(0, 1);
        assert_eq!(t.feed(50, input), t.dropped(1, 0, 50, code, reason));
    }
}

#[test]
fn manual_suspend_closes_4000_and_run_resumes() {
    let mut t = T::plain();
    t.subscribe(0, 1);
    t.feed(30, Input::Frame);
    let by_operator = "suspended by operator";
    assert_eq!(
        t.cmd(40, Command::Suspend),
        [close(4000, by_operator, false)]
    );
    t.feed(45, Input::Frame); // a late frame, recorded during the close
    let suspended = [
        t.closed(1, 0, 50, 4000, by_operator, false),
        t.row(50, MANUAL, Some(1), 4000, by_operator),
        Publish(State::Suspended),
    ];
    assert_eq!(t.feed(50, Input::Closed), suspended);
    // A repeated SIGUSR1 writes nothing more.
    assert_eq!(t.cmd(60, Command::Suspend), [Publish(State::Suspended)]);
    // SIGUSR2: reconnect at once; the blind period ends at the new subscription.
    assert_eq!(t.cmd(70, Command::Run), [Publish(State::Retrying), Connect]);
    t.feed(80, connected(2));
    let resumed = t.resumed(90, 2, (50, Initiator::Manual), 45, Cause::Manual);
    assert_eq!(t.feed(90, Input::Subscribed), resumed);
}

#[test]
fn dead_credential_closes_1000_and_logs_in_again() {
    let mut t = T::new(true, false);
    assert_eq!(t.cmd(0, Command::Run), [Login]);
    assert_eq!(
        t.feed(5, Input::LoggedIn),
        [Publish(State::Connecting), Connect]
    );
    t.feed(10, connected(1));
    t.feed(20, Input::Subscribed);
    t.feed(25, Input::Frame);
    let dead = Input::CredentialDead {
        reason: "logout".into(),
    };
    assert_eq!(t.feed(30, dead), [close(1000, "credential dead", false)]);
    let after = [
        t.closed(1, 10, 40, 1000, "credential dead: logout", false),
        t.row(40, (AuthFailed, None), Some(1), 0, "logout"),
        Publish(State::Retrying),
        t.row(40, NETWORK, Some(1), 1000, "credential dead"),
        wait(Delay::Next, false),
    ];
    assert_eq!(t.feed(40, Input::Closed), after);
    assert_eq!(t.feed(500, Input::WaitOver), [Login]);
    assert_eq!(
        t.feed(510, Input::LoggedIn),
        [Publish(State::Retrying), Connect]
    );
    t.feed(520, connected(2));
    let resumed = t.resumed(530, 2, (40, Initiator::Network), 25, Cause::Network);
    assert_eq!(t.feed(530, Input::Subscribed), resumed);
}

#[test]
fn dead_credential_without_a_new_login_waits_the_cap() {
    // No login configured (Tradernet demo `userData`), or `only_if_attached`.
    for mut t in [T::plain(), T::new(true, true)] {
        t.subscribe(0, 1);
        let dead = Input::CredentialDead {
            reason: "userData demo".into(),
        };
        t.feed(30, dead);
        let after = t.feed(40, Input::Closed);
        assert_eq!(after.last(), Some(&wait(Delay::Cap, false)));
        assert_eq!(
            t.feed(900, Input::WaitOver),
            [Publish(State::Retrying), Connect]
        );
    }
}

#[test]
fn refused_subscribe_keeps_the_resume_pending_and_the_backoff_growing() {
    let mut t = T::plain();
    t.subscribe(0, 1);
    t.feed(30, Input::Frame);
    t.feed(40, reset("reset"));
    t.feed(500, Input::WaitOver);
    t.feed(510, connected(2));
    // The upstream refused the subscribe (a protocol row): no `subscribed`, so no
    // `resumed`, no end of the blind period, and however long the connection
    // lasted it was not stable.
    let ended = t.feed(510 + 120_000, reset("reset"));
    assert!(!ended.contains(&ResetBackoff), "{ended:?}");
    t.feed(200_000, Input::WaitOver);
    t.feed(200_010, connected(3));
    let resumed = t.resumed(200_020, 3, (40, Initiator::Network), 30, Cause::Network);
    assert_eq!(t.feed(200_020, Input::Subscribed), resumed);
}

#[test]
fn only_a_stable_subscription_resets_the_backoff() {
    let mut t = T::plain();
    t.subscribe(0, 1);
    let short = t.feed(10 + 59_999, reset("reset"));
    assert!(!short.contains(&ResetBackoff), "{short:?}");
    t.feed(70_000, Input::WaitOver);
    t.feed(70_000, connected(2));
    t.feed(70_010, Input::Subscribed);
    let long = t.feed(70_010 + 60_000, reset("reset"));
    assert_eq!(long[0], ResetBackoff);
}

#[test]
fn a_repeated_size_refusal_does_not_reset_the_backoff() {
    let too_large = "message too large (…); raise max_message_bytes if it is legitimate";
    let mut t = T::plain();
    let mut resets = Vec::new();
    for (id, reason) in [(1, too_large), (2, too_large), (3, too_large), (4, "reset")] {
        let start = id as u64 * 100_000;
        t.subscribe(start, id);
        let ended = t.feed(start + 10 + 61_000, reset(reason));
        resets.push(ended.contains(&ResetBackoff));
    }
    // Stable each time, but from the second refusal in a row the delays keep
    // growing; any other ending starts them over.
    assert_eq!(resets, [true, false, false, true]);
}

#[test]
fn stop_while_connected_unsubscribes_closes_1000_and_ends() {
    let mut t = T::plain();
    t.subscribe(0, 1);
    assert_eq!(
        t.cmd(40, Command::Stop),
        [close(1000, "wsvault closing", true)]
    );
    let closed = [
        t.closed(1, 0, 50, 1000, "closed by wsvault", false),
        t.row(50, CLOSED, Some(1), 1000, "closed by wsvault"),
        Exit,
    ];
    assert_eq!(t.feed(50, Input::Closed), closed);
    assert!(t.cmd(60, Command::Run).is_empty(), "ended");
}

#[test]
fn handover_while_connected_closes_1000_and_never_reconnects() {
    let mut t = T::plain();
    t.subscribe(0, 1);
    let handed = "lease handed over";
    assert_eq!(t.cmd(40, Command::Handover), [close(1000, handed, true)]);
    let after = [
        t.closed(1, 0, 50, 1000, handed, false),
        t.row(50, HANDOVER, Some(1), 1000, handed),
        Exit,
    ];
    assert_eq!(t.feed(50, Input::Closed), after);
    assert!(t.cmd(60, Command::Run).is_empty(), "ended");
    assert!(t.feed(70, Input::WaitOver).is_empty(), "ended");
}

#[test]
fn a_closed_writer_ends_the_session_without_rows() {
    let mut t = T::plain();
    t.subscribe(0, 1);
    assert_eq!(t.feed(20, Input::WriterClosed), [Exit]);
    assert!(!t.life.connected());
    assert!(t.feed(30, reset("reset")).is_empty());
}

#[test]
fn a_stop_during_a_suspending_close_is_acted_on_after_it() {
    let mut t = T::plain();
    t.subscribe(0, 1);
    t.cmd(20, Command::Suspend);
    assert!(
        t.cmd(25, Command::Stop).is_empty(),
        "the close decides first"
    );
    let after = t.feed(30, Input::Closed);
    let stop = t.row(30, CLOSED, None, 0, "closed by wsvault while not connected");
    assert_eq!(after[2..], [Publish(State::Suspended), stop, Exit]);
}
