//! The few reads the daemon itself needs (not a query API): row counts and the
//! active security sessions a Tradernet session diffs against after a restart.
//! Written once for both backends, above the seam. Never writes.

use super::{DbTime, Param, Store, StoreError, TABLES};
use crate::record::SecuritySession;
use chrono::{DateTime, Utc};
use sqlx::FromRow;
use std::sync::Arc;

/// One row of `active_security_sessions`, as both backends return it.
#[derive(FromRow)]
struct ActiveSession {
    source: String,
    session_id: i64,
    owner_login: Option<String>,
    user_login: Option<String>,
    safety_type_id: Option<i64>,
    key_current: Option<String>,
    #[sqlx(try_from = "DbTime")]
    started_at: Option<DateTime<Utc>>,
    #[sqlx(try_from = "DbTime")]
    expires_at: Option<DateTime<Utc>>,
    ip: Option<String>,
    ip_client: Option<String>,
    #[sqlx(try_from = "DbTime")]
    first_seen_at: DateTime<Utc>,
    #[sqlx(try_from = "DbTime")]
    last_seen_at: DateTime<Utc>,
    #[sqlx(try_from = "DbTime")]
    ended_at: Option<DateTime<Utc>>,
    payload: String,
}

impl From<ActiveSession> for SecuritySession {
    fn from(r: ActiveSession) -> Self {
        SecuritySession {
            source: Arc::from(r.source),
            session_id: r.session_id,
            owner_login: r.owner_login,
            user_login: r.user_login,
            safety_type_id: r.safety_type_id,
            key_current: r.key_current,
            started_at: r.started_at,
            expires_at: r.expires_at,
            ip: r.ip,
            ip_client: r.ip_client,
            first_seen_at: r.first_seen_at,
            last_seen_at: r.last_seen_at,
            ended_at: r.ended_at,
            payload: r.payload,
        }
    }
}

pub(super) async fn active_sessions(
    store: &Store,
    source: &str,
) -> Result<Vec<SecuritySession>, StoreError> {
    let sql = format!(
        "SELECT source, session_id, owner_login, user_login, safety_type_id, key_current, \
         started_at, expires_at, ip, ip_client, first_seen_at, last_seen_at, ended_at, \
         {} AS payload FROM active_security_sessions WHERE source = $1 ORDER BY session_id",
        store.json_as_text("payload")
    );
    let rows: Vec<ActiveSession> = store
        .fetch_all(&sql, &[Param::Text(source)])
        .await
        .map_err(|source| StoreError::Query {
            what: "reading active security sessions",
            source,
        })?;
    Ok(rows.into_iter().map(SecuritySession::from).collect())
}

/// `SELECT count(*)` of every contract table, in [`TABLES`] order.
pub(super) async fn table_counts(store: &Store) -> Result<Vec<(String, i64)>, StoreError> {
    let mut out = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let (n,): (i64,) = store
            .fetch_optional(&format!("SELECT count(*) FROM {table}"), &[])
            .await
            .and_then(|row| row.ok_or(sqlx::Error::RowNotFound))
            .map_err(|source| StoreError::Query {
                what: "counting rows",
                source,
            })?;
        out.push((table.to_string(), n));
    }
    Ok(out)
}
