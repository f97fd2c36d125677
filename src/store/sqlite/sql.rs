//! The SQLite insert statements, one family per table of the storage contract.
//!
//! Each family is the same `INSERT … VALUES (…),(…)` for every row count of
//! [`CHUNKS`], built once and shared (`Arc<str>`), so the per-connection statement
//! cache keys stay stable and every batch reuses prepared statements. Only SQL text
//! lives here; binding and execution are in the parent module.

use sqlx::{AssertSqlSafe, SqlSafeStr, SqlStr};
use std::sync::{Arc, OnceLock};

/// Row counts of the prepared multi-row statements; a batch is cut greedily into these.
pub(super) const CHUNKS: [usize; 5] = [256, 64, 16, 4, 1];

/// One insert statement family: the same SQL for 1, 4, 16, 64 and 256 rows.
pub(super) struct Spec {
    table: &'static str,
    cols: &'static str,
    ncols: usize,
    tail: &'static str,
    /// Upsert tables write row by row so "the newest row wins" holds within a batch.
    pub(super) bulk: bool,
    sql: OnceLock<Vec<SqlStr>>,
}

const NOTHING: &str = "ON CONFLICT DO NOTHING";

impl Spec {
    const fn new(table: &'static str, cols: &'static str, ncols: usize) -> Spec {
        Spec::with_tail(table, cols, ncols, NOTHING, true)
    }

    const fn with_tail(
        table: &'static str,
        cols: &'static str,
        ncols: usize,
        tail: &'static str,
        bulk: bool,
    ) -> Spec {
        Spec {
            table,
            cols,
            ncols,
            tail,
            bulk,
            sql: OnceLock::new(),
        }
    }

    pub(super) fn sql(&self, rows: usize) -> SqlStr {
        let all = self.sql.get_or_init(|| {
            CHUNKS
                .iter()
                .map(|n| {
                    let one = format!("({})", vec!["?"; self.ncols].join(","));
                    let values = vec![one; *n].join(",");
                    let text = format!(
                        "INSERT INTO {} ({}) VALUES {} {}",
                        self.table, self.cols, values, self.tail
                    );
                    AssertSqlSafe(Arc::<str>::from(text)).into_sql_str()
                })
                .collect()
        });
        let idx = CHUNKS
            .iter()
            .position(|c| *c == rows)
            .unwrap_or(CHUNKS.len() - 1);
        all[idx].clone()
    }
}

pub(super) static CONNECTIONS: Spec = Spec::with_tail(
    "connections",
    "id, source, url, opened_at, closed_at, close_code, close_reason",
    7,
    "ON CONFLICT (id) DO UPDATE SET \
     closed_at = COALESCE(excluded.closed_at, connections.closed_at), \
     close_code = COALESCE(excluded.close_code, connections.close_code), \
     close_reason = COALESCE(excluded.close_reason, connections.close_reason)",
    false,
);
pub(super) static SESSION_EVENTS: Spec = Spec::new(
    "session_events",
    "id, source, connection_id, occurred_at, event, initiator, code, reason, detail",
    9,
);
/// Returns the rows it inserted (never the duplicates it skipped), for
/// `events_hourly` (`derived.rs`).
pub(super) static EVENTS: Spec = Spec::with_tail(
    "events",
    "id, source, connection_id, received_at, kind, payload, item_count",
    7,
    "ON CONFLICT DO NOTHING \
     RETURNING source, kind, substr(received_at, 1, 13) || ':00:00.000000Z'",
    true,
);
pub(super) static TRACKER_STATES: Spec = Spec::new(
    "tracker_states",
    "source, source_id, state_time, received_at, lat, lng, speed, heading, \
     connection_status, movement_status, payload, origin, event_id, connection_id",
    14,
);
pub(super) static TRACKER_READINGS: Spec = Spec::new(
    "tracker_readings",
    "source, tracker_id, reading_kind, name, value, value_num, units, update_time, \
     received_at, payload, origin, event_id, connection_id",
    13,
);
pub(super) static TRACKER_LIFECYCLE: Spec = Spec::new(
    "tracker_lifecycle",
    "id, source, source_id, lifecycle_event, received_at, event_id, connection_id",
    7,
);
pub(super) static SECURITY_SESSIONS: Spec = Spec::with_tail(
    "security_sessions",
    "source, session_id, owner_login, user_login, safety_type_id, key_current, started_at, \
     expires_at, ip, ip_client, first_seen_at, last_seen_at, ended_at, payload",
    14,
    "ON CONFLICT (source, session_id) DO UPDATE SET \
     owner_login = excluded.owner_login, user_login = excluded.user_login, \
     safety_type_id = excluded.safety_type_id, key_current = excluded.key_current, \
     started_at = excluded.started_at, expires_at = excluded.expires_at, ip = excluded.ip, \
     ip_client = excluded.ip_client, last_seen_at = excluded.last_seen_at, \
     ended_at = excluded.ended_at, payload = excluded.payload",
    false,
);
pub(super) static SECURITY_SESSION_CHANGES: Spec = Spec::new(
    "security_session_changes",
    "source, session_id, change, observed_at, event_id, connection_id",
    6,
);
pub(super) static NOTIFICATIONS: Spec = Spec::new(
    "notifications",
    "id, source, connection_id, seq, received_at, method, params",
    7,
);
pub(super) static TRAFFIC: Spec = Spec::new(
    "traffic",
    "id, source, connection_id, at, direction, payload",
    6,
);
pub(super) static REJECTED: Spec = Spec::new(
    "rejected",
    "id, source, kind, received_at, error, payload",
    6,
);
