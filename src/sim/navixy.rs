//! Loopback simulator of Navixy's event subscription (Atmosphere over WebSocket)
//! and its login call, as described in `protocols/navixy.md`.
//!
//! Owns the public API tests, the demo and the benchmarks use: configuration,
//! start/stop, fault switches and observable counters. The wire behaviour lives in
//! the submodules. It must never depend on wsvault's own client code: it is the
//! independent reference the client is tested against.

mod conn;
mod fleet;
mod subscribe;

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use tokio::sync::Notify;

use super::fanout::Fanout;
use super::faults::{Command, Faults, MALFORMED_FRAME};
use super::observe::Observed;
use super::server::ServerHandle;

pub use fleet::TrackerInfo;

/// The API key hash every default simulator accepts, so tests and the demo can
/// subscribe without a login.
pub const DEFAULT_API_KEY: &str = "0123456789abcdef0123456789abcdef";

/// How the simulator reports a tracker in the subscribe response; anything other
/// than `Normal` receives no state or readings (only lifecycle), as on the real server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum TrackerStatus {
    Normal,
    Blocked,
    Unknown,
    Disallowed,
}

impl TrackerStatus {
    /// The wire spelling.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Normal => "normal",
            Self::Blocked => "blocked",
            Self::Unknown => "unknown",
            Self::Disallowed => "disallowed",
        }
    }
}

/// Shape of each entry in the subscribe response's `data`: the documented one,
/// the one seen on the wire (no `success`), and the old servers' (no `value`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum ResponseShape {
    /// `{"success": true, "value": {...}}`
    #[default]
    Documented,
    /// `{"value": {...}}`
    WithoutSuccess,
    /// `{...}` directly
    Bare,
}

/// Whether `state_batch` items are wrapped in `{"type":"source_state_event","state":…}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum WrapItems {
    /// Even positions wrapped, odd positions bare (both forms in every batch).
    #[default]
    Alternate,
    Always,
    Never,
}

/// Everything the Navixy simulator can be told at start. All knobs are public so a
/// test states exactly the behaviour it depends on; `Default` suits the demo.
#[derive(Debug, Clone)]
pub struct NavixySimConfig {
    /// Number of simulated trackers.
    pub trackers: usize,
    /// Tracker id of the first tracker (ids are consecutive); used in responses and readings.
    pub tracker_id_base: u64,
    /// Source id of the first tracker (ids are consecutive); used in states and lifecycle.
    pub source_id_base: u64,
    /// Updates per normal tracker after its initial state; `None` = unlimited.
    pub updates: Option<u64>,
    /// Updates per second over all trackers; zero, negative or non-finite = as fast
    /// as the client reads.
    pub rate: f64,
    /// Most items per `state_batch` / `readings_batch` frame.
    pub batch_size: usize,
    /// Also generate and send `readings_batch` data.
    pub readings: bool,
    /// Client heartbeat interval announced in the handshake frame.
    pub heartbeat_interval: Duration,
    /// Write silence after which the server sends its own heartbeat `X`.
    pub server_heartbeat: Duration,
    /// API key hashes that are always valid (until revoked).
    pub api_keys: Vec<String>,
    /// Login accepted by `POST …/user/auth`.
    pub login: String,
    /// Password accepted by `POST …/user/auth`.
    pub password: String,
    /// Correct credentials answer `second_factor_required` instead of a hash.
    pub two_factor: bool,
    /// Per tracker id status reported in subscribe responses; ids outside the fleet
    /// are reported too (e.g. as `unknown`).
    pub status_overrides: Vec<(u64, TrackerStatus)>,
    /// Shape of the subscribe response entries.
    pub response_shape: ResponseShape,
    /// Wrapping of `state_batch` items.
    pub wrap_items: WrapItems,
    /// Add `additional.seq = {value: <update number>, updated}` to every state.
    pub seq: bool,
    /// Offset of the simulated user's timezone, in seconds east of UTC; naive
    /// timestamps are rendered in it, ISO ones carry it.
    pub utc_offset_secs: i32,
    /// Time of every tracker's initial state; update `k` is `epoch + k s`.
    /// `None` = simulator start, truncated to the second.
    pub epoch: Option<DateTime<Utc>>,
    /// Split every outgoing message into frames of at most this many characters
    /// (after `length|` framing), as old servers do with large messages.
    pub split_frames_at: Option<usize>,
    /// Drop every connection (no close frame) this long after it opened.
    pub drop_every: Option<Duration>,
    /// Start silent (see [`NavixyControl::set_silent`]).
    pub silent: bool,
    /// Start refusing every hash with `Wrong hash`.
    pub reject_hash: bool,
    /// Start with updates paused.
    pub paused: bool,
    /// Generate updates even while no connection is subscribed (they are then never
    /// seen, except the latest in the next snapshot, as with the real server).
    /// Off by default so that every generated state is offered to a client.
    pub run_without_subscribers: bool,
}

