//! Delivery of generated data (tracker updates, notifications) to the connections
//! that asked for it, with backpressure.
//!
//! Each subscribed connection gets a small bounded queue; the generator awaits room
//! in every queue, so a client that reads slowly slows the generator (as TCP flow
//! control would slow a real server) instead of making the simulator drop data it
//! counts as generated. It never renders frames.

use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::{mpsc, watch};

/// Batches a subscriber may have queued before the generator waits.
const QUEUE_DEPTH: usize = 64;

/// The set of connections currently subscribed to generated data.
#[derive(Debug)]
pub(crate) struct Fanout<T> {
    subscribers: Mutex<Vec<(u64, mpsc::Sender<T>)>>,
    count: watch::Sender<usize>,
}

impl<T: Clone> Fanout<T> {
    /// An empty set, shared between the generator and the connections.
    pub fn new() -> Arc<Self> {
        Arc::new(Self {
            subscribers: Mutex::new(Vec::new()),
            count: watch::Sender::new(0),
        })
    }

    /// Subscribes connection `id`; the subscription ends when the returned guard
    /// is dropped.
    pub fn register(self: &Arc<Self>, id: u64) -> Subscription<T> {
        let (tx, rx) = mpsc::channel(QUEUE_DEPTH);
        {
            let mut subs = self.lock();
            subs.retain(|(sid, _)| *sid != id);
            subs.push((id, tx));
            self.count.send_replace(subs.len());
        }
        Subscription {
            fanout: Arc::clone(self),
            id,
            rx,
        }
    }

    fn unregister(&self, id: u64) {
        let mut subs = self.lock();
        subs.retain(|(sid, _)| *sid != id);
        self.count.send_replace(subs.len());
    }

    /// A receiver of the subscriber count, so a generator can wait for the first one.
    pub fn count_rx(&self) -> watch::Receiver<usize> {
        self.count.subscribe()
    }

    /// Number of subscribed connections.
    pub fn len(&self) -> usize {
        *self.count.borrow()
    }

    /// Delivers `item` to every subscriber, waiting for room in each queue.
    /// Returns how many subscribers received it.
    pub async fn send_all(&self, item: T) -> usize {
        let targets: Vec<(u64, mpsc::Sender<T>)> = self.lock().clone();
        let mut delivered = 0;
        for (id, tx) in targets {
            if tx.send(item.clone()).await.is_ok() {
                delivered += 1;
            } else {
                self.unregister(id);
            }
        }
        delivered
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Vec<(u64, mpsc::Sender<T>)>> {
        self.subscribers
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }
}

/// One connection's subscription; dropping it unsubscribes.
#[derive(Debug)]
pub(crate) struct Subscription<T: Clone> {
    fanout: Arc<Fanout<T>>,
    id: u64,
    rx: mpsc::Receiver<T>,
}

impl<T: Clone> Subscription<T> {
    /// The next delivered item (cancel-safe).
    pub async fn recv(&mut self) -> Option<T> {
        self.rx.recv().await
    }
}

impl<T: Clone> Drop for Subscription<T> {
    fn drop(&mut self) {
        self.fanout.unregister(self.id);
    }
}

/// Receives from an optional subscription; pending forever when there is none, so
/// it can sit in a `select!` unconditionally.
pub(crate) async fn recv_opt<T: Clone>(sub: &mut Option<Subscription<T>>) -> Option<T> {
    match sub {
        Some(s) => s.recv().await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn delivers_to_subscribers_and_forgets_dropped_ones() {
        let fanout: Arc<Fanout<u32>> = Fanout::new();
        let mut a = fanout.register(1);
        let b = fanout.register(2);
        assert_eq!(fanout.len(), 2);
        assert_eq!(fanout.send_all(5).await, 2);
        assert_eq!(a.recv().await, Some(5));
        drop(b);
        assert_eq!(fanout.len(), 1);
        assert_eq!(fanout.send_all(6).await, 1);
    }
}
