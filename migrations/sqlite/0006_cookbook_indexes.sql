-- Indexes and views for the SQL cookbook at scale (issue 14). Each addition serves a
-- question of README's "SQL cookbook" and is measured by `wsvault bench --queries`.
-- Numbered 0006: 0004 and 0005 belong to the cluster change (leases, node column).

-- "Sessions opened from an IP new for that user": whether the same user had an
-- earlier session from the same address is one probe of this index.
CREATE INDEX security_sessions_user_ip
    ON security_sessions (source, user_login, ip_client, started_at);

-- "Active security sessions": only the sessions that have not ended, in start order.
CREATE INDEX security_sessions_active
    ON security_sessions (source, started_at) WHERE ended_at IS NULL;

-- "Events per kind per hour": with the kind in the (source, received_at) index the
-- counts come from the index alone. Retention and the raw-message lookup use its
-- (source, received_at) prefix as before, so it replaces that index (no extra write).
DROP INDEX events_source_received_at;
CREATE INDEX events_source_received_at_kind ON events (source, received_at, kind);

-- Messages per source, kind and hour (`hour` is the start of the hour, in the
-- contract's time format). Created here for the writer to keep per batch; until a
-- version does, it stays empty and the cookbook counts from the index above.
CREATE TABLE events_hourly (
    source TEXT NOT NULL,
    kind   TEXT NOT NULL,
    hour   TEXT NOT NULL,
    n      INTEGER NOT NULL,
    PRIMARY KEY (source, kind, hour)
) STRICT, WITHOUT ROWID;

-- "Latest position per tracker" without reading the history: a skip down the
-- UNIQUE (source, source_id, state_time) index from the end, one descent per
-- tracker, each landing on that tracker's newest state. The view it replaces ran a
-- subquery per stored row.
DROP VIEW latest_tracker_states;
CREATE VIEW latest_tracker_states AS
WITH RECURSIVE latest AS (
    SELECT * FROM (SELECT * FROM tracker_states
                   WHERE source = (SELECT max(source) FROM tracker_states)
                   ORDER BY source_id DESC, state_time DESC LIMIT 1)
    UNION ALL
    SELECT s.* FROM latest AS l
    JOIN tracker_states AS s ON s.id = coalesce(
        (SELECT x.id FROM tracker_states AS x
          WHERE x.source = l.source AND x.source_id < l.source_id
          ORDER BY x.source_id DESC, x.state_time DESC LIMIT 1),
        (SELECT x.id FROM tracker_states AS x
          WHERE x.source = (SELECT max(y.source) FROM tracker_states AS y
                            WHERE y.source < l.source)
          ORDER BY x.source_id DESC, x.state_time DESC LIMIT 1))
)
SELECT * FROM latest;
