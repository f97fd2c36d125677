-- Blind periods of a source and their backfill from the upstream's history (issue 12).
-- Same columns as migrations/sqlite/0003_gaps.sql. Numbered 0003 so a 0002 added in
-- parallel applies in either order.

CREATE TABLE gaps (
    id             bigint PRIMARY KEY,
    source         text NOT NULL,
    from_time      timestamptz NOT NULL,
    to_time        timestamptz NOT NULL,
    cause          text NOT NULL CHECK (cause IN ('network', 'manual', 'down', 'handover')),
    status         text NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'done', 'partial', 'failed')),
    trackers_total bigint,
    trackers_done  bigint NOT NULL DEFAULT 0,
    points         bigint NOT NULL DEFAULT 0,
    attempts       bigint NOT NULL DEFAULT 0,
    error          text,
    updated_at     timestamptz NOT NULL
);
CREATE INDEX gaps_source_from_time ON gaps (source, from_time);
CREATE INDEX gaps_status ON gaps (status, source);

-- Where a row came from: the live stream, or a backfill of a gap. A constant default
-- does not rewrite the table.
ALTER TABLE tracker_states ADD COLUMN origin text NOT NULL DEFAULT 'live'
    CHECK (origin IN ('live', 'backfill'));
ALTER TABLE tracker_readings ADD COLUMN origin text NOT NULL DEFAULT 'live'
    CHECK (origin IN ('live', 'backfill'));
