//! Loopback simulator of Navixy's event subscription (Atmosphere over WebSocket)
//! and its login call, as Navixy's public API documentation describes them.
//!
//! Owns the public API tests, the demo and the benchmarks use: configuration,
//! start/stop, fault switches and observable counters. The wire behaviour lives in
//! the submodules. It must never depend on wsvault's own client code: it is the
//! independent reference the client is tested against.

mod atmosphere;
mod auth;
mod config;
mod conn;
mod fleet;
mod render;
mod rest;
mod subscribe;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::json;
use tokio::sync::Notify;

use super::fanout::Fanout;
use super::faults::{Command, Faults, MALFORMED_FRAME};
use super::observe::Observed;
use super::server::ServerHandle;

pub use config::{
    DEFAULT_API_KEY, NavixySimArgs, NavixySimConfig, NavixyStats, READING_VALUES_PER_ITEM,
    ResponseShape, TrackerStatus, WrapItems,
};
pub use fleet::TrackerInfo;

/// Protocol-specific commands delivered to every open connection.
#[derive(Debug, Clone)]
enum NavixyCmd {
    /// Send this message with the connection's framing.
    Message(Arc<str>),
    /// Send the logout event and forget the connection's subscriptions.
    Logout,
}

/// Hash bookkeeping: issued by logins, revoked by logouts, in use per connection.
#[derive(Debug, Default)]
struct AuthState {
    issued: HashSet<String>,
    revoked: HashSet<String>,
    live: HashMap<u64, String>,
}

/// State shared by the control handle, the generator and the connection tasks.
#[derive(Debug)]
struct Shared {
    cfg: NavixySimConfig,
    epoch: DateTime<Utc>,
    offset: chrono::FixedOffset,
    stats: Observed<NavixyStats>,
    faults: Faults<NavixyCmd>,
    fanout: Arc<Fanout<Arc<fleet::Chunk>>>,
    latest: Mutex<Vec<u64>>,
    auth: Mutex<AuthState>,
    reject_hash: AtomicBool,
    /// The next subscribes to refuse, and with which status (code, description).
    refusals: Mutex<(u64, u16, String)>,
    paused: AtomicBool,
    /// Sent with the connection's framing right after every successful subscribe
    /// response (see [`NavixyControl::send_after_each_subscribe`]).
    after_subscribe: Mutex<Option<Arc<str>>>,
    wake: Notify,
    next_conn: AtomicU64,
    /// Per tracker: 1 + the highest update number whose state was written to a
    /// client (0 = none yet), so re-sends are not counted as new (benchmarks).
    sent_state: Vec<AtomicU64>,
    /// The same for readings items.
    sent_readings: Vec<AtomicU64>,
    /// Fault switches and rate window of the REST history calls.
    rest: Mutex<rest::RestFaults>,
}

impl Shared {
    /// Fresh state for `cfg`: no update generated, nothing sent, no connection.
    fn new(cfg: NavixySimConfig) -> Shared {
        let epoch = cfg.epoch.unwrap_or_else(fleet::now_truncated);
        Shared {
            latest: Mutex::new(vec![0; cfg.trackers]),
            epoch,
            offset: fleet::offset(cfg.utc_offset_secs),
            stats: Observed::new(NavixyStats::default()),
            faults: Faults::new(cfg.silent, cfg.drop_every),
            fanout: Fanout::new(),
            auth: Mutex::new(AuthState::default()),
            reject_hash: AtomicBool::new(cfg.reject_hash),
            refusals: Mutex::new((0, 0, String::new())),
            paused: AtomicBool::new(cfg.paused),
            after_subscribe: Mutex::new(None),
            wake: Notify::new(),
            next_conn: AtomicU64::new(1),
            sent_state: (0..cfg.trackers).map(|_| AtomicU64::new(0)).collect(),
            sent_readings: (0..cfg.trackers).map(|_| AtomicU64::new(0)).collect(),
            rest: Mutex::default(),
            cfg,
        }
    }

    fn auth(&self) -> MutexGuard<'_, AuthState> {
        self.auth.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn latest(&self) -> MutexGuard<'_, Vec<u64>> {
        self.latest.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Takes one pending refusal, if any: the status the next subscribe is refused with.
    fn take_refusal(&self) -> Option<(u16, String)> {
        let mut r = self.refusals.lock().unwrap_or_else(PoisonError::into_inner);
        if r.0 == 0 {
            return None;
        }
        r.0 -= 1;
        Some((r.1, r.2.clone()))
    }

