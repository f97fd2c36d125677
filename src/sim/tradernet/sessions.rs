//! The simulated account's security sessions: the live set, its ground-truth
//! history, the JSON the server pushes, and the scheduler that opens, ends and
//! expires sessions on time.
//!
//! Every change bumps a version so connections push the new full list at once. It
//! never writes to a socket.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, SubsecRound, TimeDelta, Utc};
use rand::Rng;
use serde_json::{Value, json};
use tokio::time::Instant;

use super::Shared;
use super::config::{SessionChange, SessionChangeKind, SessionSpec};
use crate::sim::faults::later;
use crate::sim::observe::push_capped;

/// One live session.
#[derive(Debug, Clone)]
pub(super) struct Session {
    spec: SessionSpec,
    id: u64,
    start: DateTime<Utc>,
    expire_at: DateTime<Utc>,
    ip_hash: String,
}

/// The live sessions and the next free id.
#[derive(Debug)]
pub(super) struct Book {
    live: BTreeMap<u64, Session>,
    next_id: u64,
}

impl Book {
    /// An empty book whose first automatic id is `first_id`.
    pub fn new(first_id: u64) -> Self {
        Self {
            live: BTreeMap::new(),
            next_id: first_id,
        }
    }

    /// Ids of the live sessions, ascending.
    pub fn ids(&self) -> Vec<u64> {
        self.live.keys().copied().collect()
    }
}

fn naive_utc(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3f").to_string()
}

fn delta(d: Duration) -> TimeDelta {
    TimeDelta::from_std(d).unwrap_or(TimeDelta::MAX)
}

impl Shared {
    /// Opens a session now; returns its id (an explicit id already live is replaced).
    pub(super) fn open_session(&self, spec: SessionSpec) -> u64 {
        let start = Utc::now().trunc_subsecs(3);
        let lifetime = spec.lifetime.unwrap_or(self.cfg.session_lifetime);
        let id = {
            let mut book = self.book();
            let id = spec.id.unwrap_or(book.next_id);
            book.next_id = book.next_id.max(id + 1);
            let ip_hash = hex::encode(rand::rng().random::<[u8; 16]>());
            let session = Session {
                spec,
                id,
                start,
                expire_at: start
                    .checked_add_signed(delta(lifetime))
                    .unwrap_or(DateTime::<Utc>::MAX_UTC),
                ip_hash,
            };
            book.live.insert(id, session);
            id
        };
        self.record_change(id, SessionChangeKind::Opened, start);
        id
    }

    /// Ends a live session now; returns whether it was live.
    pub(super) fn end_session(&self, id: u64) -> bool {
        let removed = self.book().live.remove(&id).is_some();
        if removed {
            self.record_change(id, SessionChangeKind::Ended, Utc::now());
        }
        removed
    }

    fn record_change(&self, session_id: u64, change: SessionChangeKind, at: DateTime<Utc>) {
        self.stats.update(|s| {
            push_capped(
                &mut s.history,
                SessionChange {
                    session_id,
                    change,
                    at,
                },
            );
        });
        self.version.send_modify(|v| *v += 1);
    }

    /// The full list as the server pushes it, `expire` relative to now.
    pub(super) fn sessions_json(&self) -> Value {
        let now = Utc::now();
        let book = self.book();
        let list: Vec<Value> = book
            .live
            .values()
            .map(|s| {
                json!({
                    "id": s.id,
                    "owner_login": self.cfg.owner_login,
                    "user_login": s.spec.user_login.as_deref().unwrap_or(&self.cfg.owner_login),
                    "safety_type_id": s.spec.safety_type_id,
                    "key_current": s.spec.key_current,
                    "start_datetime": naive_utc(s.start),
                    "expire_datetime": naive_utc(s.expire_at),
                    "expire": (s.expire_at - now).num_milliseconds().max(0),
                    "ip": s.ip_hash,
                    "ip_client": s.spec.ip_client,
                })
            })
            .collect();
        Value::Array(list)
    }

    /// Ends every session whose expiry has passed; returns the next expiry, if any.
    fn expire_due(&self) -> Option<DateTime<Utc>> {
        let now = Utc::now();
        let due: Vec<u64> = {
            let book = self.book();
            book.live
                .values()
                .filter(|s| s.expire_at <= now)
                .map(|s| s.id)
                .collect()
        };
        for id in due {
            self.end_session(id);
        }
        self.book().live.values().map(|s| s.expire_at).min()
    }
}

/// A timed action of the scheduler.
#[derive(Debug)]
enum Action {
    Open(SessionSpec, Option<Instant>),
    /// Close whatever id the schedule entry got when it opened.
    CloseScheduled(usize),
    Close(u64),
    Churn,
}

/// Runs the schedule, the churn and the expiries until the simulator stops.
pub(super) async fn run_schedule(shared: Arc<Shared>) {
    let start = Instant::now();
    let mut timers: Vec<(Instant, Action, Option<usize>)> = Vec::new();
    for (i, entry) in shared.cfg.schedule.iter().enumerate() {
        let close = entry.close_after.map(|d| later(start, d));
        timers.push((
            later(start, entry.open_after),
            Action::Open(entry.spec.clone(), None),
            Some(i),
        ));
        if let Some(at) = close {
            timers.push((at, Action::CloseScheduled(i), None));
        }
    }
    if let Some(every) = shared.cfg.churn_every.filter(|d| !d.is_zero()) {
        timers.push((later(start, every), Action::Churn, None));
    }
    let mut scheduled_ids: BTreeMap<usize, u64> = BTreeMap::new();
    let mut version = shared.version.subscribe();
    loop {
        let now = Instant::now();
        // Run due timers in time order (opens before closes at the same instant).
        timers.sort_by_key(|(at, action, _)| (*at, !matches!(action, Action::Open(..))));
        while timers.first().is_some_and(|(at, _, _)| *at <= now) {
            let (_, action, slot) = timers.remove(0);
            match action {
                Action::Open(spec, close_at) => {
                    let id = shared.open_session(spec);
                    if let Some(i) = slot {
                        scheduled_ids.insert(i, id);
                    }
                    if let Some(at) = close_at {
                        timers.push((at, Action::Close(id), None));
                    }
                }
                Action::CloseScheduled(i) => {
                    if let Some(id) = scheduled_ids.get(&i) {
                        shared.end_session(*id);
                    }
                }
                Action::Close(id) => {
                    shared.end_session(id);
                }
                Action::Churn => {
                    let every = shared.cfg.churn_every.unwrap_or(Duration::from_secs(60));
                    let close_at = later(now, shared.cfg.churn_lifetime);
                    timers.push((
                        now,
                        Action::Open(SessionSpec::default(), Some(close_at)),
                        None,
                    ));
                    timers.push((later(now, every), Action::Churn, None));
                }
            }
            timers.sort_by_key(|(at, action, _)| (*at, !matches!(action, Action::Open(..))));
        }
        let next_expiry = shared.expire_due().map(|at| {
            let wait = (at - Utc::now()).to_std().unwrap_or(Duration::ZERO);
            later(Instant::now(), wait)
        });
        let next_timer = timers.iter().map(|(at, _, _)| *at).min();
        let next = [next_expiry, next_timer].into_iter().flatten().min();
        version.borrow_and_update();
        tokio::select! {
            _ = crate::sim::faults::sleep_until_opt(next) => {}
            // A manual open may bring an earlier expiry.
            _ = version.changed() => {}
        }
    }
}
