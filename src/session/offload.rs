//! Keeping one large message from stalling everything else on the runtime.
//!
//! Decoding is pure CPU work inside a session's task. A message of megabytes can
//! take long enough that the tasks queued on the same worker thread (other sources,
//! `/healthz`, signal handling) would wait for it. Above [`LARGE_MESSAGE`] bytes the
//! worker thread is handed to the runtime's other tasks while the decode runs
//! (`block_in_place`), so nothing waits behind it; small messages, nearly all of
//! them, skip that hand-over and its cost.

use tokio::runtime::{Handle, RuntimeFlavor};

/// Messages from this size on are decoded off the shared worker thread.
pub(super) const LARGE_MESSAGE: usize = 64 * 1024;

/// Runs `decode` for a message of `len` bytes, off the shared worker thread when it
/// is large and the runtime can hand the thread over (the multi-threaded one the
/// daemon runs; a single-threaded test runtime just runs it).
pub(super) fn decode<T>(len: usize, decode: impl FnOnce() -> T) -> T {
    let multi_threaded =
        Handle::try_current().is_ok_and(|h| h.runtime_flavor() == RuntimeFlavor::MultiThread);
    if len >= LARGE_MESSAGE && multi_threaded {
        tokio::task::block_in_place(decode)
    } else {
        decode()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;
    use std::time::Duration;

    /// With a single worker thread, a task spawned before a large decode can only
    /// run during it if the decode gave the thread away: the decode waits for it.
    #[test]
    fn a_large_decode_lets_other_tasks_run() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .enable_all()
            .build()
            .unwrap();
        let got = rt.block_on(async {
            tokio::spawn(async {
                let (tx, rx) = mpsc::channel();
                tokio::spawn(async move { tx.send(()) });
                decode(LARGE_MESSAGE, move || {
                    rx.recv_timeout(Duration::from_secs(30))
                })
            })
            .await
        });
        assert_eq!(got.unwrap(), Ok(()));
    }

    #[tokio::test]
    async fn a_single_threaded_runtime_decodes_in_place() {
        assert_eq!(decode(LARGE_MESSAGE * 2, || 7), 7);
        assert_eq!(decode(10, || 8), 8);
    }
}
