//! `[cluster]`: validation of the keys that let several daemons share the sources of
//! one PostgreSQL database (see `crate::cluster`).
//!
//! The same config file is meant to be installed on every host, so the node name
//! defaults to the host name, and every timing rule that keeps two daemons from
//! recording one source is checked here rather than discovered at run time.

use super::load::{ConfigError, check_keys};
use super::types::{ClusterConfig, StorageConfig};
use super::value::Node;
use std::time::Duration;

const KEYS: &[&str] = &["node", "lease_ttl", "renew_every"];

/// Default `lease_ttl`: a dead daemon's sources move within about this long.
pub const DEFAULT_LEASE_TTL: Duration = Duration::from_secs(15);

/// Shortest `lease_ttl`: below it a busy database or a garbage-collection pause of
/// the host would make leases flap. Short enough for tests.
pub const MIN_LEASE_TTL: Duration = Duration::from_millis(100);

/// Longest node name: it is stored in every lease, node and audit row.
const MAX_NODE_LEN: usize = 64;

/// Reads `[cluster]` when the table is present. Refused with a SQLite storage URL:
/// the daemons coordinate through one shared database, and a SQLite file is local to
/// one host (and serialises every writer on one lock).
pub(super) fn cluster(
    n: &Node<'_>,
    present: bool,
    storage: &StorageConfig,
) -> Result<Option<ClusterConfig>, ConfigError> {
    if !present {
        return Ok(None);
    }
    check_keys(n, KEYS)?;
    let scheme = storage
        .url
        .trim()
        .split(':')
        .next()
        .unwrap_or_default()
        .to_ascii_lowercase();
    if !matches!(scheme.as_str(), "postgres" | "postgresql") {
        return Err(ConfigError::BadValue {
            key: "[cluster]".into(),
            place: "the config".into(),
            message: "needs PostgreSQL storage: the daemons share the sources through a \
                      leases table in one database that every host reaches, and a SQLite \
                      file belongs to one host; set [storage] url = \"postgres://…\" or \
                      remove [cluster] to record every source with this one daemon"
                .into(),
        });
    }
    let node = match n.string("node")? {
        Some(name) => name,
        None => host_name().ok_or_else(|| ConfigError::BadValue {
            key: "node".into(),
            place: n.place().into(),
            message: "the host name cannot be read to name this daemon; set node = \"…\" \
                      (or WSVAULT__CLUSTER__NODE)"
                .into(),
        })?,
    };
    check_node_name(n, &node)?;
    let lease_ttl = n.duration("lease_ttl")?.unwrap_or(DEFAULT_LEASE_TTL);
    if lease_ttl < MIN_LEASE_TTL {
        return Err(ConfigError::BadValue {
            key: "lease_ttl".into(),
            place: n.place().into(),
            message: format!(
                "{} is below the floor of {}",
                humantime::format_duration(lease_ttl),
                humantime::format_duration(MIN_LEASE_TTL)
            ),
        });
    }
    let mut cfg = ClusterConfig {
        node,
        lease_ttl,
        renew_every: lease_ttl / 3,
    };
    if let Some(every) = n.duration("renew_every")? {
        cfg.renew_every = every;
    }
    // Two renewal attempts must fit before the daemon gives its sources up on its
    // own (ttl − safety margin), so one slow or failed statement costs nothing.
    let latest = (cfg.lease_ttl - cfg.safety_margin()) / 2;
    if cfg.renew_every.is_zero() || cfg.renew_every > latest {
        return Err(ConfigError::BadValue {
            key: "renew_every".into(),
            place: n.place().into(),
            message: format!(
                "{} must be longer than zero and at most {} with lease_ttl {}: a daemon \
                 stops recording a source {} (a fifth of the ttl) before its lease \
                 expires, and two renewals must fit before that",
                humantime::format_duration(cfg.renew_every),
                humantime::format_duration(latest),
                humantime::format_duration(cfg.lease_ttl),
                humantime::format_duration(cfg.safety_margin()),
            ),
        });
    }
    Ok(Some(cfg))
}

/// Node names appear in logs, metrics and SQL rows: keep them to what a host name
/// may contain.
fn check_node_name(n: &Node<'_>, node: &str) -> Result<(), ConfigError> {
    let ok = !node.is_empty()
        && node.len() <= MAX_NODE_LEN
        && node
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'));
    if ok {
        Ok(())
    } else {
        Err(ConfigError::BadValue {
            key: "node".into(),
            place: n.place().into(),
            message: format!(
                "`{node}` is not a node name: use 1 to {MAX_NODE_LEN} letters, digits, \
                 '-', '_' or '.'"
            ),
        })
    }
}

/// The kernel's host name (`uname`), which needs no `/proc` (the systemd unit hides
/// most of it) and no network.
pub fn host_name() -> Option<String> {
    let uts = rustix::system::uname();
    let name = uts.nodename().to_str().ok()?.trim().to_string();
    (!name.is_empty()).then_some(name)
}
