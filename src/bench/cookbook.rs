//! The README's SQL cookbook, statement for statement: the one place in code that
//! holds the operator questions and their SQL on each backend.
//!
//! `wsvault bench --queries` times and `EXPLAIN`s exactly these statements, and a
//! test below asserts that README's "SQL cookbook" section holds each of them
//! verbatim and nothing else, so the documented answers and the measured ones cannot
//! drift apart. Where the dialects agree the two fields hold the same text and
//! README shows one block; where they differ README shows a SQLite and a PostgreSQL
//! block. The literal names (`fleet-eu`, tracker `90017`, sensor `501`/`Fuel level`,
//! `broker`, `engine`, state id `1000`) are the ones the benchmark's fill uses, so
//! every statement finds rows there; an operator replaces them with their own.
//!
//! This module holds text only: it never runs anything.

/// One operator question and its answer on each backend.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Question {
    /// The question as the benchmark's table and README's cookbook name it.
    pub name: &'static str,
    /// The SQLite statement.
    pub sqlite: &'static str,
    /// The PostgreSQL statement (the same text when the dialects agree).
    pub postgres: &'static str,
}

const LATEST: &str = "\
SELECT source, source_id, state_time, lat, lng, speed, movement_status
FROM latest_tracker_states ORDER BY source, source_id;";

const TRACK_DAY_SQLITE: &str = "\
SELECT state_time, lat, lng, speed, heading
FROM tracker_states
WHERE source = 'fleet-eu' AND source_id = 90017
  AND state_time >= date('now', '-1 day') AND state_time < date('now')
ORDER BY state_time;";

const TRACK_DAY_POSTGRES: &str = "\
SELECT state_time, lat, lng, speed, heading
FROM tracker_states
WHERE source = 'fleet-eu' AND source_id = 90017
  AND state_time >= date_trunc('day', now(), 'UTC') - interval '1 day'
  AND state_time < date_trunc('day', now(), 'UTC')
ORDER BY state_time;";

const SENSOR_WEEK_SQLITE: &str = "\
SELECT update_time, value_num, units
FROM tracker_readings
WHERE source = 'fleet-eu' AND tracker_id = 501 AND reading_kind = 'input' AND name = 'Fuel level'
  AND update_time >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-7 days')
ORDER BY update_time;";

const SENSOR_WEEK_POSTGRES: &str = "\
SELECT update_time, value_num, units
FROM tracker_readings
WHERE source = 'fleet-eu' AND tracker_id = 501 AND reading_kind = 'input' AND name = 'Fuel level'
  AND update_time >= now() - interval '7 days'
ORDER BY update_time;";

const SILENT_SQLITE: &str = "\
SELECT source, source_id, received_at AS last_heard, lat, lng
FROM latest_tracker_states
WHERE received_at < strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 hour')
ORDER BY received_at;";

const SILENT_POSTGRES: &str = "\
SELECT source, source_id, received_at AS last_heard, lat, lng
FROM latest_tracker_states
WHERE received_at < now() - interval '1 hour'
ORDER BY received_at;";

const ACTIVE_SESSIONS: &str = "\
SELECT session_id, user_login, key_current, started_at, expires_at, ip_client
FROM active_security_sessions WHERE source = 'broker' ORDER BY started_at;";

const NEW_IP_SQLITE: &str = "\
SELECT s.session_id, s.user_login, s.ip_client, s.started_at
FROM security_session_changes AS c
JOIN security_sessions AS s ON s.source = c.source AND s.session_id = c.session_id
WHERE c.source = 'broker' AND c.change = 'opened'
  AND c.observed_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 day')
  AND NOT EXISTS (
      SELECT 1 FROM security_sessions AS p
      WHERE p.source = s.source AND p.user_login = s.user_login
        AND p.ip_client = s.ip_client AND p.started_at < s.started_at)
ORDER BY s.started_at;";

const NEW_IP_POSTGRES: &str = "\
SELECT s.session_id, s.user_login, s.ip_client, s.started_at
FROM security_session_changes AS c
JOIN security_sessions AS s ON s.source = c.source AND s.session_id = c.session_id
WHERE c.source = 'broker' AND c.change = 'opened'
  AND c.observed_at >= now() - interval '1 day'
  AND NOT EXISTS (
      SELECT 1 FROM security_sessions AS p
      WHERE p.source = s.source AND p.user_login = s.user_login
        AND p.ip_client = s.ip_client AND p.started_at < s.started_at)
