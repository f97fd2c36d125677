-- wsvault storage contract (DESIGN.md), SQLite flavour.
-- Timestamps are TEXT in the fixed UTC format YYYY-MM-DDTHH:MM:SS.ffffffZ (six fractional
-- digits), so text order is time order and SQLite's date functions accept them.
-- JSON columns are TEXT checked with json_valid, so SQLite refuses what PostgreSQL's jsonb refuses.
-- Tables are STRICT: a value of the wrong type is refused instead of silently coerced.

CREATE TABLE connections (
    id           INTEGER PRIMARY KEY,
    source       TEXT NOT NULL,
    url          TEXT NOT NULL,
    opened_at    TEXT NOT NULL,
    closed_at    TEXT,
    close_code   INTEGER,
    close_reason TEXT
) STRICT;
CREATE INDEX connections_source_opened_at ON connections (source, opened_at);

CREATE TABLE session_events (
    id            INTEGER PRIMARY KEY,
    source        TEXT NOT NULL,
    connection_id INTEGER,
    occurred_at   TEXT NOT NULL,
    event         TEXT NOT NULL,
    initiator     TEXT,
    code          INTEGER,
    reason        TEXT,
    detail        TEXT CHECK (detail IS NULL OR json_valid(detail))
) STRICT;
CREATE INDEX session_events_source_occurred_at ON session_events (source, occurred_at);
CREATE INDEX session_events_connection ON session_events (connection_id);

CREATE TABLE events (
    id            INTEGER PRIMARY KEY,
    source        TEXT NOT NULL,
    connection_id INTEGER,
    received_at   TEXT NOT NULL,
    kind          TEXT NOT NULL,
    payload       TEXT NOT NULL CHECK (json_valid(payload)),
    item_count    INTEGER
) STRICT;
CREATE INDEX events_source_received_at ON events (source, received_at);

CREATE TABLE tracker_states (
    id                INTEGER PRIMARY KEY,
    source            TEXT NOT NULL,
    source_id         INTEGER NOT NULL,
    state_time        TEXT NOT NULL,
    received_at       TEXT NOT NULL,
    lat               REAL,
    lng               REAL,
    speed             REAL,
    heading           REAL,
    connection_status TEXT,
    movement_status   TEXT,
    payload           TEXT NOT NULL CHECK (json_valid(payload)),
    UNIQUE (source, source_id, state_time)
) STRICT;
CREATE INDEX tracker_states_source_received_at ON tracker_states (source, received_at);

CREATE TABLE tracker_readings (
    id           INTEGER PRIMARY KEY,
    source       TEXT NOT NULL,
    tracker_id   INTEGER NOT NULL,
    reading_kind TEXT NOT NULL
        CHECK (reading_kind IN ('input', 'state', 'virtual_sensor', 'counter')),
    name         TEXT NOT NULL,
    value        TEXT NOT NULL CHECK (json_valid(value)),
    value_num    REAL,
    units        TEXT,
    update_time  TEXT NOT NULL,
    received_at  TEXT NOT NULL,
    payload      TEXT NOT NULL CHECK (json_valid(payload)),
    UNIQUE (source, tracker_id, reading_kind, name, update_time)
) STRICT;
CREATE INDEX tracker_readings_tracker_name_time
    ON tracker_readings (source, tracker_id, name, update_time);
CREATE INDEX tracker_readings_source_received_at ON tracker_readings (source, received_at);

CREATE TABLE tracker_lifecycle (
    id              INTEGER PRIMARY KEY,
    source          TEXT NOT NULL,
    source_id       INTEGER NOT NULL,
    lifecycle_event TEXT NOT NULL,
    received_at     TEXT NOT NULL
) STRICT;
CREATE INDEX tracker_lifecycle_source_received_at ON tracker_lifecycle (source, received_at);
CREATE INDEX tracker_lifecycle_tracker ON tracker_lifecycle (source, source_id, received_at);

CREATE TABLE security_sessions (
    id             INTEGER PRIMARY KEY,
    source         TEXT NOT NULL,
    session_id     INTEGER NOT NULL,
    owner_login    TEXT,
    user_login     TEXT,
    safety_type_id INTEGER,
    key_current    TEXT,
    started_at     TEXT,
    expires_at     TEXT,
    ip             TEXT,
    ip_client      TEXT,
    first_seen_at  TEXT NOT NULL,
    last_seen_at   TEXT NOT NULL,
    ended_at       TEXT,
    payload        TEXT NOT NULL CHECK (json_valid(payload)),
    UNIQUE (source, session_id)
) STRICT;
CREATE INDEX security_sessions_source_last_seen ON security_sessions (source, last_seen_at);

CREATE TABLE security_session_changes (
    id          INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    session_id  INTEGER NOT NULL,
    change      TEXT NOT NULL CHECK (change IN ('opened', 'ended')),
    observed_at TEXT NOT NULL,
    UNIQUE (source, session_id, change)
) STRICT;
CREATE INDEX security_session_changes_source_observed_at
    ON security_session_changes (source, observed_at);

CREATE TABLE notifications (
    id            INTEGER PRIMARY KEY,
    source        TEXT NOT NULL,
    connection_id INTEGER,
    seq           INTEGER NOT NULL,
    received_at   TEXT NOT NULL,
    method        TEXT NOT NULL,
    params        TEXT NOT NULL CHECK (json_valid(params))
) STRICT;
CREATE INDEX notifications_source_connection_seq ON notifications (source, connection_id, seq);
CREATE INDEX notifications_source_received_at ON notifications (source, received_at);

CREATE TABLE traffic (
    id            INTEGER PRIMARY KEY,
    source        TEXT NOT NULL,
    connection_id INTEGER,
    at            TEXT NOT NULL,
    direction     TEXT NOT NULL CHECK (direction IN ('sent', 'received')),
    payload       TEXT NOT NULL
) STRICT;
CREATE INDEX traffic_source_at ON traffic (source, at);

CREATE TABLE rejected (
    id          INTEGER PRIMARY KEY,
    source      TEXT NOT NULL,
    kind        TEXT NOT NULL,
    received_at TEXT NOT NULL,
    error       TEXT NOT NULL,
    payload     TEXT NOT NULL
) STRICT;
CREATE INDEX rejected_source_received_at ON rejected (source, received_at);

-- Newest state per tracker; served by the UNIQUE (source, source_id, state_time) index.
CREATE VIEW latest_tracker_states AS
SELECT s.*
FROM tracker_states AS s
WHERE s.state_time = (
    SELECT max(t.state_time)
    FROM tracker_states AS t
    WHERE t.source = s.source AND t.source_id = s.source_id
);

CREATE VIEW active_security_sessions AS
SELECT * FROM security_sessions WHERE ended_at IS NULL;
