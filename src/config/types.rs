//! The validated, typed configuration every other module reads.
//!
//! These types hold only values that passed [`super::load`]'s checks: URLs have an
//! accepted scheme, durations parsed, secrets were read from their `*_file`s, and
//! per-source reconnect knobs were merged with `[supervisor]`. Nothing downstream
//! re-validates. Secrets live in [`Secret`], whose `Debug` prints `***`.

use chrono_tz::Tz;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;
use url::Url;

/// A credential that must never reach a log line, a stored URL or stored traffic.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps a credential read from the config file, the environment or a `*_file`.
    pub fn new(value: impl Into<String>) -> Self {
        Secret(value.into())
    }

    /// The clear text, for the one place that must send it upstream.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

/// The whole daemon configuration.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub storage: StorageConfig,
    pub supervisor: Timing,
    pub http: HttpConfig,
    pub log: LogConfig,
    pub retention: RetentionConfig,
    /// `[cluster]`: several daemons share the sources through leases in PostgreSQL;
    /// `None` (no `[cluster]` table) means this daemon records every source alone.
    pub cluster: Option<ClusterConfig>,
    pub sources: Vec<SourceConfig>,
}

/// `[cluster]`, validated: only ever present with a PostgreSQL storage URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterConfig {
    /// This daemon's name among the daemons sharing the database (default: the host
    /// name). Two live daemons with one name would renew each other's leases, so the
    /// second refuses to start.
    pub node: String,
    /// How long a lease lives without renewal: the longest a source stays blind
    /// after its holder dies (plus reconnect backoff).
    pub lease_ttl: Duration,
    /// How often held leases are renewed and free ones claimed.
    pub renew_every: Duration,
}

impl ClusterConfig {
    /// How long before its lease expires (by the last successful renewal, measured
    /// on the local monotonic clock) a daemon gives a source up on its own. It covers
    /// the time a stopping session needs to close and the drift between the local
    /// and the database clock, so a daemon that cannot renew has stopped recording
    /// before the database can hand the source to another daemon. A fifth of the ttl:
    /// 3 s of the default 15 s.
    pub fn safety_margin(&self) -> Duration {
        self.lease_ttl / 5
    }
}

/// How much of each inbound message `events` keeps (ARCHITECTURE.md §4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum RawEvents {
    /// Messages whose items all went to typed rows keep only their envelope and count.
    #[default]
    Envelope,
    /// Every message whole, for debugging.
    Full,
    /// No `events` rows at all.
    Off,
}

/// `[storage]`.
#[derive(Clone, PartialEq)]
pub struct StorageConfig {
    /// `sqlite://path` or `postgres://…`; may hold a password, so `Debug` redacts it.
    pub url: String,
    pub batch_size: usize,
    /// While more than a batch is queued, one transaction takes what is queued up to
    /// this many records: a backlog drains in fewer, larger commits (group commit).
    pub commit_max_rows: usize,
    /// … and up to about this many bytes of record text, so a backlog of large
    /// records does not grow one transaction's memory without bound.
    pub commit_max_bytes: usize,
    pub flush_interval: Duration,
    pub queue_capacity: usize,
    pub raw_events: RawEvents,
    /// Default for every source's `traffic`.
    pub traffic: bool,
    /// SQLite busy timeout: how long one statement waits on a lock before the writer
    /// treats the batch as retriable.
    pub busy_timeout: Duration,
    /// Cap of the writer's retry backoff.
    pub retry_max: Duration,
    /// How long the first SIGTERM may spend closing sessions and draining the queue
    /// into an unavailable database before the rest is counted as lost: without a
    /// bound, systemd's `TimeoutStopSec` would SIGKILL the daemon and the loss would
    /// go unlogged.
    pub drain_timeout: Duration,
    /// PostgreSQL: extra CA certificates (PEM) that verify the server, on top of the
    /// OS store; implies `sslmode=verify-full` unless the URL sets `sslmode`.
    pub ca_file: Option<PathBuf>,
    /// PostgreSQL: the time range of one partition of the partitioned history tables
    /// (whole hours, default a day): retention drops whole partitions, so it is also
    /// how finely retention cuts without deleting rows one by one.
    pub partition: Duration,
}

/// The storage URL as `Debug` shows it: password and whole query masked. Stricter
/// than `redact::redact_url` (which masks query values by name) because config sits
/// below the redaction layer: `redact` reads the config, never the other way round.
fn masked_url(url: &str) -> String {
    const MASK: &str = "***";
    match url::Url::parse(url.trim()) {
        Ok(mut u) => {
            if u.password().is_some() {
                let _ = u.set_password(Some(MASK));
            }
            if u.query().is_some() {
                u.set_query(Some(MASK));
            }
            // `*` is percent-encoded in the userinfo; show the plain mask.
            u.to_string().replace("%2A%2A%2A", MASK)
        }
        Err(_) => MASK.to_string(),
    }
}

