//! The session lifecycle as a pure state machine (ARCHITECTURE.md §3).
//!
//! [`Lifecycle`] takes what happened ([`Input`], with the time it happened) and says
//! what to do about it ([`Effect`]s): which rows to write, which state to publish,
//! whether to log in, connect, close the socket with which code, wait out which
//! delay, or end. It does no I/O, never reads a clock and never waits, so every
//! transition is unit-tested with literal input sequences (`tests.rs`); the runner
//! (`runner.rs`) is the shell that carries the effects out and feeds back what came
//! of them. The split follows the one `protocol/` already makes (quinn-proto style).
//!
//! Room for what comes next: a new phase (backfilling a gap, waiting for a lease)
//! is one more [`Phase`] variant and its arms; a new reason to stop is one more
//! [`Command`] (as [`Command::Handover`] was for leases).

mod effects;
mod ending;
mod inputs;
mod rows;
#[cfg(test)]
mod tests;

pub use effects::{Delay, Effect};
pub use inputs::{Input, LoginRetry, Now, Policy};
pub use rows::{Conn, EventName, EventRow, Initiator, Row, Suspension};

use super::{Command, State};
use crate::backfill::Cause;
use chrono::{DateTime, Utc};
use ending::{End, unconnected};
use std::time::Instant;

/// Where the session is.
#[derive(Debug, Clone, PartialEq)]
enum Phase {
    /// Nothing under way yet.
    Idle,
    LoggingIn,
    Connecting,
    /// The socket is open; `subscribed` since when, once confirmed.
    Open {
        conn: Conn,
        subscribed: Option<Instant>,
    },
    /// Our close frame is out; waiting for [`Input::Closed`].
    Closing {
        conn: Conn,
        subscribed: Option<Instant>,
        end: End,
    },
    /// Waiting out a delay before the next attempt.
    BackingOff,
    /// Suspended by the operator, the `suspended` row written.
    Suspended,
    /// Login refused for good; only a command gets out.
    Failed,
    /// The task is ending; every input is ignored.
    Done,
}

/// The lifecycle of one source across its connections.
#[derive(Debug)]
pub struct Lifecycle {
    policy: Policy,
    phase: Phase,
    /// The latest command.
    wanted: Command,
    /// A credential is needed before the next connect.
    need_login: bool,
    /// A connection opened before (later attempts publish `retrying`).
    opened_once: bool,
    /// A suspension happened and no `subscribed` has confirmed it is over: the
    /// first such suspension, which the `resumed` row names.
    pending_resume: Option<Suspension>,
    /// The last connection ended on an oversized message.
    refused_too_large: bool,
    first_frame: Option<DateTime<Utc>>,
    last_frame: Option<DateTime<Utc>>,
    /// The first subscription of this run has been reported to the backfill.
    run_reported: bool,
    /// Start and cause of the open blind period.
    blind: Option<(DateTime<Utc>, Cause)>,
}

impl Lifecycle {
    /// A session that has not started; the first input is its initial command.
    pub fn new(policy: Policy) -> Self {
        Lifecycle {
            need_login: policy.login,
            policy,
            phase: Phase::Idle,
            wanted: Command::Run,
            opened_once: false,
            pending_resume: None,
            refused_too_large: false,
            first_frame: None,
            last_frame: None,
            run_reported: false,
            blind: None,
        }
    }

    /// The previous run of the daemon ended without recording it (killed or
    /// crashed) and the next start wrote its `suspended` row at `at`: the first
    /// subscription of this run is then a resume, and its `resumed` row names
    /// that suspension, so the blind period is one row like any other.
    pub fn after_down(&mut self, at: DateTime<Utc>) {
        self.pending_resume.get_or_insert(Suspension {
            at,
            initiator: Initiator::Down,
        });
    }

    /// Whether a socket is open (the runner pumps it while nothing else is due).
    pub fn connected(&self) -> bool {
        matches!(self.phase, Phase::Open { .. } | Phase::Closing { .. })
    }

