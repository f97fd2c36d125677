//! Observable state of a simulator: counters and records that tests can read and
//! wait on without sleeping blindly.
//!
//! Owns the `watch`-based wrapper only; it never decides what is counted (each
//! simulator does) and never blocks writers on readers.

use std::time::Duration;

use tokio::sync::watch;

/// Largest number of entries a simulator keeps in any recorded list (client frames,
/// subscribe messages, heartbeat times…): a long benchmark must not grow memory
/// without bound, while tests never come close to it.
pub const RECORD_CAP: usize = 10_000;

/// Appends `item` to a recorded list, dropping the oldest entry once
/// [`RECORD_CAP`] is reached, so recording stays bounded in long runs.
pub(crate) fn push_capped<T>(list: &mut Vec<T>, item: T) {
    if list.len() >= RECORD_CAP {
        list.remove(0);
    }
    list.push(item);
}

/// A value that changes as the simulator runs and that tests can snapshot or wait
/// on. Every update wakes the waiters, so `wait_until` reacts immediately instead
/// of polling.
#[derive(Debug)]
pub struct Observed<T> {
    tx: watch::Sender<T>,
}

impl<T: Clone> Observed<T> {
    /// Starts observing `initial`.
    pub fn new(initial: T) -> Self {
        Self {
            tx: watch::Sender::new(initial),
        }
    }

    /// Changes the value in place and wakes every waiter.
    pub fn update(&self, change: impl FnOnce(&mut T)) {
        self.tx.send_modify(change);
    }

    /// A copy of the current value, for assertions.
    pub fn snapshot(&self) -> T {
        self.tx.borrow().clone()
    }

    /// Reads the current value without copying it.
    pub fn read<R>(&self, f: impl FnOnce(&T) -> R) -> R {
        f(&self.tx.borrow())
    }

    /// Waits until `pred` holds for the current value, or `timeout` passes.
    /// Returns whether the predicate held; tests assert on it instead of sleeping.
    pub async fn wait_until(&self, pred: impl FnMut(&T) -> bool, timeout: Duration) -> bool {
        let mut rx = self.tx.subscribe();
        matches!(
            tokio::time::timeout(timeout, rx.wait_for(pred)).await,
            Ok(Ok(_))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    #[tokio::test]
    async fn wait_until_sees_later_updates_and_times_out_otherwise() {
        let obs = Arc::new(Observed::new(0u32));
        let writer = Arc::clone(&obs);
        tokio::spawn(async move {
            for _ in 0..3 {
                tokio::task::yield_now().await;
                writer.update(|v| *v += 1);
            }
        });
        assert!(obs.wait_until(|v| *v == 3, Duration::from_secs(2)).await);
        assert!(!obs.wait_until(|v| *v == 4, Duration::from_millis(30)).await);
    }

    #[test]
    fn capped_list_drops_oldest() {
        let mut list: Vec<usize> = (0..RECORD_CAP).collect();
        push_capped(&mut list, RECORD_CAP);
        assert_eq!(list.len(), RECORD_CAP);
        assert_eq!(list[0], 1);
        assert_eq!(list.last(), Some(&RECORD_CAP));
    }
}