impl Default for NavixySimConfig {
    fn default() -> Self {
        Self {
            trackers: 5,
            tracker_id_base: 501,
            source_id_base: 90000,
            updates: None,
            rate: 5.0,
            batch_size: 100,
            readings: true,
            heartbeat_interval: Duration::from_secs(30),
            server_heartbeat: Duration::from_secs(30),
            api_keys: vec![DEFAULT_API_KEY.to_owned()],
            login: "demo@example.com".to_owned(),
            password: "demo-password".to_owned(),
            two_factor: false,
            status_overrides: Vec::new(),
            response_shape: ResponseShape::Documented,
            wrap_items: WrapItems::Alternate,
            seq: false,
            utc_offset_secs: 0,
            epoch: None,
            split_frames_at: None,
            drop_every: None,
            silent: false,
            reject_hash: false,
            paused: false,
            run_without_subscribers: false,
        }
    }
}

/// Command-line flags of `wsvault simulate navixy`.
#[derive(Debug, Clone, clap::Args)]
pub struct NavixySimArgs {
    /// Number of trackers.
    #[arg(long, default_value_t = 5)]
    pub trackers: usize,
    /// Updates per tracker after its initial state (unlimited when absent).
    #[arg(long)]
    pub updates: Option<u64>,
    /// Updates per second over all trackers (0 = as fast as the client reads).
    #[arg(long, default_value_t = 5.0)]
    pub rate: f64,
    /// Most items per batch frame.
    #[arg(long, default_value_t = 100)]
    pub batch_size: usize,
    /// Do not send readings_batch data.
    #[arg(long)]
    pub no_readings: bool,
    /// Client heartbeat interval announced in the handshake (e.g. "30s").
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub heartbeat_interval: Duration,
    /// Server heartbeat after this much write silence (e.g. "30s").
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub server_heartbeat: Duration,
    /// Accepted API key hash (repeatable; default: the built-in demo key).
    #[arg(long = "api-key")]
    pub api_keys: Vec<String>,
    /// Login accepted by the auth call.
    #[arg(long, default_value = "demo@example.com")]
    pub login: String,
    /// Password accepted by the auth call.
    #[arg(long, default_value = "demo-password")]
    pub password: String,
    /// Answer correct logins with second_factor_required.
    #[arg(long)]
    pub two_factor: bool,
    /// Tracker ids reported as blocked (no data), comma separated.
    #[arg(long, value_delimiter = ',')]
    pub blocked: Vec<u64>,
    /// Shape of subscribe response entries.
    #[arg(long, value_enum, default_value_t = ResponseShape::Documented)]
    pub response_shape: ResponseShape,
    /// Wrapping of state_batch items.
    #[arg(long, value_enum, default_value_t = WrapItems::Alternate)]
    pub wrap_items: WrapItems,
    /// Add additional.seq to every state (for gap detection).
    #[arg(long)]
    pub seq: bool,
    /// User timezone offset in seconds east of UTC.
    #[arg(long, default_value_t = 0, allow_hyphen_values = true)]
    pub utc_offset_secs: i32,
    /// Drop every connection (no close frame) this long after it opened.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub drop_every: Option<Duration>,
    /// Generate updates even with no subscriber.
    #[arg(long)]
    pub run_without_subscribers: bool,
}

impl From<NavixySimArgs> for NavixySimConfig {
    fn from(a: NavixySimArgs) -> Self {
        let defaults = NavixySimConfig::default();
        Self {
            trackers: a.trackers,
            updates: a.updates,
            rate: a.rate,
            batch_size: a.batch_size,
            readings: !a.no_readings,
            heartbeat_interval: a.heartbeat_interval,
            server_heartbeat: a.server_heartbeat,
            api_keys: if a.api_keys.is_empty() {
                defaults.api_keys.clone()
            } else {
                a.api_keys
            },
            login: a.login,
            password: a.password,
            two_factor: a.two_factor,
            status_overrides: a
                .blocked
                .into_iter()
                .map(|id| (id, TrackerStatus::Blocked))
                .collect(),
            response_shape: a.response_shape,
            wrap_items: a.wrap_items,
            seq: a.seq,
            utc_offset_secs: a.utc_offset_secs,
            drop_every: a.drop_every,
            run_without_subscribers: a.run_without_subscribers,
            ..defaults
        }
    }
}

