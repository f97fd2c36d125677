//! Lifecycle rows: each transition of the lifecycle (ARCHITECTURE.md §3) becomes a
//! `session_events` row tied to its `connections` row.

use crate::record::{Connection, Record, SessionEvent, SourceName};
use chrono::{DateTime, Utc};

/// Builder for the lifecycle rows of one source.
pub(super) struct Lifecycle {
    pub source: SourceName,
}

/// Optional fields of a transition.
#[derive(Default)]
pub(super) struct Detail {
    pub initiator: Option<&'static str>,
    pub code: Option<i64>,
    pub reason: Option<String>,
    pub detail: Option<String>,
}

impl Lifecycle {
    /// A `session_events` row.
    pub fn event(&self, connection_id: Option<i64>, event: &str, d: Detail) -> Record {
        Record::SessionEvent(SessionEvent {
            id: crate::ids::next_id(),
            source: self.source.clone(),
            connection_id,
            occurred_at: Utc::now(),
            event: event.to_string(),
            initiator: d.initiator.map(str::to_string),
            code: d.code,
            reason: d.reason,
            detail: d.detail,
        })
    }

    /// The `connections` row at open.
    pub fn opened(&self, id: i64, url: String, at: DateTime<Utc>) -> Record {
        Record::Connection(Connection {
            id,
            source: self.source.clone(),
            url,
            opened_at: at,
            closed_at: None,
            close_code: None,
            close_reason: None,
        })
    }

    /// The same `connections` row at close (the writer upserts on `id`).
    pub fn closed(
        &self,
        id: i64,
        url: String,
        opened_at: DateTime<Utc>,
        code: Option<i64>,
        reason: String,
    ) -> Record {
        Record::Connection(Connection {
            id,
            source: self.source.clone(),
            url,
            opened_at,
            closed_at: Some(Utc::now()),
            close_code: code,
            close_reason: Some(reason),
        })
    }
}
