-- `tracker_latest` and `events_hourly` are small tables that take one UPDATE per
-- tracker (per hour and kind) in almost every batch. Leaving half of each page
-- free lets PostgreSQL keep every such update on its page as a heap-only tuple
-- (no new entry in the primary key's index, and the page prunes its own dead
-- versions), instead of moving the row to another page whenever its page is
-- full. Measured on 1 000 rows and 100 000 upserts: 84 % of the updates were
-- heap-only with the default fill, 100 % with this, and the primary key's index
-- ended at half the size. It costs nothing that grows: both tables hold one row
-- per tracker or per hour. Rows already stored move to pages with room as they
-- are updated; no rewrite is needed.
ALTER TABLE tracker_latest SET (fillfactor = 50);
ALTER TABLE events_hourly SET (fillfactor = 50);