ORDER BY s.started_at;";

const GAPS_SQLITE: &str = "\
SELECT source, cause, from_time AS blind_from, to_time AS blind_until, status,
       trackers_done, trackers_total, points AS recovered_rows, attempts, error
FROM gaps
WHERE from_time >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-7 days')
ORDER BY source, from_time;";

const GAPS_POSTGRES: &str = "\
SELECT source, cause, from_time AS blind_from, to_time AS blind_until, status,
       trackers_done, trackers_total, points AS recovered_rows, attempts, error
FROM gaps
WHERE from_time >= now() - interval '7 days'
ORDER BY source, from_time;";

const BLIND_LIFECYCLE_SQLITE: &str = "\
SELECT source, json_extract(detail, '$.suspended_at') AS blind_from,
       occurred_at AS blind_until, json_extract(detail, '$.initiator') AS initiator
FROM session_events
WHERE source = 'broker' AND event = 'resumed'
  AND occurred_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-7 days')
UNION ALL
SELECT source, occurred_at, NULL, initiator
FROM (SELECT source, event, occurred_at, initiator FROM session_events
      WHERE source = 'broker' AND event IN ('suspended', 'subscribed')
      ORDER BY occurred_at DESC LIMIT 1) AS last
WHERE event = 'suspended'
ORDER BY blind_from;";

const BLIND_LIFECYCLE_POSTGRES: &str = "\
SELECT source, (detail->>'suspended_at')::timestamptz AS blind_from,
       occurred_at AS blind_until, detail->>'initiator' AS initiator
FROM session_events
WHERE source = 'broker' AND event = 'resumed'
  AND occurred_at >= now() - interval '7 days'
UNION ALL
SELECT source, occurred_at, NULL, initiator
FROM (SELECT source, event, occurred_at, initiator FROM session_events
      WHERE source = 'broker' AND event IN ('suspended', 'subscribed')
      ORDER BY occurred_at DESC LIMIT 1) AS last
WHERE event = 'suspended'
ORDER BY blind_from;";

const RECONNECTS_SQLITE: &str = "\
SELECT source, substr(opened_at, 1, 10) AS day, count(*) AS connections_opened
FROM connections
WHERE opened_at >= date('now', '-30 days')
GROUP BY source, day ORDER BY source, day;";

const RECONNECTS_POSTGRES: &str = "\
SELECT source, date_trunc('day', opened_at, 'UTC') AS day, count(*) AS connections_opened
FROM connections
WHERE opened_at >= now() - interval '30 days'
GROUP BY source, day ORDER BY source, day;";

const EVENTS_HOURLY_SQLITE: &str = "\
SELECT kind, hour, n
FROM events_hourly
WHERE source = 'fleet-eu' AND hour >= strftime('%Y-%m-%dT%H:00:00.000000Z', 'now', '-1 day')
ORDER BY hour, kind;";

const EVENTS_HOURLY_POSTGRES: &str = "\
SELECT kind, hour, n
FROM events_hourly
WHERE source = 'fleet-eu' AND hour >= date_trunc('hour', now() - interval '1 day', 'UTC')
ORDER BY hour, kind;";

const RAW_MESSAGE: &str = "\
SELECT e.id, e.kind, e.received_at, e.item_count, e.payload
FROM tracker_states AS s
LEFT JOIN events AS e ON e.id = s.event_id
WHERE s.id = 1000;";

const NOTIFICATIONS_SQLITE: &str = "\
SELECT received_at, method, params FROM notifications
WHERE source = 'engine' AND received_at >= strftime('%Y-%m-%dT%H:%M:%fZ', 'now', '-1 hour')
ORDER BY connection_id, seq;";

const NOTIFICATIONS_POSTGRES: &str = "\
SELECT received_at, method, params FROM notifications
WHERE source = 'engine' AND received_at >= now() - interval '1 hour'
ORDER BY connection_id, seq;";

