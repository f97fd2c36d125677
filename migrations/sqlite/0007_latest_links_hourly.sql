-- Issue 14, second part: the current state as a table, links from typed rows to their
-- raw message, and the hourly event counts kept by the writer. Numbered 0007: 0006
-- holds the cookbook's indexes; PostgreSQL's partitions come after this.

-- "Latest position per tracker": one row per source and tracker, kept by the writer
-- in the transaction of the states (an older or backfilled state never replaces a
-- newer one) and never pruned, so a tracker whose history retention removed is still
-- listed. `state_id` is the tracker_states row it copies (it may have been pruned).
CREATE TABLE tracker_latest (
    source            TEXT NOT NULL,
    source_id         INTEGER NOT NULL,
    state_id          INTEGER NOT NULL,
    state_time        TEXT NOT NULL,
    received_at       TEXT NOT NULL,
    lat               REAL,
    lng               REAL,
    speed             REAL,
    heading           REAL,
    connection_status TEXT,
    movement_status   TEXT,
    PRIMARY KEY (source, source_id)
) STRICT, WITHOUT ROWID;

-- Filled from the 0006 skip-scan view: one index descent per tracker.
INSERT INTO tracker_latest (source, source_id, state_id, state_time, received_at,
                            lat, lng, speed, heading, connection_status, movement_status)
SELECT source, source_id, id, state_time, received_at, lat, lng, speed, heading,
       connection_status, movement_status
FROM latest_tracker_states;

DROP VIEW latest_tracker_states;
CREATE VIEW latest_tracker_states AS
SELECT state_id AS id, source, source_id, state_time, received_at, lat, lng, speed, heading,
       connection_status, movement_status
FROM tracker_latest;

-- "The raw message behind a typed row": the `events` row of the message a typed row
-- came from, and its connection. NULL in rows written before this version, with
-- `raw_events = "off"` (event_id) and in backfilled rows (both). Nullable without a
-- default, so adding them rewrites nothing.
ALTER TABLE tracker_states ADD COLUMN event_id INTEGER;
ALTER TABLE tracker_states ADD COLUMN connection_id INTEGER;
ALTER TABLE tracker_readings ADD COLUMN event_id INTEGER;
ALTER TABLE tracker_readings ADD COLUMN connection_id INTEGER;
ALTER TABLE tracker_lifecycle ADD COLUMN event_id INTEGER;
ALTER TABLE tracker_lifecycle ADD COLUMN connection_id INTEGER;
ALTER TABLE security_session_changes ADD COLUMN event_id INTEGER;
ALTER TABLE security_session_changes ADD COLUMN connection_id INTEGER;

-- The reverse lookup ("which typed rows came from this message"): only linked rows
-- are indexed, and event ids grow with time, so every insert appends at the edge.
CREATE INDEX tracker_states_event ON tracker_states (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX tracker_readings_event ON tracker_readings (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX tracker_lifecycle_event ON tracker_lifecycle (event_id) WHERE event_id IS NOT NULL;
CREATE INDEX security_session_changes_event
    ON security_session_changes (event_id) WHERE event_id IS NOT NULL;

-- "Events per kind per hour": from now on the writer adds each batch's newly
-- inserted events; this counts what is stored already (0006 created it empty). The
-- cookbook reads one source's last day across its kinds: a range of this index.
-- Retention of `events` leaves the counts (one row per source, kind and hour).
CREATE INDEX events_hourly_source_hour ON events_hourly (source, hour);
INSERT INTO events_hourly (source, kind, hour, n)
SELECT source, kind, substr(received_at, 1, 13) || ':00:00.000000Z', count(*)
FROM events
GROUP BY 1, 2, 3;
