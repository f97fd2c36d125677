//! The outer life of a session: authenticate, connect, drive, classify the ending,
//! record the transition, back off, resume — until told to stop.

use super::auth::{AuthError, Authenticator, SharedLogin};
use super::backoff::Backoff;
use super::connection::{Ending, Socket, describe_error};
use super::lifecycle::{Detail, Lifecycle};
use super::receipt_time::ReceiptTimes;
use super::{Command, SourceStatus, State};
use crate::config::{NavixyAuth, SourceConfig, SourceKind};
use crate::protocol::Protocol;
use crate::record::{Record, SourceName};
use crate::redact::{Redactor, StreamRedactor, redact_url};
use crate::store::RecordSink;
use chrono::Utc;
use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};
use tokio::sync::watch;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::{HeaderName, HeaderValue};
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;

/// The close code of a connection that ended without a close frame (RFC 6455
/// §7.1.5): recorded for drops so `close_code` is never empty after a close.
const ABNORMAL_CLOSURE: i64 = 1006;

/// State of one source across its connections.
pub(super) struct Runner {
    pub(super) config: SourceConfig,
    pub(super) source: SourceName,
    pub(super) protocol: Box<dyn Protocol>,
    pub(super) sink: RecordSink,
    pub(super) commands: watch::Receiver<Command>,
    pub(super) status: Arc<SourceStatus>,
    pub(super) redactor: Redactor,
    life: Lifecycle,
    backoff: Backoff,
    auth: Option<Arc<SharedLogin>>,
    /// The hash this session last used, so a dead one is not reused after a logout.
    hash: Option<crate::config::Secret>,
    /// Where blind periods are reported (Navixy sources with backfill on).
    gaps: Option<crate::backfill::GapNotifier>,
    /// Time of the last frame before the current blind period, if one is open.
    blind_since: Option<chrono::DateTime<Utc>>,
    /// The first subscription of this run has been reported to the backfill.
    run_reported: bool,
    /// Why the open blind period started.
    blind_cause: crate::backfill::Cause,
    /// A hash is needed before the next connect (Navixy login).
    need_login: bool,
    /// A suspension happened and no subscription confirmed it is over yet.
    pending_resume: bool,
    subscribed_at: Option<Instant>,
    opened_once: bool,
    /// The current manual suspension already has its `suspended` row.
    manual_recorded: bool,
    /// The `closed` row is written (by the connection that was open at the stop).
    closed_recorded: bool,
    /// Records produced while the writer's queue was full, oldest first. The
    /// connection loop hands them over as room frees up and reads no new frame
    /// until they are gone, so this holds at most one frame's records.
    pub(super) waiting: VecDeque<Record>,
    /// Records stamped with the receive time for want of an upstream time.
    receipt_times: ReceiptTimes,
    /// The last connection ended because an upstream message was too large.
    refused_too_large: bool,
    /// Masking state of the current connection's `traffic`, sent and received:
    /// a secret cut by a frame boundary is masked across it.
    pub(super) traffic_masks: [StreamRedactor; 2],
}

