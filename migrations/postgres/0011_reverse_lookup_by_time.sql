-- The reverse lookup "which typed rows came from this message" no longer needs an
-- index of its own on the two high-volume tables. A typed row carries the receipt
-- time of its message (both are stamped with the same clock reading when the frame
-- is read), so the `(source, received_at)` index every history table already has
-- for retention finds a message's rows, and `event_id` picks them out:
--   ... JOIN tracker_states AS s ON s.source = e.source
--         AND s.received_at = e.received_at AND s.event_id = e.id
-- The partial indexes of 0007 cost every state and reading one more index entry
-- (PostgreSQL's COPY of 100 000 states: 2.53–2.62 s with it, 2.41 s without), for a
-- question asked by hand. The two low-volume tables keep theirs.
DROP INDEX IF EXISTS tracker_states_event;
DROP INDEX IF EXISTS tracker_readings_event;
