//! The PostgreSQL insert statements, one per table of the storage contract.
//!
//! Append and deduplicated tables use `INSERT … SELECT … FROM UNNEST(…)` with one
//! array parameter per column (JSON columns arrive as `text[]` and are cast to
//! `jsonb`); the two upsert tables use single-row `INSERT … ON CONFLICT DO UPDATE`.
//! Only SQL text lives here; binding and execution are in the parent module.

pub(super) const CONNECTIONS: &str = "INSERT INTO connections \
    (id, source, url, opened_at, closed_at, close_code, close_reason) \
    VALUES ($1, $2, $3, $4, $5, $6, $7) \
    ON CONFLICT (id) DO UPDATE SET \
    closed_at = COALESCE(EXCLUDED.closed_at, connections.closed_at), \
    close_code = COALESCE(EXCLUDED.close_code, connections.close_code), \
    close_reason = COALESCE(EXCLUDED.close_reason, connections.close_reason)";

pub(super) const SECURITY_SESSIONS: &str = "INSERT INTO security_sessions \
    (source, session_id, owner_login, user_login, safety_type_id, key_current, started_at, \
     expires_at, ip, ip_client, first_seen_at, last_seen_at, ended_at, payload) \
    VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14::jsonb) \
    ON CONFLICT (source, session_id) DO UPDATE SET \
    owner_login = EXCLUDED.owner_login, user_login = EXCLUDED.user_login, \
    safety_type_id = EXCLUDED.safety_type_id, key_current = EXCLUDED.key_current, \
    started_at = EXCLUDED.started_at, expires_at = EXCLUDED.expires_at, ip = EXCLUDED.ip, \
    ip_client = EXCLUDED.ip_client, last_seen_at = EXCLUDED.last_seen_at, \
    ended_at = EXCLUDED.ended_at, payload = EXCLUDED.payload";

pub(super) const SESSION_EVENTS: &str = "INSERT INTO session_events \
    (id, source, connection_id, occurred_at, event, initiator, code, reason, detail) \
    SELECT id, source, connection_id, occurred_at, event, initiator, code, reason, detail::jsonb \
    FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::timestamptz[], $5::text[], \
                $6::text[], $7::bigint[], $8::text[], $9::text[]) \
    AS u(id, source, connection_id, occurred_at, event, initiator, code, reason, detail) \
    ON CONFLICT DO NOTHING";

/// Also adds the rows it inserted (its `RETURNING` never names a skipped duplicate)
/// to `events_hourly`, in the same statement.
pub(super) const EVENTS: &str = "WITH ins AS (INSERT INTO events \
    (id, source, connection_id, received_at, kind, payload, item_count) \
    SELECT id, source, connection_id, received_at, kind, payload::jsonb, item_count \
    FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::timestamptz[], $5::text[], \
                $6::text[], $7::bigint[]) \
    AS u(id, source, connection_id, received_at, kind, payload, item_count) \
    ON CONFLICT DO NOTHING RETURNING source, kind, received_at) \
    INSERT INTO events_hourly AS h (source, kind, hour, n) \
    SELECT source, kind, date_trunc('hour', received_at, 'UTC'), count(*) FROM ins \
    GROUP BY 1, 2, 3 \
    ON CONFLICT (source, kind, hour) DO UPDATE SET n = h.n + excluded.n";

/// The head of every `tracker_latest` upsert (alias `l`), for `concat!`: the `UNNEST`
/// path here and the `COPY` path in `derived.rs` write the same columns.
macro_rules! latest_insert {
    () => {
        "INSERT INTO tracker_latest AS l \
         (source, source_id, state_id, state_time, received_at, lat, lng, speed, heading, \
          connection_status, movement_status) "
    };
}
pub(super) use latest_insert;

/// The tail of every `tracker_latest` upsert: a tracker's row only ever moves forward
/// in time, so an older or backfilled state never replaces a newer one.
macro_rules! latest_forward {
    () => {
        "ON CONFLICT (source, source_id) DO UPDATE SET \
         state_id = excluded.state_id, state_time = excluded.state_time, \
         received_at = excluded.received_at, lat = excluded.lat, lng = excluded.lng, \
         speed = excluded.speed, heading = excluded.heading, \
         connection_status = excluded.connection_status, \
         movement_status = excluded.movement_status \
         WHERE excluded.state_time > l.state_time"
    };
}
pub(super) use latest_forward;

