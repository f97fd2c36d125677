//! Configuration, command-line flags, session specifications and observable
//! statistics of the Tradernet simulator.
//!
//! Plain data only; it never starts anything.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::Value;

/// SID every default simulator accepts.
pub const DEFAULT_SID: &str = "sim-sid-0001";
/// API key pair every default simulator accepts: (public, private).
pub const DEFAULT_API_KEY: (&str, &str) = ("sim-public-key", "sim-private-key");

/// One security session to open: everything but the times, which the simulator
/// sets when it opens the session.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionSpec {
    /// Session id; `None` = the next free id.
    pub id: Option<u64>,
    /// Broker account login; `None` = the owner login.
    pub user_login: Option<String>,
    /// Session type (`safety_type_id`).
    pub safety_type_id: i64,
    /// Key label: a string in the docs, a number in one SDK; any JSON value is sent as is.
    pub key_current: Value,
    /// Client IP reported in `ip_client`.
    pub ip_client: String,
    /// Time from opening to `expire_datetime`; `None` = the configured default.
    /// The session ends by itself when it expires.
    pub lifetime: Option<Duration>,
}

impl Default for SessionSpec {
    fn default() -> Self {
        Self {
            id: None,
            user_login: None,
            safety_type_id: 4,
            key_current: Value::from("Login, password"),
            ip_client: "203.0.113.24".to_owned(),
            lifetime: None,
        }
    }
}

/// A session the simulator opens and (optionally) ends on its own, at offsets from
/// its start: the ground truth a recording test compares against.
#[derive(Debug, Clone, PartialEq)]
pub struct ScheduledSession {
    /// Offset from simulator start at which the session opens.
    pub open_after: Duration,
    /// Offset from simulator start (not from opening); `None` = stays open.
    pub close_after: Option<Duration>,
    /// What to open.
    pub spec: SessionSpec,
}

/// Everything the Tradernet simulator can be told at start. All knobs are public;
/// `Default` suits the demo.
#[derive(Debug, Clone)]
pub struct TradernetSimConfig {
    /// SIDs accepted in `?SID=`.
    pub sids: Vec<String>,
    /// API key pairs (public, private) accepted via `X-NtApi-*` query parameters.
    pub api_keys: Vec<(String, String)>,
    /// Upgrade requests whose User-Agent contains one of these (case-insensitive),
    /// or has none, are refused with HTTP 403, like the real edge.
    pub blocked_user_agents: Vec<String>,
    /// Account login reported in sessions and userData.
    pub owner_login: String,
    /// Full session list pushed to subscribed connections this often, and at once on
    /// every change (changes in quick succession may share one push, as each push
    /// is the full list anyway).
    pub push_interval: Duration,
    /// Sessions opened/ended at fixed offsets from start.
    pub schedule: Vec<ScheduledSession>,
    /// Default session lifetime (start to expiry).
    pub session_lifetime: Duration,
    /// Open a new session this often (demo churn); each ends after `churn_lifetime`.
    pub churn_every: Option<Duration>,
    /// How long each churned session stays open.
    pub churn_lifetime: Duration,
    /// First automatically assigned session id.
    pub first_session_id: u64,
    /// Treat every new connection as unauthenticated (demo userData, sessions refused).
    pub demo: bool,
    /// Answer `["sessions"]`; off = never answer it at all.
    pub answer_subscribe: bool,
    /// Drop every connection (no close frame) this long after it opened.
    pub drop_every: Option<Duration>,
    /// Start silent.
    pub silent: bool,
}

impl Default for TradernetSimConfig {
    fn default() -> Self {
        let open_now = |ip: &str| ScheduledSession {
            open_after: Duration::ZERO,
            close_after: None,
            spec: SessionSpec {
                ip_client: ip.to_owned(),
                ..SessionSpec::default()
            },
        };
        Self {
            sids: vec![DEFAULT_SID.to_owned()],
            api_keys: vec![(DEFAULT_API_KEY.0.to_owned(), DEFAULT_API_KEY.1.to_owned())],
            blocked_user_agents: [
                "tungstenite",
                "python-requests",
                "python-urllib",
                "aiohttp",
                "okhttp",
                "go-http-client",
                "websocket-client",
            ]
            .map(str::to_owned)
            .to_vec(),
            owner_login: "ops@example.com".to_owned(),
            push_interval: Duration::from_secs(10),
            schedule: vec![open_now("203.0.113.24"), open_now("198.51.100.7")],
            session_lifetime: Duration::from_secs(24 * 3600),
            churn_every: None,
            churn_lifetime: Duration::from_secs(60),
            first_session_id: 8_812_000,
            demo: false,
            answer_subscribe: true,
            drop_every: None,
            silent: false,
        }
    }
}