/// Every question of the cookbook, in README order.
pub const QUESTIONS: [Question; 12] = [
    Question {
        name: "latest position per tracker",
        sqlite: LATEST,
        postgres: LATEST,
    },
    Question {
        name: "one tracker's track for a day",
        sqlite: TRACK_DAY_SQLITE,
        postgres: TRACK_DAY_POSTGRES,
    },
    Question {
        name: "one sensor's readings over a week",
        sqlite: SENSOR_WEEK_SQLITE,
        postgres: SENSOR_WEEK_POSTGRES,
    },
    Question {
        name: "trackers silent for over an hour",
        sqlite: SILENT_SQLITE,
        postgres: SILENT_POSTGRES,
    },
    Question {
        name: "active security sessions with their IPs",
        sqlite: ACTIVE_SESSIONS,
        postgres: ACTIVE_SESSIONS,
    },
    Question {
        name: "sessions opened from an IP new for that user",
        sqlite: NEW_IP_SQLITE,
        postgres: NEW_IP_POSTGRES,
    },
    Question {
        name: "blind periods per source and what was backfilled",
        sqlite: GAPS_SQLITE,
        postgres: GAPS_POSTGRES,
    },
    Question {
        name: "blind periods of a source without backfill",
        sqlite: BLIND_LIFECYCLE_SQLITE,
        postgres: BLIND_LIFECYCLE_POSTGRES,
    },
    Question {
        name: "reconnects per day",
        sqlite: RECONNECTS_SQLITE,
        postgres: RECONNECTS_POSTGRES,
    },
    Question {
        name: "events per kind per hour",
        sqlite: EVENTS_HOURLY_SQLITE,
        postgres: EVENTS_HOURLY_POSTGRES,
    },
    Question {
        name: "the raw message behind a typed row",
        sqlite: RAW_MESSAGE,
        postgres: RAW_MESSAGE,
    },
    Question {
        name: "JSON-RPC notifications of the last hour, in order",
        sqlite: NOTIFICATIONS_SQLITE,
        postgres: NOTIFICATIONS_POSTGRES,
    },
];

/// The tables whose full scan makes a question slow in proportion to history: a
/// cookbook plan must reach them through an index range, never a whole-table walk.
pub const HISTORY_TABLES: [&str; 5] = [
    "tracker_states",
    "tracker_readings",
    "events",
    "traffic",
    "session_events",
];

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    /// The fenced `sql` blocks of README's "SQL cookbook" section.
    fn readme_blocks() -> Vec<String> {
        let readme = include_str!("../../README.md");
        let start = readme
            .find("\n## SQL cookbook\n")
            .expect("README has a SQL cookbook section");
        let section = &readme[start + 1..];
        let end = section[3..].find("\n## ").map_or(section.len(), |i| i + 3);
        let section = &section[..end];
        let mut blocks = Vec::new();
        let mut rest = section;
        while let Some(open) = rest.find("```sql\n") {
            let body = &rest[open + 7..];
            let close = body.find("\n```").expect("every sql block is closed");
            blocks.push(body[..close].to_string());
            rest = &body[close + 4..];
        }
        blocks
    }

    #[test]
    fn readme_holds_exactly_the_cookbook_statements() {
        let readme: BTreeSet<String> = readme_blocks().into_iter().collect();
        let code: BTreeSet<String> = QUESTIONS
            .iter()
            .flat_map(|q| [q.sqlite.to_string(), q.postgres.to_string()])
            .collect();
        for s in &code {
            assert!(
                readme.contains(s),
                "README's SQL cookbook lacks this statement verbatim:\n{s}"
            );
        }
        for s in &readme {
            assert!(
                code.contains(s),
                "README's SQL cookbook has a statement the benchmark does not run:\n{s}"
            );
        }
    }

    #[test]
    fn every_question_is_named_in_the_readme() {
        let readme = include_str!("../../README.md");
        for q in QUESTIONS {
            assert!(
                readme.to_lowercase().contains(&q.name.to_lowercase()),
                "README does not name the question {:?}",
                q.name
            );
        }
    }

    #[test]
    fn statements_are_single_and_terminated() {
        for q in QUESTIONS {
            for s in [q.sqlite, q.postgres] {
                assert!(s.ends_with(';'), "{}: {s}", q.name);
                assert_eq!(s.matches(';').count(), 1, "{}: one statement", q.name);
            }
        }
    }
}
