//! Turns the merged, syntax-checked config tree into [`Config`], applying defaults and
//! refusing anything an operator probably did not mean.

use super::load::{ConfigError, check_keys, check_unique, retention_tables};
use super::types::*;
use super::value::Node;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use url::Url;

/// Tables that `[retention]` may prune (every table with a time column except the
/// current-state ones).
pub const RETENTION_TABLES: &[&str] = &[
    "events",
    "traffic",
    "session_events",
    "tracker_states",
    "tracker_readings",
    "tracker_lifecycle",
    "notifications",
    "security_session_changes",
    "connections",
    "rejected",
];

const TOP_KEYS: &[&str] = &[
    "storage",
    "supervisor",
    "http",
    "log",
    "retention",
    "cluster",
    "sources",
];
const STORAGE_KEYS: &[&str] = &[
    "url",
    "batch_size",
    "commit_max_rows",
    "commit_max_bytes",
    "flush_interval",
    "queue_capacity",
    "raw_events",
    "traffic",
    "busy_timeout",
    "retry_max",
    "drain_timeout",
    "ca_file",
    "partition",
];
const TIMING_KEYS: &[&str] = &[
    "backoff_initial",
    "backoff_max",
    "idle_timeout",
    "handshake_timeout",
    "connect_timeout",
    "stable_after",
    "ping_interval",
    "subscribe_timeout",
    "max_message_bytes",
];
const SOURCE_COMMON_KEYS: &[&str] = &[
    "name",
    "kind",
    "url",
    "timezone",
    "traffic",
    "only_if_attached",
    "ca_file",
];
const NAVIXY_KEYS: &[&str] = &[
    "api_key_hash",
    "api_key_hash_file",
    "login",
    "password",
    "password_file",
    "auth_url",
    "subscriptions",
    "track_message_size",
    "iso_datetime",
    "max_logins_per_10min",
    "backfill",
    "api_url",
    "backfill_rate",
    "backfill_max_span",
    "backfill_readings",
    "backfill_delay",
    "backfill_timeout",
];
const TRADERNET_KEYS: &[&str] = &[
    "sid",
    "sid_file",
    "public_key",
    "public_key_file",
    "private_key",
    "private_key_file",
    "subscribe",
    "sessions_timeout",
    "user_agent",
];
const JSONRPC_KEYS: &[&str] = &["headers", "requests"];

/// Default reconnect and liveness knobs (production values; tests override them).
pub const DEFAULT_TIMING: Timing = Timing {
    backoff_initial: Duration::from_millis(500),
    backoff_max: Duration::from_secs(60),
    idle_timeout: Duration::from_secs(150),
    handshake_timeout: Duration::from_secs(15),
    connect_timeout: Duration::from_secs(15),
    stable_after: Duration::from_secs(60),
    ping_interval: Duration::from_secs(25),
    subscribe_timeout: Duration::from_secs(30),
    max_message_bytes: 16 << 20,
};

/// Default cap of the writer's retry backoff. It is also the longest a recovered
/// database waits for the writer's next attempt: with 30 s (the old default) the first
/// commit after a 30 s PostgreSQL outage came 21 s late (BENCHMARKS.md), while an
/// attempt every 5 s through an outage costs one failed connect and one log line.
pub const DEFAULT_RETRY_MAX: Duration = Duration::from_secs(5);
/// Default `[storage] drain_timeout`: half the unit's `TimeoutStopSec` (60 s), so the
/// writer's own report of what it lost is logged before systemd would kill it.
pub const DEFAULT_DRAIN_TIMEOUT: Duration = Duration::from_secs(30);

/// The product's own User-Agent: Tradernet's edge refuses well-known library agents.
pub const USER_AGENT: &str = concat!("wsvault/", env!("CARGO_PKG_VERSION"));

/// [`USER_AGENT`] as an owned value, for config defaults and HTTP clients.
pub fn default_user_agent() -> String {
    USER_AGENT.to_string()
}

