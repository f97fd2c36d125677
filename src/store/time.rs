//! The one timestamp text format of the SQLite backend.
//!
//! SQLite has no timestamp type, so every time column holds UTC text in the fixed
//! shape `YYYY-MM-DDTHH:MM:SS.ffffffZ`: always six fractional digits, so comparing the
//! text compares the instants (range queries and indexes work on the text) and SQLite's
//! date functions accept it. Everything that writes or reads a SQLite time goes through
//! [`format_ts`] and [`parse_ts`]; nothing else may format timestamps for storage.
//! PostgreSQL stores `timestamptz` natively. [`DbTime`] reads a time column from
//! either backend (text through [`parse_ts`] on SQLite, `timestamptz` on
//! PostgreSQL), so a `FromRow` type is written once for both.

use chrono::{DateTime, Datelike, NaiveDateTime, SecondsFormat, Timelike, Utc};
use sqlx::error::BoxDynError;
use sqlx::postgres::{PgTypeInfo, PgValueRef, Postgres};
use sqlx::sqlite::{Sqlite, SqliteTypeInfo, SqliteValueRef};
use sqlx::{Decode, Type, ValueRef};

/// A stored time text that is not in the storage format (or not a time at all).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("stored timestamp {text:?} is not in the format YYYY-MM-DDTHH:MM:SS.ffffffZ")]
pub struct TimestampError {
    /// The offending text, so the row can be found and fixed.
    pub text: String,
}

/// Formats `t` as `YYYY-MM-DDTHH:MM:SS.ffffffZ` (microsecond precision, truncated).
///
/// Years outside 0..=9999 cannot keep the fixed width; they fall back to RFC 3339
/// with microseconds, which still parses back but no longer sorts as text.
pub fn format_ts(t: &DateTime<Utc>) -> String {
    let year = t.year();
    if !(0..=9999).contains(&year) {
        return t.to_rfc3339_opts(SecondsFormat::Micros, true);
    }
    // A leap second is represented as nanosecond >= 1e9; keep the fixed width.
    let micros = (t.nanosecond() / 1_000).min(999_999);
    let mut out = String::with_capacity(27);
    push_digits(&mut out, year as u32, 4);
    out.push('-');
    push_digits(&mut out, t.month(), 2);
    out.push('-');
    push_digits(&mut out, t.day(), 2);
    out.push('T');
    push_digits(&mut out, t.hour(), 2);
    out.push(':');
    push_digits(&mut out, t.minute(), 2);
    out.push(':');
    push_digits(&mut out, t.second(), 2);
    out.push('.');
    push_digits(&mut out, micros, 6);
    out.push('Z');
    out
}

fn push_digits(out: &mut String, value: u32, width: u32) {
    let mut div = 10u32.pow(width - 1);
    while div > 0 {
        let digit = (value / div) % 10;
        out.push(char::from(b'0' + digit as u8));
        div /= 10;
    }
}

/// Parses a stored time text back into a UTC instant.
///
/// Accepts the storage format and, for rows written by hand or by other tools, any
/// RFC 3339 text with an offset (converted to UTC).
pub fn parse_ts(text: &str) -> Result<DateTime<Utc>, TimestampError> {
    if let Ok(naive) = NaiveDateTime::parse_from_str(text, "%Y-%m-%dT%H:%M:%S%.fZ") {
        return Ok(naive.and_utc());
    }
    DateTime::parse_from_rfc3339(text)
        .map(|t| t.with_timezone(&Utc))
        .map_err(|_| TimestampError {
            text: text.to_string(),
        })
}

/// A time column as either backend stores it, `None` for SQL `NULL`. Used in
/// `FromRow` types as `#[sqlx(try_from = "DbTime")]` on a `DateTime<Utc>` (a `NULL`
/// is then an error) or an `Option<DateTime<Utc>>` field.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DbTime(pub Option<DateTime<Utc>>);

/// A `NULL` where a time was required.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unexpected NULL in a time column")]
pub struct NullTime;

impl TryFrom<DbTime> for DateTime<Utc> {
    type Error = NullTime;

    fn try_from(t: DbTime) -> Result<Self, NullTime> {
        t.0.ok_or(NullTime)
    }
}

impl From<DbTime> for Option<DateTime<Utc>> {
    fn from(t: DbTime) -> Self {
        t.0
    }
}

impl Type<Sqlite> for DbTime {
    fn type_info() -> SqliteTypeInfo {
        <String as Type<Sqlite>>::type_info()
    }

    fn compatible(ty: &SqliteTypeInfo) -> bool {
        <String as Type<Sqlite>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Sqlite> for DbTime {
    fn decode(value: SqliteValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.is_null() {
            return Ok(DbTime(None));
        }
        let text = <&str as Decode<Sqlite>>::decode(value)?;
        Ok(DbTime(Some(parse_ts(text)?)))
    }
}

impl Type<Postgres> for DbTime {
    fn type_info() -> PgTypeInfo {
        <DateTime<Utc> as Type<Postgres>>::type_info()
    }

    fn compatible(ty: &PgTypeInfo) -> bool {
        <DateTime<Utc> as Type<Postgres>>::compatible(ty)
    }
}

impl<'r> Decode<'r, Postgres> for DbTime {
    fn decode(value: PgValueRef<'r>) -> Result<Self, BoxDynError> {
        if value.is_null() {
            return Ok(DbTime(None));
        }
        Ok(DbTime(Some(<DateTime<Utc> as Decode<Postgres>>::decode(
            value,
        )?)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone;

    #[test]
    fn fixed_width_round_trip_with_microseconds() {
        let t =
            Utc.with_ymd_and_hms(2024, 3, 5, 7, 8, 9).unwrap() + chrono::Duration::microseconds(42);
        let text = format_ts(&t);
        assert_eq!(text, "2024-03-05T07:08:09.000042Z");
        assert_eq!(parse_ts(&text).unwrap(), t);
    }

    #[test]
    fn nanoseconds_are_truncated_to_microseconds() {
        let t = Utc.timestamp_opt(1_700_000_000, 123_456_789).unwrap();
        assert_eq!(format_ts(&t), "2023-11-14T22:13:20.123456Z");
    }

    #[test]
    fn text_order_is_time_order() {
        let a = Utc.timestamp_opt(1_700_000_000, 999_999_000).unwrap();
        let b = Utc.timestamp_opt(1_700_000_001, 0).unwrap();
        assert!(format_ts(&a) < format_ts(&b));
    }

    #[test]
    fn offsets_are_accepted_and_garbage_refused() {
        let t = parse_ts("2024-01-01T02:00:00+02:00").unwrap();
        assert_eq!(format_ts(&t), "2024-01-01T00:00:00.000000Z");
        assert!(parse_ts("yesterday").is_err());
    }
}