/// Command-line flags of `wsvault simulate tradernet`.
#[derive(Debug, Clone, clap::Args)]
pub struct TradernetSimArgs {
    /// Accepted SID (repeatable; default: the built-in demo SID).
    #[arg(long = "sid")]
    pub sids: Vec<String>,
    /// Accepted API key pair as PUBLIC:PRIVATE (repeatable).
    #[arg(long = "api-key")]
    pub api_keys: Vec<String>,
    /// Sessions open from the start.
    #[arg(long, default_value_t = 2)]
    pub initial_sessions: usize,
    /// Full-list push period (e.g. "10s").
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub push_interval: Duration,
    /// Open a new session this often (e.g. "30s").
    #[arg(long, value_parser = humantime::parse_duration)]
    pub churn_every: Option<Duration>,
    /// How long each churned session stays open.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub churn_lifetime: Duration,
    /// Treat every connection as unauthenticated.
    #[arg(long)]
    pub demo: bool,
    /// Never answer the sessions subscribe.
    #[arg(long)]
    pub no_answer: bool,
    /// Drop every connection (no close frame) this long after it opened.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub drop_every: Option<Duration>,
}

impl From<TradernetSimArgs> for TradernetSimConfig {
    fn from(a: TradernetSimArgs) -> Self {
        let defaults = TradernetSimConfig::default();
        let template = defaults.schedule.first().cloned();
        Self {
            sids: if a.sids.is_empty() {
                defaults.sids.clone()
            } else {
                a.sids
            },
            api_keys: if a.api_keys.is_empty() {
                defaults.api_keys.clone()
            } else {
                a.api_keys
                    .iter()
                    .filter_map(|k| k.split_once(':'))
                    .map(|(p, s)| (p.to_owned(), s.to_owned()))
                    .collect()
            },
            schedule: template
                .map(|t| vec![t; a.initial_sessions])
                .unwrap_or_default(),
            push_interval: a.push_interval,
            churn_every: a.churn_every,
            churn_lifetime: a.churn_lifetime,
            demo: a.demo,
            answer_subscribe: !a.no_answer,
            drop_every: a.drop_every,
            ..defaults
        }
    }
}

/// Whether a session appeared or went away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SessionChangeKind {
    Opened,
    Ended,
}

/// One ground-truth transition of the session set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionChange {
    /// The session's id.
    pub session_id: u64,
    /// Opened or ended.
    pub change: SessionChangeKind,
    /// Wall-clock time of the change (for an opening: its `start_datetime`).
    pub at: DateTime<Utc>,
}

/// What the simulator has seen and done, for assertions. Lists are capped at
/// [`crate::sim::observe::RECORD_CAP`] entries (oldest dropped).
#[derive(Debug, Clone, Default)]
pub struct TradernetStats {
    /// WebSocket connections accepted.
    pub connections: u64,
    /// WebSocket connections currently open.
    pub open_connections: u64,
    /// Connections dropped on purpose.
    pub drops: u64,
    /// Upgrades refused (User-Agent, path, not an upgrade).
    pub rejected_upgrades: u64,
    /// Path and query of every upgrade request (accepted or not); holds secrets,
    /// kept in memory for assertions only.
    pub connect_targets: Vec<String>,
    /// User-Agent of every upgrade request (accepted or not).
    pub user_agents: Vec<Option<String>>,
    /// Connections that authenticated (SID or key signature) and got prod userData.
    pub auth_ok: u64,
    /// Connections that got demo userData (bad/missing auth or demo switch).
    pub auth_failed: u64,
    /// Every text frame received from clients, verbatim.
    pub client_frames: Vec<String>,
    /// Sessions subscribe requests received (answered or not).
    pub subscribes: u64,
    /// Subscribes refused with `["error", …]` for lack of auth.
    pub refused_subscribes: u64,
    /// `["sessions", …]` frames sent.
    pub session_pushes: u64,
    /// Text frames sent.
    pub frames_sent: u64,
    /// WebSocket pings received (each answered with a pong).
    pub pings_received: u64,
    /// Close code of every close frame a client sent (1005 = a frame without a
    /// code); a client that just drops its socket adds nothing.
    pub client_close_codes: Vec<u16>,
    /// Ground truth: every session opened or ended, in order.
    pub history: Vec<SessionChange>,
}
