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
    match parse_common(t) {
        Some(Common::Instant(dt)) => Some(dt),
        Some(Common::Naive(naive)) => in_zone(naive, tz),
        None => parse_general(t, tz),
    }
}

/// Every accepted shape through chrono's formats; [`parse_common`] is the quick
/// path in front of it. `t` is trimmed and not empty.
fn parse_general(t: &str, tz: Tz) -> Option<DateTime<Utc>> {
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
    in_zone(naive, tz)
}

/// A naive wall time read in `tz`.
fn in_zone(naive: NaiveDateTime, tz: Tz) -> Option<DateTime<Utc>> {
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

/// What [`parse_common`] read.
enum Common {
    Instant(DateTime<Utc>),
    Naive(NaiveDateTime),
}

/// The shapes nearly every upstream timestamp has, read without chrono's format
/// machinery (which re-parses its format string on every call and was the largest
/// single cost of decoding a tracker state): `YYYY-MM-DD`, `T` or a space,
/// `HH:MM:SS`, an optional fraction of 1 to 9 digits, and optionally `Z`, `±HH:MM`
/// or `±HHMM`. Anything else (and any out-of-range field) is `None`, and
/// [`parse_timestamp`] falls back to the general formats, so this only ever returns
/// what they would.
fn parse_common(t: &str) -> Option<Common> {
    let b = t.as_bytes();
    if b.len() < 19 || b[4] != b'-' || b[7] != b'-' || !matches!(b[10], b'T' | b' ') {
        return None;
    }
    if b[13] != b':' || b[16] != b':' {
        return None;
    }
    let year = digits(&b[0..4])?;
    let date = chrono::NaiveDate::from_ymd_opt(year as i32, digits(&b[5..7])?, digits(&b[8..10])?)?;
    let mut rest = &b[19..];
    let mut nanos = 0;
    if let Some((&b'.', frac)) = rest.split_first() {
        let n = frac.iter().take_while(|c| c.is_ascii_digit()).count();
        if !(1..=9).contains(&n) {
            return None;
        }
        nanos = digits(&frac[..n])? * 10u32.pow(9 - n as u32);
        rest = &frac[n..];
    }
    let time = chrono::NaiveTime::from_hms_nano_opt(
        digits(&b[11..13])?,
        digits(&b[14..16])?,
        digits(&b[17..19])?,
        nanos,
    )?;
    let naive = NaiveDateTime::new(date, time);
    let offset_secs = match rest {
        [] => return Some(Common::Naive(naive)),
        [b'Z'] => 0,
        [sign @ (b'+' | b'-'), h1, h2, b':', m1, m2] | [sign @ (b'+' | b'-'), h1, h2, m1, m2] => {
            let hours = digits(&[*h1, *h2])?;
            let minutes = digits(&[*m1, *m2])?;
            if hours > 23 || minutes > 59 {
                return None;
            }
            let secs = (hours * 3600 + minutes * 60) as i32;
            if *sign == b'-' { -secs } else { secs }
        }
        _ => return None,
    };
    let offset = chrono::FixedOffset::east_opt(offset_secs)?;
    offset
        .from_local_datetime(&naive)
        .single()
        .map(|dt| Common::Instant(dt.with_timezone(&Utc)))
}

/// The decimal value of an all-digit byte string (at most 9 digits).
fn digits(b: &[u8]) -> Option<u32> {
    if b.is_empty() || b.len() > 9 {
        return None;
    }
    b.iter().try_fold(0u32, |acc, c| {
        c.is_ascii_digit().then(|| acc * 10 + u32::from(c - b'0'))
    })
}

/// Parses a JSON value that should hold a timestamp (string, or Unix seconds/millis).
pub fn parse_timestamp_value(v: &serde_json::Value, tz: Tz) -> Option<DateTime<Utc>> {
    match v {
        serde_json::Value::String(s) => parse_timestamp(s, tz),
        serde_json::Value::Number(n) => from_unix_number(n.as_f64()?),
        _ => None,
    }
}

/// A Unix time sent as a number: seconds, or milliseconds for values past year 2286
/// in seconds.
pub fn from_unix_number(x: f64) -> Option<DateTime<Utc>> {
    let millis = if x.abs() > 1e10 { x } else { x * 1000.0 };
    DateTime::from_timestamp_millis(millis as i64)
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

    fn general(text: &str, tz: Tz) -> Option<DateTime<Utc>> {
        parse_general(text.trim(), tz)
    }

    #[test]
    fn the_quick_path_agrees_with_the_general_formats() {
        let samples = [
            "2026-03-02 08:14:40",
            "2026-03-02T08:14:40",
            "2026-03-02T07:55:10.412",
            "2026-03-02 07:55:10.123456789",
            "2026-03-02T08:15:04Z",
            "2026-03-02T08:15:04.5Z",
            "2026-03-02T08:15:04+01:00",
            "2026-03-02 08:15:04-05:30",
            "2026-03-02 08:15:04+0100",
            "2026-03-02T08:15:04-0930",
            "2026-03-29 02:30:00",
            "2026-10-25 02:30:00",
            "2024-02-29 12:00:00",
            // Not in the quick shapes: the general formats decide.
            "2026-02-30 12:00:00",
            "2026-03-02 24:00:00",
            "2026-03-02 23:59:60",
            "2026-03-02T08:15:04z",
            "2026-03-02T08:15:04+01",
            "2026-03-02 08:15",
            "2026-3-2 08:15:04",
            "2026-03-02 08:15:04.",
            "2026-03-02 08:15:04.1234567890",
            "2026-03-02 08:15:04 +01:00",
            "20260302T081504",
        ];
        for tz in [
            Tz::UTC,
            chrono_tz::Europe::Vienna,
            chrono_tz::America::St_Johns,
        ] {
            for s in samples {
                assert_eq!(parse_timestamp(s, tz), general(s, tz), "{s} in {tz}");
                if let Some(Common::Instant(dt)) = parse_common(s) {
                    assert_eq!(Some(dt), general(s, tz), "quick path of {s}");
                }
            }
        }
        assert!(parse_common("2026-03-02 08:14:40").is_some());
        assert!(parse_common("2026-03-02T08:15:04+01:00").is_some());
    }

    #[test]
    fn garbage_is_none() {
        assert_eq!(parse_timestamp("yesterday", Tz::UTC), None);
        assert_eq!(parse_timestamp("", Tz::UTC), None);
    }
}
