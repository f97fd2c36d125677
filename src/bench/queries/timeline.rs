//! The benchmark's synthetic history, as pure functions of a [`Shape`]: which
//! tracker reports when, which security session opens and ends when, when each
//! source drops and resumes. Everything is derived from indexes through a fixed
//! hash, so a run with the same `--rows` writes the same history (only the times
//! move with the clock) and nothing needs to be held in memory beyond the
//! sparse-event schedule.

use chrono::{DateTime, Duration, Utc};

/// Navixy sources; trackers are split between them.
pub const FLEETS: [&str; 2] = ["fleet-eu", "fleet-us"];
/// The Tradernet source (security sessions).
pub const BROKER: &str = "broker";
/// The JSON-RPC source (notifications).
pub const ENGINE: &str = "engine";
/// Every source, in the order of [`Shape::conn_index`].
pub const SOURCES: [&str; 4] = [FLEETS[0], FLEETS[1], BROKER, ENGINE];

/// Largest fleet the fill generates (the issue's 2 000 trackers).
pub const MAX_TRACKERS: u64 = 2_000;
/// How far back the history reaches: a week, so "a sensor's week" spans it all.
pub const SPAN_DAYS: i64 = 7;
/// Tracker states per message (one `events` row each, envelope kept).
pub const STATES_PER_MESSAGE: usize = 6;
/// Readings per message.
pub const READINGS_PER_MESSAGE: usize = 15;
/// One tracker in this many stops reporting [`SILENT_FOR`] before the end.
pub const SILENT_EVERY: u64 = 50;
/// How long the silent trackers have been silent at the end of the history.
pub const SILENT_FOR: Duration = Duration::hours(3);
/// Every source drops and resumes this often.
pub const RECONNECT_EVERY: Duration = Duration::hours(2);

/// splitmix64: a fixed, well-mixed hash of an index, for deterministic variety.
pub fn mix(a: u64, b: u64) -> u64 {
    let mut z = a
        .wrapping_mul(0x9E37_79B9_7F4A_7C15)
        .wrapping_add(b.wrapping_mul(0xBF58_476D_1CE4_E5B9))
        .wrapping_add(0x94D0_49BB_1331_11EB);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// `span × j / n`, in microseconds so no step can overflow or panic.
fn part(span: Duration, j: u64, n: u64) -> Duration {
    let us = i128::from(span.num_microseconds().unwrap_or(0));
    let v = us * i128::from(j) / i128::from(n.max(1));
    Duration::microseconds(i64::try_from(v).unwrap_or(i64::MAX))
}

/// Sizes and times of one fill.
#[derive(Debug, Clone, Copy)]
pub struct Shape {
    /// Trackers (half per fleet source).
    pub trackers: u64,
    /// Reporting rounds; every tracker reports once per round.
    pub ticks: u64,
    /// First round.
    pub start: DateTime<Utc>,
    /// End of the history (the clock when the fill began).
    pub end: DateTime<Utc>,
    /// Security sessions opened over the span (one per 1 000 states).
    pub sessions: u64,
    /// JSON-RPC notifications over the span (one per 100 states).
    pub notifications: u64,
}

impl Shape {
    /// The history for about `rows` tracker states, ending at `end`.
    pub fn new(rows: u64, end: DateTime<Utc>) -> Shape {
        let trackers = (rows / 5).clamp(1, MAX_TRACKERS);
        Shape {
            trackers,
            ticks: (rows / trackers).max(1),
            start: end - Duration::days(SPAN_DAYS),
            end,
            sessions: (rows / 1_000).max(1),
            notifications: (rows / 100).max(1),
        }
    }

    /// Time between two rounds.
    pub fn tick(&self) -> Duration {
        part(self.end - self.start, 1, self.ticks)
    }

    /// When round `k` starts.
    pub fn tick_time(&self, k: u64) -> DateTime<Utc> {
        self.start + part(self.end - self.start, k, self.ticks)
    }

    /// Tracker `i`'s position inside a round, so reports spread over it.
    pub fn offset(&self, i: u64) -> Duration {
        part(self.tick(), i, self.trackers)
    }

    /// Which fleet source tracker `i` belongs to (0 or 1).
    pub fn fleet(&self, i: u64) -> usize {
        usize::from(i >= self.trackers.div_ceil(2))
    }

    /// Whether tracker `i` reports in round `k` (silent trackers stop early).
    pub fn reports(&self, i: u64, k: u64) -> bool {
        if k == 0 || i % SILENT_EVERY != SILENT_EVERY - 1 {
            return true;
        }
        self.tick_time(k) + SILENT_FOR < self.end
    }

    /// The sparse events (sessions, notifications, drops and resumes), sorted by time.
    pub fn schedule(&self) -> Vec<(DateTime<Utc>, Sparse)> {
        let span = self.end - self.start;
        let mut out = Vec::new();
        for j in 0..self.sessions {
            let s = self.session(j);
            out.push((s.opened, Sparse::SessionOpen(j)));
            if let Some(e) = s.ended {
                out.push((e, Sparse::SessionEnd(j)));
            }
        }
        let n = self.notifications;
        for j in 0..n {
            let at = self.start + part(span, j, n);
            out.push((at, Sparse::Notification(j)));
        }
        for (src, _) in SOURCES.iter().enumerate() {
            let mut at = self.start + Duration::hours(1) + Duration::minutes(17 * src as i64);
            let mut nth = 0;
            while at < self.end {
                let back = self.backoff(src, nth);
                out.push((at, Sparse::Drop(src)));
                out.push((at + back, Sparse::Resume { src, dropped: at }));
                at += RECONNECT_EVERY;
                nth += 1;
            }
        }
        out.sort_by_key(|(t, _)| *t);
        out
    }

    /// How long source `src` stays down after its `nth` drop (5–60 s).
    pub fn backoff(&self, src: usize, nth: u64) -> Duration {
        Duration::seconds(5 + (mix(src as u64, nth) % 56) as i64)
    }

    /// Security session `j`.
    pub fn session(&self, j: u64) -> SessionSpec {
        let span = self.end - self.start;
        let jitter = part(span, 1, self.sessions).num_seconds().max(1) as u64;
        let opened = self.start
            + part(span, j, self.sessions)
            + Duration::seconds((mix(j, 1) % jitter) as i64);
        let lasts = Duration::minutes(60 + (mix(j, 2) % 420) as i64);
        let users = (self.sessions / 20).max(1);
        let user = mix(j, 3) % users;
        let ip = if mix(j, 4) % 100 < 3 {
            format!("198.{}.{}.{}", (j >> 16) & 255, (j >> 8) & 255, j & 255)
        } else {
            format!(
                "10.{}.{}.{}",
                (user >> 8) & 255,
                user & 255,
                1 + mix(j, 5) % 3
            )
        };
        SessionSpec {
            session_id: 7_000_000 + j as i64,
            user: format!("user{user}"),
            ip,
            opened,
            ended: Some(opened + lasts).filter(|e| *e < self.end),
        }
    }
}

/// One event of the sparse schedule.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sparse {
    /// Security session `j` opens.
    SessionOpen(u64),
    /// Security session `j` ends.
    SessionEnd(u64),
    /// JSON-RPC notification `j`.
    Notification(u64),
    /// Source `SOURCES[i]` drops its connection.
    Drop(usize),
    /// The source reconnects and resubscribes after the drop at `dropped`.
    Resume { src: usize, dropped: DateTime<Utc> },
}

