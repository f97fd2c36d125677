//! Tradernet security sessions: each session object becomes one `security_sessions`
//! row, and each push (always read as the full list) is diffed against the known
//! active set into `opened` / `ended` changes.
//!
//! Owns the active set across reconnects, so the first push on a new connection (or
//! after a daemon restart, via the seed) is compared with what was last known. Pure
//! bookkeeping: it never sends, never logs and never reads a clock of its own.
//!
//! Change detection is by session id only: `expire` is relative to the moment of
//! receipt, so it (and the `expires_at` derived from it) moves on every push and must
//! never look like a change.

use crate::protocol::Ctx;
use crate::protocol::time::parse_timestamp_value;
use crate::record::{Record, SecuritySession, SecuritySessionChange};
use chrono::{DateTime, Duration, Utc};
use chrono_tz::Tz;
use serde_json::Value;
use std::collections::BTreeMap;

/// `security_session_changes.change` for a session id new to the active set.
pub const OPENED: &str = "opened";
/// `security_session_changes.change` for a known id missing from a push.
pub const ENDED: &str = "ended";

/// The sessions believed active: seen in the latest push, or seeded from the
/// database, and not ended since. Each entry is the last row emitted for it, which
/// carries `first_seen_at` forward and supplies the fields of the `ended` row.
#[derive(Debug, Default)]
pub(super) struct ActiveSet {
    known: BTreeMap<i64, SecuritySession>,
}

/// What one push produced.
#[derive(Debug, Default)]
pub(super) struct PushOutcome {
    /// Changes and upserts, in the order the writer should see them.
    pub records: Vec<Record>,
    /// Items that could not become a row (not an object, or no usable `id`); when
    /// non-zero the caller keeps the whole message in `events`.
    pub unusable: usize,
}

impl ActiveSet {
    /// Adds sessions stored as active (`ended_at IS NULL`) so the next push is diffed
    /// against them; rows that already ended are ignored.
    pub(super) fn seed(&mut self, sessions: Vec<SecuritySession>) {
        for s in sessions.into_iter().filter(|s| s.ended_at.is_none()) {
            self.known.insert(s.session_id, s);
        }
    }

    /// Ids currently believed active, ascending.
    #[cfg(test)]
    pub(super) fn ids(&self) -> Vec<i64> {
        self.known.keys().copied().collect()
    }

    /// Applies one full-list push. Every listed session is upserted (so
    /// `last_seen_at` and `expires_at` stay current), new ids get an `opened` change,
    /// known ids absent from the push get an `ended` change plus a final row with
    /// `ended_at = now`, and leave the set.
    pub(super) fn apply(&mut self, ctx: &Ctx, tz: Tz, items: &[Value]) -> PushOutcome {
        let mut out = PushOutcome::default();
        // Keyed by id so a session listed twice yields one row (the later object wins)
        // while the first-listed order is kept for the output.
        let mut order: Vec<i64> = Vec::with_capacity(items.len());
        let mut seen: BTreeMap<i64, &Value> = BTreeMap::new();
        for item in items {
            match item.get("id").and_then(int_of) {
                Some(id) if item.is_object() => {
                    if seen.insert(id, item).is_none() {
                        order.push(id);
                    }
                }
                _ => out.unusable += 1,
            }
        }

        let mut next: BTreeMap<i64, SecuritySession> = BTreeMap::new();
        for id in order {
            let Some(item) = seen.get(&id) else { continue };
            let first_seen_at = match self.known.get(&id) {
                Some(prev) => prev.first_seen_at,
                None => {
                    out.records.push(change(ctx, id, OPENED));
                    ctx.now
                }
            };
            let row = session_row(ctx, tz, id, item, first_seen_at);
            out.records.push(Record::SecuritySession(row.clone()));
            next.insert(id, row);
        }

        for (id, mut last) in std::mem::take(&mut self.known) {
            if next.contains_key(&id) {
                continue;
            }
            out.records.push(change(ctx, id, ENDED));
            last.ended_at = Some(ctx.now);
            out.records.push(Record::SecuritySession(last));
        }
        self.known = next;
        out
    }
}

fn change(ctx: &Ctx, session_id: i64, change: &str) -> Record {
    Record::SecuritySessionChange(SecuritySessionChange {
        source: ctx.source.clone(),
        session_id,
        change: change.to_string(),
        observed_at: ctx.now,
        event_id: None,
        connection_id: None,
    })
}

/// One session object as a row. Every field is optional except the id: the upstream
/// documents its shape loosely and the object itself stays in `payload`.
fn session_row(
    ctx: &Ctx,
    tz: Tz,
    id: i64,
    item: &Value,
    first_seen_at: DateTime<Utc>,
) -> SecuritySession {
    SecuritySession {
        source: ctx.source.clone(),
        session_id: id,
        owner_login: item.get("owner_login").and_then(text_of),
        user_login: item.get("user_login").and_then(text_of),
        safety_type_id: item.get("safety_type_id").and_then(int_of),
        key_current: item.get("key_current").and_then(text_of),
        started_at: item
            .get("start_datetime")
            .and_then(|v| parse_timestamp_value(v, tz)),
        expires_at: expires_at(ctx.now, item, tz),
        ip: item.get("ip").and_then(text_of),
        ip_client: item.get("ip_client").and_then(text_of),
        first_seen_at,
        last_seen_at: ctx.now,
        ended_at: None,
        payload: item.to_string(),
    }
}

/// `received_at + expire` (milliseconds); when `expire` is absent or unreadable, the
/// absolute `expire_datetime` read in the source zone.
fn expires_at(now: DateTime<Utc>, item: &Value, tz: Tz) -> Option<DateTime<Utc>> {
    let relative = item.get("expire").and_then(|v| match v {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse::<f64>().ok(),
        _ => None,
    });
    if let Some(ms) = relative.filter(|ms| ms.is_finite() && ms.abs() < 1e15)
        && let Some(at) =
            Duration::try_milliseconds(ms.round() as i64).and_then(|d| now.checked_add_signed(d))
    {
        return Some(at);
    }
    item.get("expire_datetime")
        .and_then(|v| parse_timestamp_value(v, tz))
}

/// An integer from a JSON number (integral floats included) or a numeric string.
pub(super) fn int_of(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64().or_else(|| {
            n.as_f64()
                .filter(|f| f.fract() == 0.0 && f.abs() < 9.0e15)
                .map(|f| f as i64)
        }),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// Text of a field that should be a string but may arrive as a number (one SDK sends
/// `key_current` as a number): strings as they are, scalars printed, objects and
/// arrays as JSON text, `null` as absent.
pub(super) fn text_of(v: &Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s.clone()),
        other => Some(other.to_string()),
    }
}
