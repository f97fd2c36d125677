//! The data path of a session: frames in through the protocol, records out to the
//! writer's queue, with what a record passing by updates on the way (status,
//! counters, the receipt-time warning, traffic rows, redaction).
//!
//! It also carries out the lifecycle's effects that take no waiting (rows, state,
//! backfill notices, [`Intake::apply`]), because a subscription confirmed in the
//! middle of a frame's outputs must have its rows queued in order with that frame's
//! records. It never decides a transition and never waits for anything but room in
//! the queue (and, when closing, the socket's last frames).

use super::connection::Connection;
use super::lifecycle::{Effect, EventName, Input, Lifecycle, Now, Row};
use super::outbox::Outbox;
use super::receipt_time::ReceiptTimes;
use super::{SourceStatus, State};
use crate::config::SourceConfig;
use crate::protocol::{Ctx, Output, Protocol};
use crate::record::{RECEIVED, Record, SENT, SourceName};
use crate::redact::Redactor;
use crate::store::{RecordSink, SinkPermit, WriterClosed};
use chrono::Utc;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

/// Protocol, queue and bookkeeping of one source.
pub(super) struct Intake {
    source: SourceName,
    protocol: Box<dyn Protocol>,
    outbox: Outbox,
    status: Arc<SourceStatus>,
    redactor: Redactor,
    /// The configured secrets, published with the protocol's current ones.
    configured: Vec<String>,
    receipt_times: ReceiptTimes,
    /// Where blind periods are reported (Navixy sources with backfill on).
    gaps: Option<crate::backfill::GapNotifier>,
    /// Keep every frame as a `traffic` row.
    traffic: bool,
}

impl Intake {
    pub(super) fn new(
        config: &SourceConfig,
        protocol: Box<dyn Protocol>,
        sink: RecordSink,
        status: Arc<SourceStatus>,
        gaps: Option<crate::backfill::GapNotifier>,
    ) -> Self {
        let configured = crate::redact::secrets::of_source(config);
        let redactor = Redactor::new(protocol.secrets().into_iter().chain(configured.clone()));
        let intake = Intake {
            source: config.name.as_str().into(),
            protocol,
            outbox: Outbox::new(sink),
            status,
            redactor,
            configured,
            receipt_times: ReceiptTimes::default(),
            gaps,
            traffic: config.traffic,
        };
        intake.publish_secrets();
        intake
    }

    pub(super) fn protocol(&self) -> &dyn Protocol {
        &*self.protocol
    }

    pub(super) fn status(&self) -> &SourceStatus {
        &self.status
    }

    pub(super) fn redact(&self, text: &str) -> String {
        self.redactor.redact(text)
    }

    /// Learns the secrets the protocol holds now (a session hash, recent
    /// signatures) and makes them known to every sink, with the configured ones.
    pub(super) fn publish_secrets(&self) {
        let mut secrets = self.configured.clone();
        secrets.extend(self.protocol.secrets());
        crate::redact::secrets::publish(&self.source, secrets);
    }

    /// Hands the protocol a new credential (Navixy login) and masks it everywhere.
    pub(super) fn set_credential(&mut self, hash: crate::config::Secret) {
        self.redactor.add(hash.expose());
        self.protocol.set_credential(hash);
        self.publish_secrets();
    }

    /// The URL of the next connect, and the same with every secret masked.
    pub(super) fn connect_url(&mut self) -> (url::Url, String) {
        let url = self.protocol.connect_url(Utc::now());
        for s in self.protocol.secrets() {
            self.redactor.add(s);
        }
        self.publish_secrets();
        let shown = self.redactor.redact(&crate::redact::redact_url(&url));
        (url, shown)
    }

    /// Carries out an effect that takes no waiting; hands back those that do.
    pub(super) fn apply(&mut self, effect: Effect) -> Result<Option<Effect>, WriterClosed> {
        match effect {
            Effect::Publish(state) => self.status.set_state(state),
            Effect::Reopened => {
                self.status.reconnects.fetch_add(1, Ordering::Relaxed);
            }
            Effect::Record(row) => self.record(row)?,
            Effect::FirstFrame(at) => {
                if let Some(gaps) = &self.gaps {
                    gaps.first_frame(at);
                }
            }
            Effect::GapEnded { from, to, cause } => {
                if let Some(gaps) = &self.gaps {
                    gaps.resumed(from, to, cause);
                }
            }
            action => return Ok(Some(action)),
        }
        Ok(None)
    }

