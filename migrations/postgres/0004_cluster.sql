-- Several daemons on one database (issue 13): the daemons alive (`nodes`), which
-- daemon records which source (`leases`), the node number of each process's row ids
-- (`id_slots`), and which daemon wrote a connection or lifecycle row (`node`).
-- Same audit columns and id_slots as migrations/sqlite/0004_cluster.sql; nodes and
-- leases exist on PostgreSQL only ([cluster] needs it). Every time in these tables is
-- written with the database's now(), never a daemon's clock.

-- One row per daemon name. `instance` tells a restarted daemon from a second live
-- one with the same name; a node is live while last_seen_at is within its lease ttl.
CREATE TABLE nodes (
    node         text PRIMARY KEY,
    instance     bigint NOT NULL,
    started_at   timestamptz NOT NULL,
    last_seen_at timestamptz NOT NULL,
    stopped_at   timestamptz,
    version      text NOT NULL,
    host         text,
    pid          bigint
);

-- One row per source. `holder` is NULL when released; `term` grows by one at every
-- change of holder, so a batch fenced on (holder, term) cannot commit after a takeover.
CREATE TABLE leases (
    source      text PRIMARY KEY,
    holder      text,
    term        bigint NOT NULL DEFAULT 0,
    acquired_at timestamptz,
    expires_at  timestamptz
);
CREATE INDEX leases_holder ON leases (holder, expires_at);

-- The 1 024 node numbers of row ids (src/id_slots.rs). A slot is free once nobody
-- renewed it for an hour; high_water is the largest id its holder reported.
CREATE TABLE id_slots (
    slot       integer PRIMARY KEY CHECK (slot BETWEEN 0 AND 1023),
    holder     text,
    token      bigint,
    claimed_at timestamptz,
    seen_at    timestamptz NOT NULL DEFAULT '-infinity',
    high_water bigint NOT NULL DEFAULT 0
);
CREATE INDEX id_slots_seen_at ON id_slots (seen_at, slot);
INSERT INTO id_slots (slot) SELECT g FROM generate_series(0, 1023) AS g;

-- Which daemon wrote the row: NULL for rows of older versions.
ALTER TABLE connections ADD COLUMN node text;
ALTER TABLE session_events ADD COLUMN node text;
