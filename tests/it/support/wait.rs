//! Waiting for a condition instead of sleeping: one polling loop, [`wait_for`], and
//! the waits built on it (a row count, a log line, a plain boolean check).
//!
//! The machine running these tests is loaded (two cores, other builds beside them),
//! so deadlines are generous ([`LIMIT`](super::LIMIT)) while the assertions about
//! what happened stay exact. A timeout panics naming what was awaited, the last value
//! seen and, when a daemon is involved, the end of its log.

use std::fmt::Debug;
use std::future::Future;
use std::time::{Duration, Instant};

use wsvault::store::Store;

use super::LIMIT;
use super::daemon::Daemon;
use super::db::count;

/// How often a condition is checked.
const POLL: Duration = Duration::from_millis(20);

/// Polls `probe` until `done` holds for its value and returns that value. After
/// `limit` it panics with `what`, the last value and the end of `daemon`'s log.
pub async fn wait_for<T, F, Fut>(
    limit: Duration,
    what: &str,
    daemon: Option<&Daemon>,
    mut probe: F,
    mut done: impl FnMut(&T) -> bool,
) -> T
where
    T: Debug,
    F: FnMut() -> Fut,
    Fut: Future<Output = T>,
{
    let deadline = Instant::now() + limit;
    loop {
        let value = probe().await;
        if done(&value) {
            return value;
        }
        if Instant::now() > deadline {
            let log = daemon.map(|d| tail(&d.log())).unwrap_or_default();
            panic!("timed out after {limit:?} waiting for {what}; last: {value:#?}\n{log}");
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `check` until it returns true; panics naming `what` after `limit`.
pub async fn wait_until<F, Fut>(limit: Duration, what: &str, check: F)
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    wait_for(limit, what, None, check, |ok| *ok).await;
}

/// Polls `SELECT count(*) FROM {from}` (a table, optionally with `WHERE …`) until
/// `pred` holds; returns the last count. Panics after [`LIMIT`] with `daemon`'s log.
pub async fn wait_count(
    store: &Store,
    daemon: Option<&Daemon>,
    from: &str,
    pred: impl Fn(i64) -> bool,
) -> i64 {
    let what = format!("the count of {from}");
    wait_for(LIMIT, &what, daemon, || count(store, from), |n| pred(*n)).await
}

/// Asserts `sim_ok` (a simulator's own wait) held, with the daemon log on failure.
pub fn held(sim_ok: bool, daemon: &Daemon, what: &str) {
    assert!(
        sim_ok,
        "simulator never saw {what}; log:\n{}",
        tail(&daemon.log())
    );
}

/// The last 100 lines of a log, for assertion messages.
pub fn tail(log: &str) -> String {
    let lines: Vec<&str> = log.lines().collect();
    lines[lines.len().saturating_sub(100)..].join("\n")
}
