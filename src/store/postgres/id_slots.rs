//! PostgreSQL's side of the id slots (`crate::id_slots`): daemons on several hosts
//! claim with `FOR UPDATE SKIP LOCKED`, and every time is the database's `now()`,
//! whatever each host's clock says.

use sqlx::postgres::PgPool;
use std::time::Duration;

/// Claims the least recently seen slot not renewed within `stale`; returns (slot,
/// high water, the database's now in Unix ms).
pub(crate) async fn claim(
    pool: &PgPool,
    holder: &str,
    token: i64,
    stale: Duration,
) -> Result<Option<(i64, i64, i64)>, sqlx::Error> {
    sqlx::query_as(
        "UPDATE id_slots s SET holder = $1, token = $2, claimed_at = now(), seen_at = now() \
         FROM (SELECT slot FROM id_slots \
               WHERE seen_at < now() - make_interval(secs => $3) \
               ORDER BY seen_at, slot LIMIT 1 FOR UPDATE SKIP LOCKED) c \
         WHERE s.slot = c.slot \
         RETURNING s.slot::bigint, s.high_water, \
                   (extract(epoch FROM now()) * 1000)::bigint",
    )
    .bind(holder)
    .bind(token)
    .bind(stale.as_secs_f64())
    .fetch_optional(pool)
    .await
}

/// Renews `slot` held with `token`; returns the database's now in Unix ms, `None`
/// when the slot is lost.
pub(crate) async fn renew(
    pool: &PgPool,
    slot: u16,
    token: i64,
    high_water: i64,
) -> Result<Option<i64>, sqlx::Error> {
    sqlx::query_scalar(
        "UPDATE id_slots SET seen_at = now(), high_water = greatest(high_water, $3) \
         WHERE slot = $1 AND token = $2 \
         RETURNING (extract(epoch FROM now()) * 1000)::bigint",
    )
    .bind(i32::from(slot))
    .bind(token)
    .bind(high_water)
    .fetch_optional(pool)
    .await
}

/// Releases `slot`: it sorts first for the next claim.
pub(crate) async fn release(
    pool: &PgPool,
    slot: u16,
    token: i64,
    high_water: i64,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "UPDATE id_slots SET holder = NULL, token = NULL, seen_at = '-infinity', \
         high_water = greatest(high_water, $3) WHERE slot = $1 AND token = $2",
    )
    .bind(i32::from(slot))
    .bind(token)
    .bind(high_water)
    .execute(pool)
    .await
    .map(|_| ())
}
