//! Is the daemon making progress? The rule behind the systemd watchdog ping.
//!
//! WATCHDOG=1 must mean "working", not "the process exists": systemd restarts a
//! daemon that stops pinging, which is right for a wedge and wrong for an upstream or
//! database outage that a restart cannot fix. So:
//!
//! * the writer progresses when it has nothing to do (queue empty, no batch in hand)
//!   or it committed or at least *attempted* (a counted retry) within its budget —
//!   a database outage is retried, a hung statement is a wedge;
//! * a connected source progresses when a frame (heartbeats included) or a lifecycle
//!   step arrived within its idle timeout plus grace — the session itself reconnects
//!   at the idle deadline, so anything older means the session is stuck;
//! * a connecting or retrying source progresses while its backoff wait lies ahead or
//!   its last step is younger than one attempt (connect + handshake) plus grace;
//! * a suspended, removed or refused (`failed`) source is not expected to move;
//! * a source may sit still while the queue is at least half full and the writer
//!   progresses: it is waiting its turn (back-pressure), not wedged.
//!
//! Pure functions of a [`Snapshot`]; no clock, no I/O.

use super::{Snapshot, SourceView, WriterView, ms};
use crate::session::State;
use std::time::Duration;

/// Slack on top of every budget: scheduling delays, slow disks, a loaded machine.
pub const GRACE: Duration = Duration::from_secs(10);

/// Whether the writer progresses; `Err` says why not.
pub fn writer(w: &WriterView, now_ms: i64, grace: Duration) -> Result<(), String> {
    if w.queue_depth == 0 && w.busy_since_ms == 0 {
        return Ok(());
    }
    let last = w.last_commit_ms.max(w.last_retry_ms).max(w.busy_since_ms);
    let limit = ms(w.budget) + ms(grace);
    let age = now_ms - last;
    if age <= limit {
        Ok(())
    } else {
        Err(format!(
            "writer: no commit and no attempt for {}s with {} records queued",
            age / 1000,
            w.queue_depth
        ))
    }
}

/// Whether the queue is full enough that sessions may be blocked sending to it.
fn back_pressure(w: &WriterView) -> bool {
    w.queue_capacity > 0 && w.queue_depth * 2 >= w.queue_capacity
}

/// Whether one source progresses; `Err` says why not. `writer_ok` is the writer's
/// verdict (back-pressure only excuses a still source while the writer moves).
pub fn source(
    s: &SourceView,
    w: &WriterView,
    writer_ok: bool,
    now_ms: i64,
    grace: Duration,
) -> Result<(), String> {
    if !s.active || s.suspended {
        return Ok(());
    }
    let t = &s.timing;
    let (last, limit, what) = match s.state {
        State::Suspended | State::Failed => return Ok(()),
        State::Closed => return Err(format!("source {}: session ended", s.name)),
        State::Open | State::Subscribed => (
            s.last_frame_ms.max(s.changed_ms),
            ms(t.idle_timeout),
            "no frame",
        ),
        State::Connecting | State::Retrying => (
            s.changed_ms.max(s.resume_at_ms),
            ms(t.connect_timeout) + ms(t.handshake_timeout),
            "no connection attempt",
        ),
    };
    let age = now_ms - last;
    if age <= limit + ms(grace) || (writer_ok && back_pressure(w)) {
        Ok(())
    } else {
        Err(format!(
            "source {} ({}): {what} for {}s",
            s.name,
            s.state.as_str(),
            age / 1000
        ))
    }
}