/// Also moves `tracker_latest` to the newest state per tracker among the rows it
/// inserted, in the same statement: its `RETURNING` gives the stored ids and never
/// names a skipped duplicate (one stored by an earlier batch, whose transaction
/// already moved `tracker_latest` to it or past it), so nothing is looked up again.
pub(super) const TRACKER_STATES: &str = concat!(
    "WITH ins AS (INSERT INTO tracker_states \
    (source, source_id, state_time, received_at, lat, lng, speed, heading, \
     connection_status, movement_status, payload, origin, event_id, connection_id) \
    SELECT source, source_id, state_time, received_at, lat, lng, speed, heading, \
     connection_status, movement_status, payload::jsonb, origin, event_id, connection_id \
    FROM UNNEST($1::text[], $2::bigint[], $3::timestamptz[], $4::timestamptz[], \
                $5::float8[], $6::float8[], $7::float8[], $8::float8[], $9::text[], \
                $10::text[], $11::text[], $12::text[], $13::bigint[], $14::bigint[]) \
    AS u(source, source_id, state_time, received_at, lat, lng, speed, heading, \
         connection_status, movement_status, payload, origin, event_id, connection_id) \
    ON CONFLICT DO NOTHING \
    RETURNING id, source, source_id, state_time, received_at, lat, lng, speed, heading, \
     connection_status, movement_status) ",
    latest_insert!(),
    "SELECT DISTINCT ON (source, source_id) source, source_id, id, state_time, received_at, \
     lat, lng, speed, heading, connection_status, movement_status \
    FROM ins ORDER BY source, source_id, state_time DESC ",
    latest_forward!()
);

pub(super) const TRACKER_READINGS: &str = "INSERT INTO tracker_readings \
    (source, tracker_id, reading_kind, name, value, value_num, units, update_time, \
     received_at, payload, origin, event_id, connection_id) \
    SELECT source, tracker_id, reading_kind, name, value::jsonb, value_num, units, \
     update_time, received_at, payload::jsonb, origin, event_id, connection_id \
    FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::text[], $5::text[], \
                $6::float8[], $7::text[], $8::timestamptz[], $9::timestamptz[], $10::text[], \
                $11::text[], $12::bigint[], $13::bigint[]) \
    AS u(source, tracker_id, reading_kind, name, value, value_num, units, update_time, \
         received_at, payload, origin, event_id, connection_id) \
    ON CONFLICT DO NOTHING";

pub(super) const TRACKER_LIFECYCLE: &str = "INSERT INTO tracker_lifecycle \
    (id, source, source_id, lifecycle_event, received_at, event_id, connection_id) \
    SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::text[], \
                         $5::timestamptz[], $6::bigint[], $7::bigint[]) \
    ON CONFLICT DO NOTHING";

pub(super) const SECURITY_SESSION_CHANGES: &str = "INSERT INTO security_session_changes \
    (source, session_id, change, observed_at, event_id, connection_id) \
    SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::text[], $4::timestamptz[], \
                         $5::bigint[], $6::bigint[]) \
    ON CONFLICT DO NOTHING";

pub(super) const NOTIFICATIONS: &str = "INSERT INTO notifications \
    (id, source, connection_id, seq, received_at, method, params) \
    SELECT id, source, connection_id, seq, received_at, method, params::jsonb \
    FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::timestamptz[], \
                $6::text[], $7::text[]) \
    AS u(id, source, connection_id, seq, received_at, method, params) \
    ON CONFLICT DO NOTHING";

pub(super) const TRAFFIC: &str = "INSERT INTO traffic \
    (id, source, connection_id, at, direction, payload) \
    SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::bigint[], $4::timestamptz[], \
                         $5::text[], $6::text[]) \
    ON CONFLICT DO NOTHING";

pub(super) const REJECTED: &str = "INSERT INTO rejected \
    (id, source, kind, received_at, error, payload) \
    SELECT * FROM UNNEST($1::bigint[], $2::text[], $3::text[], $4::timestamptz[], \
                         $5::text[], $6::text[]) \
    ON CONFLICT DO NOTHING";