    fn after_subscribe(&self) -> Option<Arc<str>> {
        self.after_subscribe
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    fn hash_valid(&self, hash: &str) -> bool {
        if self.reject_hash.load(Ordering::SeqCst) {
            return false;
        }
        let auth = self.auth();
        !auth.revoked.contains(hash)
            && (self.cfg.api_keys.iter().any(|k| k == hash) || auth.issued.contains(hash))
    }
}

/// Handle to steer a running Navixy simulator and observe it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct NavixyControl {
    shared: Arc<Shared>,
}

impl NavixyControl {
    /// A copy of the counters and records.
    pub fn stats(&self) -> NavixyStats {
        self.shared.stats.snapshot()
    }

    /// Waits until `pred` holds for the stats or `timeout` passes; returns whether it held.
    pub async fn wait_until(
        &self,
        pred: impl FnMut(&NavixyStats) -> bool,
        timeout: Duration,
    ) -> bool {
        self.shared.stats.wait_until(pred, timeout).await
    }

    /// The trackers with their ids, status and latest update number.
    pub fn fleet(&self) -> Vec<TrackerInfo> {
        fleet::fleet_info(&self.shared)
    }

    /// Drops every open connection now, without a close frame; returns how many.
    pub fn drop_now(&self) -> usize {
        self.shared.faults.command(Command::Drop)
    }

    /// Drops each connection this long after it opened (`None` = never).
    pub fn set_drop_every(&self, every: Option<Duration>) {
        self.shared.faults.set_drop_every(every);
    }

    /// Silent: send nothing at all (no heartbeats, no data, no replies) and read
    /// nothing (so not even a pong leaves), but keep sockets open. Updates pause
    /// while silent. Commands other than drops issued while silent are discarded.
    pub fn set_silent(&self, silent: bool) {
        self.shared.faults.set_silent(silent);
        self.shared.wake.notify_one();
    }

    /// Sends one frame that is not JSON to every open connection.
    pub fn send_malformed(&self) -> usize {
        self.send_raw(MALFORMED_FRAME)
    }

    /// Sends `text` verbatim as one frame (no `length|` framing) to every open connection.
    pub fn send_raw(&self, text: &str) -> usize {
        self.shared.faults.command(Command::Raw(text.to_owned()))
    }

    /// Sends an unknown event whose message (before `length|` framing) is `bytes`
    /// long (e.g. 8 MiB); see [`sized_event`].
    pub fn send_oversized(&self, bytes: usize) -> usize {
        self.send_message(sized_event(bytes))
    }

    /// Sends `message` (with each connection's framing) right after every
    /// successful subscribe response from now on, before the snapshot; `None`
    /// stops it. A server that re-sends the same message to every new connection
    /// (e.g. one the client refuses as too large) behaves like this.
    pub fn send_after_each_subscribe(&self, message: Option<String>) {
        *self
            .shared
            .after_subscribe
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = message.map(Arc::from);
    }

    /// Sends an event type no client knows.
    pub fn send_unknown_event(&self) -> usize {
        self.send_message(
            json!({"type": "event", "event": "sim_unknown", "data": {"note": "unknown event"}})
                .to_string(),
        )
    }

    /// Sends a `lifecycle` event for `source_id` (`block`, `unblock`, `corrupt`).
    pub fn send_lifecycle(&self, source_id: u64, event: &str) -> usize {
        self.send_message(
            json!({"type": "event", "event": "lifecycle",
                   "data": {"source_id": source_id, "lifecycle_event": event}})
            .to_string(),
        )
    }

    /// Sends `logout` to every open connection and revokes the hash each one
    /// subscribed with; those connections get no more data.
    pub fn send_logout(&self) -> usize {
        {
            let mut auth = self.shared.auth();
            let live: Vec<String> = auth.live.values().cloned().collect();
            auth.revoked.extend(live);
        }
        self.shared
            .faults
            .command(Command::Proto(NavixyCmd::Logout))
    }

    /// Revokes one hash (API key or login hash); later subscribes with it fail.
    pub fn revoke_hash(&self, hash: &str) {
        self.shared.auth().revoked.insert(hash.to_owned());
    }

    /// Whether a subscribe with `hash` would be accepted now.
    pub fn hash_valid(&self, hash: &str) -> bool {
        self.shared.hash_valid(hash)
    }

    /// Refuse (or accept again) every hash with `Wrong hash`.
    pub fn set_reject_hash(&self, reject: bool) {
        self.shared.reject_hash.store(reject, Ordering::SeqCst);
    }

    /// Refuse the next `n` subscribes (valid hash or not) with an error frame carrying
    /// `code` and `description`, as the server does when busy (8 queue error, 15
    /// too many requests). Counted in `subscribe_errors`.
    pub fn refuse_next_subscribes(&self, n: u64, code: u16, description: &str) {
        *self
            .shared
            .refusals
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = (n, code, description.to_owned());
    }

