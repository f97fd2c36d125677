//! Every documented transition (ARCHITECTURE.md §3) as a literal input sequence and
//! the exact effects it must produce: `connected.rs` for what happens to an open
//! connection, `unconnected.rs` for logins, connects, backoffs and commands while
//! no socket is open.

mod connected;
mod unconnected;

use super::*;
use chrono::TimeZone;
use std::time::Duration;

pub use Effect::{Connect, Exit, Login, Publish, Reopened, ResetBackoff};
pub use EventName::{AuthFailed, Closed, Opened, Resumed, SocketError, Subscribed, Suspended};

const URL: &str = "wss://upstream.test/ws";
const STABLE: Duration = Duration::from_secs(60);

/// A lifecycle and a clock; times are milliseconds after the start.
struct T {
    life: Lifecycle,
    wall: DateTime<Utc>,
    mono: Instant,
}

impl T {
    fn new(login: bool, only_if_attached: bool) -> T {
        T {
            life: Lifecycle::new(Policy {
                login,
                only_if_attached,
                stable_after: STABLE,
            }),
            wall: Utc.with_ymd_and_hms(2026, 3, 2, 12, 0, 0).unwrap(),
            mono: Instant::now(),
        }
    }

    fn plain() -> T {
        T::new(false, false)
    }

    fn at(&self, ms: u64) -> DateTime<Utc> {
        self.wall + chrono::Duration::milliseconds(ms as i64)
    }

    fn feed(&mut self, ms: u64, input: Input) -> Vec<Effect> {
        let now = Now {
            wall: self.at(ms),
            mono: self.mono + Duration::from_millis(ms),
        };
        self.life.handle(input, now)
    }

    fn cmd(&mut self, ms: u64, c: Command) -> Vec<Effect> {
        self.feed(ms, Input::Command(c))
    }

    fn conn(&self, id: i64, opened_ms: u64) -> Conn {
        Conn {
            id,
            url: URL.into(),
            opened_at: self.at(opened_ms),
        }
    }

    /// A `session_events` row without initiator, code or reason.
    fn event(&self, ms: u64, event: EventName, conn: Option<i64>) -> Effect {
        Effect::Record(Row::Event(EventRow::bare(event, conn, self.at(ms))))
    }

    /// A `session_events` row; `code` 0 stands for none.
    fn row(
        &self,
        ms: u64,
        what: (EventName, Option<Initiator>),
        conn: Option<i64>,
        code: i64,
        reason: &str,
    ) -> Effect {
        let mut row = EventRow::bare(what.0, conn, self.at(ms));
        row.initiator = what.1;
        row.code = (code != 0).then_some(code);
        row.reason = Some(reason.into());
        Effect::Record(Row::Event(row))
    }

    /// The `connections` row of `id` (opened at `opened_ms`) completed at `ms`.
    fn closed(
        &self,
        id: i64,
        opened_ms: u64,
        ms: u64,
        code: i64,
        reason: &str,
        lost: bool,
    ) -> Effect {
        let (conn, at, reason) = (self.conn(id, opened_ms), self.at(ms), reason.into());
        Effect::Record(Row::Closed {
            conn,
            at,
            code,
            reason,
            lost,
        })
    }

    /// What a network drop of `id` at `ms` must produce.
    fn dropped(&self, id: i64, opened_ms: u64, ms: u64, code: i64, reason: &str) -> Vec<Effect> {
        vec![
            self.closed(id, opened_ms, ms, code, reason, true),
            self.row(ms, NETWORK, Some(id), code, reason),
            Publish(State::Retrying),
            wait(Delay::Next, true),
        ]
    }

    /// Runs (logging in where needed) up to a confirmed subscription of connection
    /// `id`, opened at `ms` and subscribed 10 ms later; returns the subscription's
    /// effects.
    fn subscribe(&mut self, ms: u64, id: i64) -> Vec<Effect> {
        let mut connect = self.cmd(ms, Command::Run);
        if connect == [Login] {
            connect = self.feed(ms, Input::LoggedIn);
        }
        assert_eq!(connect.last(), Some(&Connect), "{connect:?}");
        let opened = self.feed(ms, connected(id));
        assert!(
            opened.contains(&self.event(ms, Opened, Some(id))),
            "{opened:?}"
        );
        self.feed(ms + 10, Input::Subscribed)
    }

    /// The `resumed` row at `ms` on connection `id`, naming the suspension that
    /// began at `suspended_ms`.
    fn resumed_row(&self, ms: u64, id: i64, suspended_ms: u64, initiator: Initiator) -> Effect {
        let mut row = EventRow::bare(Resumed, Some(id), self.at(ms));
        row.resumes = Some(Suspension {
            at: self.at(suspended_ms),
            initiator,
        });
        Effect::Record(Row::Event(row))
    }

    /// The effects of a resuming subscription after the first: its rows (the
    /// `resumed` one naming the suspension at `suspended`) and the end of the blind
    /// period that began at `from`.
    fn resumed(
        &self,
        ms: u64,
        id: i64,
        suspended: (u64, Initiator),
        from: u64,
        cause: Cause,
    ) -> Vec<Effect> {
        vec![
            Publish(State::Subscribed),
            self.event(ms, Subscribed, Some(id)),
            self.resumed_row(ms, id, suspended.0, suspended.1),
            Effect::GapEnded {
                from: self.at(from),
                to: self.at(ms),
                cause,
            },
        ]
    }
}

const NETWORK: (EventName, Option<Initiator>) = (Suspended, Some(Initiator::Network));
const MANUAL: (EventName, Option<Initiator>) = (Suspended, Some(Initiator::Manual));
const HANDOVER: (EventName, Option<Initiator>) = (Suspended, Some(Initiator::Handover));
const CLOSED: (EventName, Option<Initiator>) = (Closed, None);

fn connected(id: i64) -> Input {
    Input::Connected {
        id,
        url: URL.into(),
    }
}

fn reset(reason: &str) -> Input {
    Input::SocketError {
        reason: reason.into(),
    }
}

fn wait(delay: Delay, failed_attempt: bool) -> Effect {
    Effect::Wait {
        delay,
        failed_attempt,
    }
}

fn close(code: u16, reason: &'static str, unsubscribe: bool) -> Effect {
    Effect::Close {
        code,
        reason,
        unsubscribe,
    }
}
