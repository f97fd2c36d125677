//! Binary `COPY … FROM STDIN` for the three high-volume tables (`events`,
//! `tracker_states`, `tracker_readings`).
//!
//! `COPY` is PostgreSQL's fastest way in: the server inserts rows in bulk instead of
//! planning an `INSERT … SELECT FROM UNNEST(…)` and running the speculative-insert
//! protocol of `ON CONFLICT` for every row. It cannot skip duplicates, though, so it is
//! *optimistic*: the parent module tries it first and, when the server refuses the
//! batch (a duplicate after a reconnect, a value out of range), rolls the transaction
//! back and writes the same batch through the `ON CONFLICT DO NOTHING` statements.
//! [`CopyGate`] stops trying for a while after a refusal, so a source that keeps
//! re-sending what is already stored does not pay for two attempts per batch.
//!
//! The binary format (not text) is used because values then arrive exactly as the
//! `UNNEST` path binds them: timestamps as microseconds since 2000 computed the way
//! sqlx computes them, floats bit for bit, JSON as jsonb's version byte plus text. The
//! two paths therefore store identical rows, which matters because the unique keys
//! hold timestamps: a row written by one path must be a duplicate of the same row
//! written by the other.

use crate::record::{Event, TrackerReading, TrackerState};
use chrono::{DateTime, TimeZone, Utc};

/// Tables with fewer rows than this in a batch go through `UNNEST`: `COPY` costs one
/// extra round trip, which only pays off once there are rows to amortise it.
pub(super) const MIN_ROWS: usize = 16;

/// Batches written through `ON CONFLICT` after `COPY` was refused, before `COPY` is
/// tried again. Duplicates come in bursts (a snapshot re-sent after a reconnect), so
/// a refusal predicts the next few batches; 32 batches is a few seconds at full rate.
const SKIP_AFTER_REFUSAL: u32 = 32;

/// Decides whether the next batch tries `COPY` first. Owned by the writer's
/// PostgreSQL state; how batches went in is counted in `WriterStats::copy`.
#[derive(Debug, Default)]
pub(super) struct CopyGate {
    skip: u32,
}

impl CopyGate {
    /// `true` when `COPY` should be tried for this batch; counts down the skips.
    pub(super) fn open(&mut self) -> bool {
        if self.skip == 0 {
            return true;
        }
        self.skip -= 1;
        false
    }

    /// The server refused a `COPY`: use `ON CONFLICT` for the next batches.
    pub(super) fn refused(&mut self) {
        self.skip = SKIP_AFTER_REFUSAL;
    }
}

/// A value the binary format cannot carry (a text longer than 2 GiB, a time outside
/// PostgreSQL's range); the batch then goes through `UNNEST`, whose encoder or the
/// server reports the value properly.
#[derive(Debug)]
pub(super) struct Unencodable;

/// One `COPY` data stream in PostgreSQL's binary format.
struct CopyBuf {
    buf: Vec<u8>,
}

/// Signature, flags word and header-extension length of the binary format.
const HEADER: &[u8] = b"PGCOPY\n\xff\r\n\0\0\0\0\0\0\0\0\0";

impl CopyBuf {
    fn new(capacity: usize) -> Self {
        let mut buf = Vec::with_capacity(capacity + HEADER.len() + 2);
        buf.extend_from_slice(HEADER);
        CopyBuf { buf }
    }

    fn row(&mut self, fields: i16) {
        self.buf.extend_from_slice(&fields.to_be_bytes());
    }

    fn null(&mut self) {
        self.buf.extend_from_slice(&(-1i32).to_be_bytes());
    }

    fn i64(&mut self, v: i64) {
        self.buf.extend_from_slice(&8i32.to_be_bytes());
        self.buf.extend_from_slice(&v.to_be_bytes());
    }

    fn opt_i64(&mut self, v: Option<i64>) {
        match v {
            Some(v) => self.i64(v),
            None => self.null(),
        }
    }

    fn f64(&mut self, v: Option<f64>) {
        match v {
            Some(v) => {
                self.buf.extend_from_slice(&8i32.to_be_bytes());
                self.buf.extend_from_slice(&v.to_be_bytes());
            }
            None => self.null(),
        }
    }

    fn bytes(&mut self, prefix: Option<u8>, s: &str) -> Result<(), Unencodable> {
        let len = s.len() + usize::from(prefix.is_some());
        let len = i32::try_from(len).map_err(|_| Unencodable)?;
        self.buf.extend_from_slice(&len.to_be_bytes());
        self.buf.extend(prefix);
        self.buf.extend_from_slice(s.as_bytes());
        Ok(())
    }

    fn text(&mut self, s: &str) -> Result<(), Unencodable> {
        self.bytes(None, s)
    }

    fn opt_text(&mut self, s: Option<&str>) -> Result<(), Unencodable> {
        match s {
            Some(s) => self.text(s),
            None => {
                self.null();
                Ok(())
            }
        }
    }