    /// Queues a lifecycle row, with its log line.
    fn record(&mut self, row: Row) -> Result<(), WriterClosed> {
        match &row {
            Row::Closed {
                conn, reason, lost, ..
            } => {
                let reason = self.redactor.redact(reason);
                if *lost {
                    tracing::warn!(connection = conn.id, "connection lost: {reason}");
                } else {
                    tracing::info!(connection = conn.id, "connection ended: {reason}");
                }
            }
            Row::Event(e) if e.event == EventName::Subscribed => tracing::info!("subscribed"),
            Row::Event(e) if e.connection_id.is_none() && e.initiator.is_some() => {
                tracing::info!("{}", e.reason.as_deref().unwrap_or_default());
            }
            _ => {}
        }
        self.outbox.queue(row.into_record(&self.source))
    }

    /// Hands over everything that waits, waiting for room.
    pub(super) async fn flush(&mut self) -> Result<(), WriterClosed> {
        self.outbox.flush().await
    }

    /// Records wait for room: the socket must not be read.
    pub(super) fn paused(&self) -> bool {
        !self.outbox.is_empty()
    }

    pub(super) fn room(&self) -> RecordSink {
        self.outbox.room()
    }

    /// Room came free: hand over what fits. A failed reservation (`None`) means
    /// the writer has stopped.
    pub(super) fn room_freed(
        &mut self,
        permit: Option<SinkPermit<'_>>,
    ) -> Result<(), WriterClosed> {
        match permit {
            Some(permit) => self.outbox.hand_over_with(permit),
            None => {
                self.outbox.abandon(0);
                Err(WriterClosed)
            }
        }
    }

    /// The protocol's next deadline: all of them while reading, else only its
    /// keep-alives (deadlines that wait for the server cannot be judged while its
    /// frames sit unread), moved by the time spent paused.
    pub(super) fn next_deadline(&mut self, paused: Option<std::time::Duration>) -> Option<Instant> {
        if let Some(paused) = paused {
            self.protocol.postpone(paused);
        }
        match self.paused() {
            false => self.protocol.next_deadline(),
            true => self.protocol.next_keepalive(),
        }
    }

    /// A new connection: the protocol starts afresh.
    pub(super) async fn open(
        &mut self,
        conn: &mut Connection,
        life: &mut Lifecycle,
    ) -> Option<Input> {
        let outputs = self.protocol.on_open(&self.ctx(conn));
        self.carry_out(conn, life, outputs).await
    }

    /// The protocol's deadline passed.
    pub(super) async fn tick(
        &mut self,
        conn: &mut Connection,
        life: &mut Lifecycle,
    ) -> Option<Input> {
        let ctx = self.ctx(conn);
        let outputs = match self.paused() {
            false => self.protocol.on_tick(&ctx),
            true => self.protocol.keepalive(&ctx),
        };
        self.carry_out(conn, life, outputs).await
    }

    /// A text frame: its traffic row, then whatever the protocol makes of it.
    pub(super) async fn text(
        &mut self,
        conn: &mut Connection,
        life: &mut Lifecycle,
        text: String,
    ) -> Option<Input> {
        self.frame_seen(life);
        if self.traffic {
            let rec = conn.traffic(&self.source, RECEIVED, &text, &self.redactor);
            if self.outbox.queue(rec).is_err() {
                return Some(Input::WriterClosed);
            }
        }
        let (ctx, protocol) = (self.ctx(conn), &mut self.protocol);
        let outputs = super::offload::decode(text.len(), || protocol.on_text(&ctx, &text));
        self.carry_out(conn, life, outputs).await
    }