pub(super) fn build(tree: &Value, base: &Path) -> Result<Config, ConfigError> {
    let top = Node::new(Some(tree), "the top level")?;
    check_keys(&top, TOP_KEYS)?;
    let storage = storage(&Node::new(top.get("storage"), "[storage]")?, base)?;
    let sup_node = Node::new(top.get("supervisor"), "[supervisor]")?;
    check_keys(&sup_node, TIMING_KEYS)?;
    let supervisor = timing(&sup_node, DEFAULT_TIMING)?;
    let http = http(&Node::new(top.get("http"), "[http]")?)?;
    let log = log(&Node::new(top.get("log"), "[log]")?)?;
    let retention = retention(&Node::new(top.get("retention"), "[retention]")?)?;
    let cluster = super::cluster::cluster(
        &Node::new(top.get("cluster"), "[cluster]")?,
        top.get("cluster").is_some(),
        &storage,
    )?;
    let mut sources = Vec::new();
    match top.get("sources") {
        None => {}
        Some(Value::Array(items)) => {
            for (i, item) in items.iter().enumerate() {
                sources.push(source(item, i, &storage, &supervisor, base)?);
            }
        }
        Some(_) => {
            return Err(ConfigError::BadValue {
                key: "sources".into(),
                place: "the top level".into(),
                message: "expected [[sources]] tables".into(),
            });
        }
    }
    check_unique(sources.iter().map(|s| s.name.as_str()))?;
    Ok(Config {
        storage,
        supervisor,
        http,
        log,
        retention,
        cluster,
        sources,
    })
}

fn storage(n: &Node<'_>, base: &Path) -> Result<StorageConfig, ConfigError> {
    check_keys(n, STORAGE_KEYS)?;
    let url = n
        .string("url")?
        .unwrap_or_else(|| "sqlite://wsvault.db".into());
    let scheme = url.split(':').next().unwrap_or_default().to_string();
    if !matches!(scheme.as_str(), "sqlite" | "postgres" | "postgresql") {
        return Err(ConfigError::BadScheme {
            scheme,
            key: "url".into(),
            place: n.place().into(),
            expected: "sqlite://PATH or postgres://USER@HOST/DB".into(),
        });
    }
    if scheme == "sqlite" {
        super::sqlite_url::check(&url).map_err(|message| ConfigError::BadValue {
            key: "url".into(),
            place: n.place().into(),
            message,
        })?;
    }
    let batch_size = n.int("batch_size", 1..=50_000)?.unwrap_or(500) as usize;
    let queue_capacity = n.int("queue_capacity", 1..=10_000_000)?.unwrap_or(5_000) as usize;
    if queue_capacity < batch_size {
        return Err(ConfigError::BadValue {
            key: "queue_capacity".into(),
            place: n.place().into(),
            message: format!("{queue_capacity} is smaller than batch_size {batch_size}"),
        });
    }
    let (commit_max_rows, commit_max_bytes) = commit_caps(n, batch_size)?;
    let raw_events = match n.string("raw_events")?.as_deref() {
        None | Some("envelope") => RawEvents::Envelope,
        Some("full") => RawEvents::Full,
        Some("off") => RawEvents::Off,
        Some(other) => {
            return Err(ConfigError::BadValue {
                key: "raw_events".into(),
                place: n.place().into(),
                message: format!("`{other}` is not one of envelope, full, off"),
            });
        }
    };
    Ok(StorageConfig {
        url,
        batch_size,
        commit_max_rows,
        commit_max_bytes,
        flush_interval: n
            .duration("flush_interval")?
            .unwrap_or(Duration::from_millis(100)),
        queue_capacity,
        raw_events,
        traffic: n.bool("traffic")?.unwrap_or(false),
        busy_timeout: n
            .duration("busy_timeout")?
            .unwrap_or(Duration::from_secs(5)),
        retry_max: at_least(n, "retry_max", MIN_RETRY_MAX)?.unwrap_or(DEFAULT_RETRY_MAX),
        drain_timeout: drain_timeout(n)?,
        ca_file: ca_file(n, base)?,
        partition: partition(n)?,
    })
}

/// Default `[storage] partition`: one PostgreSQL time partition per day.
pub const DEFAULT_PARTITION: Duration = Duration::from_secs(86_400);

