//! The shell around the session's pure machines: it feeds the [`Lifecycle`] what
//! happened, carries out the effects it returns, and while a socket is open pumps
//! the [`Connection`] through the [`Intake`].
//!
//! Nothing here decides a transition: which row, which close code, whether to
//! reconnect and after which kind of delay is the lifecycle's. What is here is what
//! waits: the login call, the connect, the close, the backoff's random delays, and
//! the commands of the supervisor.

use super::auth::{AuthError, Authenticator, SharedLogin};
use super::backoff::Backoff;
use super::connection::{Connection, Wake};
use super::dial::{DialError, dial};
use super::intake::{Intake, now};
use super::lifecycle::{Delay, Effect, Input, Lifecycle, LoginRetry, Policy};
use super::{Command, SourceStatus};
use crate::config::{NavixyAuth, Secret, SourceConfig, SourceKind};
use crate::protocol::Protocol;
use crate::store::{RecordSink, WriterClosed};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;
use tokio::sync::watch;

/// One source across its connections.
pub(super) struct Runner {
    config: SourceConfig,
    commands: watch::Receiver<Command>,
    life: Lifecycle,
    intake: Intake,
    backoff: Backoff,
    /// The Navixy login (login sources), and the hash this session last used, so
    /// a dead one is not reused after a logout.
    login: Option<(Arc<SharedLogin>, Option<Secret>)>,
    /// The open socket, if any.
    conn: Option<Connection>,
}

impl Runner {
    pub(super) fn new(
        config: SourceConfig,
        protocol: Box<dyn Protocol>,
        sink: RecordSink,
        commands: watch::Receiver<Command>,
        status: Arc<SourceStatus>,
        links: super::Links,
    ) -> Self {
        let login = match &config.kind {
            SourceKind::Navixy(n) => match &n.auth {
                NavixyAuth::Login { login, password } => {
                    let shared = links.login.clone().unwrap_or_else(|| {
                        SharedLogin::new(Authenticator::new(
                            n.auth_url.clone(),
                            login.clone(),
                            password.clone(),
                            n.max_logins_per_10min,
                            config.timing.connect_timeout,
                            config.ca_file.as_deref(),
                        ))
                    });
                    Some((shared, None))
                }
                NavixyAuth::ApiKeyHash(_) => None,
            },
            _ => None,
        };
        let mut life = Lifecycle::new(Policy {
            login: login.is_some(),
            only_if_attached: config.only_if_attached,
            stable_after: config.timing.stable_after,
        });
        if let Some(at) = links.down_since {
            life.after_down(at);
        }
        Runner {
            life,
            intake: Intake::new(&config, protocol, sink, status, links.gaps),
            backoff: Backoff::new(config.timing.backoff_initial, config.timing.backoff_max),
            login,
            commands,
            conn: None,
            config,
        }
    }

    /// The session's whole life: input in, effects out, until [`Effect::Exit`].
    pub(super) async fn run(mut self) {
        let mut input = Input::Command(*self.commands.borrow_and_update());
        loop {
            let effects = self.life.handle(input, now());
            if !self.life.connected() {
                self.conn = None;
            }
            let mut answer = None;
            for effect in effects {
                match self.intake.apply(effect) {
                    Ok(None) => continue,
                    Ok(Some(Effect::ResetBackoff)) => {
                        self.backoff.reset();
                        continue;
                    }
                    Ok(Some(Effect::Exit)) => return self.intake.exit().await,
                    Ok(Some(action)) => answer = Some(self.act(action).await),
                    Err(WriterClosed) => answer = Some(Input::WriterClosed),
                }
                // An effect that waits is the last; nothing follows a closed writer.
                break;
            }
            input = match answer {
                Some(input) => input,
                None => self.next_input().await,
            };
        }
    }

    /// Carries out an effect that waits, and says what came of it.
    async fn act(&mut self, action: Effect) -> Input {
        if let Effect::Close {
            code,
            reason,
            unsubscribe,
        } = action
        {
            return self.close(code, reason, unsubscribe).await;
        }
        // No socket is read meanwhile: first hand over what waits.
        if self.intake.flush().await.is_err() {
            return Input::WriterClosed;
        }
        match action {
            Effect::Login => self.log_in().await,
            Effect::Connect => self.connect().await,
            Effect::Wait {
                delay,
                failed_attempt,
            } => {
                let d = match delay {
                    Delay::Next => self.backoff.next_delay(),
                    Delay::Cap => self.backoff.cap_delay(),
                    Delay::Exactly(d) => d,
                };
                if failed_attempt {
                    let attempts = &self.intake.status().attempts;
                    attempts.store(self.backoff.attempts(), Ordering::Relaxed);
                }
                self.wait(d).await
            }
            // Every other effect was carried out by the intake.
            _ => Input::WriterClosed,
        }
    }

