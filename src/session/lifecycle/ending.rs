//! How an open connection ends, and the two rows each ending writes.

use super::{
    Cause, Command, Conn, Delay, Effect, EventName, EventRow, Initiator, Lifecycle, Now, Phase,
    Row, State,
};
use chrono::{DateTime, Utc};
use std::time::Duration;
use std::time::Instant;

/// The close code of a connection that ended without a close frame (RFC 6455
/// §7.1.5): recorded for drops so `close_code` is never empty after a close.
const ABNORMAL_CLOSURE: i64 = 1006;
/// The close code of a close frame that carried no status (RFC 6455 §7.1.5).
const NO_STATUS: i64 = 1005;
/// Why the operator's suspension closed the socket; also the wire reason.
const SUSPENDED_BY_OPERATOR: &str = "suspended by operator";
/// Why a handover closed the socket; also the wire reason.
const HANDED_OVER: &str = "lease handed over";

/// Why an open connection ends.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum End {
    Stop,
    Suspend,
    Handover,
    CredentialDead {
        reason: String,
    },
    /// Lost; `code` as recorded (the server's, or 1005/1006).
    Network {
        code: i64,
        reason: String,
    },
}

impl End {
    /// The server closed; `code` is `None` for a close frame without status. A
    /// server close with 1000 is a network drop too: the daemon's job is to stay
    /// subscribed.
    pub(super) fn server_closed(code: Option<u16>, reason: &str) -> End {
        let suffix = if reason.is_empty() {
            String::new()
        } else {
            format!(": {reason}")
        };
        let (code, reason) = match code {
            None => (NO_STATUS, "server closed without a status code".into()),
            Some(1000) => (
                1000,
                format!("server closed normally (1000{suffix}); treated as a drop"),
            ),
            Some(c) => (i64::from(c), format!("server closed with {c}{suffix}")),
        };
        End::Network { code, reason }
    }

    /// Lost without a close frame (reset, I/O error, a protocol-requested
    /// reconnect): RFC 6455 names that 1006, so the row says so instead of leaving
    /// the code empty.
    pub(super) fn dropped(reason: String) -> End {
        End::Network {
            code: ABNORMAL_CLOSURE,
            reason,
        }
    }

    /// No frame for `idle`.
    pub(super) fn idle(idle: Duration) -> End {
        let idle = humantime::format_duration(idle);
        End::dropped(format!("no frame for {idle} (idle deadline)"))
    }

    /// How we close the socket for an ending we decided on: code and reason on the
    /// wire, and whether the protocol unsubscribes first (only where the recording
    /// ends, not for a pause). Giving up on a dead credential is our decision too,
    /// so the server gets a clean close rather than a reset.
    pub(super) fn close(&self) -> Effect {
        let (code, reason, unsubscribe) = match self {
            End::Stop => (1000, "wsvault closing", true),
            End::Handover => (1000, HANDED_OVER, true),
            End::Suspend => (4000, SUSPENDED_BY_OPERATOR, false),
            End::CredentialDead { .. } | End::Network { .. } => (1000, "credential dead", false),
        };
        Effect::Close {
            code,
            reason,
            unsubscribe,
        }
    }

    /// Whether a message was refused as too large. Every size refusal names the
    /// knob to raise: tungstenite's through the connection's error text, the
    /// Atmosphere framer's and reassembler's in their messages.
    pub(super) fn too_large(&self) -> bool {
        matches!(self, End::Network { reason, .. } if reason.contains("max_message_bytes"))
    }