/// What the simulator has seen and done, for assertions. Lists are capped at
/// [`super::observe::RECORD_CAP`] entries (oldest dropped).
#[derive(Debug, Clone, Default)]
pub struct NavixyStats {
    /// WebSocket connections accepted.
    pub connections: u64,
    /// WebSocket connections currently open.
    pub open_connections: u64,
    /// Connections dropped on purpose (drop switch or drop period).
    pub drops: u64,
    /// Upgrades refused (wrong path, unsupported framework version).
    pub rejected_upgrades: u64,
    /// Path and query of every accepted upgrade request.
    pub connect_targets: Vec<String>,
    /// Query string of the latest accepted upgrade request.
    pub last_connect_query: Option<String>,
    /// Calls to `…/user/auth`, whatever their outcome.
    pub auth_calls: u64,
    /// Hashes issued by successful logins.
    pub hashes_issued: u64,
    /// `subscribe` messages received (valid or not).
    pub subscribes: u64,
    /// Every `subscribe` message, parsed.
    pub subscribe_messages: Vec<Value>,
    /// Subscribes refused with `Wrong hash`.
    pub subscribe_errors: u64,
    /// Every `unsubscribe` message, parsed.
    pub unsubscribe_messages: Vec<Value>,
    /// Client frames that were neither heartbeats nor (un)subscribe messages.
    pub other_client_frames: Vec<String>,
    /// Client heartbeats (`X`) received.
    pub heartbeats_received: u64,
    /// When each client heartbeat arrived.
    pub heartbeat_times: Vec<Instant>,
    /// Server heartbeats sent.
    pub heartbeats_sent: u64,
    /// WebSocket text frames sent (handshakes, heartbeats, data, injected frames).
    pub frames_sent: u64,
    /// Distinct tracker states generated: one initial state per normal tracker plus
    /// every update. Each is a distinct (source_id, state_time).
    pub states_generated: u64,
    /// `readings_event` items generated (initial plus one per update), when readings are on.
    pub reading_items_generated: u64,
    /// Distinct reading values generated (each item holds [`READING_VALUES_PER_ITEM`]).
    pub reading_values_generated: u64,
    /// State items sent, over all connections (snapshots included, so re-sends count).
    pub state_items_sent: u64,
    /// Readings items sent, over all connections (snapshots included).
    pub reading_items_sent: u64,
}

/// Reading values in each `readings_event` item: one input, one state field, one
/// virtual sensor and one counter, all with the same distinct `update_time`.
pub const READING_VALUES_PER_ITEM: u64 = fleet::READING_VALUES_PER_ITEM;

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
    paused: AtomicBool,
    wake: Notify,
    next_conn: AtomicU64,
}

impl Shared {
    fn auth(&self) -> MutexGuard<'_, AuthState> {
        self.auth.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn latest(&self) -> MutexGuard<'_, Vec<u64>> {
        self.latest.lock().unwrap_or_else(PoisonError::into_inner)
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

    /// Sends an unknown event whose frame is about `bytes` long (e.g. 8 MiB).
    pub fn send_oversized(&self, bytes: usize) -> usize {
        let head = r#"{"type":"event","event":"sim_oversized","data":""#;
        let fill = bytes.saturating_sub(head.len() + 2);
        let text = format!("{head}{}\"}}", "x".repeat(fill));
        self.send_message(text)
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

    /// Pause (or resume) the generation of updates.
    pub fn pause_updates(&self, paused: bool) {
        self.shared.paused.store(paused, Ordering::SeqCst);
        self.shared.wake.notify_one();
    }

    fn send_message(&self, text: String) -> usize {
        self.shared
            .faults
            .command(Command::Proto(NavixyCmd::Message(text.into())))
    }
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
        let epoch = cfg.epoch.unwrap_or_else(fleet::now_truncated);
        let shared = Arc::new(Shared {
            latest: Mutex::new(vec![0; cfg.trackers]),
            epoch,
            offset: fleet::offset(cfg.utc_offset_secs),
            stats: Observed::new(NavixyStats::default()),
            faults: Faults::new(cfg.silent, cfg.drop_every),
            fanout: Fanout::new(),
            auth: Mutex::new(AuthState::default()),
            reject_hash: AtomicBool::new(cfg.reject_hash),
            paused: AtomicBool::new(cfg.paused),
            wake: Notify::new(),
            next_conn: AtomicU64::new(1),
            cfg,
        });
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