    /// What happens next when no effect is under way: the open socket's next
    /// event, else the next command.
    async fn next_input(&mut self) -> Input {
        match self.conn.take() {
            Some(mut conn) => {
                let input = self.pump(&mut conn).await;
                self.conn = Some(conn);
                input
            }
            None => self.command_changed().await,
        }
    }

    async fn command_changed(&mut self) -> Input {
        match self.commands.changed().await {
            Ok(()) => Input::Command(*self.commands.borrow_and_update()),
            Err(_) => Input::Command(Command::Stop),
        }
    }

    /// One login attempt for a Navixy login source.
    async fn log_in(&mut self) -> Input {
        let Some((auth, last)) = &mut self.login else {
            return Input::LoggedIn;
        };
        match auth.fresh(last.as_ref()).await {
            Ok(hash) => {
                *last = Some(hash.clone());
                self.intake.set_credential(hash);
                tracing::info!("logged in through user/auth");
                Input::LoggedIn
            }
            Err(e) => {
                let reason = self.intake.redact(&e.to_string());
                tracing::error!("{reason}");
                let retry = match e {
                    _ if e.is_fatal() => LoginRetry::Never,
                    AuthError::RateLimited { wait, .. } => LoginRetry::After(wait),
                    AuthError::Refused { .. } => LoginRetry::Cap,
                    _ => LoginRetry::Backoff,
                };
                Input::LoginFailed { reason, retry }
            }
        }
    }

    /// One connect attempt. A command other than `Run` abandons it, and one that
    /// came meanwhile makes a failure no `socket_error`: the command is the news.
    async fn connect(&mut self) -> Input {
        let id = crate::ids::next_id();
        let (url, shown) = self.intake.connect_url();
        let protocol = self.intake.protocol();
        match dial(&url, protocol, &self.config, &mut self.commands).await {
            Ok(ws) => {
                tracing::info!(url = %shown, connection = id, "connected");
                let idle = self.config.timing.idle_timeout;
                self.conn = Some(Connection::new(ws, id, idle));
                Input::Connected { id, url: shown }
            }
            Err(_) if *self.commands.borrow() != Command::Run => {
                Input::Command(*self.commands.borrow_and_update())
            }
            Err(DialError::Failed(reason)) => {
                let reason = self.intake.redact(&reason);
                tracing::warn!(url = %shown, "connect failed: {reason}");
                Input::ConnectFailed { reason }
            }
            // The dial ignores a repeated Run; nothing else interrupts it.
            Err(DialError::Interrupted) => Input::Command(Command::Run),
        }
    }

    /// Waits `d`, cut short by a command.
    async fn wait(&mut self, d: Duration) -> Input {
        self.intake.status().waiting(d);
        tokio::select! {
            _ = tokio::time::sleep(d) => Input::WaitOver,
            input = self.command_changed() => input,
        }
    }

    /// Pumps the open socket until something the lifecycle must hear about.
    async fn pump(&mut self, conn: &mut Connection) -> Input {
        let (intake, life) = (&mut self.intake, &mut self.life);
        if conn.take_fresh()
            && let Some(input) = intake.open(conn, life).await
        {
            return input;
        }
        let room = intake.room();
        loop {
            let paused = intake.paused();
            let tick_at = intake.next_deadline(conn.track_pause(!paused));
            let waiting = paused.then_some(&room);
            let ended = match conn.next(&mut self.commands, tick_at, waiting).await {
                Wake::Command(c) => return Input::Command(c),
                Wake::Ended(input) => return input,
                Wake::Room(permit) => match intake.room_freed(permit.ok()) {
                    Ok(()) => None,
                    Err(WriterClosed) => Some(Input::WriterClosed),
                },
                Wake::Alive => {
                    intake.frame_seen(life);
                    None
                }
                Wake::Tick => intake.tick(conn, life).await,
                Wake::Text(text) => {
                    let ended = intake.text(conn, life, text).await;
                    conn.heard();
                    ended
                }
            };
            if let Some(input) = ended {
                return input;
            }
        }
    }

    /// Closes the open socket as the lifecycle asked (the protocol's unsubscribe
    /// first where asked), recording the frames that arrive meanwhile.
    async fn close(&mut self, code: u16, reason: &str, unsubscribe: bool) -> Input {
        let Some(conn) = &mut self.conn else {
            return Input::Closed;
        };
        let (intake, life) = (&mut self.intake, &mut self.life);
        if unsubscribe {
            intake.unsubscribe(conn, life).await;
        }
        let late = conn.close(code, reason).await;
        match intake.keep_late(conn, life, late).await {
            Ok(()) => Input::Closed,
            Err(WriterClosed) => Input::WriterClosed,
        }
    }
}