    /// The `connections` row completed at close, and the `session_events` row that
    /// says why: `closed` for a stop, `suspended` (manual, handover, network) or
    /// `auth_failed` for a dead credential.
    pub(super) fn rows(&self, conn: Conn, at: DateTime<Utc>) -> [Row; 2] {
        let id = Some(conn.id);
        let (code, reason) = match self {
            End::Stop => (1000, "closed by wsvault".to_string()),
            End::Suspend => (4000, SUSPENDED_BY_OPERATOR.to_string()),
            End::Handover => (1000, HANDED_OVER.to_string()),
            End::CredentialDead { reason } => (1000, format!("credential dead: {reason}")),
            End::Network { code, reason } => (*code, reason.clone()),
        };
        let mut event = EventRow::bare(EventName::Suspended, id, at);
        event.code = Some(code);
        event.reason = Some(reason.clone());
        match self {
            End::Stop => event.event = EventName::Closed,
            End::Suspend => event.initiator = Some(Initiator::Manual),
            End::Handover => event.initiator = Some(Initiator::Handover),
            End::Network { .. } => event.initiator = Some(Initiator::Network),
            End::CredentialDead { reason } => {
                event = EventRow::bare(EventName::AuthFailed, id, at);
                event.reason = Some(reason.clone());
            }
        }
        let lost = matches!(self, End::Network { .. });
        let closed = Row::Closed {
            conn,
            at,
            code,
            reason,
            lost,
        };
        [closed, Row::Event(event)]
    }
}

/// The row of a command that found no open connection (backing off, connecting,
/// logging in, suspended, not started): a transition too, recorded without a
/// connection or close code, since nothing was closed.
pub(super) fn unconnected(command: Command, at: DateTime<Utc>) -> Option<Row> {
    let (event, initiator, reason) = match command {
        Command::Stop => (EventName::Closed, None, "closed by wsvault"),
        Command::Suspend => (
            EventName::Suspended,
            Some(Initiator::Manual),
            SUSPENDED_BY_OPERATOR,
        ),
        Command::Handover => (EventName::Suspended, Some(Initiator::Handover), HANDED_OVER),
        Command::Run => return None,
    };
    let mut row = EventRow::bare(event, None, at);
    row.initiator = initiator;
    row.reason = Some(format!("{reason} while not connected"));
    Some(Row::Event(row))
}

impl Lifecycle {
    /// Records how a connection ended and takes the next step.
    pub(super) fn ended(
        &mut self,
        conn: Conn,
        subscribed: Option<Instant>,
        end: End,
        now: Now,
        out: &mut Vec<Effect>,
    ) {
        let stable = subscribed
            .is_some_and(|t| now.mono.saturating_duration_since(t) >= self.policy.stable_after);
        // A server that re-sends a message we refuse as too large ends every
        // connection the same way, however long each one looked healthy: from the
        // second such ending in a row the backoff keeps growing instead of starting
        // over, so the reconnects slow down to `backoff_max`.
        let too_large = end.too_large();
        let repeated_refusal = too_large && self.refused_too_large;
        self.refused_too_large = too_large;
        if stable && !repeated_refusal {
            out.push(Effect::ResetBackoff);
        }
        let id = Some(conn.id);
        let at = now.wall;
        out.extend(end.rows(conn, at).map(Effect::Record));
        match end {
            End::Stop | End::Handover => self.done(out),
            End::Suspend => {
                self.suspension(Cause::Manual, now.wall);
                self.phase = Phase::Suspended;
                out.push(Effect::Publish(State::Suspended));
                // A command that came while closing is acted on now.
                if self.wanted != Command::Suspend {
                    self.proceed(now, out);
                }
            }
            End::Network { .. } => {
                self.suspension(Cause::Network, now.wall);
                out.push(Effect::Publish(State::Retrying));
                self.wait(Delay::Next, true, out);
            }
            End::CredentialDead { .. } => {
                self.suspension(Cause::Network, now.wall);
                out.push(Effect::Publish(State::Retrying));
                let mut row = EventRow::bare(EventName::Suspended, id, at);
                row.initiator = Some(Initiator::Network);
                row.code = Some(1000);
                row.reason = Some("credential dead".into());
                out.push(Effect::Record(Row::Event(row)));
                // A login source gets a fresh credential; anything else can only
                // wait for the upstream to accept the old one again.
                let delay = if self.policy.login && !self.policy.only_if_attached {
                    self.need_login = true;
                    Delay::Next
                } else {
                    Delay::Cap
                };
                self.wait(delay, false, out);
            }
        }
    }
}
