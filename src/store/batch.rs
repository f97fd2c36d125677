//! A batch of records as the writer holds it between attempts, and its per-table view.
//!
//! The writer keeps the records it received (in arrival order) together with each
//! record's fate, because a retried attempt must write exactly what the previous one
//! tried: a record already swapped for its `rejected` row stays swapped, so the
//! `rejected` row keeps its id and a retry cannot duplicate it. [`Groups`] borrows a
//! batch grouped by table, keeping the relative order of rows within each table.
//! This module never talks to a database.

use super::classify::error_text;
use crate::record::{
    Connection, Event, Notification, Record, Rejected, SecuritySession, SecuritySessionChange,
    SessionEvent, TrackerLifecycle, TrackerReading, TrackerState, Traffic,
};
use crate::telemetry::emit;
use crate::telemetry::events::{RecordRejected, RejectedRowRefused};

/// What has become of one record of a batch so far.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fate {
    /// To be written to its own table.
    Pending,
    /// The database refused it; the slot now holds its `Record::Rejected` replacement.
    Substituted,
    /// Even the `rejected` row was refused: counted as lost and skipped from now on.
    Dropped,
}

/// The records of one batch and their fates, index for index.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub records: Vec<Record>,
    pub fates: Vec<Fate>,
}

impl Batch {
    /// Starts tracking fates for the records currently in `records`.
    pub fn reset_fates(&mut self) {
        self.fates.clear();
        self.fates.resize(self.records.len(), Fate::Pending);
    }

    /// How many records ended up as `fate`.
    pub fn count(&self, fate: Fate) -> u64 {
        self.fates.iter().filter(|f| **f == fate).count() as u64
    }

    /// Whether record `i` still has to be written (it was not given up on).
    pub fn is_live(&self, i: usize) -> bool {
        self.fates[i] != Fate::Dropped
    }

    /// Notes that the database refused record `i` for good. The first refusal swaps
    /// the record for its `rejected` row and returns `true`: that row must now be
    /// written. A refused `rejected` row is given up on (logged, counted as lost).
    pub fn refuse(&mut self, i: usize, err: &sqlx::Error) -> bool {
        let text = error_text(err);
        match self.fates[i] {
            Fate::Pending => {
                emit(RecordRejected {
                    table: self.records[i].kind(),
                    source: self.records[i].source(),
                    error: &text,
                });
                self.records[i] = Rejected::of(&self.records[i], text);
                self.fates[i] = Fate::Substituted;
                true
            }
            Fate::Substituted | Fate::Dropped => {
                emit(RejectedRowRefused {
                    source: self.records[i].source(),
                    error: &text,
                });
                self.fates[i] = Fate::Dropped;
                false
            }
        }
    }

    /// Empties the batch, keeping its allocations for the next one.
    pub fn clear(&mut self) {
        self.records.clear();
        self.fates.clear();
    }
}

/// One batch viewed table by table; every list keeps arrival order.
#[derive(Debug, Default)]
pub(crate) struct Groups<'a> {
    pub connections: Vec<&'a Connection>,
    pub session_events: Vec<&'a SessionEvent>,
    pub events: Vec<&'a Event>,
    pub tracker_states: Vec<&'a TrackerState>,
    pub tracker_readings: Vec<&'a TrackerReading>,
    pub tracker_lifecycle: Vec<&'a TrackerLifecycle>,
    pub security_sessions: Vec<&'a SecuritySession>,
    pub security_session_changes: Vec<&'a SecuritySessionChange>,
    pub notifications: Vec<&'a Notification>,
    pub traffic: Vec<&'a Traffic>,
    pub rejected: Vec<&'a Rejected>,
}

impl<'a> Groups<'a> {
    /// Groups every record of `batch` whose fate is not [`Fate::Dropped`].
    pub fn of(batch: &'a Batch) -> Self {
        let mut g = Groups::default();
        for (record, fate) in batch.records.iter().zip(&batch.fates) {
            if *fate != Fate::Dropped {
                g.push(record);
            }
        }
        g
    }

    /// A group holding exactly one record, for the record-by-record fallback.
    pub fn single(record: &'a Record) -> Self {
        let mut g = Groups::default();
        g.push(record);
        g
    }

    fn push(&mut self, record: &'a Record) {
        match record {
            Record::Connection(r) => self.connections.push(r),
            Record::SessionEvent(r) => self.session_events.push(r),
            Record::Event(r) => self.events.push(r),
            Record::TrackerState(r) => self.tracker_states.push(r),
            Record::TrackerReading(r) => self.tracker_readings.push(r),
            Record::TrackerLifecycle(r) => self.tracker_lifecycle.push(r),
            Record::SecuritySession(r) => self.security_sessions.push(r),
            Record::SecuritySessionChange(r) => self.security_session_changes.push(r),
            Record::Notification(r) => self.notifications.push(r),
            Record::Traffic(r) => self.traffic.push(r),
            Record::Rejected(r) => self.rejected.push(r),
        }
    }
}