    /// Carries out protocol outputs; returns the input that ends the connection,
    /// if one of them does.
    async fn carry_out(
        &mut self,
        conn: &mut Connection,
        life: &mut Lifecycle,
        outputs: Vec<Output>,
    ) -> Option<Input> {
        for out in outputs {
            match out {
                Output::Send(text) => {
                    if self.traffic {
                        let rec = conn.traffic(&self.source, SENT, &text, &self.redactor);
                        if self.outbox.queue(rec).is_err() {
                            return Some(Input::WriterClosed);
                        }
                    }
                    if let Err(input) = conn.send(text).await {
                        return Some(input);
                    }
                }
                Output::Ping => {
                    if let Err(input) = conn.ping().await {
                        return Some(input);
                    }
                }
                Output::Record(r) => {
                    self.note_record(&r);
                    if self.outbox.queue(r).is_err() {
                        return Some(Input::WriterClosed);
                    }
                }
                Output::Subscribed => {
                    // Rows and backfill notices only: never an effect that waits.
                    for effect in life.handle(Input::Subscribed, now()) {
                        if self.apply(effect).is_err() {
                            return Some(Input::WriterClosed);
                        }
                    }
                }
                Output::CredentialDead { reason } => {
                    let reason = self.redactor.redact(&reason);
                    return Some(Input::CredentialDead { reason });
                }
                Output::Reconnect { reason } => {
                    let reason = self.redactor.redact(&reason);
                    return Some(Input::ReconnectAsked { reason });
                }
                Output::Warning(w) => tracing::warn!("{}", self.redactor.redact(&w)),
            }
        }
        None
    }

    /// The protocol's goodbye before a deliberate close (unsubscribe); whatever
    /// goes wrong with it, the close follows.
    pub(super) async fn unsubscribe(&mut self, conn: &mut Connection, life: &mut Lifecycle) {
        let outputs = self.protocol.on_close(&self.ctx(conn));
        let _ = self.carry_out(conn, life, outputs).await;
    }

    /// Records what the server sent between our close frame and its own: those
    /// frames were on the wire before the server saw the close, and dropping them
    /// would lose data on every shutdown or suspension. Only records are kept;
    /// anything the protocol would send back is moot on a closing socket.
    pub(super) async fn keep_late(
        &mut self,
        conn: &mut Connection,
        life: &mut Lifecycle,
        late: Vec<String>,
    ) -> Result<(), WriterClosed> {
        for text in late {
            self.frame_seen(life);
            if self.traffic {
                let rec = conn.traffic(&self.source, RECEIVED, &text, &self.redactor);
                self.outbox.emit(rec).await?;
            }
            for out in self.protocol.on_text(&self.ctx(conn), &text) {
                match out {
                    Output::Record(r) => {
                        self.note_record(&r);
                        self.outbox.emit(r).await?;
                    }
                    Output::Warning(w) => tracing::warn!("{}", self.redactor.redact(&w)),
                    _ => {}
                }
            }
        }
        Ok(())
    }

    /// An inbound frame of any kind: liveness for status, and the lifecycle's
    /// last-frame time (where a blind period starts).
    pub(super) fn frame_seen(&self, life: &mut Lifecycle) {
        let now = now();
        self.status.frame(now.wall.timestamp_millis());
        let effects = life.handle(Input::Frame, now);
        debug_assert!(
            effects.is_empty(),
            "a frame only moves the lifecycle's clock"
        );
    }

    fn note_record(&mut self, r: &Record) {
        crate::telemetry::emit(crate::telemetry::events::RecordReceived {
            source: &self.source,
            kind: r.kind(),
        });
        self.receipt_times.note(&self.source, r);
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

    /// The end: what waits is handed over, the state says `closed`.
    pub(super) async fn exit(mut self) {
        // Fails only when the writer is gone, which logs the count.
        let _ = self.outbox.flush().await;
        self.status.set_state(State::Closed);
    }

    fn ctx(&self, conn: &Connection) -> Ctx {
        Ctx {
            source: self.source.clone(),
            connection_id: conn.id(),
            now: Utc::now(),
            mono: Instant::now(),
        }
    }
}

/// The clock, read once per input.
pub(super) fn now() -> Now {
    Now {
        wall: Utc::now(),
        mono: Instant::now(),
    }
}
