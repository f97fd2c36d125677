//! The rows a lifecycle transition writes, as typed values.
//!
//! The machine ([`super::Lifecycle`]) describes each `session_events` and
//! `connections` row without minting ids or reading a clock, so its unit tests can
//! compare whole rows; the runner turns them into [`Record`]s ([`Row::into_record`])
//! at the moment it queues them. The spelling of every name and column value lives
//! here, once: the storage contract (ARCHITECTURE.md §4) depends on it.

use crate::record::{Connection, Record, SessionEvent, SourceName};
use chrono::{DateTime, Utc};

/// The `session_events.event` values a session writes itself. (The protocols write
/// `subscribe_error`, `subscribe_status`, `warning` and `notification`; those are
/// protocol business and never pass through the lifecycle.)
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EventName {
    /// The socket opened (with a new `connections` row).
    Opened,
    /// The protocol confirmed the subscription.
    Subscribed,
    /// The first `subscribed` after a suspension: the blind period is over.
    Resumed,
    /// The source stopped receiving (see [`Initiator`]).
    Suspended,
    /// The session ended for good.
    Closed,
    /// A connect attempt failed before any socket opened.
    SocketError,
    /// A login was refused, or the credential died on an open connection.
    AuthFailed,
}

impl EventName {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            EventName::Opened => "opened",
            EventName::Subscribed => "subscribed",
            EventName::Resumed => "resumed",
            EventName::Suspended => "suspended",
            EventName::Closed => "closed",
            EventName::SocketError => "socket_error",
            EventName::AuthFailed => "auth_failed",
        }
    }
}

/// Who ended the recording in a `suspended` row (`session_events.initiator`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Initiator {
    /// An operator (SIGUSR1): no reconnect until resumed.
    Manual,
    /// The network or the upstream: a reconnect follows after a backoff.
    Network,
    /// The source's lease went to another daemon (issue 13): this daemon stops
    /// recording it and the new holder carries on.
    Handover,
    /// wsvault itself was not running (killed or crashed): the `suspended` row is
    /// written at the next start (`store/abandoned.rs`), and the first subscription
    /// of that run writes the `resumed` row naming it.
    Down,
}

impl Initiator {
    /// The stored spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Initiator::Manual => "manual",
            Initiator::Network => "network",
            Initiator::Handover => "handover",
            Initiator::Down => "down",
        }
    }
}

/// One `session_events` row, without its id.
#[derive(Debug, Clone, PartialEq)]
pub struct EventRow {
    pub event: EventName,
    /// `None` for transitions outside any connection (a failed connect, a login,
    /// anything while suspended or backing off).
    pub connection_id: Option<i64>,
    pub at: DateTime<Utc>,
    pub initiator: Option<Initiator>,
    pub code: Option<i64>,
    pub reason: Option<String>,
    /// On a `resumed` row: the suspension it ends, stored in `detail`, so a blind
    /// period is one row read by a range scan instead of a pairing of rows.
    pub resumes: Option<Suspension>,
}

/// When a suspension began and who began it: what a `resumed` row carries in its
/// `detail` as `{"suspended_at": …, "initiator": …}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Suspension {
    /// The time of the `suspended` row that began it (the first one, when several
    /// came before the resume).
    pub at: DateTime<Utc>,
    pub initiator: Initiator,
}

impl Suspension {
    /// The `detail` JSON of the `resumed` row (times in the storage text format,
    /// which PostgreSQL also reads as `timestamptz`).
    pub fn detail(&self) -> String {
        serde_json::json!({
            "suspended_at": crate::store::time::format_ts(&self.at),
            "initiator": self.initiator.as_str(),
        })
        .to_string()
    }
}

impl EventRow {
    /// A row with no initiator, code or reason.
    pub fn bare(event: EventName, connection_id: Option<i64>, at: DateTime<Utc>) -> Self {
        EventRow {
            event,
            connection_id,
            at,
            initiator: None,
            code: None,
            reason: None,
            resumes: None,
        }
    }
}

/// The open connection a `connections` row describes.
#[derive(Debug, Clone, PartialEq)]
pub struct Conn {
    pub id: i64,
    /// The connect URL, already redacted.
    pub url: String,
    pub opened_at: DateTime<Utc>,
}

/// One row the lifecycle writes.
#[derive(Debug, Clone, PartialEq)]
pub enum Row {
    /// The `connections` row at open.
    Opened(Conn),
    /// The same `connections` row at close (the writer upserts on `id`).
    Closed {
        conn: Conn,
        at: DateTime<Utc>,
        code: i64,
        reason: String,
        /// The connection was lost rather than ended by a decision of ours: worth a
        /// warning in the log.
        lost: bool,
    },
    /// A `session_events` row.
    Event(EventRow),
}

impl Row {
    /// The record to queue, with a freshly minted id where the table needs one.
    pub fn into_record(self, source: &SourceName) -> Record {
        match self {
            Row::Opened(c) => Record::Connection(Connection {
                id: c.id,
                source: source.clone(),
                url: c.url,
                opened_at: c.opened_at,
                closed_at: None,
                close_code: None,
                close_reason: None,
            }),
            Row::Closed {
                conn,
                at,
                code,
                reason,
                ..
            } => Record::Connection(Connection {
                id: conn.id,
                source: source.clone(),
                url: conn.url,
                opened_at: conn.opened_at,
                closed_at: Some(at),
                close_code: Some(code),
                close_reason: Some(reason),
            }),
            Row::Event(e) => Record::SessionEvent(SessionEvent {
                id: crate::ids::next_id(),
                source: source.clone(),
                connection_id: e.connection_id,
                occurred_at: e.at,
                event: e.event.as_str().to_string(),
                initiator: e.initiator.map(|i| i.as_str().to_string()),
                code: e.code,
                reason: e.reason,
                detail: e.resumes.map(|s| s.detail()),
            }),
        }
    }
}
