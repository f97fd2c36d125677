//! The `/healthz` verdict: can an operator trust that events are being recorded?
//!
//! Healthy means the writer's last attempt succeeded and is not wedged, and every
//! unsuspended source is subscribed, or on its way there within limits: connecting
//! or retrying with fewer than [`MAX_ATTEMPTS`] consecutive failures, or open for no
//! longer than a handshake plus a subscribe may take. Anything else is unhealthy with
//! one reason per problem. Pure functions of a [`Snapshot`].

use super::{Snapshot, SourceView, ms, progress};
use crate::session::State;
use serde_json::{Value, json};

/// Consecutive failed attempts after which a retrying source counts as down.
pub const MAX_ATTEMPTS: u64 = 5;

/// The verdict and its reasons (empty when healthy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Health {
    /// True when `/healthz` answers 200.
    pub ok: bool,
    /// One sentence per problem, naming the source or the writer.
    pub reasons: Vec<String>,
}

fn source_problem(s: &SourceView, now_ms: i64, writer_ok: bool, snap: &Snapshot) -> Option<String> {
    if !s.active || s.suspended {
        return None;
    }
    let name = &s.name;
    match s.state {
        State::Subscribed | State::Suspended => None,
        State::Failed => Some(format!(
            "source {name}: authentication refused for good; fix the credential and reload"
        )),
        State::Closed => Some(format!("source {name}: session ended")),
        State::Connecting | State::Retrying | State::Open if s.attempts >= MAX_ATTEMPTS => {
            Some(format!(
                "source {name}: {} consecutive connection attempts failed ({})",
                s.attempts,
                s.state.as_str()
            ))
        }
        State::Open => {
            let waited = now_ms - s.changed_ms;
            let limit = ms(s.timing.handshake_timeout) + ms(s.timing.subscribe_timeout);
            (waited > limit).then(|| {
                format!(
                    "source {name}: connected but not subscribed after {}s",
                    waited / 1000
                )
            })
        }
        State::Connecting | State::Retrying => {
            progress::source(s, &snap.writer, writer_ok, now_ms, progress::GRACE).err()
        }
    }
}

/// Judges a snapshot.
pub fn evaluate(snap: &Snapshot) -> Health {
    let mut reasons = Vec::new();
    let w = &snap.writer;
    if !w.healthy {
        reasons.push(format!(
            "writer: database writes failing, retrying: {}",
            w.last_error.as_deref().unwrap_or("unknown error")
        ));
    }
    let writer_progress = progress::writer(w, snap.now_ms, progress::GRACE);
    if let Err(e) = &writer_progress {
        reasons.push(e.clone());
    }
    for s in &snap.sources {
        if let Some(r) = source_problem(s, snap.now_ms, writer_progress.is_ok(), snap) {
            reasons.push(r);
        }
    }
    Health {
        ok: reasons.is_empty(),
        reasons,
    }
}

/// The `/healthz` body: the verdict, its reasons and what it was judged on.
pub fn to_json(snap: &Snapshot, h: &Health) -> Value {
    let sources: serde_json::Map<String, Value> = snap
        .sources
        .iter()
        .filter(|s| s.active)
        .map(|s| {
            let age = |t: i64| (t > 0).then(|| (snap.now_ms - t).max(0) as f64 / 1000.0);
            (
                s.name.clone(),
                json!({
                    "kind": s.kind,
                    "state": s.state.as_str(),
                    "suspended": s.suspended,
                    "failed_attempts": s.attempts,
                    "reconnects": s.reconnects,
                    "last_event_age_seconds": age(s.last_event_ms),
                    "last_frame_age_seconds": age(s.last_frame_ms),
                }),
            )
        })
        .collect();
    let w = &snap.writer;
    json!({
        "status": if h.ok { "ok" } else { "unhealthy" },
        "reasons": h.reasons,
        "writer": {
            "healthy": w.healthy,
            "queue_depth": w.queue_depth,
            "queue_capacity": w.queue_capacity,
            "written": w.report.written,
            "retries": w.report.retries,
            "lost": w.report.lost,
            "last_error": if w.healthy { None } else { w.last_error.clone() },
        },
        "sources": sources,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ops::progress::tests::{NOW, idle_writer, live_source};

    fn snap(sources: Vec<SourceView>) -> Snapshot {
        Snapshot {
            now_ms: NOW,
            sources,
            writer: idle_writer(),
        }
    }

    #[test]
    fn subscribed_sources_and_a_healthy_writer_are_healthy() {
        let s = snap(vec![live_source("a"), live_source("b")]);
        let h = evaluate(&s);
        assert_eq!(
            h,
            Health {
                ok: true,
                reasons: vec![]
            }
        );
        assert_eq!(to_json(&s, &h)["status"], "ok");
    }

    #[test]
    fn retrying_is_healthy_until_the_attempt_limit() {
        let mut a = live_source("a");
        a.state = State::Retrying;
        a.attempts = MAX_ATTEMPTS - 1;
        a.resume_at_ms = NOW + 1_000;
        assert!(evaluate(&snap(vec![a.clone()])).ok);
        a.attempts = MAX_ATTEMPTS;
        let h = evaluate(&snap(vec![a]));
        assert!(!h.ok);
        assert!(h.reasons[0].contains("source a") && h.reasons[0].contains("5 consecutive"));
    }

    #[test]
    fn failing_writer_is_unhealthy_with_its_error() {
        let mut s = snap(vec![live_source("a")]);
        s.writer.healthy = false;
        s.writer.last_error = Some("database is locked".into());
        let h = evaluate(&s);
        assert!(!h.ok);
        assert!(h.reasons[0].contains("database is locked"), "{h:?}");
        let body = to_json(&s, &h);
        assert_eq!(body["status"], "unhealthy");
        assert_eq!(body["writer"]["last_error"], "database is locked");
    }

    #[test]
    fn suspended_removed_and_open_too_long() {
        let mut a = live_source("a");
        a.state = State::Retrying;
        a.attempts = 99;
        a.suspended = true;
        let mut b = live_source("b");
        b.state = State::Closed;
        b.active = false;
        assert!(evaluate(&snap(vec![a, b])).ok);
        let mut c = live_source("c");
        c.state = State::Open;
        c.changed_ms = NOW - 120_000;
        let h = evaluate(&snap(vec![c]));
        assert!(h.reasons[0].contains("not subscribed"), "{h:?}");
        let mut d = live_source("d");
        d.state = State::Failed;
        assert!(evaluate(&snap(vec![d])).reasons[0].contains("authentication"));
    }
}
