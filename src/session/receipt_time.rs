//! Upstream times that could not be read and were replaced by the receive time.
//!
//! The decoders keep a state or reading whose upstream time is missing or
//! unreadable, stamped with the time it was received (losing the row would be
//! worse), and keep the upstream text in its `payload`. That substitution must not
//! be silent: a clock-less device or a server sending a new format would otherwise
//! look like perfectly timed data. Each such record is counted in
//! `wsvault_invalid_timestamps_total{source}`, and the first one of a source is
//! logged (once per source for the life of the process, so a broken device does not
//! flood the log).
//!
//! The decoders stamp such records with exactly the same instant as `received_at`
//! (`Ctx::now`, nanosecond resolution); an upstream time equal to it to the
//! nanosecond does not occur, so the equality identifies the substitution.

use crate::record::Record;

/// Whether `r` carries the receive time in place of an upstream time it should
/// have had (see the module docs).
pub(super) fn stamped_on_receipt(r: &Record) -> bool {
    match r {
        Record::TrackerState(s) => s.state_time == s.received_at,
        Record::TrackerReading(r) => r.update_time == r.received_at,
        _ => false,
    }
}

/// Per-source bookkeeping: counts every substitution, asks for a warning once.
#[derive(Debug, Default)]
pub(super) struct ReceiptTimes {
    warned: bool,
}

impl ReceiptTimes {
    /// Counts `r` when it was stamped on receipt, with a warning the first time for
    /// this source (one telemetry event does both); returns whether it warned.
    pub(super) fn note(&mut self, source: &crate::record::SourceName, r: &Record) -> bool {
        if !stamped_on_receipt(r) {
            return false;
        }
        let first = !std::mem::replace(&mut self.warned, true);
        crate::telemetry::emit(crate::telemetry::events::InvalidTimestamp {
            source,
            kind: r.kind(),
            warn: first,
        });
        first
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{NavixyAuth, NavixyConfig, RawEvents, Secret, SourceConfig, SourceKind};
    use crate::protocol::navixy::NavixyProtocol;
    use crate::protocol::{CommonOptions, Ctx, Output, Protocol};
    use chrono::Utc;
    use std::sync::Arc;
    use std::time::Instant;

    fn navixy() -> NavixyProtocol {
        let cfg = NavixyConfig {
            subscriptions: Vec::new(),
            ..crate::protocol::navixy::tests::navixy_cfg(
                NavixyAuth::ApiKeyHash(Secret::new("0123456789abcdef0123456789abcdef")),
                false,
            )
        };
        let source = SourceConfig {
            name: "fleet".into(),
            url: url::Url::parse("wss://h/v2/event/subscription").unwrap(),
            timezone: chrono_tz::UTC,
            traffic: false,
            only_if_attached: false,
            ca_file: None,
            timing: crate::config::DEFAULT_TIMING,
            kind: SourceKind::Navixy(cfg.clone()),
        };
        let opts = CommonOptions {
            raw_events: RawEvents::Envelope,
            timezone: chrono_tz::UTC,
        };
        NavixyProtocol::new(&source, &cfg, opts)
    }

    /// The records the real decoders make of `frames` after a handshake.
    fn records(frames: &[&str]) -> Vec<Record> {
        let mut p = navixy();
        let ctx = || Ctx {
            source: Arc::from("fleet"),
            connection_id: 1,
            now: Utc::now(),
            mono: Instant::now(),
        };
        p.on_open(&ctx());
        p.on_text(&ctx(), "7f0c2a9e-1b44-4c1e-9d6a-2f3b8c0d5e11|30000|X|");
        frames
            .iter()
            .flat_map(|f| p.on_text(&ctx(), f))
            .filter_map(|o| match o {
                Output::Record(r) => Some(r),
                _ => None,
            })
            .collect()
    }

    fn state(last_update: &str) -> String {
        format!(
            r#"{{"type":"event","event":"state","data":{{"source_id":9,"last_update":{last_update},"gps":{{"location":{{"lat":1.0,"lng":2.0}}}}}}}}"#
        )
    }

    #[test]
    fn unreadable_times_are_counted_and_warned_once_per_source() {
        // Quick path (state events) and slow path (a batch with an unknown member).
        let bad = [
            state("\"yesterday-ish\""),
            state("\"2026-13-45 99:99:99\""),
            state("null"),
            r#"{"type":"event","event":"state_batch","data":[{"source_id":9,"last_update":"soon","x":{"y":[1]}}],"unknown_top":1}"#.to_string(),
        ];
        let good = [
            state("\"2026-03-02 08:14:40\""),
            state("\"2026-03-02T08:14:40+01:00\""),
        ];
        let bad: Vec<&str> = bad.iter().map(String::as_str).collect();
        let good: Vec<&str> = good.iter().map(String::as_str).collect();
        let bad_records = records(&bad);
        let good_records = records(&good);
        let states = |rs: &[Record]| {
            rs.iter()
                .filter(|r| matches!(r, Record::TrackerState(_)))
                .count()
        };
        assert_eq!(states(&bad_records), 4, "{bad_records:?}");
        assert_eq!(states(&good_records), 2);

        let source: crate::record::SourceName = "fleet".into();
        let mut times = ReceiptTimes::default();
        let warnings: Vec<bool> = bad_records
            .iter()
            .filter(|r| stamped_on_receipt(r))
            .map(|r| times.note(&source, r))
            .collect();
        assert_eq!(warnings, [true, false, false, false]);
        assert!(!good_records.iter().any(stamped_on_receipt));
        // Another source warns on its own first one.
        let first = bad_records.iter().find(|r| stamped_on_receipt(r)).unwrap();
        assert!(ReceiptTimes::default().note(&source, first));
    }
}
