//! What the lifecycle is told: inputs, with the time they happened.

use super::Command;
use chrono::{DateTime, Utc};
use std::time::{Duration, Instant};

/// When an input happened: wall time for rows, monotonic time for durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Now {
    pub wall: DateTime<Utc>,
    pub mono: Instant,
}

/// What the session's configuration tells the machine.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The source logs in through `user/auth` (a Navixy login source).
    pub login: bool,
    /// Never log in again on resume (`only_if_attached`).
    pub only_if_attached: bool,
    /// Subscribed this long resets the backoff (`stable_after`).
    pub stable_after: Duration,
}

/// How long to wait after a refused login.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LoginRetry {
    /// Retrying cannot help (wrong password, second factor): state `failed` until a
    /// command.
    Never,
    /// The server refused for now: wait the backoff cap.
    Cap,
    /// The local login limit says how long.
    After(Duration),
    /// A transport failure: the next backoff delay.
    Backoff,
}

/// Something that happened to the session.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// The supervisor's command: at start, and whenever it changes (an unchanged
    /// `Run` may come again: SIGUSR2 cuts a backoff short).
    Command(Command),
    /// The login call yielded a credential.
    LoggedIn,
    /// The login call failed; `reason` is already redacted.
    LoginFailed { reason: String, retry: LoginRetry },
    /// No socket opened (DNS, TCP, TLS, upgrade refused, timeout).
    ConnectFailed { reason: String },
    /// A socket opened, as connection `id`, to the (redacted) `url`.
    Connected { id: i64, url: String },
    /// The protocol confirmed the subscription (`Output::Subscribed`).
    Subscribed,
    /// An inbound frame of any kind (pings and late frames too).
    Frame,
    /// The server closed; `code` is `None` for a close frame without status.
    CloseReceived { code: Option<u16>, reason: String },
    /// The socket failed: reset, I/O error, EOF without a close frame, failed send.
    SocketError { reason: String },
    /// No frame for `idle` (`idle_timeout`).
    IdleDeadline { idle: Duration },
    /// The protocol judged the connection unusable (`Output::Reconnect`).
    ReconnectAsked { reason: String },
    /// The credential died on the open connection (`Output::CredentialDead`).
    CredentialDead { reason: String },
    /// The close this machine asked for is done (late frames already recorded).
    Closed,
    /// The delay of an [`Effect::Wait`] elapsed.
    WaitOver,
    /// The writer is gone: nothing can be recorded any more.
    WriterClosed,
}