/// What the outer loop does after a wait.
enum Next {
    Continue,
    Stop,
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
        let source: SourceName = config.name.as_str().into();
        let mut redactor = Redactor::new(protocol.secrets());
        let auth = match &config.kind {
            SourceKind::Navixy(n) => match &n.auth {
                NavixyAuth::Login { login, password } => {
                    redactor.add(password.expose());
                    Some(links.login.clone().unwrap_or_else(|| {
                        SharedLogin::new(Authenticator::new(
                            n.auth_url.clone(),
                            login.clone(),
                            password.clone(),
                            n.max_logins_per_10min,
                            config.timing.connect_timeout,
                            config.ca_file.as_deref(),
                        ))
                    }))
                }
                NavixyAuth::ApiKeyHash(h) => {
                    redactor.add(h.expose());
                    None
                }
            },
            _ => None,
        };
        let backoff = Backoff::new(config.timing.backoff_initial, config.timing.backoff_max);
        let runner = Runner {
            life: Lifecycle {
                source: source.clone(),
            },
            need_login: auth.is_some(),
            source,
            protocol,
            sink,
            commands,
            status,
            redactor,
            backoff,
            auth,
            hash: None,
            gaps: links.gaps,
            blind_since: None,
            run_reported: false,
            blind_cause: crate::backfill::Cause::Network,
            pending_resume: false,
            subscribed_at: None,
            opened_once: false,
            manual_recorded: false,
            closed_recorded: false,
            waiting: VecDeque::new(),
            receipt_times: ReceiptTimes::default(),
            refused_too_large: false,
            traffic_masks: Default::default(),
            config,
        };
        runner.publish_secrets();
        runner
    }

    /// Makes this source's secrets (configured, and those the protocol holds now:
    /// a session hash, recent signatures) known to every sink, replacing what it
    /// published before.
    fn publish_secrets(&self) {
        let mut secrets = crate::redact::secrets::of_source(&self.config);
        secrets.extend(self.protocol.secrets());
        crate::redact::secrets::publish(&self.source, secrets);
    }

    /// Queues `r` behind any waiting records, waiting for room as long as it takes.
    /// Fails only when the writer has stopped.
    pub(super) async fn emit(&mut self, r: Record) -> Result<(), ()> {
        self.flush_waiting().await?;
        self.sink.send(r).await.map_err(|_| ())
    }

    /// Queues `r` without waiting: into the writer's queue while it has room, else
    /// behind the waiting records (see [`Runner::waiting`]). Fails only when the
    /// writer has stopped.
    pub(super) fn queue(&mut self, r: Record) -> Result<(), ()> {
        self.waiting.push_back(r);
        self.hand_over_waiting()
    }

    /// Moves waiting records into the writer's queue, in order, while it has room;
    /// never waits. Fails only when the writer has stopped (the rest is then logged
    /// as lost).
    pub(super) fn hand_over_waiting(&mut self) -> Result<(), ()> {
        while let Some(r) = self.waiting.pop_front() {
            match self.sink.try_send(r) {
                Ok(None) => {}
                Ok(Some(r)) => {
                    self.waiting.push_front(r);
                    break;
                }
                Err(_) => {
                    self.abandon_waiting(1);
                    return Err(());
                }
            }
        }
        Ok(())
    }

    /// Hands every waiting record to the writer, in order, waiting for room.
    /// When the writer has stopped, what is left cannot be stored: it is logged
    /// with its count, never dropped silently.
    pub(super) async fn flush_waiting(&mut self) -> Result<(), ()> {
        while let Some(r) = self.waiting.pop_front() {
            if self.sink.send(r).await.is_err() {
                self.abandon_waiting(1);
                return Err(());
            }
        }
        Ok(())
    }

    /// The writer has stopped: the waiting records, plus `taken` already taken off
    /// the list, can no longer be stored. Logged with their count, never silently.
    pub(super) fn abandon_waiting(&mut self, taken: usize) {
        let lost = self.waiting.len() + taken;
        self.waiting.clear();
        if lost > 0 {
            tracing::error!(
                lost,
                "the storage writer stopped before these records were queued; they are lost"
            );
        }
    }

    pub(super) fn note_record(&mut self, r: &Record) {
        crate::telemetry::emit(crate::telemetry::events::RecordReceived {
            source: &self.source,
            kind: r.kind(),
        });
        if self.receipt_times.note(&self.source, r) {
            tracing::warn!(
                kind = r.kind(),
                "an upstream time was missing or unreadable: stored with the receive \
                 time, upstream text kept in payload; counted in \
                 wsvault_invalid_timestamps_total (warned once per source)"
            );
        }
        if matches!(
            r,
            Record::TrackerState(_)
                | Record::TrackerReading(_)
                | Record::SecuritySession(_)
                | Record::Notification(_)
                | Record::Event(_)
        ) {
            self.status
                .last_event_ms
                .store(Utc::now().timestamp_millis(), Ordering::Relaxed);
        }
    }

    /// The protocol confirmed the subscription. Its rows are queued without
    /// waiting, like the frame's other records (see [`Runner::queue`]).
    pub(super) fn subscribed(&mut self, connection_id: i64) -> Result<(), ()> {
        self.status.set_state(State::Subscribed);
        self.subscribed_at = Some(Instant::now());
        tracing::info!("subscribed");
        self.queue(
            self.life
                .event(Some(connection_id), "subscribed", Detail::default()),
        )?;
        if self.pending_resume {
            self.pending_resume = false;
            self.queue(
                self.life
                    .event(Some(connection_id), "resumed", Detail::default()),
            )?;
        }
        self.report_gap();
        Ok(())
    }

    /// Tells the backfill that a blind period ended now (the subscription is
    /// confirmed), or that this run saw its first frame.
    fn report_gap(&mut self) {
        let Some(gaps) = &self.gaps else {
            return;
        };
        let now = Utc::now();
        if !self.run_reported {
            self.run_reported = true;
            let first = self.status.first_frame_ms();
            gaps.first_frame(first.unwrap_or(now));
        }
        if let Some(from) = self.blind_since.take() {
            gaps.resumed(from, now, self.blind_cause);
        }
    }

    /// A blind period starts at the last frame received (kept if one is open already).
    fn blind_from_now(&mut self, cause: crate::backfill::Cause) {
        if self.blind_since.is_none()
            && let Some(last) = chrono::DateTime::from_timestamp_millis(
                self.status.last_frame_ms.load(Ordering::Relaxed),
            )
            .filter(|t| t.timestamp_millis() > 0)
        {
            self.blind_since = Some(last);
            self.blind_cause = cause;
        }
    }

    /// The session's whole life.
    pub(super) async fn run(mut self) {
        loop {
            let cmd = *self.commands.borrow_and_update();
            match cmd {
                Command::Stop => break,
                Command::Suspend => {
                    self.status.set_state(State::Suspended);
                    if !self.manual_recorded && self.suspended_unconnected().await.is_err() {
                        break;
                    }
                    if self.commands.changed().await.is_err() {
                        break;
                    }
                    continue;
                }
                Command::Run => self.manual_recorded = false,
            }
            if self.status.state() == State::Failed {
                // Only an operator (reload, SIGUSR2 after a fix) gets us out of here.
                if self.commands.changed().await.is_err() {
                    break;
                }
                self.status.set_state(State::Connecting);
                continue;
            }
            if self.need_login {
                match self.login().await {
                    Next::Continue => {}
                    Next::Stop => break,
                }
                if self.need_login {
                    continue;
                }
            }
            match self.connect_and_drive().await {
                Next::Continue => {}
                Next::Stop => break,
            }
        }
        if !self.closed_recorded {
            // Stopped between connections (backoff, connect, login, suspension):
            // the lifecycle still ends with `closed`. Fails only if the writer is
            // gone, when nothing can be recorded anyway.
            let rec = self.life.event(
                None,
                "closed",
                Detail {
                    reason: Some("closed by wsvault while not connected".into()),
                    ..Detail::default()
                },
            );
            let _ = self.emit(rec).await;
        }
        // Records of the last frames that still wait (a `closed` row above flushed
        // them already); fails only when the writer is gone, which logs the count.
        let _ = self.flush_waiting().await;
        self.status.set_state(State::Closed);
    }

    /// A manual suspension that found no open connection (waiting out a backoff,
    /// connecting, logging in, or not started yet) is a transition too: recorded
    /// without a connection or close code, since nothing was closed.
    async fn suspended_unconnected(&mut self) -> Result<(), ()> {
        self.manual_recorded = true;
        self.pending_resume = true;
        self.blind_from_now(crate::backfill::Cause::Manual);
        tracing::info!("suspended by operator while not connected");
        self.emit(self.life.event(
            None,
            "suspended",
            Detail {
                initiator: Some("manual"),
                reason: Some("suspended by operator while not connected".into()),
                ..Detail::default()
            },
        ))
        .await
    }

    /// One login attempt for a Navixy login source; on failure waits and returns.
    async fn login(&mut self) -> Next {
        let Some(auth) = self.auth.as_mut() else {
            self.need_login = false;
            return Next::Continue;
        };
        match auth.fresh(self.hash.as_ref()).await {
            Ok(hash) => {
                self.redactor.add(hash.expose());
                self.hash = Some(hash.clone());
                self.protocol.set_credential(hash);
                self.publish_secrets();
                self.need_login = false;
                tracing::info!("logged in through user/auth");
                Next::Continue
            }
            Err(e) => {
                let fatal = e.is_fatal();
                tracing::error!("{}", self.redactor.redact(&e.to_string()));
                let rec = self.life.event(
                    None,
                    "auth_failed",
                    Detail {
                        reason: Some(self.redactor.redact(&e.to_string())),
                        ..Detail::default()
                    },
                );
                if self.emit(rec).await.is_err() {
                    return Next::Stop;
                }
                if fatal {
                    self.status.set_state(State::Failed);
                    return Next::Continue;
                }
                let wait = match &e {
                    AuthError::RateLimited { wait, .. } => *wait,
                    AuthError::Refused { .. } => self.backoff.cap_delay(),
                    _ => self.backoff.next_delay(),
                };
                self.wait(wait).await
            }
        }
    }

    /// Connects once, drives the connection, records how it ended and waits out the
    /// backoff when a resume must follow.
    async fn connect_and_drive(&mut self) -> Next {
        self.status.set_state(if self.opened_once {
            State::Retrying
        } else {
            State::Connecting
        });
        let connection_id = crate::ids::next_id();
        let url = self.protocol.connect_url(Utc::now());
        for s in self.protocol.secrets() {
            self.redactor.add(s);
        }
        self.publish_secrets();
        let shown_url = self.redactor.redact(&redact_url(&url));
        let ws = match self.connect(&url).await {
            Ok(ws) => ws,
            Err(_) if *self.commands.borrow() != Command::Run => return Next::Continue,
            Err(reason) => {
                let reason = self.redactor.redact(&reason);
                tracing::warn!(url = %shown_url, "connect failed: {reason}");
                let rec = self.life.event(
                    None,
                    "socket_error",
                    Detail {
                        reason: Some(format!("connect failed: {reason}")),
                        ..Detail::default()
                    },
                );
                if self.emit(rec).await.is_err() {
                    return Next::Stop;
                }
                let d = self.backoff.next_delay();
                self.status
                    .attempts
                    .store(self.backoff.attempts(), Ordering::Relaxed);
                return self.wait(d).await;
            }
        };
        let opened_at = Utc::now();
        if self.opened_once {
            self.status.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        self.opened_once = true;
        self.status.set_state(State::Open);
        tracing::info!(url = %shown_url, connection = connection_id, "connected");
        if self
            .emit(
                self.life
                    .opened(connection_id, shown_url.clone(), opened_at),
            )
            .await
            .is_err()
            || self
                .emit(
                    self.life
                        .event(Some(connection_id), "opened", Detail::default()),
                )
                .await
                .is_err()
        {
            return Next::Stop;
        }
        self.subscribed_at = None;
        let ending = self.drive(ws, connection_id).await;
        self.finish(connection_id, shown_url, opened_at, ending)
            .await
    }

    async fn finish(
        &mut self,
        id: i64,
        url: String,
        opened_at: chrono::DateTime<Utc>,
        ending: Ending,
    ) -> Next {
        let stable = self
            .subscribed_at
            .is_some_and(|t| t.elapsed() >= self.config.timing.stable_after);
        // A server that re-sends a message we refuse as too large ends every
        // connection the same way, however long each one looked healthy: from the
        // second such ending in a row the backoff keeps growing instead of starting
        // over, so the reconnects slow down to `backoff_max`.
        let too_large = matches!(&ending, Ending::Network { reason, .. } if is_too_large(reason));
        let repeated_refusal = too_large && self.refused_too_large;
        self.refused_too_large = too_large;
        if stable && !repeated_refusal {
            self.backoff.reset();
        }
        let (code, reason, event, detail) = match &ending {
            Ending::Stopped => (
                Some(1000),
                "closed by wsvault".to_string(),
                "closed",
                Detail {
                    code: Some(1000),
                    reason: Some("closed by wsvault".into()),
                    ..Detail::default()
                },
            ),
            Ending::Suspended => (
                Some(4000),
                "suspended by operator".to_string(),
                "suspended",
                Detail {
                    initiator: Some("manual"),
                    code: Some(4000),
                    reason: Some("suspended by operator".into()),
                    ..Detail::default()
                },
            ),
            // No close frame was received (reset, I/O error, idle deadline, a
            // protocol-requested reconnect): RFC 6455 §7.1.5 names that close code
            // 1006, so the row says so instead of leaving the code empty.
            Ending::Network { code, reason } => (
                Some(code.unwrap_or(ABNORMAL_CLOSURE)),
                reason.clone(),
                "suspended",
                Detail {
                    initiator: Some("network"),
                    code: Some(code.unwrap_or(ABNORMAL_CLOSURE)),
                    reason: Some(reason.clone()),
                    ..Detail::default()
                },
            ),
            Ending::CredentialDead { reason } => (
                Some(1000),
                format!("credential dead: {reason}"),
                "auth_failed",
                Detail {
                    reason: Some(reason.clone()),
                    ..Detail::default()
                },
            ),
            Ending::WriterClosed => return Next::Stop,
        };
        let reason = self.redactor.redact(&reason);
        match &ending {
            Ending::Network { .. } => tracing::warn!(connection = id, "connection lost: {reason}"),
            _ => tracing::info!(connection = id, "connection ended: {reason}"),
        }
        if self
            .emit(self.life.closed(id, url, opened_at, code, reason))
            .await
            .is_err()
            || self
                .emit(self.life.event(Some(id), event, detail))
                .await
                .is_err()
        {
            return Next::Stop;
        }
        self.closed_recorded = ending == Ending::Stopped;
        match ending {
            Ending::Suspended => self.blind_from_now(crate::backfill::Cause::Manual),
            Ending::Network { .. } | Ending::CredentialDead { .. } => {
                self.blind_from_now(crate::backfill::Cause::Network)
            }
            Ending::Stopped | Ending::WriterClosed => {}
        }
        match ending {
            Ending::Stopped | Ending::WriterClosed => {
                self.closed_recorded = true;
                Next::Stop
            }
            Ending::Suspended => {
                self.manual_recorded = true;
                self.pending_resume = true;
                self.status.set_state(State::Suspended);
                Next::Continue
            }
            Ending::Network { .. } => {
                self.pending_resume = true;
                self.status.set_state(State::Retrying);
                let d = self.backoff.next_delay();
                self.status
                    .attempts
                    .store(self.backoff.attempts(), Ordering::Relaxed);
                self.wait(d).await
            }
            Ending::CredentialDead { .. } => {
                self.pending_resume = true;
                self.status.set_state(State::Retrying);
                let suspended = self.life.event(
                    Some(id),
                    "suspended",
                    Detail {
                        initiator: Some("network"),
                        code: Some(1000),
                        reason: Some("credential dead".into()),
                        ..Detail::default()
                    },
                );
                if self.emit(suspended).await.is_err() {
                    return Next::Stop;
                }
                if self.auth.is_some() && !self.config.only_if_attached {
                    self.need_login = true;
                    let d = self.backoff.next_delay();
                    self.wait(d).await
                } else {
                    let d = self.backoff.cap_delay();
                    self.wait(d).await
                }
            }
        }
    }

    /// Waits `d`, cut short by a command change. Returns Stop when told to stop.
    async fn wait(&mut self, d: Duration) -> Next {
        self.status.waiting(d);
        tokio::select! {
            _ = tokio::time::sleep(d) => Next::Continue,
            changed = self.commands.changed() => {
                if changed.is_err() {
                    return Next::Stop;
                }
                match *self.commands.borrow() {
                    Command::Stop => Next::Stop,
                    // Suspend: the outer loop parks; Run after Suspend: go now.
                    Command::Suspend | Command::Run => Next::Continue,
                }
            }
        }
    }

    async fn connect(&mut self, url: &url::Url) -> Result<Socket, String> {
        let mut req = url
            .as_str()
            .into_client_request()
            .map_err(|e| describe_error(&e))?;
        let mut has_agent = false;
        for (k, v) in self.protocol.connect_headers() {
            let (Ok(name), Ok(value)) = (
                HeaderName::try_from(k.as_str()),
                HeaderValue::try_from(v.as_str()),
            ) else {
                return Err(format!("header `{k}` is not a valid HTTP header"));
            };
            has_agent |= name == tokio_tungstenite::tungstenite::http::header::USER_AGENT;
            req.headers_mut().insert(name, value);
        }
        if !has_agent && let Ok(v) = HeaderValue::try_from(crate::config::default_user_agent()) {
            req.headers_mut()
                .insert(tokio_tungstenite::tungstenite::http::header::USER_AGENT, v);
        }
        let max = transport_limit(&self.config);
        let ws_config = WebSocketConfig::default()
            .max_message_size(Some(max))
            .max_frame_size(Some(max));
        // wss:// trusts the OS store plus the source's ca_file (see crate::tls).
        let connector = match url.scheme() {
            "wss" => Some(tokio_tungstenite::Connector::Rustls(
                crate::tls::client_config(self.config.ca_file.as_deref())
                    .map_err(|e| e.to_string())?,
            )),
            _ => None,
        };
        let connect =
            tokio_tungstenite::connect_async_tls_with_config(req, Some(ws_config), true, connector);
        let timeout = self.config.timing.connect_timeout;
        tokio::select! {
            r = tokio::time::timeout(timeout, connect) => match r {
                Ok(Ok((ws, _resp))) => Ok(ws),
                Ok(Err(e)) => Err(describe_error(&e)),
                Err(_) => Err(format!("no connection within {}", humantime::format_duration(timeout))),
            },
            // A repeated Run (SIGUSR2 while running) must not abort a connect.
            _ = self.commands.wait_for(|c| *c != Command::Run) => Err("interrupted by a command".into()),
        }
    }
}

