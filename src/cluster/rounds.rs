//! The statements of one [`Cluster::tick`] beyond the heartbeat: lease rows for new
//! sources, renewals, the census of live nodes and free sources, and the claim.
//! Kept apart from the tick's control flow so each statement reads on its own.

use super::*;

impl Cluster {
    pub(super) async fn ensure_rows(
        &mut self,
        conn: &mut PgConnection,
    ) -> Result<(), ClusterError> {
        sqlx::query("INSERT INTO leases (source) SELECT unnest($1::text[]) ON CONFLICT DO NOTHING")
            .bind(&self.sources)
            .execute(&mut *conn)
            .await
            .map_err(db("creating lease rows"))?;
        Ok(())
    }

    /// Renews every held lease still held under its term and not expired; returns
    /// (source, term, expires_at) of those renewed.
    pub(super) async fn renew(
        &self,
        conn: &mut PgConnection,
    ) -> Result<Vec<(String, i64, DateTime<Utc>)>, ClusterError> {
        if self.held.is_empty() {
            return Ok(Vec::new());
        }
        let sources: Vec<&str> = self.held.keys().map(String::as_str).collect();
        let terms: Vec<i64> = self.held.values().map(|h| h.term).collect();
        sqlx::query_as(
            "UPDATE leases l SET expires_at = now() + make_interval(secs => $2) \
             FROM UNNEST($3::text[], $4::bigint[]) AS h(source, term) \
             WHERE l.source = h.source AND l.term = h.term AND l.holder = $1 \
               AND l.expires_at > now() \
             RETURNING l.source, l.term, l.expires_at",
        )
        .bind(&self.node)
        .bind(self.ttl.as_secs_f64())
        .bind(&sources)
        .bind(&terms)
        .fetch_all(&mut *conn)
        .await
        .map_err(db("renewing leases"))
    }

    pub(super) async fn current_holders(
        &self,
        conn: &mut PgConnection,
        sources: &[String],
    ) -> Result<Vec<(String, Option<String>, i64)>, ClusterError> {
        if sources.is_empty() {
            return Ok(Vec::new());
        }
        sqlx::query_as("SELECT source, holder, term FROM leases WHERE source = ANY($1)")
            .bind(sources)
            .fetch_all(&mut *conn)
            .await
            .map_err(db("reading who holds the lost leases"))
    }

    /// Live nodes other than this one with their unexpired leases (of this node's
    /// sources), and the number of free sources.
    pub(super) async fn census(
        &self,
        conn: &mut PgConnection,
    ) -> Result<share::Census, ClusterError> {
        let others: Vec<(String, i64)> = sqlx::query_as(
            "SELECT n.node, count(l.source) FROM nodes n \
             LEFT JOIN leases l ON l.holder = n.node AND l.expires_at > now() \
                                AND l.source = ANY($2) \
             WHERE n.stopped_at IS NULL \
               AND n.last_seen_at > now() - make_interval(secs => $3) \
               AND n.node <> $1 \
             GROUP BY n.node",
        )
        .bind(&self.node)
        .bind(&self.sources)
        .bind(self.ttl.as_secs_f64())
        .fetch_all(&mut *conn)
        .await
        .map_err(db("counting live nodes"))?;
        let free: i64 = sqlx::query_scalar(
            "SELECT count(*) FROM leases WHERE source = ANY($1) \
               AND (holder IS NULL OR expires_at IS NULL OR expires_at <= now())",
        )
        .bind(&self.sources)
        .fetch_one(&mut *conn)
        .await
        .map_err(db("counting free sources"))?;
        Ok(share::Census {
            sources: self.sources.len(),
            others: others
                .into_iter()
                .map(|(n, c)| (n, c.max(0) as usize))
                .collect(),
            free: free.max(0) as usize,
        })
    }

    /// Claims up to `n` free sources. Rows another node is claiming at this moment
    /// are skipped, not waited for; each node starts from a different place in the
    /// list (ordered by a hash of source and node), so concurrent claims rarely meet.
    pub(super) async fn claim(
        &self,
        conn: &mut PgConnection,
        n: usize,
    ) -> Result<Vec<Acquired>, ClusterError> {
        let rows: Vec<ClaimedRow> = sqlx::query_as(
            "UPDATE leases l SET holder = $1, term = l.term + 1, acquired_at = now(), \
                    expires_at = now() + make_interval(secs => $2) \
             FROM (SELECT source, holder AS prev_holder, term AS prev_term FROM leases \
                   WHERE source = ANY($3) \
                     AND (holder IS NULL OR expires_at IS NULL OR expires_at <= now()) \
                   ORDER BY md5(source || $1) LIMIT $4 FOR UPDATE SKIP LOCKED) c \
             WHERE l.source = c.source \
             RETURNING l.source, l.term, l.expires_at, c.prev_holder, c.prev_term",
        )
        .bind(&self.node)
        .bind(self.ttl.as_secs_f64())
        .bind(&self.sources)
        .bind(n as i64)
        .fetch_all(&mut *conn)
        .await
        .map_err(db("claiming free sources"))?;
        Ok(rows
            .into_iter()
            .map(|r| {
                let change = match (&r.prev_holder, r.prev_term) {
                    (_, 0) => Change::ClaimedNew,
                    (None, _) => Change::ClaimedReleased,
                    (Some(_), _) => Change::TakenOver,
                };
                Acquired {
                    lease: Lease {
                        source: r.source,
                        term: r.term,
                        expires_at: r.expires_at,
                    },
                    previous_holder: r.prev_holder,
                    previous_term: r.prev_term,
                    change,
                }
            })
            .collect())
    }
}