/// `partition` is the time range of one PostgreSQL partition. Partitions start at
/// multiples of it counted from the Unix epoch, so it must be whole hours (their
/// names carry the starting hour) and at most a year (a retention limit shorter
/// than one partition could not drop anything).
fn partition(n: &Node<'_>) -> Result<Duration, ConfigError> {
    let Some(d) = n.duration("partition")? else {
        return Ok(DEFAULT_PARTITION);
    };
    let bad = |message: String| ConfigError::BadValue {
        key: "partition".into(),
        place: n.place().into(),
        message,
    };
    let hours = d.as_secs() / 3600;
    if d.subsec_nanos() != 0 || d.as_secs() % 3600 != 0 || hours == 0 {
        return Err(bad(format!(
            "{} is not a whole number of hours: a partition covers whole hours \
             (\"1h\" up to \"366d\", e.g. \"1d\")",
            humantime::format_duration(d)
        )));
    }
    if hours > 366 * 24 {
        return Err(bad(format!(
            "{} is longer than a year (\"366d\"): retention drops whole partitions, \
             so one this long would keep data far past its limit",
            humantime::format_duration(d)
        )));
    }
    Ok(d)
}

/// Default of `commit_max_rows`: four default batches per transaction while a
/// backlog lasts (issue 15: the commit, not the insert, was the per-batch cost). Not
/// more, because peak RSS at full rate grows with it (BENCHMARKS.md: 5 000 went
/// past 64 MiB on PostgreSQL).
pub const DEFAULT_COMMIT_MAX_ROWS: usize = 2_000;
/// Default of `commit_max_bytes`: bounds what one group commit holds in memory
/// (records plus their encoded copy) whatever the records' size.
pub const DEFAULT_COMMIT_MAX_BYTES: usize = 2 << 20;

/// `commit_max_rows` / `commit_max_bytes`: how far a transaction may grow past
/// `batch_size` while records are queued. A cap below `batch_size` would make the
/// two knobs contradict each other, so it is refused rather than silently raised.
fn commit_caps(n: &Node<'_>, batch_size: usize) -> Result<(usize, usize), ConfigError> {
    let rows = n
        .int("commit_max_rows", 1..=1_000_000)?
        .map_or(DEFAULT_COMMIT_MAX_ROWS.max(batch_size), |v| v as usize);
    if rows < batch_size {
        return Err(ConfigError::BadValue {
            key: "commit_max_rows".into(),
            place: n.place().into(),
            message: format!("{rows} is smaller than batch_size {batch_size}"),
        });
    }
    let bytes = n
        .int("commit_max_bytes", 65_536..=1 << 30)?
        .map_or(DEFAULT_COMMIT_MAX_BYTES, |v| v as usize);
    Ok((rows, bytes))
}

/// `drain_timeout` must leave the drain some time: zero would count every queued
/// record as lost at each stop.
fn drain_timeout(n: &Node<'_>) -> Result<Duration, ConfigError> {
    match n.duration("drain_timeout")? {
        None => Ok(DEFAULT_DRAIN_TIMEOUT),
        Some(d) if d.is_zero() => Err(ConfigError::BadValue {
            key: "drain_timeout".into(),
            place: n.place().into(),
            message: "must be longer than zero".into(),
        }),
        Some(d) => Ok(d),
    }
}

/// Smallest `backoff_initial` (and writer `retry_max`): below it a failing server or
/// database is retried hundreds of times a second (with `"0s"`, ~800 connection
/// attempts per second were measured). Still small enough for millisecond tests.
pub const MIN_BACKOFF: Duration = Duration::from_millis(10);

/// Smallest writer `retry_max`; see [`MIN_BACKOFF`].
pub const MIN_RETRY_MAX: Duration = MIN_BACKOFF;

/// Smallest `backoff_max`: the steady interval between attempts against a server
/// that stays down, so it bounds the storm to ten attempts a second per source.
pub const MIN_BACKOFF_MAX: Duration = Duration::from_millis(100);

