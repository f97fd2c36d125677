//! The single currency between sessions and the writer.
//!
//! Every source turns frames into [`Record`]s; the writer knows how to store each
//! variant and nothing else about the sources. One variant exists per table of the
//! storage contract (ARCHITECTURE.md §4), so adding a table means adding a variant
//! here and a statement in `store/`, never touching a session.
//!
//! Append-only rows carry an `id` minted by [`crate::ids::next_id`] at the moment the
//! record is created. That id is the row's primary key, which makes a retried batch
//! idempotent even when a commit's acknowledgement was lost (the database may have
//! committed, the writer cannot know, it simply writes again and conflicts are
//! ignored). Typed rows deduplicate on their natural keys instead.
//!
//! JSON columns travel as `String`s holding JSON text: the writer binds them as text
//! and lets each backend validate (SQLite `json_valid` checks, PostgreSQL `jsonb`).
//! A value the backend refuses ends up in `rejected` rather than failing the batch.

use chrono::{DateTime, Utc};
use std::sync::Arc;

/// Source names are shared by every record a session emits; `Arc<str>` keeps the
/// hot path free of per-record string allocations.
pub type SourceName = Arc<str>;

/// One row for one table of the storage contract.
#[derive(Debug, Clone, PartialEq)]
pub enum Record {
    /// Opening and, later, closing of one WebSocket connection (upsert by `id`).
    Connection(Connection),
    /// A lifecycle transition; "when were we blind?" is answered from these.
    SessionEvent(SessionEvent),
    /// An inbound message kept raw (or its envelope when its items went to typed rows).
    Event(Event),
    /// A distinct tracker state, deduplicated on (source, source_id, state_time).
    TrackerState(TrackerState),
    /// A distinct reading value, deduplicated on its natural key.
    TrackerReading(TrackerReading),
    /// A Navixy block/unblock/corrupt notice.
    TrackerLifecycle(TrackerLifecycle),
    /// The current view of one Tradernet security session (upsert).
    SecuritySession(SecuritySession),
    /// An opened/ended transition of a security session.
    SecuritySessionChange(SecuritySessionChange),
    /// A JSON-RPC notification, in arrival order.
    Notification(Notification),
    /// A raw frame in either direction, already redacted, when traffic capture is on.
    Traffic(Traffic),
    /// A record the database refused permanently, with the database's error text.
    Rejected(Rejected),
}

impl Record {
    /// Table name, used for logs, metrics labels and the `rejected.kind` column.
    pub fn kind(&self) -> &'static str {
        match self {
            Record::Connection(_) => "connections",
            Record::SessionEvent(_) => "session_events",
            Record::Event(_) => "events",
            Record::TrackerState(_) => "tracker_states",
            Record::TrackerReading(_) => "tracker_readings",
            Record::TrackerLifecycle(_) => "tracker_lifecycle",
            Record::SecuritySession(_) => "security_sessions",
            Record::SecuritySessionChange(_) => "security_session_changes",
            Record::Notification(_) => "notifications",
            Record::Traffic(_) => "traffic",
            Record::Rejected(_) => "rejected",
        }
    }

    /// The source the record belongs to, so a rejected record keeps its origin.
    pub fn source(&self) -> &str {
        self.source_name()
    }

    /// [`Record::source`] as the shared name, for counters keyed by source that
    /// should not copy the text per record.
    pub fn source_name(&self) -> &SourceName {
        match self {
            Record::Connection(r) => &r.source,
            Record::SessionEvent(r) => &r.source,
            Record::Event(r) => &r.source,
            Record::TrackerState(r) => &r.source,
            Record::TrackerReading(r) => &r.source,
            Record::TrackerLifecycle(r) => &r.source,
            Record::SecuritySession(r) => &r.source,
            Record::SecuritySessionChange(r) => &r.source,
            Record::Notification(r) => &r.source,
            Record::Traffic(r) => &r.source,
            Record::Rejected(r) => &r.source,
        }
    }

    /// Links a typed row to the message it came from: `event_id` is that message's
    /// `events` row (`None` when no raw message is kept), `connection_id` the
    /// connection it arrived on. Rows of other tables are left as they are: the
    /// message itself, lifecycle rows and notifications (their own raw message)
    /// carry no link.
    pub fn link_to(&mut self, event_id: Option<i64>, connection_id: Option<i64>) {
        let (event, connection) = match self {
            Record::TrackerState(r) => (&mut r.event_id, &mut r.connection_id),
            Record::TrackerReading(r) => (&mut r.event_id, &mut r.connection_id),
            Record::TrackerLifecycle(r) => (&mut r.event_id, &mut r.connection_id),
            Record::SecuritySessionChange(r) => (&mut r.event_id, &mut r.connection_id),
            _ => return,
        };
        *event = event_id;
        *connection = connection_id;
    }

    /// When the record came into being, for `rejected.received_at` and latency metrics.
    pub fn received_at(&self) -> DateTime<Utc> {
        match self {
            Record::Connection(r) => r.closed_at.unwrap_or(r.opened_at),
            Record::SessionEvent(r) => r.occurred_at,
            Record::Event(r) => r.received_at,
            Record::TrackerState(r) => r.received_at,
            Record::TrackerReading(r) => r.received_at,
            Record::TrackerLifecycle(r) => r.received_at,
            Record::SecuritySession(r) => r.last_seen_at,
            Record::SecuritySessionChange(r) => r.observed_at,
            Record::Notification(r) => r.received_at,
            Record::Traffic(r) => r.at,
            Record::Rejected(r) => r.received_at,
        }
    }
}

