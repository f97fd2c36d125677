//! Filling blind periods of Navixy sources from the REST history.
//!
//! Navixy's WebSocket has no replay: what trackers reported while wsvault was not
//! subscribed (a drop, a manual suspension, the daemon being down) never arrives
//! live. The platform keeps it, though, and serves it over REST. Each blind period
//! becomes a row of `gaps` ([`gaps`]); one worker task per source ([`worker`]),
//! apart from the live session, fetches its points and sensor values ([`rest`]) and
//! hands them to the same writer as live records, marked `origin = 'backfill'`. The
//! natural unique keys make a value stored once whichever way it came.
//!
//! The session only reports (through a [`GapNotifier`], never blocking): the end of
//! each blind period, and the first frame of its run, which closes the `down` gap
//! that the daemon's own absence left.

pub mod gaps;
pub mod rest;
mod worker;

use crate::config::{SourceConfig, SourceKind};
use crate::login::SharedLogin;
use crate::store::{RecordSink, Store};
use chrono::{DateTime, Utc};
use std::sync::Arc;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// Why a source was blind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Cause {
    /// The connection failed or the credential died.
    Network,
    /// An operator suspended the source.
    Manual,
    /// The daemon was not running.
    Down,
    /// The source moved from another daemon sharing the database (`[cluster]`): the
    /// time between the last row that daemon stored and our first frame.
    Handover,
}

impl Cause {
    /// The `gaps.cause` spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Cause::Network => "network",
            Cause::Manual => "manual",
            Cause::Down => "down",
            Cause::Handover => "handover",
        }
    }
}

/// What a session tells its backfill worker.
#[derive(Debug, Clone, PartialEq)]
enum Notice {
    /// A blind period from `from` (last frame before) to `to` (first frame after) ended.
    Resumed {
        from: DateTime<Utc>,
        to: DateTime<Utc>,
        cause: Cause,
    },
    /// The first frame of this run arrived at this time.
    FirstFrame(DateTime<Utc>),
}

/// The session's side of the link: sending never waits, so a busy backfill can
/// never make the session stop reading its socket.
#[derive(Debug, Clone)]
pub struct GapNotifier {
    tx: mpsc::UnboundedSender<Notice>,
}

impl GapNotifier {
    /// A blind period ended (the subscription is confirmed again).
    pub fn resumed(&self, from: DateTime<Utc>, to: DateTime<Utc>, cause: Cause) {
        let _ = self.tx.send(Notice::Resumed { from, to, cause });
    }

    /// The first frame of this run arrived (closes the `down` gap).
    pub fn first_frame(&self, at: DateTime<Utc>) {
        let _ = self.tx.send(Notice::FirstFrame(at));
    }
}

/// A running backfill worker.
pub struct Backfill {
    notifier: GapNotifier,
    login: Option<Arc<SharedLogin>>,
    task: JoinHandle<()>,
}

impl Backfill {
    /// Starts the worker of `source` when it is a Navixy source with backfill on.
    /// Reads the last frame stored for the source *before* the session starts, so
    /// the `down` gap begins where the previous run stopped.
    pub async fn start(source: &SourceConfig, store: &Store, sink: RecordSink) -> Option<Backfill> {
        Self::start_after(source, store, sink, Cause::Down).await
    }

    /// [`Backfill::start`] for a source whose blind period up to this run's first
    /// frame has cause `first_cause`: `Handover` when a lease moved the source here
    /// from another daemon (`crate::cluster::Acquired::follows_another_holder`).
    pub async fn start_after(
        source: &SourceConfig,
        store: &Store,
        sink: RecordSink,
        first_cause: Cause,
    ) -> Option<Backfill> {
        let SourceKind::Navixy(n) = &source.kind else {
            return None;
        };
        if !n.backfill.enabled {
            return None;
        }
        let last = match gaps::last_stored(store, &source.name).await {
            Ok(t) => t,
            Err(e) => {
                tracing::warn!(
                    source = %source.name,
                    "cannot read the last stored frame ({e}); no down gap for this start"
                );
                None
            }
        };
        let login = match &n.auth {
            crate::config::NavixyAuth::Login { login, password } => {
                Some(SharedLogin::new(crate::login::Authenticator::new(
                    n.auth_url.clone(),
                    login.clone(),
                    password.clone(),
                    n.max_logins_per_10min,
                    source.timing.connect_timeout,
                    source.ca_file.as_deref(),
                )))
            }
            crate::config::NavixyAuth::ApiKeyHash(_) => None,
        };
        let (tx, rx) = mpsc::unbounded_channel();
        let worker = worker::Worker::new(
            source,
            n,
            store.clone(),
            sink,
            login.clone(),
            last,
            first_cause,
        );
        let span = tracing::info_span!("backfill", source = %source.name);
        let task = tokio::spawn(tracing::Instrument::instrument(worker.run(rx), span));
        Some(Backfill {
            notifier: GapNotifier { tx },
            login,
            task,
        })
    }

    /// Where the source's session reports the end of each blind period.
    pub fn notifier(&self) -> GapNotifier {
        self.notifier.clone()
    }

    /// The login the worker shares with the source's session (Navixy login sources),
    /// so a dead hash means one new login.
    pub fn login(&self) -> Option<Arc<SharedLogin>> {
        self.login.clone()
    }

    /// Stops the worker at once. A gap it was filling stays `running` and resumes
    /// from its saved progress at the next start; rows already queued are written.
    pub fn abort(&self) {
        self.task.abort();
    }
}