/// An optional duration that must not be shorter than `floor`.
fn at_least(n: &Node<'_>, key: &str, floor: Duration) -> Result<Option<Duration>, ConfigError> {
    match n.duration(key)? {
        Some(d) if d < floor => Err(ConfigError::BadValue {
            key: key.into(),
            place: n.place().into(),
            message: format!(
                "{} is below the floor of {}: retrying a failing peer that often only \
                 hammers it; use at least {}",
                humantime::format_duration(d),
                humantime::format_duration(floor),
                humantime::format_duration(floor),
            ),
        }),
        d => Ok(d),
    }
}

/// `ca_file`: a PEM file of extra CA certificates, relative to the config file. Read
/// now so `check-config` refuses a missing or wrong file instead of every connect.
fn ca_file(n: &Node<'_>, base: &Path) -> Result<Option<std::path::PathBuf>, ConfigError> {
    let Some(raw) = n.string("ca_file")? else {
        return Ok(None);
    };
    let path = base.join(raw);
    crate::tls::load_ca_file(&path).map_err(|e| ConfigError::BadValue {
        key: "ca_file".into(),
        place: n.place().into(),
        message: e.to_string(),
    })?;
    Ok(Some(path))
}

fn timing(n: &Node<'_>, d: Timing) -> Result<Timing, ConfigError> {
    let t = Timing {
        backoff_initial: at_least(n, "backoff_initial", MIN_BACKOFF)?.unwrap_or(d.backoff_initial),
        backoff_max: at_least(n, "backoff_max", MIN_BACKOFF_MAX)?.unwrap_or(d.backoff_max),
        idle_timeout: n.duration("idle_timeout")?.unwrap_or(d.idle_timeout),
        handshake_timeout: n
            .duration("handshake_timeout")?
            .unwrap_or(d.handshake_timeout),
        connect_timeout: n.duration("connect_timeout")?.unwrap_or(d.connect_timeout),
        stable_after: n.duration("stable_after")?.unwrap_or(d.stable_after),
        ping_interval: n.duration("ping_interval")?.unwrap_or(d.ping_interval),
        subscribe_timeout: n
            .duration("subscribe_timeout")?
            .unwrap_or(d.subscribe_timeout),
        max_message_bytes: n
            .int("max_message_bytes", 1024..=1 << 30)?
            .map(|v| v as usize)
            .unwrap_or(d.max_message_bytes),
    };
    if t.backoff_max < t.backoff_initial {
        return Err(ConfigError::BadValue {
            key: "backoff_max".into(),
            place: n.place().into(),
            message: "must not be shorter than backoff_initial".into(),
        });
    }
    for (key, v) in [
        ("idle_timeout", t.idle_timeout),
        ("connect_timeout", t.connect_timeout),
        ("handshake_timeout", t.handshake_timeout),
        ("ping_interval", t.ping_interval),
    ] {
        if v.is_zero() {
            return Err(ConfigError::BadValue {
                key: key.into(),
                place: n.place().into(),
                message: "must be longer than zero".into(),
            });
        }
    }
    Ok(t)
}

fn http(n: &Node<'_>) -> Result<HttpConfig, ConfigError> {
    check_keys(n, &["listen"])?;
    let listen = match n.string("listen")? {
        None => None,
        Some(s) => Some(s.parse().map_err(|_| ConfigError::BadValue {
            key: "listen".into(),
            place: n.place().into(),
            message: format!("`{s}` is not an address like 127.0.0.1:9187"),
        })?),
    };
    Ok(HttpConfig { listen })
}

fn log(n: &Node<'_>) -> Result<LogConfig, ConfigError> {
    check_keys(n, &["format", "level"])?;
    let format = match n.string("format")?.as_deref() {
        None | Some("plain") => LogFormat::Plain,
        Some("json") => LogFormat::Json,
        Some(other) => {
            return Err(ConfigError::BadValue {
                key: "format".into(),
                place: n.place().into(),
                message: format!("`{other}` is not plain or json"),
            });
        }
    };
    Ok(LogConfig {
        format,
        level: n.string("level")?,
    })
}

fn retention(n: &Node<'_>) -> Result<RetentionConfig, ConfigError> {
    Ok(RetentionConfig {
        tables: retention_tables(n)?,
        interval: n.duration("interval")?.unwrap_or(Duration::from_secs(300)),
        batch: n.int("batch", 1..=1_000_000)?.unwrap_or(5_000) as usize,
    })
}

