//! One upstream source kept alive: connect, authenticate, subscribe, survive every
//! fault, and record each lifecycle step.
//!
//! A session owns the I/O around two pure state machines: the source's
//! [`crate::protocol::Protocol`] (frames in, frames and records out) and the
//! lifecycle (`lifecycle/`: connected, dropped, suspended… in; rows, closes, waits
//! out). The runner (`runner.rs`) is the shell that drives both over one
//! `connection.rs` socket, with backoff, the Navixy login call and the hand-off of
//! records to the writer (`outbox.rs`). It never parses protocol messages itself and
//! never talks to the database except through the writer's queue (and one read at
//! start: the Tradernet active set).

pub use crate::login as auth;
pub mod backoff;
mod connection;
mod dial;
mod intake;
mod lifecycle;
mod offload;
mod outbox;
mod receipt_time;
mod runner;
pub mod status;

use crate::config::{SourceConfig, SourceKind, StorageConfig};
use crate::protocol::{CommonOptions, Protocol};
use crate::store::{RecordSink, Store};
use std::sync::Arc;
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub use status::{SourceStatus, State};

/// What the supervisor wants a session to do; sessions watch it and react at once.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Command {
    /// Stay connected and subscribed (and resume if suspended).
    Run,
    /// Manual suspension: close with 4000, keep the subscription set, do not reconnect.
    Suspend,
    /// Close for good: unsubscribe, close 1000, emit `closed`, end the task.
    Stop,
    /// The source's lease went to another daemon (or was lost): unsubscribe, close
    /// 1000, record `suspended` with initiator `handover`, end the task without
    /// reconnecting. Unlike `Stop` the recording goes on elsewhere, so the row is a
    /// suspension (the new holder's `subscribed` ends the blind period), not `closed`.
    Handover,
}

/// The supervisor's grip on a running session.
pub struct SessionHandle {
    /// The configuration the session runs with (reload compares against it).
    pub config: SourceConfig,
    /// Live state and counters.
    pub status: Arc<SourceStatus>,
    commands: watch::Sender<Command>,
    task: JoinHandle<()>,
}

impl SessionHandle {
    /// Sends a command; a finished session ignores it.
    pub fn command(&self, c: Command) {
        let _ = self.commands.send(c);
    }

    /// Asks the session to close and waits until it has.
    pub async fn stop(self) {
        let _ = self.commands.send(Command::Stop);
        if let Err(e) = self.task.await {
            tracing::error!(source = %self.config.name, "session task failed: {e}");
        }
    }

    /// Waits for the session task to end (after a [`Command::Stop`]).
    pub async fn join(&mut self) {
        if let Err(e) = (&mut self.task).await
            && !e.is_cancelled()
        {
            tracing::error!(source = %self.config.name, "session task failed: {e}");
        }
    }

    /// Cuts the session off without a clean close (forced exit only).
    pub fn abort(&self) {
        self.task.abort();
    }

    /// True once the session task has ended.
    pub fn is_finished(&self) -> bool {
        self.task.is_finished()
    }
}

/// Builds the protocol for a source. Tradernet's is seeded with the stored active
/// security sessions so the first push after a restart closes sessions that ended
/// while the daemon was down.
pub async fn build_protocol(
    source: &SourceConfig,
    storage: &StorageConfig,
    store: Option<&Store>,
) -> Box<dyn Protocol> {
    let opts = CommonOptions {
        raw_events: storage.raw_events,
        timezone: source.timezone,
    };
    match &source.kind {
        SourceKind::Navixy(n) => Box::new(crate::protocol::navixy::NavixyProtocol::new(
            source, n, opts,
        )),
        SourceKind::Tradernet(t) => {
            let mut p = crate::protocol::tradernet::TradernetProtocol::new(source, t, opts);
            if let Some(store) = store {
                match store.active_security_sessions(&source.name).await {
                    Ok(active) => p.seed_active(active),
                    Err(e) => tracing::warn!(
                        source = %source.name,
                        "cannot read stored security sessions ({e}); sessions that ended while wsvault was down will not be closed"
                    ),
                }
            }
            Box::new(p)
        }
        SourceKind::JsonRpc(j) => Box::new(crate::protocol::jsonrpc::JsonRpcProtocol::new(
            source, j, opts,
        )),
    }
}

/// What a session shares with its source's backfill (both optional).
#[derive(Default, Clone)]
pub struct Links {
    /// Where the session reports the end of each blind period.
    pub gaps: Option<crate::backfill::GapNotifier>,
    /// The login both use (Navixy login sources), so a dead hash means one new login.
    pub login: Option<Arc<auth::SharedLogin>>,
    /// When the previous run's blind period began, if it was killed or crashed while
    /// recording this source (the `suspended{down}` row the start wrote), so this
    /// run's first subscription writes the `resumed` row that ends it.
    pub down_since: Option<chrono::DateTime<chrono::Utc>>,
}

/// Starts a session task for `source`, sending its records into `sink`.
pub async fn spawn(
    source: SourceConfig,
    storage: &StorageConfig,
    store: Option<&Store>,
    sink: RecordSink,
    initial: Command,
) -> SessionHandle {
    spawn_linked(source, storage, store, sink, initial, Links::default()).await
}

/// [`spawn`], sharing gaps and login with the source's backfill.
pub async fn spawn_linked(
    source: SourceConfig,
    storage: &StorageConfig,
    store: Option<&Store>,
    sink: RecordSink,
    initial: Command,
    links: Links,
) -> SessionHandle {
    let protocol = build_protocol(&source, storage, store).await;
    let status = Arc::new(SourceStatus::default());
    let (tx, rx) = watch::channel(initial);
    let runner = runner::Runner::new(source.clone(), protocol, sink, rx, status.clone(), links);
    let span = tracing::info_span!("source", source = %source.name);
    let task = tokio::spawn(tracing::Instrument::instrument(runner.run(), span));
    SessionHandle {
        config: source,
        status,
        commands: tx,
        task,
    }
}
