-- Time partitions for the four large history tables (issue 14, point 5), PostgreSQL
-- only. Retention then drops a whole day (`[storage] partition`) instead of deleting
-- it row by row: seconds and kilobytes of WAL instead of minutes and gigabytes.
--
-- A partitioned table's primary key must contain its partition key, so the keys
-- become (id, time). The writer's `ON CONFLICT DO NOTHING` names no target and the
-- deduplicating UNIQUE constraints of tracker_states and tracker_readings already
-- hold their time column, so the write path is unchanged.
--
--   table             partitioned by
--   tracker_states    state_time
--   tracker_readings  update_time
--   events            received_at
--   traffic           at
--
-- Released migrations cannot change, so this one converts each table that is
-- still empty (a new database) in place. A table that already holds rows is left
-- as it is: the daemon logs that `wsvault migrate --partition` converts it, range
-- by range and resumably, with the two functions below (never at start).
-- Partitions for time ranges are created by the daemon ahead of time; rows outside
-- every created range land in `<table>_default`, which the daemon splits later.

-- One row per table that `wsvault migrate --partition` is converting or has
-- converted: where the copy stands, so an interrupted run goes on from there.
CREATE TABLE partition_progress (
    tbl         text PRIMARY KEY,
    -- When the conversion began: rows received from an hour before on are copied
    -- again (deduplicated) under the final lock, so rows the running daemon wrote
    -- meanwhile are not lost.
    started_at  timestamptz NOT NULL,
    -- The partition key range that is copied: [lower, upper).
    lower_bound timestamptz,
    upper_bound timestamptz,
    -- Every row with a partition key below this is copied.
    done_until  timestamptz,
    finished_at timestamptz
);

-- Creates `<tbl>_new`: the columns, defaults, identity and CHECK constraints of
-- `tbl`, partitioned by RANGE (col), primary key (id, col), every other index of
-- `tbl` again (named `left(name, 59) || '_new'`, renamed by the swap below), and the
-- DEFAULT partition `<tbl>_default`. No data is copied.
CREATE FUNCTION wsvault_partition_create(tbl text, col text) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    newt text := tbl || '_new';
    pk   text;
    r    record;
BEGIN
    SELECT i.relname INTO pk
      FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
     WHERE x.indrelid = tbl::regclass AND x.indisprimary;
    EXECUTE format(
        'CREATE TABLE %I (LIKE %I INCLUDING DEFAULTS INCLUDING IDENTITY INCLUDING GENERATED '
        'INCLUDING CONSTRAINTS INCLUDING STORAGE INCLUDING COMMENTS, '
        'CONSTRAINT %I PRIMARY KEY (id, %I)) PARTITION BY RANGE (%I)',
        newt, tbl, left(coalesce(pk, tbl || '_pkey'), 59) || '_new', col, col);
    FOR r IN
        SELECT i.relname, pg_get_indexdef(x.indexrelid) AS def
          FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
         WHERE x.indrelid = tbl::regclass AND NOT x.indisprimary
         ORDER BY i.relname
    LOOP
        EXECUTE regexp_replace(
            r.def,
            '^CREATE (UNIQUE )?INDEX \S+ ON \S+ USING',
            'CREATE \1INDEX ' || quote_ident(left(r.relname, 59) || '_new')
                || ' ON ' || quote_ident(newt) || ' USING');
    END LOOP;
    EXECUTE format('CREATE TABLE %I PARTITION OF %I DEFAULT', tbl || '_default', newt);
END
$fn$;

-- Puts `<tbl>_new` in the place of `tbl`: `tbl` becomes `<tbl>_old` (its indexes get
-- `_old` names), `<tbl>_new` and its indexes take the old names, the views reading
-- `tbl` are re-created on the new table (keeping their grants), and the identity
-- sequence continues where the old one stood. The caller holds the locks and
-- commits; `<tbl>_old` stays.
CREATE FUNCTION wsvault_partition_swap(tbl text) RETURNS void
LANGUAGE plpgsql AS $fn$
DECLARE
    r      record;
    views  text[] := '{}';
    defs   text[] := '{}';
    oldseq text;
    newseq text;
    seqname text;
    i      int;
