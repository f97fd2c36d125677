-- Blind periods of a source and their backfill from the upstream's history (issue 12).
-- One row per blind period; times in the same TEXT format as the rest of the contract.
-- Numbered 0003 so a 0002 added in parallel applies in either order.

CREATE TABLE gaps (
    id             INTEGER PRIMARY KEY,
    source         TEXT NOT NULL,
    from_time      TEXT NOT NULL,
    to_time        TEXT NOT NULL,
    cause          TEXT NOT NULL CHECK (cause IN ('network', 'manual', 'down', 'handover')),
    status         TEXT NOT NULL DEFAULT 'pending'
        CHECK (status IN ('pending', 'running', 'done', 'partial', 'failed')),
    trackers_total INTEGER,
    trackers_done  INTEGER NOT NULL DEFAULT 0,
    points         INTEGER NOT NULL DEFAULT 0,
    attempts       INTEGER NOT NULL DEFAULT 0,
    error          TEXT,
    updated_at     TEXT NOT NULL
) STRICT;
CREATE INDEX gaps_source_from_time ON gaps (source, from_time);
CREATE INDEX gaps_status ON gaps (status, source);

-- Where a row came from: the live stream, or a backfill of a gap.
ALTER TABLE tracker_states ADD COLUMN origin TEXT NOT NULL DEFAULT 'live'
    CHECK (origin IN ('live', 'backfill'));
ALTER TABLE tracker_readings ADD COLUMN origin TEXT NOT NULL DEFAULT 'live'
    CHECK (origin IN ('live', 'backfill'));
