//! What the lease loop reports: leases held, gained, lost, and one tick's outcome.

use super::Change;
use chrono::{DateTime, Utc};

/// A lease this node holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lease {
    /// The source's configured name.
    pub source: String,
    /// Its term: grows at every change of holder; fencing matches on it.
    pub term: i64,
    /// When the database lets it expire unless renewed (database clock).
    pub expires_at: DateTime<Utc>,
}

/// A lease gained in a tick: start recording the source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Acquired {
    /// The new lease.
    pub lease: Lease,
    /// The node that held it last, when it expired under that node (a takeover).
    pub previous_holder: Option<String>,
    /// The term before ours; 0 when no node ever held the source.
    pub previous_term: i64,
    /// `ClaimedNew`, `ClaimedReleased` or `TakenOver`.
    pub change: Change,
}

impl Acquired {
    /// Whether another run recorded this source until recently, so the time between
    /// its last stored frame and our first one is a blind period with
    /// `cause = 'handover'` (rather than `down`).
    pub fn follows_another_holder(&self) -> bool {
        self.previous_term > 0
    }
}

/// A lease lost: stop recording the source now (suspended, initiator `handover`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Lost {
    /// The source.
    pub source: String,
    /// The term it was held under.
    pub term: i64,
    /// `Lost` (the database says another holder or term) or `Expired` (not renewed in
    /// time by the local clock).
    pub change: Change,
    /// Who holds it now, when known: (node, term).
    pub now_held_by: Option<(String, i64)>,
}

/// What one tick asks of the caller.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tick {
    /// Leases gained: start these sources.
    pub start: Vec<Acquired>,
    /// Leases lost: stop these sources at once.
    pub stop: Vec<Lost>,
    /// Held beyond the fair share: close these sessions (code 1000, `suspended` with
    /// initiator `handover`), then [`Cluster::release`] each. Until then they stay
    /// held and renewed, so no source ever has two live connections.
    pub handover: Vec<Lease>,
    /// Live nodes, this one included.
    pub live_nodes: usize,
    /// The most sources a node holds now: ⌈S/K⌉.
    pub cap: usize,
}
