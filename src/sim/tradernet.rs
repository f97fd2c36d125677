//! Loopback simulator of Tradernet's WebSocket security-sessions channel, as
//! Tradernet's public WebSocket API documentation describes it.
//!
//! Owns the public API (start/stop, session control, fault switches, ground-truth
//! history, counters); the wire behaviour lives in the submodules. It must never
//! depend on wsvault's own client code, and never logs SIDs, keys or signatures.

mod config;
mod conn;
mod sessions;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::sync::watch;

use super::faults::{Command, Faults, MALFORMED_FRAME};
use super::observe::Observed;
use super::server::ServerHandle;

pub use config::{
    DEFAULT_API_KEY, DEFAULT_SID, ScheduledSession, SessionChange, SessionChangeKind, SessionSpec,
    TradernetSimArgs, TradernetSimConfig, TradernetStats,
};
pub use conn::sign;

/// State shared by the control handle, the scheduler and the connection tasks.
#[derive(Debug)]
struct Shared {
    cfg: TradernetSimConfig,
    stats: Observed<TradernetStats>,
    faults: Faults<()>,
    book: Mutex<sessions::Book>,
    /// Bumped on every change of the session set; connections push on change.
    version: watch::Sender<u64>,
    demo: AtomicBool,
    answer: AtomicBool,
}

impl Shared {
    fn book(&self) -> MutexGuard<'_, sessions::Book> {
        self.book.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Handle to steer a running Tradernet simulator and observe it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TradernetControl {
    shared: Arc<Shared>,
}

impl TradernetControl {
    /// A copy of the counters, records and session history.
    pub fn stats(&self) -> TradernetStats {
        self.shared.stats.snapshot()
    }

    /// Waits until `pred` holds for the stats or `timeout` passes; returns whether it held.
    pub async fn wait_until(
        &self,
        pred: impl FnMut(&TradernetStats) -> bool,
        timeout: Duration,
    ) -> bool {
        self.shared.stats.wait_until(pred, timeout).await
    }

    /// Opens a session now (pushed at once to subscribed connections); returns its id.
    pub fn open_session(&self, spec: SessionSpec) -> u64 {
        self.shared.open_session(spec)
    }

    /// Ends a session now; returns whether it was open.
    pub fn end_session(&self, id: u64) -> bool {
        self.shared.end_session(id)
    }

    /// Ids of the sessions open now.
    pub fn open_session_ids(&self) -> Vec<u64> {
        self.shared.book().ids()
    }

    /// The list a `sessions` push would carry now.
    pub fn sessions_json(&self) -> Value {
        self.shared.sessions_json()
    }

    /// Drops every open connection now, without a close frame; returns how many.
    pub fn drop_now(&self) -> usize {
        self.shared.faults.command(Command::Drop)
    }

    /// Drops each connection this long after it opened (`None` = never).
    pub fn set_drop_every(&self, every: Option<Duration>) {
        self.shared.faults.set_drop_every(every);
    }

    /// Silent: send nothing, read nothing (so pings go unanswered), keep sockets open.
    /// Commands other than drops issued while silent are discarded.
    pub fn set_silent(&self, silent: bool) {
        self.shared.faults.set_silent(silent);
    }

    /// Sends one frame that is not JSON.
    pub fn send_malformed(&self) -> usize {
        self.send_raw(MALFORMED_FRAME)
    }

    /// Sends `["error", text]`.
    pub fn send_error(&self, text: &str) -> usize {
        self.send_raw(&json!(["error", text]).to_string())
    }

    /// Sends `text` verbatim as one frame.
    pub fn send_raw(&self, text: &str) -> usize {
        self.shared.faults.command(Command::Raw(text.to_owned()))
    }

    /// Demo mode: connections opened from now on get demo `userData` and are refused
    /// the sessions channel, whatever their credentials.
    pub fn set_demo(&self, demo: bool) {
        self.shared.demo.store(demo, Ordering::SeqCst);
    }

    /// Whether `["sessions"]` is answered at all (off: silently ignored).
    pub fn set_answer_subscribe(&self, answer: bool) {
        self.shared.answer.store(answer, Ordering::SeqCst);
    }
}

/// A running Tradernet simulator. Dropping it stops it too; `shutdown` waits for it.
#[derive(Debug)]
pub struct TradernetSim {
    server: ServerHandle,
    control: TradernetControl,
}

impl TradernetSim {
    /// Binds `listen` (port 0 allowed), opens the sessions scheduled at offset zero
    /// and serves the WebSocket endpoint at `/`.
    pub async fn start(
        listen: SocketAddr,
        cfg: TradernetSimConfig,
    ) -> std::io::Result<TradernetSim> {
        let shared = Arc::new(Shared {
            stats: Observed::new(TradernetStats::default()),
            faults: Faults::new(cfg.silent, cfg.drop_every),
            book: Mutex::new(sessions::Book::new(cfg.first_session_id)),
            version: watch::Sender::new(0),
            demo: AtomicBool::new(cfg.demo),
            answer: AtomicBool::new(cfg.answer_subscribe),
            cfg,
        });
        let conn_shared = Arc::clone(&shared);
        let mut server = ServerHandle::bind(listen, move |stream, _peer| {
            conn::serve(Arc::clone(&conn_shared), stream)
        })
        .await?;
        server.attach(tokio::spawn(sessions::run_schedule(Arc::clone(&shared))));
        let control = TradernetControl { shared };
        // Sessions due at start are open before the first client can connect.
        let due_now = control
            .shared
            .cfg
            .schedule
            .iter()
            .filter(|s| s.open_after.is_zero())
            .count();
        control
            .wait_until(|s| s.history.len() >= due_now, Duration::from_secs(5))
            .await;
        Ok(TradernetSim { server, control })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `ws://ADDR/` without credentials.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/", self.addr())
    }

    /// `ws://ADDR/?SID=<sid>`.
    pub fn url_with_sid(&self, sid: &str) -> String {
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("SID", sid)
            .finish();
        format!("{}?{q}", self.ws_url())
    }

    /// `ws://ADDR/?X-NtApi-PublicKey=…&X-NtApi-Timestamp=<now>&X-NtApi-Sig=…`.
    pub fn url_with_key(&self, public: &str, private: &str) -> String {
        let ts = chrono::Utc::now().timestamp().to_string();
        let q: String = url::form_urlencoded::Serializer::new(String::new())
            .append_pair("X-NtApi-PublicKey", public)
            .append_pair("X-NtApi-Timestamp", &ts)
            .append_pair("X-NtApi-Sig", &sign(private, &ts))
            .finish();
        format!("{}?{q}", self.ws_url())
    }

    /// The control and observation handle.
    pub fn control(&self) -> &TradernetControl {
        &self.control
    }

    /// Stops serving: open connections are dropped without a close frame.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// Serves until Ctrl-C (for `wsvault simulate tradernet`), printing the URL first.
pub async fn run_until_ctrl_c(listen: SocketAddr, cfg: TradernetSimConfig) -> std::io::Result<()> {
    let sim = TradernetSim::start(listen, cfg).await?;
    println!("tradernet simulator listening: ws {}", sim.ws_url());
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