    /// Takes one input; returns what to do, in order. An effect that answers with
    /// an input (login, connect, close, wait) is always the last.
    pub fn handle(&mut self, input: Input, now: Now) -> Vec<Effect> {
        let mut out = Vec::new();
        if self.phase == Phase::Done {
            return out;
        }
        match input {
            Input::Command(c) => self.command(c, now, &mut out),
            Input::Frame => {
                self.first_frame.get_or_insert(now.wall);
                self.last_frame = Some(now.wall);
            }
            Input::WriterClosed => self.done(&mut out),
            Input::LoggedIn if self.phase == Phase::LoggingIn => {
                self.need_login = false;
                self.proceed(now, &mut out);
            }
            Input::LoginFailed { reason, retry } if self.phase == Phase::LoggingIn => {
                let mut row = EventRow::bare(EventName::AuthFailed, None, now.wall);
                row.reason = Some(reason);
                out.push(Effect::Record(Row::Event(row)));
                let delay = match retry {
                    LoginRetry::Never => {
                        self.phase = Phase::Failed;
                        out.push(Effect::Publish(State::Failed));
                        return out;
                    }
                    LoginRetry::Cap => Delay::Cap,
                    LoginRetry::After(d) => Delay::Exactly(d),
                    LoginRetry::Backoff => Delay::Next,
                };
                self.wait(delay, false, &mut out);
            }
            Input::ConnectFailed { reason } if self.phase == Phase::Connecting => {
                let mut row = EventRow::bare(EventName::SocketError, None, now.wall);
                row.reason = Some(format!("connect failed: {reason}"));
                out.push(Effect::Record(Row::Event(row)));
                self.wait(Delay::Next, true, &mut out);
            }
            Input::Connected { id, url } if self.phase == Phase::Connecting => {
                if self.opened_once {
                    out.push(Effect::Reopened);
                }
                self.opened_once = true;
                let conn = Conn {
                    id,
                    url,
                    opened_at: now.wall,
                };
                out.push(Effect::Publish(State::Open));
                out.push(Effect::Record(Row::Opened(conn.clone())));
                let opened = EventRow::bare(EventName::Opened, Some(id), now.wall);
                out.push(Effect::Record(Row::Event(opened)));
                self.phase = Phase::Open {
                    conn,
                    subscribed: None,
                };
            }
            Input::Subscribed => self.subscribed(now, &mut out),
            Input::CloseReceived { code, reason } => {
                self.lost(End::server_closed(code, &reason), now, &mut out);
            }
            Input::SocketError { reason } | Input::ReconnectAsked { reason } => {
                self.lost(End::dropped(reason), now, &mut out);
            }
            Input::IdleDeadline { idle } => self.lost(End::idle(idle), now, &mut out),
            Input::CredentialDead { reason } => {
                self.close(End::CredentialDead { reason }, &mut out);
            }
            Input::Closed => match std::mem::replace(&mut self.phase, Phase::Idle) {
                Phase::Closing {
                    conn,
                    subscribed,
                    end,
                } => self.ended(conn, subscribed, end, now, &mut out),
                other => self.phase = other,
            },
            Input::WaitOver if self.phase == Phase::BackingOff => self.proceed(now, &mut out),
            // Answers that no longer match the phase (none are expected).
            Input::LoggedIn
            | Input::LoginFailed { .. }
            | Input::ConnectFailed { .. }
            | Input::Connected { .. }
            | Input::WaitOver => {}
        }
        out
    }

    fn command(&mut self, c: Command, now: Now, out: &mut Vec<Effect>) {
        self.wanted = c;
        match (&self.phase, c) {
            (Phase::Open { .. }, Command::Run) => {}
            (Phase::Open { .. }, Command::Suspend) => self.close(End::Suspend, out),
            (Phase::Open { .. }, Command::Stop) => self.close(End::Stop, out),
            (Phase::Open { .. }, Command::Handover) => self.close(End::Handover, out),
            // The close under way decides; the command is acted on after it.
            (Phase::Closing { .. } | Phase::LoggingIn, _) => {}
            (Phase::Failed, _) => {
                out.push(Effect::Publish(State::Connecting));
                self.phase = Phase::Idle;
                self.proceed(now, out);
            }
            _ => self.proceed(now, out),
        }
    }

