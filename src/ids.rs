//! Row ids minted in memory, before a record reaches the database.
//!
//! Sessions must reference their connection row before it is committed, and the
//! writer must be able to retry a batch whose commit acknowledgement was lost without
//! duplicating append-only rows. Both need ids that exist before the insert, so ids
//! are minted here: 41 bits of Unix milliseconds, 12 bits of a per-millisecond
//! counter and 10 bits of a *node number*. They are positive `i64`s and sort by
//! creation time. (The milliseconds sit at the same bits as in the earlier layout —
//! 16 counter bits and 6 random bits — so ids minted after an upgrade still sort
//! after every older id.)
//!
//! Within a process the stamp (milliseconds and counter) only grows: a burst of more
//! than 4 096 ids in one millisecond borrows the next millisecond's stamps. Across
//! processes uniqueness comes from the node number: a daemon claims one through the
//! database at start (`crate::id_slots`), which no other live process holds, and
//! [`set_node`] installs it with a floor above every id the slot's previous holder
//! reported, and a horizon that stops the clock part from advancing when the daemon
//! could not renew its claim for long (see `id_slots` for the proof). A process that
//! claims nothing (tests, benchmarks, one-shot tools) draws its 10 bits at random, as
//! before.
//!
//! This module depends on nothing of the crate.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// Bits of the node number.
pub const NODE_BITS: u32 = 10;
/// How many node numbers exist: `0..NODE_COUNT`.
pub const NODE_COUNT: u16 = 1 << NODE_BITS;
/// Bits of the per-millisecond counter.
pub const COUNTER_BITS: u32 = 12;

/// Sentinel of [`NODE`] and [`HORIZON`]: nothing installed.
const UNSET: u64 = u64::MAX;

/// The last stamp handed out: milliseconds << COUNTER_BITS | counter.
static LAST: AtomicU64 = AtomicU64::new(0);
/// The node number claimed through the database, or [`UNSET`].
static NODE: AtomicU64 = AtomicU64::new(UNSET);
/// The latest millisecond the clock part may show, or [`UNSET`] for no limit.
static HORIZON: AtomicU64 = AtomicU64::new(UNSET);
/// Random node bits of a process that claimed no number.
static RANDOM_NODE: OnceLock<u64> = OnceLock::new();

fn wall_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0)
}

fn node_bits() -> u64 {
    match NODE.load(Ordering::Acquire) {
        UNSET => *RANDOM_NODE.get_or_init(|| rand::random::<u64>() % u64::from(NODE_COUNT)),
        n => n,
    }
}

/// A fresh id, unique within the process and time-ordered; unique across processes
/// once [`set_node`] installed a number no other live process holds.
pub fn next_id() -> i64 {
    let ms = wall_ms().min(HORIZON.load(Ordering::Acquire));
    let floor = ms << COUNTER_BITS;
    let mut prev = LAST.load(Ordering::Relaxed);
    let stamp = loop {
        let next = floor.max(prev + 1);
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(actual) => prev = actual,
        }
    };
    compose(stamp, node_bits())
}

fn compose(stamp: u64, node: u64) -> i64 {
    (((stamp << NODE_BITS) | node) & (i64::MAX as u64)) as i64
}

/// Installs the node number this process claimed. Every later id is above
/// `floor_id` (the largest id the number's previous holder reported) and shows no
/// millisecond after `horizon_ms`. Call it before the first record is minted.
pub fn set_node(node: u16, floor_id: i64, horizon_ms: u64) {
    let node = u64::from(node % NODE_COUNT);
    let floor_stamp = (floor_id.max(0) as u64) >> NODE_BITS;
    LAST.fetch_max(floor_stamp, Ordering::AcqRel);
    HORIZON.store(horizon_ms, Ordering::Release);
    NODE.store(node, Ordering::Release);
}

/// Moves the horizon after a successful renewal of the claim.
pub fn extend_horizon(horizon_ms: u64) {
    HORIZON.store(horizon_ms, Ordering::Release);
}

/// The node number installed by [`set_node`], if any.
pub fn node() -> Option<u16> {
    match NODE.load(Ordering::Acquire) {
        UNSET => None,
        n => Some(n as u16),
    }
}

/// The largest id this process can have minted so far: what it reports as its
/// slot's high-water mark, so the next holder of the number starts above it.
pub fn high_water() -> i64 {
    compose(LAST.load(Ordering::Acquire), node_bits())
}

/// The Unix milliseconds an id shows.
pub fn millis_of(id: i64) -> u64 {
    (id as u64) >> (COUNTER_BITS + NODE_BITS)
}

/// The node number an id carries.
pub fn node_of(id: i64) -> u16 {
    ((id as u64) & (u64::from(NODE_COUNT) - 1)) as u16
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn ids_are_unique_positive_and_increasing() {
        let mut seen = HashSet::new();
        let mut last = 0;
        for _ in 0..200_000 {
            let id = next_id();
            assert!(id > last, "ids must increase");
            assert!(seen.insert(id));
            last = id;
        }
    }

    #[test]
    fn ids_are_unique_across_threads() {
        let handles: Vec<_> = (0..4)
            .map(|_| std::thread::spawn(|| (0..50_000).map(|_| next_id()).collect::<Vec<_>>()))
            .collect();
        let mut all = HashSet::new();
        for h in handles {
            for id in h.join().expect("thread") {
                assert!(all.insert(id), "duplicate id {id}");
            }
        }
    }

    #[test]
    fn the_milliseconds_sit_where_the_old_layout_had_them() {
        // Old layout: ((ms << 16 | counter) << 6) | random; new: ms << 22 | … .
        let ms: u64 = 1_770_000_000_000;
        let old = (((ms << 16) | 0xffff) << 6) | 0x3f;
        let new = compose(ms << COUNTER_BITS, 5);
        assert_eq!(millis_of(old as i64), ms);
        assert_eq!(millis_of(new), ms);
        assert_eq!(node_of(new), 5);
        // The next millisecond of the new layout sorts after the last id of this one.
        assert!(compose((ms + 1) << COUNTER_BITS, 0) > old as i64);
    }

    #[test]
    fn a_burst_borrows_later_milliseconds_without_repeating() {
        // More than 4 096 ids in a millisecond still increase strictly.
        let ids: Vec<i64> = (0..20_000).map(|_| next_id()).collect();
        assert!(ids.windows(2).all(|w| w[0] < w[1]));
    }
}
