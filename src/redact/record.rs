//! Masks secrets in every text field of a [`Record`].
//!
//! Every field is named in the patterns below, none skipped with `..`: a field added
//! to a record type fails to compile here until someone decides how it is masked,
//! so no column can silently escape redaction. A field is copied only when it
//! holds a secret.

use super::Matcher;
use crate::record::*;
use std::borrow::Cow;
use std::sync::Arc;

fn s(m: &Matcher, field: &mut String) {
    if let Cow::Owned(masked) = m.redact(field) {
        *field = masked;
    }
}

fn o(m: &Matcher, field: &mut Option<String>) {
    if let Some(f) = field {
        s(m, f);
    }
}

fn src(m: &Matcher, field: &mut SourceName) {
    if let Cow::Owned(masked) = m.redact(field) {
        *field = Arc::from(masked);
    }
}

/// Masks every secret `m` knows in every text field of `r`.
pub fn redact_record(m: &Matcher, r: &mut Record) {
    match r {
        Record::Connection(Connection {
            id: _,
            source,
            url,
            opened_at: _,
            closed_at: _,
            close_code: _,
            close_reason,
        }) => {
            src(m, source);
            s(m, url);
            o(m, close_reason);
        }
        Record::SessionEvent(SessionEvent {
            id: _,
            source,
            connection_id: _,
            occurred_at: _,
            event,
            initiator,
            code: _,
            reason,
            detail,
        }) => {
            src(m, source);
            s(m, event);
            o(m, initiator);
            o(m, reason);
            o(m, detail);
        }
        Record::Event(Event {
            id: _,
            source,
            connection_id: _,
            received_at: _,
            kind,
            payload,
            item_count: _,
        }) => {
            src(m, source);
            s(m, kind);
            s(m, payload);
        }
        Record::TrackerState(TrackerState {
            source,
            source_id: _,
            state_time: _,
            received_at: _,
            lat: _,
            lng: _,
            speed: _,
            heading: _,
            connection_status,
            movement_status,
            payload,
            origin: _,
            event_id: _,
            connection_id: _,
        }) => {
            src(m, source);
            o(m, connection_status);
            o(m, movement_status);
            s(m, payload);
        }
        Record::TrackerReading(TrackerReading {
            source,
            tracker_id: _,
            reading_kind,
            name,
            value,
            value_num: _,
            units,
            update_time: _,
            received_at: _,
            payload,
            origin: _,
            event_id: _,
            connection_id: _,
        }) => {
            src(m, source);
            s(m, reading_kind);
            s(m, name);
            s(m, value);
            o(m, units);
            s(m, payload);
        }
        Record::TrackerLifecycle(TrackerLifecycle {
            id: _,
            source,
            source_id: _,
            lifecycle_event,
            received_at: _,
            event_id: _,
            connection_id: _,
        }) => {
            src(m, source);
            s(m, lifecycle_event);
        }
        Record::SecuritySession(SecuritySession {
            source,
            session_id: _,
            owner_login,
            user_login,
            safety_type_id: _,
            key_current,
            started_at: _,
            expires_at: _,
            ip,
            ip_client,
            first_seen_at: _,
            last_seen_at: _,
            ended_at: _,
            payload,
        }) => {
            src(m, source);
            o(m, owner_login);
            o(m, user_login);
            o(m, key_current);
            o(m, ip);
            o(m, ip_client);
            s(m, payload);
        }
        Record::SecuritySessionChange(SecuritySessionChange {
            source,
            session_id: _,
            change,
            observed_at: _,
            event_id: _,
            connection_id: _,
        }) => {
            src(m, source);
            s(m, change);
        }
        Record::Notification(Notification {
            id: _,
            source,
            connection_id: _,
            seq: _,
            received_at: _,
            method,
            params,
        }) => {
            src(m, source);
            s(m, method);
            s(m, params);
        }
        Record::Traffic(Traffic {
            id: _,
            source,
            connection_id: _,
            at: _,
            direction,
            payload,
        }) => {
            src(m, source);
            s(m, direction);
            s(m, payload);
        }
        Record::Rejected(Rejected {
            id: _,
            source,
            kind,
            received_at: _,
            error,
            payload,
        }) => {
            src(m, source);
            s(m, kind);
            s(m, error);
            s(m, payload);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::Utc;

    #[test]
    fn every_text_field_is_masked_and_clean_records_are_untouched() {
        const H: &str = "feedfacefeedface";
        let m = Matcher::new([H]);
        let mut ev = Record::SessionEvent(SessionEvent {
            id: 1,
            source: "s".into(),
            connection_id: None,
            occurred_at: Utc::now(),
            event: "subscribe_error".into(),
            initiator: None,
            code: Some(3),
            reason: Some(format!("bad hash {H}")),
            detail: Some(format!(r#"{{"said":"{H}"}}"#)),
        });
        redact_record(&m, &mut ev);
        let text = format!("{ev:?}");
        assert!(!text.contains(H) && text.contains("bad hash ***"), "{text}");

        let clean = Record::Traffic(Traffic {
            id: 2,
            source: "s".into(),
            connection_id: None,
            at: Utc::now(),
            direction: SENT.into(),
            payload: "X".into(),
        });
        let mut same = clean.clone();
        redact_record(&m, &mut same);
        assert_eq!(same, clean);
    }
}