/// The watchdog predicate: the writer and every unsuspended source progress.
pub fn check(snap: &Snapshot, grace: Duration) -> Result<(), String> {
    let w = writer(&snap.writer, snap.now_ms, grace);
    let writer_ok = w.is_ok();
    let mut problems: Vec<String> = w.err().into_iter().collect();
    for s in &snap.sources {
        if let Err(e) = source(s, &snap.writer, writer_ok, snap.now_ms, grace) {
            problems.push(e);
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::config::DEFAULT_TIMING;
    use crate::ops::{Snapshot, SourceView, WriterView};
    use crate::store::WriterReport;

    pub(crate) const NOW: i64 = 1_700_000_000_000;
    const G: Duration = Duration::from_secs(10);

    pub(crate) fn idle_writer() -> WriterView {
        WriterView {
            healthy: true,
            last_error: None,
            queue_depth: 0,
            queue_capacity: 1000,
            last_commit_ms: 0,
            last_retry_ms: 0,
            busy_since_ms: 0,
            budget: Duration::from_secs(30),
            report: WriterReport::default(),
            committed: Vec::new(),
            copy: Default::default(),
        }
    }

    /// A subscribed source that read a frame a second ago (idle timeout 150 s).
    pub(crate) fn live_source(name: &str) -> SourceView {
        SourceView {
            name: name.into(),
            kind: "navixy",
            active: true,
            state: State::Subscribed,
            suspended: false,
            last_frame_ms: NOW - 1_000,
            last_event_ms: NOW - 1_000,
            changed_ms: NOW - 600_000,
            resume_at_ms: 0,
            attempts: 0,
            frames: 10,
            reconnects: 0,
            timing: DEFAULT_TIMING,
        }
    }

    fn snap(sources: Vec<SourceView>, writer: WriterView) -> Snapshot {
        Snapshot {
            now_ms: NOW,
            sources,
            writer,
        }
    }

    #[test]
    fn idle_daemon_with_live_sources_progresses() {
        let s = snap(vec![live_source("a"), live_source("b")], idle_writer());
        assert_eq!(check(&s, G), Ok(()));
    }

    #[test]
    fn writer_committing_progresses_and_wedged_writer_does_not() {
        let mut w = idle_writer();
        w.queue_depth = 1000;
        w.busy_since_ms = NOW - 5_000;
        w.last_commit_ms = NOW - 2_000;
        assert!(writer(&w, NOW, G).is_ok(), "committing with a full queue");
        // Stuck: holds a batch for far longer than a retry wait plus one attempt.
        w.busy_since_ms = NOW - 120_000;
        w.last_commit_ms = NOW - 120_000;
        let e = writer(&w, NOW, G).unwrap_err();
        assert!(e.contains("no commit") && e.contains("1000"), "{e}");
        // The same age while retrying a database outage is progress.
        w.last_retry_ms = NOW - 3_000;
        assert!(writer(&w, NOW, G).is_ok());
        // A batch in hand with an empty queue still has to move.
        let mut w = idle_writer();
        w.busy_since_ms = NOW - 120_000;
        assert!(writer(&w, NOW, G).is_err());
    }

    #[test]
    fn connected_source_must_read_frames() {
        let mut s = live_source("a");
        s.last_frame_ms = NOW - 150_000 - 9_000;
        assert!(
            source(&s, &idle_writer(), true, NOW, G).is_ok(),
            "within grace"
        );
        s.last_frame_ms = NOW - 200_000;
        let e = source(&s, &idle_writer(), true, NOW, G).unwrap_err();
        assert!(e.contains("source a") && e.contains("no frame"), "{e}");
        // A fresh connection has its open time to count from.
        s.state = State::Open;
        s.changed_ms = NOW - 1_000;
        assert!(source(&s, &idle_writer(), true, NOW, G).is_ok());
    }

    #[test]
    fn retrying_within_backoff_progresses_and_a_stalled_retry_does_not() {
        let mut s = live_source("a");
        s.state = State::Retrying;
        s.last_frame_ms = NOW - 3_600_000;
        s.changed_ms = NOW - 3_600_000;
        s.resume_at_ms = NOW + 20_000; // waiting out a backoff (or a login rate limit)
        assert!(source(&s, &idle_writer(), true, NOW, G).is_ok());
        s.resume_at_ms = NOW - 5_000; // attempt in progress (connect timeout 15 s)
        assert!(source(&s, &idle_writer(), true, NOW, G).is_ok());
        s.resume_at_ms = NOW - 120_000; // an attempt that never ends
        let e = source(&s, &idle_writer(), true, NOW, G).unwrap_err();
        assert!(e.contains("no connection attempt"), "{e}");
    }

    #[test]
    fn suspended_failed_and_removed_sources_are_not_expected_to_move() {
        let mut s = live_source("a");
        s.last_frame_ms = NOW - 3_600_000;
        s.suspended = true;
        assert!(source(&s, &idle_writer(), true, NOW, G).is_ok());
        s.suspended = false;
        s.state = State::Failed;
        assert!(source(&s, &idle_writer(), true, NOW, G).is_ok());
        s.state = State::Subscribed;
        s.active = false;
        assert!(source(&s, &idle_writer(), true, NOW, G).is_ok());
        s.active = true;
        s.state = State::Closed;
        assert!(source(&s, &idle_writer(), true, NOW, G).is_err());
    }

    #[test]
    fn back_pressure_excuses_a_still_source_only_while_the_writer_moves() {
        let mut s = live_source("a");
        s.last_frame_ms = NOW - 600_000;
        let mut w = idle_writer();
        w.queue_depth = 900;
        w.busy_since_ms = NOW - 1_000;
        w.last_commit_ms = NOW - 1_000;
        let snapshot = snap(vec![s.clone()], w.clone());
        assert_eq!(check(&snapshot, G), Ok(()));
        // Same session, but the writer is wedged: both are reported.
        w.busy_since_ms = NOW - 600_000;
        w.last_commit_ms = NOW - 600_000;
        let e = check(&snap(vec![s.clone()], w), G).unwrap_err();
        assert!(e.contains("writer") && e.contains("source a"), "{e}");
        // A nearly empty queue blocks nobody: the still source is reported.
        let mut w = idle_writer();
        w.queue_depth = 3;
        w.busy_since_ms = NOW - 1_000;
        let e = check(&snap(vec![s], w), G).unwrap_err();
        assert!(e.contains("source a") && !e.contains("writer"), "{e}");
    }
}