    /// The next step while no socket is open, as the latest command asks.
    fn proceed(&mut self, now: Now, out: &mut Vec<Effect>) {
        match self.wanted {
            Command::Stop | Command::Handover => {
                out.extend(unconnected(self.wanted, now.wall).map(Effect::Record));
                self.done(out);
            }
            // Suspended already, with its row: a repeated SIGUSR1 only re-publishes.
            Command::Suspend if self.phase == Phase::Suspended => {
                out.push(Effect::Publish(State::Suspended));
            }
            Command::Suspend => {
                out.push(Effect::Publish(State::Suspended));
                out.extend(unconnected(self.wanted, now.wall).map(Effect::Record));
                self.suspension(Cause::Manual, now.wall);
                self.phase = Phase::Suspended;
            }
            Command::Run if self.need_login => {
                self.phase = Phase::LoggingIn;
                out.push(Effect::Login);
            }
            Command::Run => {
                self.phase = Phase::Connecting;
                out.push(Effect::Publish(if self.opened_once {
                    State::Retrying
                } else {
                    State::Connecting
                }));
                out.push(Effect::Connect);
            }
        }
    }

    fn subscribed(&mut self, now: Now, out: &mut Vec<Effect>) {
        let Phase::Open { conn, subscribed } = &mut self.phase else {
            return;
        };
        *subscribed = Some(now.mono);
        let id = Some(conn.id);
        out.push(Effect::Publish(State::Subscribed));
        let row = EventRow::bare(EventName::Subscribed, id, now.wall);
        out.push(Effect::Record(Row::Event(row)));
        if let Some(suspension) = self.pending_resume.take() {
            let mut row = EventRow::bare(EventName::Resumed, id, now.wall);
            row.resumes = Some(suspension);
            out.push(Effect::Record(Row::Event(row)));
        }
        if !std::mem::replace(&mut self.run_reported, true) {
            out.push(Effect::FirstFrame(self.first_frame.unwrap_or(now.wall)));
        }
        if let Some((from, cause)) = self.blind.take() {
            out.push(Effect::GapEnded {
                from,
                to: now.wall,
                cause,
            });
        }
    }

    /// Our decision ends the open connection: close it on the wire first.
    fn close(&mut self, end: End, out: &mut Vec<Effect>) {
        if let Some((conn, subscribed)) = self.take_open() {
            out.push(end.close());
            self.phase = Phase::Closing {
                conn,
                subscribed,
                end,
            };
        }
    }

    /// The connection is gone already (the server or the network ended it).
    fn lost(&mut self, end: End, now: Now, out: &mut Vec<Effect>) {
        if let Some((conn, subscribed)) = self.take_open() {
            self.ended(conn, subscribed, end, now, out);
        }
    }

    /// Leaves the open phase, handing out its connection; any other phase stays.
    fn take_open(&mut self) -> Option<(Conn, Option<Instant>)> {
        match std::mem::replace(&mut self.phase, Phase::Idle) {
            Phase::Open { conn, subscribed } => Some((conn, subscribed)),
            other => {
                self.phase = other;
                None
            }
        }
    }

    /// A suspension began at `at` (its `suspended` row's time): `resumed` is due at
    /// the next subscription, and a blind period starts at the last frame received
    /// (both kept if one is open already).
    fn suspension(&mut self, cause: Cause, at: DateTime<Utc>) {
        let initiator = match cause {
            Cause::Manual => Initiator::Manual,
            Cause::Network | Cause::Down | Cause::Handover => Initiator::Network,
        };
        self.pending_resume
            .get_or_insert(Suspension { at, initiator });
        if self.blind.is_none()
            && let Some(last) = self.last_frame
        {
            self.blind = Some((last, cause));
        }
    }

    fn wait(&mut self, delay: Delay, failed_attempt: bool, out: &mut Vec<Effect>) {
        self.phase = Phase::BackingOff;
        out.push(Effect::Wait {
            delay,
            failed_attempt,
        });
    }

    fn done(&mut self, out: &mut Vec<Effect>) {
        self.phase = Phase::Done;
        out.push(Effect::Exit);
    }
}
