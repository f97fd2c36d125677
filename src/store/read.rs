//! The few reads the daemon itself needs (not a query API): row counts and the
//! active security sessions a Tradernet session diffs against after a restart.
//! Never writes.

use super::StoreError;
use super::time::parse_ts;
use crate::record::SecuritySession;
use chrono::{DateTime, Utc};
use sqlx::postgres::{PgPool, PgRow};
use sqlx::sqlite::{SqlitePool, SqliteRow};
use sqlx::{AssertSqlSafe, Database, Executor, Row};
use std::sync::Arc;

const WHAT: &str = "reading active security sessions";

/// `SELECT count(*)` of one contract table (the name comes from [`super::TABLES`]).
pub(crate) async fn count<'p, DB>(pool: &'p sqlx::Pool<DB>, table: &str) -> Result<i64, sqlx::Error>
where
    DB: Database,
    DB::Arguments: sqlx::IntoArguments<DB>,
    &'p sqlx::Pool<DB>: Executor<'p, Database = DB>,
    i64: sqlx::Type<DB> + for<'r> sqlx::Decode<'r, DB>,
    usize: sqlx::ColumnIndex<DB::Row>,
{
    let row = sqlx::query(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(pool)
        .await?;
    row.try_get::<i64, _>(0usize)
}

fn q(source: sqlx::Error) -> StoreError {
    StoreError::Query { what: WHAT, source }
}

fn ts(text: &str) -> Result<DateTime<Utc>, StoreError> {
    parse_ts(text).map_err(|source| StoreError::Timestamp { what: WHAT, source })
}

fn ts_opt(text: Option<String>) -> Result<Option<DateTime<Utc>>, StoreError> {
    text.as_deref().map(ts).transpose()
}

const COLUMNS: &str = "source, session_id, owner_login, user_login, safety_type_id, \
    key_current, started_at, expires_at, ip, ip_client, first_seen_at, last_seen_at, ended_at";

pub(crate) async fn sqlite_active_sessions(
    pool: &SqlitePool,
    source: &str,
) -> Result<Vec<SecuritySession>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS}, payload FROM active_security_sessions \
         WHERE source = ? ORDER BY session_id"
    );
    let rows: Vec<SqliteRow> = sqlx::query(AssertSqlSafe(sql))
        .bind(source)
        .fetch_all(pool)
        .await
        .map_err(q)?;
    rows.iter()
        .map(|row| {
            Ok(SecuritySession {
                source: Arc::from(row.try_get::<String, _>("source").map_err(q)?),
                session_id: row.try_get("session_id").map_err(q)?,
                owner_login: row.try_get("owner_login").map_err(q)?,
                user_login: row.try_get("user_login").map_err(q)?,
                safety_type_id: row.try_get("safety_type_id").map_err(q)?,
                key_current: row.try_get("key_current").map_err(q)?,
                started_at: ts_opt(row.try_get("started_at").map_err(q)?)?,
                expires_at: ts_opt(row.try_get("expires_at").map_err(q)?)?,
                ip: row.try_get("ip").map_err(q)?,
                ip_client: row.try_get("ip_client").map_err(q)?,
                first_seen_at: ts(&row.try_get::<String, _>("first_seen_at").map_err(q)?)?,
                last_seen_at: ts(&row.try_get::<String, _>("last_seen_at").map_err(q)?)?,
                ended_at: ts_opt(row.try_get("ended_at").map_err(q)?)?,
                payload: row.try_get("payload").map_err(q)?,
            })
        })
        .collect()
}

pub(crate) async fn postgres_active_sessions(
    pool: &PgPool,
    source: &str,
) -> Result<Vec<SecuritySession>, StoreError> {
    let sql = format!(
        "SELECT {COLUMNS}, payload::text AS payload FROM active_security_sessions \
         WHERE source = $1 ORDER BY session_id"
    );
    let rows: Vec<PgRow> = sqlx::query(AssertSqlSafe(sql))
        .bind(source)
        .fetch_all(pool)
        .await
        .map_err(q)?;
    rows.iter()
        .map(|row| {
            Ok(SecuritySession {
                source: Arc::from(row.try_get::<String, _>("source").map_err(q)?),
                session_id: row.try_get("session_id").map_err(q)?,
                owner_login: row.try_get("owner_login").map_err(q)?,
                user_login: row.try_get("user_login").map_err(q)?,
                safety_type_id: row.try_get("safety_type_id").map_err(q)?,
                key_current: row.try_get("key_current").map_err(q)?,
                started_at: row.try_get("started_at").map_err(q)?,
                expires_at: row.try_get("expires_at").map_err(q)?,
                ip: row.try_get("ip").map_err(q)?,
                ip_client: row.try_get("ip_client").map_err(q)?,
                first_seen_at: row.try_get("first_seen_at").map_err(q)?,
                last_seen_at: row.try_get("last_seen_at").map_err(q)?,
                ended_at: row.try_get("ended_at").map_err(q)?,
                payload: row.try_get("payload").map_err(q)?,
            })
        })
        .collect()
}