fn source(
    item: &Value,
    index: usize,
    storage: &StorageConfig,
    defaults: &Timing,
    base: &Path,
) -> Result<SourceConfig, ConfigError> {
    let provisional = format!("[[sources]] #{}", index + 1);
    let n = Node::new(Some(item), provisional.clone())?;
    let name = n.require("name", n.string("name"))?;
    if name.trim().is_empty() {
        return Err(ConfigError::BadValue {
            key: "name".into(),
            place: provisional,
            message: "must not be empty".into(),
        });
    }
    let n = Node::new(Some(item), format!("source `{name}`"))?;
    let kind = n.require("kind", n.string("kind"))?;
    let specific: &[&str] = match kind.as_str() {
        "navixy" => NAVIXY_KEYS,
        "tradernet" => TRADERNET_KEYS,
        "jsonrpc" => JSONRPC_KEYS,
        _ => {
            return Err(ConfigError::UnknownKind {
                kind,
                place: n.place().into(),
            });
        }
    };
    let allowed: Vec<&str> = SOURCE_COMMON_KEYS
        .iter()
        .chain(TIMING_KEYS)
        .chain(specific)
        .copied()
        .collect();
    check_keys(&n, &allowed)?;
    let url = ws_url(&n, "url")?;
    let timezone = match n.string("timezone")? {
        None => chrono_tz::Tz::UTC,
        Some(tz) => tz.parse().map_err(|_| ConfigError::BadValue {
            key: "timezone".into(),
            place: n.place().into(),
            message: format!("`{tz}` is not an IANA zone name like Europe/Vienna"),
        })?,
    };
    let mut kind_defaults = *defaults;
    if kind == "tradernet" && defaults.idle_timeout == DEFAULT_TIMING.idle_timeout {
        // Tradernet has no application heartbeat: ~60 s without a frame (pongs
        // included) means dead, per the protocol notes.
        kind_defaults.idle_timeout = Duration::from_secs(60);
    }
    let timing = timing(&n, kind_defaults)?;
    let kind = match kind.as_str() {
        "navixy" => SourceKind::Navixy(super::sources::navixy(&n, &url, base)?),
        "tradernet" => SourceKind::Tradernet(super::sources::tradernet(&n, base)?),
        _ => SourceKind::JsonRpc(super::sources::jsonrpc(&n)?),
    };
    Ok(SourceConfig {
        name,
        url,
        timezone,
        traffic: n.bool("traffic")?.unwrap_or(storage.traffic),
        only_if_attached: n.bool("only_if_attached")?.unwrap_or(false),
        ca_file: ca_file(&n, base)?,
        timing,
        kind,
    })
}

/// A WebSocket URL: `wss://`, or `ws://` (allowed for simulators and loopback; the
/// supervisor warns when the host is not loopback).
pub(super) fn ws_url(n: &Node<'_>, key: &str) -> Result<Url, ConfigError> {
    let raw = n.require(key, n.string(key))?;
    parse_url(
        n,
        key,
        &raw,
        &["ws", "wss"],
        "wss:// (or ws:// for loopback)",
    )
}

/// Parses a URL and checks its scheme against `schemes`.
pub(super) fn parse_url(
    n: &Node<'_>,
    key: &str,
    raw: &str,
    schemes: &[&str],
    expected: &str,
) -> Result<Url, ConfigError> {
    let url = Url::parse(raw).map_err(|e| ConfigError::BadUrl {
        key: key.into(),
        place: n.place().into(),
        message: format!("{e}"),
    })?;
    if !schemes.contains(&url.scheme()) {
        return Err(ConfigError::BadScheme {
            scheme: url.scheme().into(),
            key: key.into(),
            place: n.place().into(),
            expected: expected.into(),
        });
    }
    if url.host_str().is_none_or(|h| h.is_empty()) {
        return Err(ConfigError::BadUrl {
            key: key.into(),
            place: n.place().into(),
            message: "has no host".into(),
        });
    }
    Ok(url)
}
