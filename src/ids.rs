//! Row ids minted in memory, before a record reaches the database.
//!
//! Sessions must reference their connection row before it is committed, and the
//! writer must be able to retry a batch whose commit acknowledgement was lost without
//! duplicating append-only rows. Both need ids that exist before the insert, so ids
//! are minted here: 41 bits of Unix milliseconds, 16 bits of a per-millisecond
//! counter and 6 random bits fixed per process. They are positive `i64`s, sort by
//! creation time, and two daemons writing the same database collide only if they mint
//! the same counter value in the same millisecond with the same 6 random bits.

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

static LAST: AtomicU64 = AtomicU64::new(0);
static PROCESS_BITS: OnceLock<u64> = OnceLock::new();

/// A fresh id, unique within the process and time-ordered.
pub fn next_id() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as u64)
        .unwrap_or(0);
    let floor = now << 16;
    let mut prev = LAST.load(Ordering::Relaxed);
    let stamp = loop {
        let next = floor.max(prev + 1);
        match LAST.compare_exchange_weak(prev, next, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => break next,
            Err(actual) => prev = actual,
        }
    };
    let process = *PROCESS_BITS.get_or_init(|| rand::random::<u64>() & 0x3f);
    (((stamp << 6) | process) & (i64::MAX as u64)) as i64
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
}
