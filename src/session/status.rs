//! What a running session publishes about itself, for `/metrics`, `/healthz`, the
//! systemd watchdog and log lines.
//!
//! Plain atomics written by the session task and read by anyone: reading a status
//! must never wait on the session.

use std::sync::atomic::{AtomicI64, AtomicU8, AtomicU64, Ordering};

/// The lifecycle states (ARCHITECTURE.md §3), as published numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum State {
    Connecting = 0,
    Open = 1,
    Subscribed = 2,
    /// Manual suspension (SIGUSR1): no reconnect until resumed.
    Suspended = 3,
    /// Network suspension: waiting out the backoff before resuming.
    Retrying = 4,
    Closed = 5,
    /// Authentication refused for good (wrong password, 2FA): needs an operator.
    Failed = 6,
}

impl State {
    /// Name used in metrics labels, `wsvault status` and health reasons.
    pub fn as_str(self) -> &'static str {
        match self {
            State::Connecting => "connecting",
            State::Open => "open",
            State::Subscribed => "subscribed",
            State::Suspended => "suspended",
            State::Retrying => "retrying",
            State::Closed => "closed",
            State::Failed => "failed",
        }
    }

    fn from_u8(v: u8) -> State {
        match v {
            1 => State::Open,
            2 => State::Subscribed,
            3 => State::Suspended,
            4 => State::Retrying,
            5 => State::Closed,
            6 => State::Failed,
            _ => State::Connecting,
        }
    }
}

/// Live counters and state of one source.
#[derive(Debug, Default)]
pub struct SourceStatus {
    state: AtomicU8,
    /// Unix milliseconds of the last inbound frame (heartbeats included); 0 = never.
    pub last_frame_ms: AtomicI64,
    /// Unix milliseconds of the last data record handed to the writer; 0 = never.
    pub last_event_ms: AtomicI64,
    /// Inbound frames.
    pub frames: AtomicU64,
    // Records handed to the writer are counted once, per table, by the
    // `RecordReceived` telemetry event (`wsvault_records_received_total`).
    /// Connections opened after the first one.
    pub reconnects: AtomicU64,
    /// Consecutive failed attempts since the last stable subscription.
    pub attempts: AtomicU64,
    /// Unix milliseconds of the last [`SourceStatus::set_state`] call (a lifecycle
    /// step, even one that keeps the state): the watchdog and `/healthz` measure
    /// how long a source has been connecting, open or retrying from here. 0 = never.
    pub changed_ms: AtomicI64,
    /// Unix milliseconds until which the session deliberately waits (backoff, login
    /// rate limit) before its next attempt; 0 = it never waited. A retrying source
    /// is making progress while this lies ahead.
    pub resume_at_ms: AtomicI64,
    /// Unix milliseconds of the first inbound frame of this run; 0 = none yet. A
    /// `down` gap ends here.
    pub first_frame_ms: AtomicI64,
}

impl SourceStatus {
    /// Current lifecycle state.
    pub fn state(&self) -> State {
        State::from_u8(self.state.load(Ordering::Relaxed))
    }

    /// Publishes a new lifecycle state and stamps [`SourceStatus::changed_ms`].
    pub fn set_state(&self, s: State) {
        self.changed_ms.store(now_ms(), Ordering::Relaxed);
        self.state.store(s as u8, Ordering::Relaxed);
    }

    /// Notes that the session waits `d` before its next attempt.
    pub fn waiting(&self, d: std::time::Duration) {
        let until = now_ms().saturating_add(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        self.resume_at_ms.store(until, Ordering::Relaxed);
    }

    /// Notes an inbound frame at `now_ms`.
    pub fn frame(&self, now_ms: i64) {
        self.frames.fetch_add(1, Ordering::Relaxed);
        self.last_frame_ms.store(now_ms, Ordering::Relaxed);
        let _ =
            self.first_frame_ms
                .compare_exchange(0, now_ms, Ordering::Relaxed, Ordering::Relaxed);
    }

    /// The first inbound frame of this run, if any.
    pub fn first_frame_ms(&self) -> Option<chrono::DateTime<chrono::Utc>> {
        chrono::DateTime::from_timestamp_millis(self.first_frame_ms.load(Ordering::Relaxed))
            .filter(|t| t.timestamp_millis() > 0)
    }
}

/// Unix milliseconds now (0 if the clock is before 1970).
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
        .unwrap_or(0)
}