BEGIN
    FOR r IN
        SELECT DISTINCT v.oid, v.relname, n.nspname
          FROM pg_depend d
          JOIN pg_rewrite w ON w.oid = d.objid
          JOIN pg_class v ON v.oid = w.ev_class
          JOIN pg_namespace n ON n.oid = v.relnamespace
         WHERE d.classid = 'pg_rewrite'::regclass
           AND d.refobjid = tbl::regclass
           AND v.relkind = 'v'
         ORDER BY v.oid
    LOOP
        views := views || format('%I.%I', r.nspname, r.relname);
        defs := defs || pg_get_viewdef(r.oid);
    END LOOP;
    FOR r IN
        SELECT i.relname FROM pg_index x JOIN pg_class i ON i.oid = x.indexrelid
         WHERE x.indrelid = tbl::regclass
    LOOP
        EXECUTE format('ALTER INDEX %I RENAME TO %I', r.relname, left(r.relname, 59) || '_old');
        IF to_regclass(quote_ident(left(r.relname, 59) || '_new')) IS NOT NULL THEN
            EXECUTE format('ALTER INDEX %I RENAME TO %I', left(r.relname, 59) || '_new', r.relname);
        END IF;
    END LOOP;
    EXECUTE format('ALTER TABLE %I RENAME TO %I', tbl, tbl || '_old');
    EXECUTE format('ALTER TABLE %I RENAME TO %I', tbl || '_new', tbl);
    FOR i IN 1 .. coalesce(array_length(views, 1), 0) LOOP
        EXECUTE format('CREATE OR REPLACE VIEW %s AS %s', views[i], defs[i]);
    END LOOP;
    oldseq := pg_get_serial_sequence(quote_ident(tbl || '_old'), 'id');
    newseq := pg_get_serial_sequence(quote_ident(tbl), 'id');
    IF oldseq IS NOT NULL AND newseq IS NOT NULL THEN
        EXECUTE format('SELECT setval(%L, last_value, is_called) FROM %s', newseq, oldseq);
        seqname := (SELECT relname FROM pg_class WHERE oid = oldseq::regclass);
        EXECUTE format('ALTER SEQUENCE %s RENAME TO %I', oldseq, left(seqname, 59) || '_old');
        EXECUTE format('ALTER SEQUENCE %s RENAME TO %I', newseq, seqname);
    END IF;
END
$fn$;

-- A new database: convert the four tables while they are empty (instant). The
-- lock keeps a daemon of an older version, started beside this one, from writing
-- between the emptiness check and the swap.
DO $$
DECLARE
    r     record;
    empty boolean;
BEGIN
    FOR r IN
        SELECT * FROM (VALUES ('tracker_states', 'state_time'),
                              ('tracker_readings', 'update_time'),
                              ('events', 'received_at'),
                              ('traffic', 'at')) AS v(tbl, col)
    LOOP
        CONTINUE WHEN (SELECT relkind FROM pg_class WHERE oid = to_regclass(r.tbl)) IS DISTINCT FROM 'r';
        EXECUTE format('LOCK TABLE %I IN ACCESS EXCLUSIVE MODE', r.tbl);
        EXECUTE format('SELECT NOT EXISTS (SELECT 1 FROM %I)', r.tbl) INTO empty;
        CONTINUE WHEN NOT empty;
        BEGIN
            PERFORM wsvault_partition_create(r.tbl, r.col);
            PERFORM wsvault_partition_swap(r.tbl);
            EXECUTE format('DROP TABLE %I', r.tbl || '_old');
        EXCEPTION WHEN others THEN
            -- Left unpartitioned: the daemon points at `wsvault migrate --partition`,
            -- which reports the same error.
            RAISE WARNING 'wsvault: % stays unpartitioned: %', r.tbl, SQLERRM;
        END;
    END LOOP;
END
$$;
