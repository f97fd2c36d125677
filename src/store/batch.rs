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
    /// Its source's lease is no longer this node's (cluster fencing): not written,
    /// because the new holder records that stream. Counted as fenced, not lost.
    Fenced,
}

/// One record in the writer's queue, with the lease term of the session that built
/// it (cluster mode). A node that loses a source and later gets it back holds it
/// under a new term; rows its old session queued in between must still be fenced,
/// which the source alone cannot tell.
#[derive(Debug)]
pub(crate) struct Queued {
    pub record: Record,
    pub term: Option<i64>,
}

/// The records of one batch, their lease terms and their fates, index for index.
#[derive(Debug, Default)]
pub(crate) struct Batch {
    pub records: Vec<Record>,
    pub terms: Vec<Option<i64>>,
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
        is_written(self.fates[i])
    }

    /// Moves queued records (and their terms) into the batch, emptying `items`.
    pub fn take(&mut self, items: &mut Vec<Queued>) {
        for q in items.drain(..) {
            self.records.push(q.record);
            self.terms.push(q.term);
        }
    }

    /// The lease term record `i` was built under (`None`: not stamped).
    fn term(&self, i: usize) -> Option<i64> {
        self.terms.get(i).copied().flatten()
    }

    /// The distinct (source, term) pairs of the records still to be written.
    pub fn live_leases(&self) -> Vec<(String, Option<i64>)> {
        // Borrowed while sorting: a batch holds few distinct pairs, so only those
        // are copied.
        let mut pairs: Vec<(&str, Option<i64>)> = (0..self.records.len())
            .filter(|i| self.is_live(*i))
            .map(|i| (self.records[i].source(), self.term(i)))
            .collect();
        pairs.sort_unstable();
        pairs.dedup();
        pairs.into_iter().map(|(s, t)| (s.to_string(), t)).collect()
    }

    /// Marks every live record of `source` built under `term` as [`Fate::Fenced`];
    /// returns how many.
    pub fn fence_lease(&mut self, source: &str, term: Option<i64>) -> u64 {
        let mut n = 0;
        for i in 0..self.records.len() {
            if self.is_live(i) && self.term(i) == term && self.records[i].source() == source {
                self.fates[i] = Fate::Fenced;
                n += 1;
            }
        }
        n
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
            Fate::Substituted | Fate::Dropped | Fate::Fenced => {
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
        self.terms.clear();
        self.fates.clear();
    }
}

/// Whether a record of this fate goes (or went) into the database.
pub(crate) fn is_written(fate: Fate) -> bool {
    matches!(fate, Fate::Pending | Fate::Substituted)
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
    /// Groups every record of `batch` that is still to be written ([`is_written`]).
    pub fn of(batch: &'a Batch) -> Self {
        let mut g = Groups::default();
        for (record, fate) in batch.records.iter().zip(&batch.fates) {
            if is_written(*fate) {
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
