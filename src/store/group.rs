//! Group commit: how far one transaction grows past `batch_size` while a backlog
//! is queued (issue 15).
//!
//! A commit costs about the same whether it holds 500 rows or 5 000: SQLite rewrites
//! every index leaf the transaction touched into the WAL once per commit, PostgreSQL
//! flushes its WAL and answers one more round trip. So when a batch has filled and
//! more records are already waiting, the writer takes them into the same transaction,
//! without waiting for any that are not there yet, up to a row cap and a byte cap.
//! A trickle is unaffected: a batch that does not fill is still committed
//! `flush_interval` after its first record, and nothing here ever waits.
//! This module never talks to a database.

use crate::record::Record;
use tokio::sync::mpsc;

/// The caps of one group commit (`commit_max_rows`, `commit_max_bytes`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Caps {
    pub rows: usize,
    pub bytes: usize,
}

/// Roughly the memory a queued record holds: its JSON text plus a fixed share for
/// the rest. Enough to bound a transaction whose records are unusually large
/// (`traffic`, `raw_events = "full"`) without walking every field of every record.
pub(crate) fn weight(r: &Record) -> usize {
    const FIXED: usize = 160;
    FIXED
        + match r {
            Record::Event(e) => e.payload.len(),
            Record::TrackerState(s) => s.payload.len(),
            Record::TrackerReading(x) => x.payload.len() + x.value.len(),
            Record::SecuritySession(x) => x.payload.len(),
            Record::Notification(x) => x.params.len(),
            Record::Traffic(x) => x.payload.len(),
            Record::Rejected(x) => x.payload.len() + x.error.len(),
            Record::Connection(_)
            | Record::SessionEvent(_)
            | Record::TrackerLifecycle(_)
            | Record::SecuritySessionChange(_) => 0,
        }
}

/// Moves items that are already queued into the transaction being built (`push`),
/// without waiting, while it holds fewer than `caps.rows` items and `caps.bytes`
/// bytes; `held` is what it holds already (rows, bytes). Returns how many were taken.
/// The item that crosses the byte cap is still taken: the cap bounds memory, it does
/// not split records.
pub(crate) fn take_queued<T>(
    rx: &mut mpsc::Receiver<T>,
    held: (usize, usize),
    caps: Caps,
    weight: impl Fn(&T) -> usize,
    mut push: impl FnMut(T),
) -> usize {
    let (mut rows, mut bytes) = held;
    let mut taken = 0;
    while rows < caps.rows && bytes < caps.bytes {
        let Ok(item) = rx.try_recv() else { break };
        rows += 1;
        bytes += weight(&item);
        push(item);
        taken += 1;
    }
    taken
}

#[cfg(test)]
mod tests {
    use super::*;

    fn queue(n: usize) -> mpsc::Receiver<usize> {
        let (tx, rx) = mpsc::channel(n.max(1));
        for i in 0..n {
            tx.try_send(i).unwrap();
        }
        rx
    }

    #[test]
    fn takes_what_is_queued_up_to_the_row_cap() {
        let mut rx = queue(100);
        let mut got = Vec::new();
        let caps = Caps {
            rows: 30,
            bytes: usize::MAX,
        };
        assert_eq!(
            take_queued(&mut rx, (10, 0), caps, |_| 1, |i| got.push(i)),
            20
        );
        assert_eq!(got, (0..20).collect::<Vec<_>>(), "queue order is kept");
        // Already at the cap: nothing more.
        assert_eq!(
            take_queued(&mut rx, (30, 0), caps, |_| 1, |i| got.push(i)),
            0
        );
    }

    #[test]
    fn stops_at_the_byte_cap_and_never_waits_for_more() {
        let mut rx = queue(100);
        let mut got = Vec::new();
        let caps = Caps {
            rows: 1_000,
            bytes: 1_000,
        };
        // 300 bytes each from 100 held: the third reaches 1 000 and is the last.
        assert_eq!(
            take_queued(&mut rx, (1, 100), caps, |_| 300, |i| got.push(i)),
            3
        );
        let mut rx = queue(5);
        let caps = Caps {
            rows: 1_000,
            bytes: usize::MAX,
        };
        assert_eq!(take_queued(&mut rx, (0, 0), caps, |_| 1, |_| ()), 5);
    }
}