/// `connections` row. Emitted once when the socket opens and again, with the
/// `closed_*` fields set, when it closes; the writer upserts on `id`.
#[derive(Debug, Clone, PartialEq)]
pub struct Connection {
    /// Minted by the session before connecting, so every row of this connection can
    /// reference it without a database round trip.
    pub id: i64,
    pub source: SourceName,
    /// The connect URL with every secret replaced by `***`.
    pub url: String,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub close_code: Option<i64>,
    pub close_reason: Option<String>,
}

/// `session_events` row: one lifecycle transition.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionEvent {
    pub id: i64,
    pub source: SourceName,
    /// `None` for transitions outside any connection (e.g. a failed connect attempt
    /// that never opened, or a login failure before connecting).
    pub connection_id: Option<i64>,
    pub occurred_at: DateTime<Utc>,
    /// opened, subscribed, suspended, resumed, closed, socket_error, auth_failed,
    /// subscribe_error, subscribe_status, warning, …
    pub event: String,
    /// `manual` or `network` for suspensions.
    pub initiator: Option<String>,
    pub code: Option<i64>,
    pub reason: Option<String>,
    /// Free-form JSON text with whatever else explains the transition.
    pub detail: Option<String>,
}

/// `events` row: an inbound message.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: i64,
    pub source: SourceName,
    pub connection_id: Option<i64>,
    pub received_at: DateTime<Utc>,
    /// The message's event/type name (`state_batch`, `response`, `malformed`, …).
    pub kind: String,
    /// JSON text. A frame that is not JSON is stored as a JSON string holding its text.
    pub payload: String,
    /// How many items of this message went to typed tables (envelope mode), if any.
    pub item_count: Option<i64>,
}

/// `tracker_states` row.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerState {
    pub source: SourceName,
    /// Navixy `source_id` (not the tracker id).
    pub source_id: i64,
    /// `last_update` of the state, falling back to `gps.updated`, then receipt time.
    pub state_time: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    pub lat: Option<f64>,
    pub lng: Option<f64>,
    pub speed: Option<f64>,
    pub heading: Option<f64>,
    pub connection_status: Option<String>,
    pub movement_status: Option<String>,
    /// The state item's JSON text, raw timestamps included.
    pub payload: String,
    /// Whether the row came from the live stream or from a backfill of a gap.
    pub origin: Origin,
    /// The `events` row of the message this row came from (its id is minted before
    /// either is written); `None` with `raw_events = "off"` and for backfilled rows.
    pub event_id: Option<i64>,
    /// The connection the message arrived on; `None` for backfilled rows.
    pub connection_id: Option<i64>,
}

/// `tracker_readings` row: one value of one sensor, input, state field or counter.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerReading {
    pub source: SourceName,
    pub tracker_id: i64,
    /// `input`, `state`, `virtual_sensor` or `counter` (the schema refuses others).
    pub reading_kind: String,
    /// Sensor label/name, state field or counter type.
    pub name: String,
    /// The value as JSON text (numbers stay numbers, strings stay strings).
    pub value: String,
    /// The value when it is numeric, so SQL can aggregate without JSON functions.
    pub value_num: Option<f64>,
    pub units: Option<String>,
    pub update_time: DateTime<Utc>,
    pub received_at: DateTime<Utc>,
    /// The reading item's JSON text.
    pub payload: String,
    /// Whether the row came from the live stream or from a backfill of a gap.
    pub origin: Origin,
    /// The `events` row of the message this row came from (its id is minted before
    /// either is written); `None` with `raw_events = "off"` and for backfilled rows.
    pub event_id: Option<i64>,
    /// The connection the message arrived on; `None` for backfilled rows.
    pub connection_id: Option<i64>,
}