    /// jsonb's binary input: format version 1, then the JSON text (the server parses
    /// and validates it, as it does for the `::jsonb` cast of the `UNNEST` path).
    fn jsonb(&mut self, s: &str) -> Result<(), Unencodable> {
        self.bytes(Some(1), s)
    }

    fn ts(&mut self, t: DateTime<Utc>) -> Result<(), Unencodable> {
        self.i64(pg_micros(t).ok_or(Unencodable)?);
        Ok(())
    }

    fn finish(mut self) -> Vec<u8> {
        self.buf.extend_from_slice(&(-1i16).to_be_bytes());
        self.buf
    }
}

/// Microseconds since 2000-01-01 UTC, truncated toward that epoch: the exact value
/// sqlx binds for a `timestamptz` parameter, so both paths store the same instant.
/// `None` outside PostgreSQL's `timestamptz` range (4713 BC to 294276 AD).
fn pg_micros(t: DateTime<Utc>) -> Option<i64> {
    // Julian day 0 of PostgreSQL, and the first microsecond past its upper bound,
    // both relative to 2000-01-01 (src/include/datatype/timestamp.h).
    const MIN: i64 = -211_813_488_000_000_000;
    const END: i64 = 9_223_371_331_200_000_000;
    let epoch = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).single()?;
    let micros = (t - epoch).num_microseconds()?;
    (MIN..END).contains(&micros).then_some(micros)
}

/// Column list of `events`' `COPY` statement; the order of [`events`]' fields.
pub(super) const EVENTS: &str = "COPY events \
    (id, source, connection_id, received_at, kind, payload, item_count) \
    FROM STDIN (FORMAT binary)";

/// Encodes `rows` for [`EVENTS`].
pub(super) fn events(rows: &[&Event]) -> Result<Vec<u8>, Unencodable> {
    let mut c = CopyBuf::new(rows.iter().map(|r| r.payload.len() + 96).sum());
    for r in rows {
        c.row(7);
        c.i64(r.id);
        c.text(&r.source)?;
        c.opt_i64(r.connection_id);
        c.ts(r.received_at)?;
        c.text(&r.kind)?;
        c.jsonb(&r.payload)?;
        c.opt_i64(r.item_count);
    }
    Ok(c.finish())
}

/// Column list of `tracker_states`' `COPY` statement; the order of [`tracker_states`].
/// The ids are minted from the table's identity sequence in the transaction and
/// written into the stream ([`StatesStream::set_ids`]), so `tracker_latest` can be
/// kept from the batch's own values without looking the rows up again.
pub(super) const TRACKER_STATES: &str = "COPY tracker_states \
    (id, source, source_id, state_time, received_at, lat, lng, speed, heading, \
     connection_status, movement_status, payload, origin, event_id, connection_id) \
    FROM STDIN (FORMAT binary)";

/// `tracker_states`' `COPY` stream and where each row's id goes in it.
pub(super) struct StatesStream {
    data: Vec<u8>,
    /// Offset of each row's 8 id bytes, in row order.
    id_at: Vec<usize>,
}

impl StatesStream {
    /// Rows in the stream (ids it needs).
    pub(super) fn rows(&self) -> usize {
        self.id_at.len()
    }

    /// Writes `ids` (one per row, in row order) into the stream. A retried batch
    /// writes its new ids over the old ones.
    pub(super) fn set_ids(&mut self, ids: &[i64]) {
        for (at, id) in self.id_at.iter().zip(ids) {
            self.data[*at..*at + 8].copy_from_slice(&id.to_be_bytes());
        }
    }

    /// The stream to send.
    pub(super) fn data(&self) -> &[u8] {
        &self.data
    }
}

/// Encodes `rows` for [`TRACKER_STATES`], ids left at zero until [`StatesStream::set_ids`].
pub(super) fn tracker_states(rows: &[&TrackerState]) -> Result<StatesStream, Unencodable> {
    let mut c = CopyBuf::new(rows.iter().map(|r| r.payload.len() + 172).sum());
    let mut id_at = Vec::with_capacity(rows.len());
    for r in rows {
        c.row(15);
        id_at.push(c.buf.len() + 4);
        c.i64(0);
        c.text(&r.source)?;
        c.i64(r.source_id);
        c.ts(r.state_time)?;
        c.ts(r.received_at)?;
        c.f64(r.lat);
        c.f64(r.lng);
        c.f64(r.speed);
        c.f64(r.heading);
        c.opt_text(r.connection_status.as_deref())?;
        c.opt_text(r.movement_status.as_deref())?;
        c.jsonb(&r.payload)?;
        c.text(r.origin.as_str())?;
        c.opt_i64(r.event_id);
        c.opt_i64(r.connection_id);
    }
    Ok(StatesStream {
        data: c.finish(),
        id_at,
    })
}

