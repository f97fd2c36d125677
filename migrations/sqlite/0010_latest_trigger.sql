-- `tracker_latest` kept by the database itself: every row actually inserted into
-- `tracker_states` (an `ON CONFLICT DO NOTHING` that skips a redelivered state
-- inserts nothing and fires nothing) moves its tracker's row forward, never back.
-- Until this migration the writer looked each batch's newest state per tracker up
-- again by the natural key to learn the stored id; inside the insert the row's id
-- is simply NEW.id, so that lookup (two B-tree probes per tracker) and the batch's
-- second statement go away, and a row inserted by hand keeps the table right too.
-- PostgreSQL keeps the writer's statements (a row trigger there costs more than
-- the set-based upsert; see ARCHITECTURE.md, "Kept beside the history").
CREATE TRIGGER tracker_states_latest AFTER INSERT ON tracker_states
BEGIN
    INSERT INTO tracker_latest (source, source_id, state_id, state_time, received_at,
                                lat, lng, speed, heading, connection_status,
                                movement_status)
    VALUES (NEW.source, NEW.source_id, NEW.id, NEW.state_time, NEW.received_at,
            NEW.lat, NEW.lng, NEW.speed, NEW.heading, NEW.connection_status,
            NEW.movement_status)
    ON CONFLICT (source, source_id) DO UPDATE SET
        state_id = excluded.state_id, state_time = excluded.state_time,
        received_at = excluded.received_at, lat = excluded.lat, lng = excluded.lng,
        speed = excluded.speed, heading = excluded.heading,
        connection_status = excluded.connection_status,
        movement_status = excluded.movement_status
    WHERE excluded.state_time > tracker_latest.state_time;
END;
