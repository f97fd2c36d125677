-- Issue 14, second part: the current state as a table, links from typed rows to their
-- raw message, and the hourly event counts kept by the writer. Same objects as
-- migrations/sqlite/0007_latest_links_hourly.sql. Numbered 0007: 0006 holds the
-- cookbook's indexes; the partitions come after this.

-- "Latest position per tracker": one row per source and tracker, kept by the writer
-- in the transaction of the states (an older or backfilled state never replaces a
-- newer one) and never pruned, so a tracker whose history retention removed is still
-- listed. `state_id` is the tracker_states row it copies (it may have been pruned).
CREATE TABLE tracker_latest (
    source            text NOT NULL,
    source_id         bigint NOT NULL,
    state_id          bigint NOT NULL,
    state_time        timestamptz NOT NULL,
    received_at       timestamptz NOT NULL,
    lat               double precision,
    lng               double precision,
    speed             double precision,
    heading           double precision,
    connection_status text,
    movement_status   text,
    PRIMARY KEY (source, source_id)
);

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
ALTER TABLE tracker_states ADD COLUMN event_id bigint, ADD COLUMN connection_id bigint;
ALTER TABLE tracker_readings ADD COLUMN event_id bigint, ADD COLUMN connection_id bigint;
ALTER TABLE tracker_lifecycle ADD COLUMN event_id bigint, ADD COLUMN connection_id bigint;
ALTER TABLE security_session_changes
    ADD COLUMN event_id bigint, ADD COLUMN connection_id bigint;

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
SELECT source, kind, date_trunc('hour', received_at, 'UTC'), count(*)
FROM events
GROUP BY 1, 2, 3;