/// What the fill knows about one security session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSpec {
    pub session_id: i64,
    pub user: String,
    pub ip: String,
    pub opened: DateTime<Utc>,
    /// `None` while it is still active at the end of the history.
    pub ended: Option<DateTime<Utc>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_follows_the_issue_proportions() {
        let end = Utc::now();
        let s = Shape::new(10_000_000, end);
        assert_eq!((s.trackers, s.ticks), (2_000, 5_000));
        assert_eq!((s.sessions, s.notifications), (10_000, 100_000));
        let small = Shape::new(2_000, end);
        assert_eq!((small.trackers, small.ticks), (400, 5));
        // The cookbook's tracker 90017 / sensor 501 are in fleet-eu at any size.
        assert_eq!(small.fleet(17), 0);
        assert_eq!(small.fleet(1), 0);
    }

    #[test]
    fn schedule_is_sorted_and_inside_the_span() {
        let s = Shape::new(1_000_000, Utc::now());
        let plan = s.schedule();
        assert!(plan.windows(2).all(|w| w[0].0 <= w[1].0));
        assert!(plan.iter().all(|(t, _)| *t >= s.start));
        let drops = plan
            .iter()
            .filter(|(_, e)| matches!(e, Sparse::Drop(_)))
            .count();
        // Every source drops every two hours over a week.
        assert!((4 * 80..=4 * 84).contains(&drops), "{drops}");
        let active = (0..s.sessions)
            .filter(|j| s.session(*j).ended.is_none())
            .count();
        // Sessions last 1–8 h, one opens every 10 min: a few dozen are still open.
        assert!((5..100).contains(&active), "{active}");
    }

    #[test]
    fn silent_trackers_stop_reporting_hours_before_the_end() {
        let s = Shape::new(1_000_000, Utc::now());
        let silent = SILENT_EVERY - 1;
        assert!(s.reports(silent, 0));
        assert!(!s.reports(silent, s.ticks - 1));
        assert!(s.reports(0, s.ticks - 1));
    }
}
