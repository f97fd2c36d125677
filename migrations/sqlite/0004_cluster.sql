-- Several daemons on one database (issue 13): the node number of each process's row
-- ids (`id_slots`), and which daemon wrote a connection or lifecycle row (`node`).
-- Same columns as migrations/postgres/0004_cluster.sql; the `nodes` and `leases`
-- tables of [cluster] exist on PostgreSQL only.

-- The 1 024 node numbers of row ids (src/id_slots.rs). A slot is free once nobody
-- renewed it for an hour; high_water is the largest id its holder reported. Times in
-- the contract's TEXT format; year 0000 sorts before every real renewal.
CREATE TABLE id_slots (
    slot       INTEGER PRIMARY KEY CHECK (slot BETWEEN 0 AND 1023),
    holder     TEXT,
    token      INTEGER,
    claimed_at TEXT,
    seen_at    TEXT NOT NULL DEFAULT '0000-01-01T00:00:00.000000Z',
    high_water INTEGER NOT NULL DEFAULT 0
) STRICT;
CREATE INDEX id_slots_seen_at ON id_slots (seen_at, slot);
WITH RECURSIVE n(slot) AS (SELECT 0 UNION ALL SELECT slot + 1 FROM n WHERE slot < 1023)
INSERT INTO id_slots (slot) SELECT slot FROM n;

-- Which daemon wrote the row: NULL for rows of older versions.
ALTER TABLE connections ADD COLUMN node TEXT;
ALTER TABLE session_events ADD COLUMN node TEXT;
