//! Failures of the cluster's statements and its refusals to run.

use super::Lost;
use std::time::Duration;

/// Failures of the cluster's own statements and refusals to run.
#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// Another live daemon already uses this node name.
    #[error(
        "another wsvault daemon is running as node `{node}` (host {host}, pid {pid}, version \
         {version}, last heartbeat {seen_ago} ago by the database clock): give every daemon \
         its own [cluster] node name (node = \"…\" or WSVAULT__CLUSTER__NODE), or stop the \
         other one; a daemon that died counts as gone {ttl} after its last heartbeat"
    )]
    NodeNameTaken {
        /// The contested name.
        node: String,
        /// The other daemon's host, as it registered.
        host: String,
        /// Its process id.
        pid: String,
        /// Its version.
        version: String,
        /// Time since its last heartbeat, formatted.
        seen_ago: String,
        /// The lease ttl, formatted.
        ttl: String,
    },
    /// This node's row now belongs to a newer daemon of the same name: this one missed
    /// its heartbeats for longer than the ttl and must stop recording everything.
    #[error(
        "node `{node}` was registered again by another daemon after this one missed its \
         heartbeats for longer than lease_ttl; every lease of this daemon is given up"
    )]
    Superseded {
        /// The name.
        node: String,
        /// Every lease this daemon thought it held: stop them all.
        lost: Vec<Lost>,
    },
    /// A statement failed; local state is unchanged and the local deadlines still run.
    #[error("cluster database statement failed while {what}: {source}")]
    Db {
        /// What the cluster was doing.
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
}

pub(super) fn db(what: &'static str) -> impl FnOnce(sqlx::Error) -> ClusterError {
    move |source| ClusterError::Db { what, source }
}

pub(super) fn fmt(d: Duration) -> String {
    humantime::format_duration(Duration::from_millis(d.as_millis() as u64)).to_string()
}