/// Column list of `tracker_readings`' `COPY` statement; the order of [`tracker_readings`].
pub(super) const TRACKER_READINGS: &str = "COPY tracker_readings \
    (source, tracker_id, reading_kind, name, value, value_num, units, update_time, \
     received_at, payload, origin, event_id, connection_id) \
    FROM STDIN (FORMAT binary)";

/// Encodes `rows` for [`TRACKER_READINGS`].
pub(super) fn tracker_readings(rows: &[&TrackerReading]) -> Result<Vec<u8>, Unencodable> {
    let size = |r: &&TrackerReading| r.payload.len() + r.name.len() + r.value.len() + 160;
    let mut c = CopyBuf::new(rows.iter().map(size).sum());
    for r in rows {
        c.row(13);
        c.text(&r.source)?;
        c.i64(r.tracker_id);
        c.text(&r.reading_kind)?;
        c.text(&r.name)?;
        c.jsonb(&r.value)?;
        c.f64(r.value_num);
        c.opt_text(r.units.as_deref())?;
        c.ts(r.update_time)?;
        c.ts(r.received_at)?;
        c.jsonb(&r.payload)?;
        c.text(r.origin.as_str())?;
        c.opt_i64(r.event_id);
        c.opt_i64(r.connection_id);
    }
    Ok(c.finish())
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Duration;

    #[test]
    fn micros_match_sqlx_on_both_sides_of_2000_and_refuse_out_of_range() {
        let epoch = Utc.with_ymd_and_hms(2000, 1, 1, 0, 0, 0).unwrap();
        assert_eq!(pg_micros(epoch), Some(0));
        let after = epoch + Duration::nanoseconds(1_999);
        assert_eq!(pg_micros(after), Some(1));
        // Before 2000 sqlx truncates toward the epoch, not toward minus infinity.
        let before = epoch - Duration::nanoseconds(1_999);
        assert_eq!(pg_micros(before), Some(-1));
        let t = Utc.with_ymd_and_hms(2026, 11, 23, 19, 21, 39).unwrap();
        assert_eq!(
            pg_micros(t),
            Some((t.timestamp() - 946_684_800) * 1_000_000)
        );
        // chrono ends at year 262 143, inside PostgreSQL's range; it starts long before.
        assert!(pg_micros(DateTime::<Utc>::MAX_UTC).is_some());
        let first = Utc.with_ymd_and_hms(-4713, 11, 24, 0, 0, 0).unwrap();
        assert_eq!(pg_micros(first), Some(-211_813_488_000_000_000));
        assert!(pg_micros(first - Duration::microseconds(1)).is_none());
        assert!(pg_micros(DateTime::<Utc>::MIN_UTC).is_none());
    }

    #[test]
    fn binary_stream_has_header_rows_and_trailer() {
        let mut c = CopyBuf::new(0);
        c.row(3);
        c.i64(7);
        c.opt_text(None).unwrap();
        c.jsonb("{}").unwrap();
        let out = c.finish();
        let mut want = HEADER.to_vec();
        want.extend_from_slice(&[0, 3]);
        want.extend_from_slice(&[0, 0, 0, 8, 0, 0, 0, 0, 0, 0, 0, 7]);
        want.extend_from_slice(&[0xff, 0xff, 0xff, 0xff]);
        want.extend_from_slice(&[0, 0, 0, 3, 1, b'{', b'}']);
        want.extend_from_slice(&[0xff, 0xff]);
        assert_eq!(out, want);
        assert_eq!(HEADER.len(), 19);
    }

    #[test]
    fn state_ids_are_written_into_their_rows() {
        let state = |id| crate::store::derived::sample_state("s", id, 1_795_000_000);
        let (a, b) = (state(1), state(2));
        let mut stream = tracker_states(&[&a, &b]).unwrap();
        assert_eq!(stream.rows(), 2);
        stream.set_ids(&[41, 42]);
        let data = stream.data();
        // Each row starts with its field count (15), then the id as a length-8 field.
        let first = HEADER.len();
        assert_eq!(&data[first..first + 2], &15i16.to_be_bytes());
        assert_eq!(&data[first + 2..first + 6], &8i32.to_be_bytes());
        assert_eq!(&data[first + 6..first + 14], &41i64.to_be_bytes());
        let second = stream.id_at[1];
        assert_eq!(&data[second..second + 8], &42i64.to_be_bytes());
        assert_eq!(&data[second - 6..second - 4], &15i16.to_be_bytes());
    }

    #[test]
    fn gate_skips_after_a_refusal_then_opens_again() {
        let mut gate = CopyGate::default();
        assert!(gate.open());
        gate.refused();
        let skipped = (0..SKIP_AFTER_REFUSAL).filter(|_| !gate.open()).count();
        assert_eq!(skipped, SKIP_AFTER_REFUSAL as usize);
        assert!(gate.open());
    }
}
