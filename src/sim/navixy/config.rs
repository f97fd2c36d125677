//! Configuration, command-line flags and observable statistics of the Navixy
//! simulator: the knobs a test or the CLI sets before start, and what it reads after.
//!
//! Plain data only; it never starts anything.

use std::time::{Duration, Instant};

use chrono::{DateTime, Utc};
use serde_json::Value;

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
    /// Moving fleet in real time: every normal tracker reports every this long
    /// (whole seconds, as Navixy times have), update `k` at `epoch + k × interval`,
    /// also while no client listens; the REST history serves every past update.
    /// `None`: the rate-driven generator (`rate`, `updates`), times one second apart.
    pub report_interval: Option<Duration>,
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
            report_interval: None,
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
    /// Moving fleet: every tracker reports every this long in real time (e.g. "10s"),
    /// history served by track/read; overrides --rate.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub report_interval: Option<Duration>,
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
            report_interval: a.report_interval,
            ..defaults
        }
    }
}

/// What the simulator has seen and done, for assertions. Lists are capped at
/// [`crate::sim::observe::RECORD_CAP`] entries (oldest dropped).
#[derive(Debug, Clone, Default)]
pub struct NavixyStats {
    /// REST history calls received (tracker/list, track/read, sensor calls).
    pub rest_calls: u64,
    /// Most REST calls received within any one second.
    pub rest_max_per_second: u64,
    /// REST calls answered with an injected fault (429, 500).
    pub rest_faults_served: u64,
    /// WebSocket connections accepted.
    pub connections: u64,
    /// WebSocket connections currently open.
    pub open_connections: u64,
    /// The most connections ever open at once: a test that one client at a time
    /// holds the stream (cluster handovers) asserts it stays 1.
    pub max_open_connections: u64,
    /// Connections dropped on purpose (drop switch or drop period).
    pub drops: u64,
    /// Upgrades refused (wrong path, unsupported framework version).
    pub rejected_upgrades: u64,
    /// Path and query of every accepted upgrade request.
    pub connect_targets: Vec<String>,
    /// When each accepted upgrade completed, oldest first (reconnect pacing).
    pub connect_times: Vec<Instant>,
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
    /// Subscribes refused (`Wrong hash`, or a refusal set with `refuse_next_subscribes`).
    pub subscribe_errors: u64,
    /// Every `unsubscribe` message, parsed.
    pub unsubscribe_messages: Vec<Value>,
    /// Client frames that were neither heartbeats nor (un)subscribe messages.
    pub other_client_frames: Vec<String>,
    /// Close frames received from clients, by status code (`None`: a close frame
    /// without one); a connection that ended without a close frame adds nothing.
    pub close_frames: Vec<Option<u16>>,
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
    /// Distinct states written whole to a client at least once (re-sends in later
    /// snapshots not counted): what a client that stored everything it received
    /// holds, when no connection was reset with frames in flight.
    pub states_first_sent: u64,
    /// Distinct readings items written whole to a client at least once.
    pub reading_items_first_sent: u64,
}

/// Reading values in each `readings_event` item: one input, one state field, one
/// virtual sensor and one counter, all with the same distinct `update_time`.
pub const READING_VALUES_PER_ITEM: u64 = super::fleet::READING_VALUES_PER_ITEM;