impl fmt::Debug for StorageConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StorageConfig")
            .field("url", &masked_url(&self.url))
            .field("batch_size", &self.batch_size)
            .field("commit_max_rows", &self.commit_max_rows)
            .field("commit_max_bytes", &self.commit_max_bytes)
            .field("flush_interval", &self.flush_interval)
            .field("queue_capacity", &self.queue_capacity)
            .field("raw_events", &self.raw_events)
            .field("traffic", &self.traffic)
            .field("busy_timeout", &self.busy_timeout)
            .field("retry_max", &self.retry_max)
            .field("drain_timeout", &self.drain_timeout)
            .field("ca_file", &self.ca_file)
            .field("partition", &self.partition)
            .finish()
    }
}

/// Reconnect and liveness knobs: `[supervisor]`, overridable per source.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timing {
    /// First reconnect delay; doubles up to `backoff_max`, with jitter.
    pub backoff_initial: Duration,
    pub backoff_max: Duration,
    /// No inbound frame for this long means the connection is dead.
    pub idle_timeout: Duration,
    /// Navixy: wait this long for the Atmosphere handshake frame.
    pub handshake_timeout: Duration,
    /// TCP + TLS + WebSocket upgrade must finish within this.
    pub connect_timeout: Duration,
    /// Subscribed this long without a drop resets the backoff attempt counter.
    pub stable_after: Duration,
    /// Tradernet: WebSocket ping period.
    pub ping_interval: Duration,
    /// How long a subscribe may go unanswered before a warning is recorded.
    pub subscribe_timeout: Duration,
    /// Largest inbound message accepted; larger ones are logged and the connection
    /// is re-established.
    pub max_message_bytes: usize,
}

/// `[http]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct HttpConfig {
    /// Where `/metrics` and `/healthz` listen; `None` means no listener.
    pub listen: Option<SocketAddr>,
}

/// Log line format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum LogFormat {
    /// Human-readable, no ANSI colours: what journald wants.
    #[default]
    Plain,
    Json,
}

/// `[log]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LogConfig {
    pub format: LogFormat,
    /// An `EnvFilter` directive such as `info` or `wsvault=debug`.
    pub level: Option<String>,
}

/// `[retention]`: how long each table's rows are kept; absent tables are kept forever.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RetentionConfig {
    /// (table, max age), only tables whose rows have a time column.
    pub tables: Vec<(String, Duration)>,
    /// How often pruning runs.
    pub interval: Duration,
    /// Rows deleted per statement, small so writes never stall behind a prune.
    pub batch: usize,
}

/// One `[[sources]]` entry.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceConfig {
    /// Unique; every stored row carries it.
    pub name: String,
    /// The connect URL as configured (`ws://` or `wss://`), without credentials.
    pub url: Url,
    /// Zone in which naive upstream timestamps are read.
    pub timezone: Tz,
    /// Keep every frame in `traffic`.
    pub traffic: bool,
    /// Do not log in again on resume: reuse the credential or stay down.
    pub only_if_attached: bool,
    /// Extra CA certificates (PEM) trusted for this source's `wss://` and login
    /// calls, on top of the OS store: private CAs of on-premise installations.
    pub ca_file: Option<PathBuf>,
    pub timing: Timing,
    pub kind: SourceKind,
}

/// The protocol-specific part of a source.
#[derive(Debug, Clone, PartialEq)]
pub enum SourceKind {
    Navixy(NavixyConfig),
    Tradernet(TradernetConfig),
    JsonRpc(JsonRpcConfig),
}

impl SourceKind {
    /// The `kind` value as written in the config.
    pub fn name(&self) -> &'static str {
        match self {
            SourceKind::Navixy(_) => "navixy",
            SourceKind::Tradernet(_) => "tradernet",
            SourceKind::JsonRpc(_) => "jsonrpc",
        }
    }
}

/// How a Navixy source authenticates.
#[derive(Debug, Clone, PartialEq)]
pub enum NavixyAuth {
    /// An API key hash: never expires, never needs a login.
    ApiKeyHash(Secret),
    /// `POST {auth_url}` with login and password yields a session hash.
    Login { login: String, password: Secret },
}