/// Room for Atmosphere's `length|` prefix (at most 20 digits and the bar) and a few
/// small messages (heartbeats) the server may write into the same WebSocket frame as
/// a message of the full `max_message_bytes`.
pub(super) const ATMOSPHERE_HEADROOM: usize = 1024;

/// The WebSocket-level size limit for `source`. `max_message_bytes` bounds an
/// upstream *message*: where a protocol frames its messages inside WebSocket
/// messages (Navixy with `track_message_size`), the frame is larger than the message
/// it carries, and the exact limit is enforced by the protocol's framer; a limit of
/// `max_message_bytes` here would refuse a message of exactly that size. Elsewhere
/// the WebSocket message is the upstream message and the limit is exact.
pub(super) fn transport_limit(source: &SourceConfig) -> usize {
    let max = source.timing.max_message_bytes;
    match &source.kind {
        SourceKind::Navixy(n) if n.track_message_size => max.saturating_add(ATMOSPHERE_HEADROOM),
        _ => max,
    }
}

/// Whether a connection ended because a message was refused as too large. Every
/// size refusal names the knob to raise: tungstenite's through
/// [`describe_error`], the Atmosphere framer's and reassembler's in their messages.
fn is_too_large(reason: &str) -> bool {
    reason.contains("max_message_bytes")
}