    /// Pause (or resume) the generation of updates.
    pub fn pause_updates(&self, paused: bool) {
        self.shared.paused.store(paused, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }

    /// Answers the next `n` REST calls with HTTP 429 (alternately with error 15 in
    /// the body and without any Navixy body), as a rate-limited server does.
    pub fn rest_too_many(&self, n: u64) {
        self.rest_faults(|f| f.too_many = n);
    }

    /// Answers the next `n` REST calls with HTTP 500.
    pub fn rest_server_errors(&self, n: u64) {
        self.rest_faults(|f| f.server_errors = n);
    }

    /// Refuses `track/read` windows longer than `limit` with error 211 (`None`: no limit).
    pub fn rest_span_limit(&self, limit: Option<Duration>) {
        self.rest_faults(|f| f.span_limit = limit);
    }

    /// Delays every REST answer by `delay` (`None`: answer at once).
    pub fn rest_slow(&self, delay: Option<Duration>) {
        self.rest_faults(|f| f.slow = delay);
    }

    /// Every update of tracker index `idx` whose time lies in [from, to]: the
    /// simulator's history, as (source_id, time), for exact comparisons in tests.
    pub fn history(
        &self,
        idx: usize,
        from: DateTime<Utc>,
        to: DateTime<Utc>,
    ) -> Vec<(u64, DateTime<Utc>)> {
        let shared = &self.shared;
        let latest = shared.latest().get(idx).copied().unwrap_or(0);
        (0..=latest)
            .map(|k| shared.state_time(k))
            .filter(|t| *t >= from && *t <= to)
            .map(|t| (shared.source_id(idx), t))
            .collect()
    }

    fn rest_faults(&self, f: impl FnOnce(&mut rest::RestFaults)) {
        f(&mut self
            .shared
            .rest
            .lock()
            .unwrap_or_else(PoisonError::into_inner));
    }

    fn send_message(&self, text: String) -> usize {
        self.shared
            .faults
            .command(Command::Proto(NavixyCmd::Message(text.into())))
    }
}

/// An unknown event (`sim_oversized`) exactly `bytes` long (at least its 48-byte
/// skeleton), all ASCII, for size-limit tests.
pub fn sized_event(bytes: usize) -> String {
    let head = r#"{"type":"event","event":"sim_oversized","data":""#;
    let fill = bytes.saturating_sub(head.len() + 2);
    format!("{head}{}\"}}", "x".repeat(fill))
}

/// A running Navixy simulator. Dropping it stops it too; `shutdown` waits for it.
#[derive(Debug)]
pub struct NavixySim {
    server: ServerHandle,
    control: NavixyControl,
}

impl NavixySim {
    /// Binds `listen` (port 0 allowed) and starts serving the WebSocket endpoint
    /// (any path ending `/event/subscription`) and the login call (`…/user/auth`).
    pub async fn start(listen: SocketAddr, cfg: NavixySimConfig) -> std::io::Result<NavixySim> {
        let shared = Arc::new(Shared::new(cfg));
        fleet::count_initial(&shared);
        let conn_shared = Arc::clone(&shared);
        let mut server = ServerHandle::bind(listen, move |stream, _peer| {
            conn::serve(Arc::clone(&conn_shared), stream)
        })
        .await?;
        server.attach(tokio::spawn(fleet::generate(Arc::clone(&shared))));
        Ok(NavixySim {
            server,
            control: NavixyControl { shared },
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `ws://ADDR/v2/event/subscription`.
    pub fn ws_url(&self) -> String {
        format!("ws://{}/v2/event/subscription", self.addr())
    }

    /// `http://ADDR/v2`: the REST base (`api_url`).
    pub fn api_url(&self) -> String {
        format!("http://{}/v2", self.addr())
    }

    /// `http://ADDR/v2/user/auth`.
    pub fn auth_url(&self) -> String {
        format!("http://{}/v2/user/auth", self.addr())
    }

    /// The control and observation handle.
    pub fn control(&self) -> &NavixyControl {
        &self.control
    }

    /// Stops serving: open connections are dropped without a close frame.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

/// Serves until Ctrl-C (for `wsvault simulate navixy`), printing the URLs first.
pub async fn run_until_ctrl_c(listen: SocketAddr, cfg: NavixySimConfig) -> std::io::Result<()> {
    let sim = NavixySim::start(listen, cfg).await?;
    println!(
        "navixy simulator listening: ws {} auth {}",
        sim.ws_url(),
        sim.auth_url()
    );
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
