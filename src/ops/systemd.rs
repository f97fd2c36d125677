//! systemd integration: every sd_notify message goes through [`notify`] (READY,
//! STATUS and STOPPING from the supervisor), EXTEND_TIMEOUT_USEC while a long
//! migration runs, READY only after every source made its first attempt, and the
//! progress-gated WATCHDOG=1 ping.
//!
//! Every notification is a no-op outside systemd (no `NOTIFY_SOCKET`). The watchdog
//! pings only while [`super::progress::check`] holds; it must never ping from a bare
//! timer, or a wedged daemon would never be restarted.

use super::{Registry, SourceView, progress};
use crate::session::State;
use sd_notify::NotifyState;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Sends `states` to systemd; a no-op outside systemd (no `NOTIFY_SOCKET`), and a
/// failure is only logged at debug: the daemon must run the same without systemd.
pub fn notify(states: &[NotifyState<'_>]) {
    if let Err(e) = sd_notify::notify(states) {
        tracing::debug!("sd_notify failed: {e}");
    }
}

/// How often EXTEND_TIMEOUT_USEC is repeated while a long step runs.
pub const EXTEND_EVERY: Duration = Duration::from_secs(2);
/// How much time each EXTEND_TIMEOUT_USEC asks for (several ticks, so one late tick
/// does not end the start).
pub const EXTEND_BY: Duration = Duration::from_secs(10);

/// Runs `step`, telling systemd every [`EXTEND_EVERY`] that the start takes longer
/// (`what` goes to STATUS=), so a slow migration is not killed by `TimeoutStartSec`.
pub async fn extend_while<F: Future>(what: &str, step: F) -> F::Output {
    extend_every(what, EXTEND_EVERY, step).await
}

async fn extend_every<F: Future>(what: &str, every: Duration, step: F) -> F::Output {
    tokio::pin!(step);
    let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
    loop {
        tokio::select! {
            out = &mut step => return out,
            _ = ticks.tick() => {
                let usec = u32::try_from(EXTEND_BY.as_micros()).unwrap_or(u32::MAX);
                tracing::info!("{what} still running; asking systemd for more time");
                notify(&[NotifyState::ExtendTimeoutUsec(usec), NotifyState::Status(what)]);
            }
        }
    }
}

/// Whether a source has finished its first connection attempt: subscribed, or
/// failed at least once (then it waits or retries), or parked by the operator.
pub fn first_attempt_done(s: &SourceView) -> bool {
    match s.state {
        State::Subscribed | State::Retrying | State::Failed | State::Suspended | State::Closed => {
            true
        }
        State::Connecting | State::Open => s.attempts > 0 || s.resume_at_ms > 0 || s.suspended,
    }
}

/// Waits until every registered source made its first attempt, or `limit` passes
/// (READY must not hang on a server that never answers). Returns how many sources
/// are subscribed and how many there are, for the STATUS line.
pub async fn wait_first_attempts(registry: &Registry, limit: Duration) -> (usize, usize) {
    let deadline = tokio::time::Instant::now() + limit;
    loop {
        let snap = registry.snapshot();
        let active: Vec<&SourceView> = snap.sources.iter().filter(|s| s.active).collect();
        let subscribed = active
            .iter()
            .filter(|s| s.state == State::Subscribed)
            .count();
        if active.iter().all(|s| first_attempt_done(s)) {
            return (subscribed, active.len());
        }
        if tokio::time::Instant::now() >= deadline {
            let pending: Vec<&str> = active
                .iter()
                .filter(|s| !first_attempt_done(s))
                .map(|s| s.name.as_str())
                .collect();
            tracing::warn!(
                "sources still on their first attempt after {}: {}; reporting ready anyway",
                humantime::format_duration(limit),
                pending.join(", ")
            );
            return (subscribed, active.len());
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The watchdog task; [`Watchdog::stop`] ends it.
pub struct Watchdog {
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl Watchdog {
    /// Starts pinging every `period / 2` while the daemon progresses, when systemd
    /// asked for a watchdog (`WATCHDOG_USEC` for this process); `None` otherwise.
    pub fn start(registry: Arc<Registry>) -> Option<Watchdog> {
        let period = sd_notify::watchdog_enabled()?;
        let every = (period / 2).max(Duration::from_millis(50));
        // One watchdog period of slack on top of every budget (at least a second,
        // at most half a minute): late ticks must not cost a restart.
        let grace = period.clamp(Duration::from_secs(1), Duration::from_secs(30));
        tracing::info!(
            "systemd watchdog enabled: pinging every {} while progressing",
            humantime::format_duration(every)
        );
        let (stop, mut stop_rx) = watch::channel(false);
        let task = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(every);
            let mut stalled = false;
            loop {
                tokio::select! {
                    _ = super::stopped(&mut stop_rx) => return,
                    _ = ticks.tick() => {}
                }
                match progress::check(&registry.snapshot(), grace) {
                    Ok(()) => {
                        if stalled {
                            tracing::info!("progress resumed; systemd watchdog pings again");
                            stalled = false;
                        }
                        notify(&[NotifyState::Watchdog]);
                    }
                    Err(why) => {
                        if !stalled {
                            tracing::error!(
                                "no progress: {why}; withholding the systemd watchdog ping so a wedged daemon gets restarted"
                            );
                            stalled = true;
                        }
                    }
                }
            }
        });
        Some(Watchdog { stop, task })
    }

    /// Stops pinging (shutdown: STOPPING=1 has been sent).
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::progress::tests::live_source;

    #[test]
    fn first_attempt_is_done_when_subscribed_or_failed_once() {
        let mut s = live_source("a");
        assert!(first_attempt_done(&s));
        s.state = State::Connecting;
        s.attempts = 0;
        s.resume_at_ms = 0;
        assert!(!first_attempt_done(&s));
        s.state = State::Open;
        assert!(!first_attempt_done(&s), "open but not yet subscribed");
        s.state = State::Connecting;
        s.resume_at_ms = 1;
        assert!(first_attempt_done(&s), "failed login, waiting");
        s.resume_at_ms = 0;
        s.attempts = 1;
        assert!(first_attempt_done(&s), "connect failed once");
        s.attempts = 0;
        s.state = State::Failed;
        assert!(first_attempt_done(&s));
    }

    #[tokio::test]
    async fn extend_while_returns_the_steps_output_across_ticks() {
        let out = extend_every("test step", Duration::from_millis(5), async {
            tokio::time::sleep(Duration::from_millis(30)).await;
            7
        })
        .await;
        assert_eq!(out, 7);
    }
}