/// Where a typed row came from. Both kinds share the natural unique keys, so a value
/// that arrived live and was fetched again by a backfill is stored once (the first
/// one written wins); the column only tells an auditor which path delivered it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Origin {
    /// Received on the WebSocket.
    #[default]
    Live,
    /// Fetched from the upstream's history API to fill a blind period.
    Backfill,
}

impl Origin {
    /// The `origin` column's spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Origin::Live => "live",
            Origin::Backfill => "backfill",
        }
    }
}

/// `tracker_lifecycle` row.
#[derive(Debug, Clone, PartialEq)]
pub struct TrackerLifecycle {
    pub id: i64,
    pub source: SourceName,
    pub source_id: i64,
    /// block, unblock, corrupt (or whatever the server sends; kept verbatim).
    pub lifecycle_event: String,
    pub received_at: DateTime<Utc>,
    /// The `events` row of the message this row came from (its id is minted before
    /// either is written); `None` with `raw_events = "off"` and for backfilled rows.
    pub event_id: Option<i64>,
    /// The connection the message arrived on; `None` for backfilled rows.
    pub connection_id: Option<i64>,
}

/// `security_sessions` row: the current view of a Tradernet security session.
/// Upserted on (source, session_id): `first_seen_at` keeps its first value, the rest
/// take the newest.
#[derive(Debug, Clone, PartialEq)]
pub struct SecuritySession {
    pub source: SourceName,
    pub session_id: i64,
    pub owner_login: Option<String>,
    pub user_login: Option<String>,
    pub safety_type_id: Option<i64>,
    /// A string in the docs, a number in one SDK: kept as text either way.
    pub key_current: Option<String>,
    pub started_at: Option<DateTime<Utc>>,
    /// `received_at + expire`.
    pub expires_at: Option<DateTime<Utc>>,
    pub ip: Option<String>,
    pub ip_client: Option<String>,
    pub first_seen_at: DateTime<Utc>,
    pub last_seen_at: DateTime<Utc>,
    pub ended_at: Option<DateTime<Utc>>,
    /// The session object's JSON text as last seen.
    pub payload: String,
}

/// `security_session_changes` row.
#[derive(Debug, Clone, PartialEq)]
pub struct SecuritySessionChange {
    pub source: SourceName,
    pub session_id: i64,
    /// `opened` or `ended`; unique per (source, session_id, change).
    pub change: String,
    pub observed_at: DateTime<Utc>,
    /// The `events` row of the message this row came from (its id is minted before
    /// either is written); `None` with `raw_events = "off"` and for backfilled rows.
    pub event_id: Option<i64>,
    /// The connection the message arrived on; `None` for backfilled rows.
    pub connection_id: Option<i64>,
}

/// `notifications` row.
#[derive(Debug, Clone, PartialEq)]
pub struct Notification {
    pub id: i64,
    pub source: SourceName,
    pub connection_id: Option<i64>,
    /// Position within the connection, so arrival order survives any insert order.
    pub seq: i64,
    pub received_at: DateTime<Utc>,
    pub method: String,
    /// JSON text (`null` when the notification carried no params).
    pub params: String,
}

/// Direction of a captured frame.
pub const SENT: &str = "sent";
/// Direction of a captured frame.
pub const RECEIVED: &str = "received";

/// `traffic` row.
#[derive(Debug, Clone, PartialEq)]
pub struct Traffic {
    pub id: i64,
    pub source: SourceName,
    pub connection_id: Option<i64>,
    pub at: DateTime<Utc>,
    /// [`SENT`] or [`RECEIVED`].
    pub direction: String,
    /// The frame text, secrets redacted. Not necessarily JSON (heartbeats are `X`).
    pub payload: String,
}

/// `rejected` row: what the database refused, kept so nothing is silently lost.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejected {
    pub id: i64,
    pub source: SourceName,
    /// Table the record was meant for.
    pub kind: String,
    pub received_at: DateTime<Utc>,
    /// The database's error text.
    pub error: String,
    /// The refused record, debug-formatted (plain text: it may not be valid JSON).
    pub payload: String,
}

impl Rejected {
    /// Wraps a refused record so it can be stored in `rejected` instead.
    pub fn of(record: &Record, error: impl Into<String>) -> Record {
        Record::Rejected(Rejected {
            id: crate::ids::next_id(),
            source: record.source().into(),
            kind: record.kind().to_string(),
            received_at: record.received_at(),
            error: error.into(),
            payload: format!("{record:?}"),
        })
    }
}
