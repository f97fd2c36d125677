//! What the lifecycle asks the runner to do.

use super::{Row, State};
use crate::backfill::Cause;
use chrono::{DateTime, Utc};
use std::time::Duration;

/// A delay before the next attempt, resolved by the runner's backoff.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Delay {
    /// The next step of the jittered exponential sequence.
    Next,
    /// The cap, jittered downwards: retrying soon cannot help.
    Cap,
    /// Exactly this long.
    Exactly(Duration),
}

/// Something the runner must do.
#[derive(Debug, Clone, PartialEq)]
pub enum Effect {
    /// Publish this state (stamps the change time even when it is unchanged).
    Publish(State),
    /// Count a connection opened after the first (`reconnects`).
    Reopened,
    /// Write this row.
    Record(Row),
    /// Log in; answer with [`Input::LoggedIn`] or [`Input::LoginFailed`].
    Login,
    /// Open a socket; answer with [`Input::Connected`], [`Input::ConnectFailed`], or
    /// the [`Input::Command`] other than `Run` that interrupted it.
    Connect,
    /// Close the open socket with `code` and `reason` on the wire (sending the
    /// protocol's unsubscribe first when `unsubscribe`), record the frames that
    /// arrive meanwhile, then answer with [`Input::Closed`].
    Close {
        code: u16,
        reason: &'static str,
        unsubscribe: bool,
    },
    /// Start the backoff sequence over.
    ResetBackoff,
    /// Wait `delay`, cut short by a command; answer with [`Input::WaitOver`] or the
    /// [`Input::Command`]. `failed_attempt`: a connection attempt failed, so the
    /// published attempt count (health) goes up.
    Wait { delay: Delay, failed_attempt: bool },
    /// Tell the backfill when this run's first frame arrived (closes the `down` gap).
    FirstFrame(DateTime<Utc>),
    /// Tell the backfill that a blind period ended.
    GapEnded {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        cause: Cause,
    },
    /// Hand over what waits, publish `closed`, end the task.
    Exit,
}