/// Navixy-specific settings.
#[derive(Debug, Clone, PartialEq)]
pub struct NavixyConfig {
    pub auth: NavixyAuth,
    /// Full URL of the `user/auth` call; derived from `url` when not configured.
    pub auth_url: Url,
    pub subscriptions: Vec<NavixySubscription>,
    /// Ask for Atmosphere `length|message` framing.
    pub track_message_size: bool,
    /// Ask for ISO-8601 timestamps with offsets (`"iso_datetime": true`).
    pub iso_datetime: bool,
    /// At most this many logins per 10 minutes.
    pub max_logins_per_10min: u32,
    /// Filling blind periods from the REST history (see `crate::backfill`).
    pub backfill: NavixyBackfill,
}

/// How a Navixy source fills its blind periods from the REST history. Every Navixy
/// source has credentials, so backfill is on unless the operator turns it off.
#[derive(Debug, Clone, PartialEq)]
pub struct NavixyBackfill {
    /// `backfill`: whether gaps are opened and filled at all.
    pub enabled: bool,
    /// `api_url`: the REST base (`https://HOST/v2`), derived from `url` by default.
    pub api_url: Url,
    /// `backfill_rate`: requests per second, per account (Navixy allows 50).
    pub rate: u32,
    /// `backfill_max_span`: longest window asked in one `track/read`.
    pub max_span: std::time::Duration,
    /// `backfill_readings`: also refill `tracker_readings` (when readings_batch is subscribed).
    pub readings: bool,
    /// `backfill_delay`: wait this long after a gap closes before fetching it, so the
    /// snapshot sent after the resubscribe is stored first and late buffered points
    /// have reached the history.
    pub delay: std::time::Duration,
    /// `backfill_timeout`: longest wait for one REST answer.
    pub timeout: std::time::Duration,
}

/// Navixy subscription request types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NavixyRequestType {
    State,
    StateBatch,
    ReadingsBatch,
    IotMonitor,
}

impl NavixyRequestType {
    /// The wire name.
    pub fn as_str(&self) -> &'static str {
        match self {
            NavixyRequestType::State => "state",
            NavixyRequestType::StateBatch => "state_batch",
            NavixyRequestType::ReadingsBatch => "readings_batch",
            NavixyRequestType::IotMonitor => "iot_monitor",
        }
    }
}

/// Which trackers a request covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NavixyTarget {
    All,
    Selected(Vec<i64>),
}

/// One entry of a Navixy source's `subscriptions`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NavixySubscription {
    pub kind: NavixyRequestType,
    /// `state` requests are always `Selected` (sent as `trackers`).
    pub target: NavixyTarget,
    /// e.g. `"5s"`, passed through verbatim.
    pub rate_limit: Option<String>,
    /// `full` or `compact`.
    pub format: Option<String>,
    /// readings_batch only.
    pub sensor_type: Option<String>,
    /// readings_batch only.
    pub include_components: Option<bool>,
}

/// How a Tradernet source authenticates.
#[derive(Debug, Clone, PartialEq)]
pub enum TradernetAuth {
    /// `?SID=…` in the query string.
    Sid(Secret),
    /// Signed query: `X-NtApi-PublicKey`, `X-NtApi-Timestamp`, `X-NtApi-Sig`.
    ApiKey {
        public_key: Secret,
        private_key: Secret,
    },
    /// Public channels only; the sessions channel will be refused.
    None,
}

/// Tradernet-specific settings.
#[derive(Debug, Clone, PartialEq)]
pub struct TradernetConfig {
    pub auth: TradernetAuth,
    /// JSON text of the subscribe frame, default `["sessions"]`.
    pub subscribe: String,
    /// Warn when no `sessions` frame arrives within this after subscribing.
    pub sessions_timeout: Duration,
    pub user_agent: String,
}

/// One JSON-RPC request sent after every open/resume.
#[derive(Debug, Clone, PartialEq)]
pub struct JsonRpcRequest {
    pub method: String,
    pub handle: i64,
    /// JSON value (array or object).
    pub params: serde_json::Value,
}

/// JSON-RPC-specific settings.
#[derive(Clone, PartialEq)]
pub struct JsonRpcConfig {
    /// Extra upgrade headers; values may be credentials, so `Debug` hides them.
    pub headers: Vec<(String, Secret)>,
    pub requests: Vec<JsonRpcRequest>,
}

impl fmt::Debug for JsonRpcConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.headers.iter().map(|(k, _)| k.as_str()).collect();
        f.debug_struct("JsonRpcConfig")
            .field("headers", &names)
            .field("requests", &self.requests)
            .finish()
    }
}

/// Where the config file lives when `--config` is not given.
pub fn default_config_path() -> PathBuf {
    PathBuf::from("/etc/wsvault/wsvault.toml")
}
