//! Fencing: rows of a leased source commit only in a transaction that saw the lease
//! still held by this node under the same term.
//!
//! A daemon frozen (SIGSTOP, a long pause, a partition) past its lease's expiry may
//! wake with records of that source in its queue while another daemon already
//! records the stream. Local deadlines stop its sessions, but only the database can
//! say for sure that the lease moved. In the writer's batch transaction,
//! [`fence_batch`] first reads the leases (no lock) and drops the rows of sources no
//! longer held; [`confirm_batch`], just before the commit, locks the lease rows `FOR
//! KEY SHARE`, so a takeover (an `UPDATE` of the term) waits until the batch commits,
//! and fails the attempt if a lease moved meanwhile. The writer knows which term each
//! source is held under from a [`FenceView`], which the [`super::Cluster`] keeps
//! current.

use sqlx::postgres::PgConnection;
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// The leases this node holds, source → term, shared between the cluster loop (which
/// updates it) and the writer (which fences with it). Never locked across `.await`.
#[derive(Debug, Clone, Default)]
pub struct FenceView {
    inner: Arc<RwLock<HashMap<String, i64>>>,
}

impl FenceView {
    /// The term this node holds `source` under, if it holds it.
    pub fn term(&self, source: &str) -> Option<i64> {
        self.read().get(source).copied()
    }

    pub(super) fn set(&self, source: &str, term: i64) {
        self.write().insert(source.to_string(), term);
    }

    pub(super) fn remove(&self, source: &str) {
        self.write().remove(source);
    }

    pub(super) fn clear(&self) {
        self.write().clear();
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, i64>> {
        // A panic while holding the lock cannot leave the map half-written (every
        // update is one insert or remove), so a poisoned lock is still usable.
        self.inner.read().unwrap_or_else(|p| p.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, i64>> {
        self.inner.write().unwrap_or_else(|p| p.into_inner())
    }
}

/// Inside a write transaction: which of `held` (source, term) are no longer held by
/// `node` under that term. Locks the still-held lease rows `FOR KEY SHARE` until the
/// transaction ends, so no other node can take them before this batch commits: a
/// takeover changes `term`, which is in a unique index (migration 0009), so its
/// UPDATE needs the row lock that conflicts. This node's own renewals change only
/// `expires_at` and pass, so a slow batch never delays the renewal of its lease. Rows
/// of the returned sources must be left out of the batch (and counted as fenced).
pub async fn fence(
    conn: &mut PgConnection,
    node: &str,
    held: &[(String, i64)],
) -> Result<Vec<String>, sqlx::Error> {
    not_held(conn, node, held, true).await
}

/// Which of `held` are no longer `node`'s under that term; with `lock`, the
/// still-held rows are locked `FOR KEY SHARE` as [`fence`] describes.
async fn not_held(
    conn: &mut PgConnection,
    node: &str,
    held: &[(String, i64)],
    lock: bool,
) -> Result<Vec<String>, sqlx::Error> {
    if held.is_empty() {
        return Ok(Vec::new());
    }
    let sources: Vec<&str> = held.iter().map(|(s, _)| s.as_str()).collect();
    let terms: Vec<i64> = held.iter().map(|(_, t)| *t).collect();
    let sql = if lock {
        "SELECT l.source FROM leases l \
         JOIN UNNEST($2::text[], $3::bigint[]) AS h(source, term) \
           ON l.source = h.source AND l.term = h.term \
         WHERE l.holder = $1 \
         FOR KEY SHARE OF l"
    } else {
        "SELECT l.source FROM leases l \
         JOIN UNNEST($2::text[], $3::bigint[]) AS h(source, term) \
           ON l.source = h.source AND l.term = h.term \
         WHERE l.holder = $1"
    };
    let still: Vec<String> = sqlx::query_scalar(sql)
        .bind(node)
        .bind(&sources)
        .bind(&terms)
        .fetch_all(&mut *conn)
        .await?;
    Ok(held
        .iter()
        .filter(|(s, _)| !still.contains(s))
        .map(|(s, _)| s.clone())
        .collect())
}

/// [`fence`] for the (source, term) pairs of one batch's records, read against
/// `view`: every pair this node does not hold (in the view or in the database) is
/// returned. A record stamped with a term (its session's lease) is held only under
/// that very term: rows an old session queued before the node lost the source and
/// got it back are fenced, not written under the new lease. Unstamped records
/// (not built by a leased session) follow the view's current term.
pub async fn fence_batch(
    conn: &mut PgConnection,
    node: &str,
    view: &FenceView,
    leases: &[(String, Option<i64>)],
) -> Result<Vec<(String, Option<i64>)>, sqlx::Error> {
    let mut lost = Vec::new();
    let mut check: Vec<(String, i64)> = Vec::new();
    for (source, stamped) in leases {
        match (view.term(source), stamped) {
            (Some(now), Some(t)) if now != *t => lost.push((source.clone(), *stamped)),
            (Some(now), _) => {
                if !check.iter().any(|(s, _)| s == source) {
                    check.push((source.clone(), now));
                }
            }
            (None, _) => lost.push((source.clone(), *stamped)),
        }
    }
    let gone = not_held(conn, node, &check, false).await?;
    for (source, stamped) in leases {
        if gone.contains(source) && !lost.iter().any(|(s, t)| s == source && t == stamped) {
            lost.push((source.clone(), *stamped));
        }
    }
    Ok(lost)
}

/// Just before a batch commits: locks the lease rows of every (source, term) whose
/// rows the batch writes (`FOR KEY SHARE`, see [`fence`]) and returns the sources
/// whose lease moved since [`fence_batch`] looked. Holding the lock only from here
/// to the commit matters: a daemon frozen while it streams a `COPY` leaves its
/// server backend waiting for data, which no timeout ends, and a lock taken before
/// the `COPY` would block the takeover for as long as the freeze lasts.
pub async fn confirm_batch(
    conn: &mut PgConnection,
    node: &str,
    view: &FenceView,
    leases: &[(String, Option<i64>)],
) -> Result<Vec<String>, sqlx::Error> {
    let mut check: Vec<(String, i64)> = Vec::new();
    let mut moved: Vec<String> = Vec::new();
    for (source, stamped) in leases {
        match stamped.or_else(|| view.term(source)) {
            Some(term) if !check.iter().any(|(s, t)| s == source && *t == term) => {
                check.push((source.clone(), term));
            }
            Some(_) => {}
            None => moved.push(source.clone()),
        }
    }
    moved.extend(fence(conn, node, &check).await?);
    Ok(moved)
}

/// Inside a write transaction: gives up `source` (held by `node` under `term`), so
/// the release commits together with the session's last rows and the next holder
/// starts exactly after them. Returns whether the lease was still this node's.
pub async fn release_in(
    conn: &mut PgConnection,
    node: &str,
    source: &str,
    term: i64,
) -> Result<bool, sqlx::Error> {
    let n = sqlx::query(
        "UPDATE leases SET holder = NULL, expires_at = now() \
         WHERE source = $1 AND holder = $2 AND term = $3",
    )
    .bind(source)
    .bind(node)
    .bind(term)
    .execute(&mut *conn)
    .await?
    .rows_affected();
    Ok(n == 1)
}
