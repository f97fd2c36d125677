//! Upstream timestamp parsing shared by every protocol.
//!
//! Upstreams write times with an offset (`2026-03-02T08:15:04+01:00`), in UTC with
//! `Z`, or naive (`2026-03-02 08:15:04`, `2026-03-02T07:55:10.412`) in a zone only the
//! operator knows; the source's configured `timezone` decides. The raw text is never
//! replaced: callers keep it in the row's `payload`.

use chrono::{DateTime, LocalResult, NaiveDateTime, TimeZone, Utc};
use chrono_tz::Tz;

const NAIVE_FORMATS: &[&str] = &[
    "%Y-%m-%d %H:%M:%S%.f",
    "%Y-%m-%dT%H:%M:%S%.f",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%dT%H:%M",
];

/// Parses an upstream timestamp; naive ones are read in `tz`. `None` when the text is
/// not a timestamp (callers then fall back to the receipt time and keep the text).
pub fn parse_timestamp(text: &str, tz: Tz) -> Option<DateTime<Utc>> {
    let t = text.trim();
    if t.is_empty() {
        return None;
    }
    if let Ok(dt) = DateTime::parse_from_rfc3339(t) {
        return Some(dt.with_timezone(&Utc));
    }
    for fmt in [
        "%Y-%m-%d %H:%M:%S%.f%:z",
        "%Y-%m-%d %H:%M:%S%.f%z",
        "%Y-%m-%dT%H:%M:%S%.f%z",
    ] {
        if let Ok(dt) = DateTime::parse_from_str(t, fmt) {
            return Some(dt.with_timezone(&Utc));
        }
    }
    let naive = NAIVE_FORMATS
        .iter()
        .find_map(|f| NaiveDateTime::parse_from_str(t, f).ok())?;
    match tz.from_local_datetime(&naive) {
        LocalResult::Single(dt) => Some(dt.with_timezone(&Utc)),
        // Autumn fold: the earlier instant, as most APIs that drop offsets mean.
        LocalResult::Ambiguous(a, _) => Some(a.with_timezone(&Utc)),
        // Spring gap: the wall time does not exist; read it as if the offset before
        // the gap still applied.
        LocalResult::None => tz
            .from_local_datetime(&(naive - chrono::Duration::hours(1)))
            .earliest()
            .map(|dt| dt.with_timezone(&Utc) + chrono::Duration::hours(1)),
    }
}

/// Parses a JSON value that should hold a timestamp (string, or Unix seconds/millis).
pub fn parse_timestamp_value(v: &serde_json::Value, tz: Tz) -> Option<DateTime<Utc>> {
    match v {
        serde_json::Value::String(s) => parse_timestamp(s, tz),
        serde_json::Value::Number(n) => {
            let x = n.as_f64()?;
            // Heuristic: values past year 2286 in seconds are milliseconds.
            let millis = if x.abs() > 1e10 { x } else { x * 1000.0 };
            DateTime::from_timestamp_millis(millis as i64)
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(s: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
    }

    #[test]
    fn offset_aware_forms() {
        assert_eq!(
            parse_timestamp("2026-03-02T08:15:04+01:00", Tz::UTC),
            Some(utc("2026-03-02T07:15:04Z"))
        );
        assert_eq!(
            parse_timestamp("2026-03-02 08:15:04+0100", Tz::UTC),
            Some(utc("2026-03-02T07:15:04Z"))
        );
        assert_eq!(
            parse_timestamp("2026-03-02T07:15:04Z", chrono_tz::Europe::Vienna),
            Some(utc("2026-03-02T07:15:04Z"))
        );
    }

    #[test]
    fn naive_forms_use_the_source_zone() {
        assert_eq!(
            parse_timestamp("2026-03-02 08:14:40", Tz::UTC),
            Some(utc("2026-03-02T08:14:40Z"))
        );
        assert_eq!(
            parse_timestamp("2026-03-02 08:14:40", chrono_tz::Europe::Vienna),
            Some(utc("2026-03-02T07:14:40Z"))
        );
        assert_eq!(
            parse_timestamp("2026-03-02T07:55:10.412", Tz::UTC),
            Some(utc("2026-03-02T07:55:10.412Z"))
        );
    }

    #[test]
    fn dst_gap_and_fold_do_not_fail() {
        let tz = chrono_tz::Europe::Vienna;
        assert!(parse_timestamp("2026-03-29 02:30:00", tz).is_some());
        assert_eq!(
            parse_timestamp("2026-10-25 02:30:00", tz),
            Some(utc("2026-10-25T00:30:00Z"))
        );
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(parse_timestamp("yesterday", Tz::UTC), None);
        assert_eq!(parse_timestamp("", Tz::UTC), None);
    }
}
