//! `wsvault status`: what the database says about each source, for an operator on
//! the host (works whether or not the daemon runs, since it reads only stored rows).
//!
//! Per source: the last lifecycle event, the last connection (open or closed), the
//! age of the newest data row and, when daemons share the database (`[cluster]`,
//! PostgreSQL), the source's lease; then each daemon's last heartbeat and the row
//! counts per table. Both backends are read through the same SQL and the same `FromRow` types (the
//! store's seam). Lease expiry and heartbeat ages
//! come from the database's clock, the one the daemons decide by. Never writes.

use crate::store::{DbTime, Param, Store, StoreError};
use chrono::{DateTime, Utc};
use sqlx::FromRow;
use std::fmt::Write as _;

/// The last `session_events` row of a source.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct LastEvent {
    /// `subscribed`, `suspended`, `closed`, …
    pub event: String,
    /// When it happened.
    #[sqlx(try_from = "DbTime")]
    pub at: DateTime<Utc>,
    /// `network` or `manual` for suspensions.
    pub initiator: Option<String>,
    /// The recorded reason.
    pub reason: Option<String>,
}

/// The newest `connections` row of a source.
#[derive(Debug, Clone, PartialEq, FromRow)]
pub struct LastConnection {
    /// The connection id.
    pub id: i64,
    /// When it opened.
    #[sqlx(try_from = "DbTime")]
    pub opened_at: DateTime<Utc>,
    /// When it closed; `None` while open.
    #[sqlx(try_from = "DbTime")]
    pub closed_at: Option<DateTime<Utc>>,
    /// Why it closed.
    pub close_reason: Option<String>,
}

/// One source as stored.
#[derive(Debug, Clone, PartialEq)]
pub struct SourceReport {
    /// The source name.
    pub name: String,
    /// Whether the given config lists it.
    pub configured: bool,
    /// Its last lifecycle event.
    pub last_event: Option<LastEvent>,
    /// Its newest connection.
    pub last_connection: Option<LastConnection>,
    /// The newest data row (events, tracker rows, notifications, session changes).
    pub last_data_at: Option<DateTime<Utc>>,
    /// Its `leases` row, when daemons share the sources.
    pub lease: Option<LeaseRow>,
}

/// A source's `leases` row.
#[derive(Debug, Clone, PartialEq)]
pub struct LeaseRow {
    /// The node recording it; `None` once released.
    pub holder: Option<String>,
    /// Grows at every change of holder.
    pub term: i64,
    /// When it expires unless renewed.
    pub expires_at: Option<DateTime<Utc>>,
    /// Seconds until then by the database clock; negative once expired.
    pub expires_in: Option<f64>,
}

/// A `nodes` row: one daemon of the cluster.
#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct NodeRow {
    /// Its name.
    pub node: String,
    /// The host it registered from.
    pub host: Option<String>,
    /// Its version.
    pub version: String,
    /// When this run of it registered.
    pub started_at: DateTime<Utc>,
    /// Its last heartbeat.
    pub last_seen_at: DateTime<Utc>,
    /// Seconds since then, by the database clock.
    pub seen_ago: f64,
    /// Set when it stopped cleanly.
    pub stopped_at: Option<DateTime<Utc>>,
}

impl SourceReport {
    /// A one-word summary of the connection state as stored.
    pub fn state(&self) -> String {
        let open = self
            .last_connection
            .as_ref()
            .is_some_and(|c| c.closed_at.is_none());
        match (&self.last_event, open) {
            (Some(e), true) if matches!(e.event.as_str(), "subscribed" | "resumed") => {
                "subscribed".into()
            }
            (_, true) => "connected".into(),
            (Some(e), false) if e.event == "suspended" => match &e.initiator {
                Some(i) => format!("suspended ({i})"),
                None => "suspended".into(),
            },
            (Some(e), false) if e.event == "socket_error" => "retrying".into(),
            (Some(e), false) => e.event.clone(),
            (None, false) => "never connected".into(),
        }
    }
}

/// Everything `wsvault status` prints.
#[derive(Debug, Clone, PartialEq)]
pub struct StatusReport {
    /// The storage URL, password masked.
    pub storage: String,
    /// Every configured or stored source.
    pub sources: Vec<SourceReport>,
    /// Row count per contract table.
    pub counts: Vec<(String, i64)>,
    /// Blind periods not (fully) recovered: pending, running, partial, failed.
    pub gaps: Vec<crate::backfill::gaps::Gap>,
    /// The daemons sharing this database (PostgreSQL with `[cluster]`), by name.
    pub nodes: Vec<NodeRow>,
}

const DATA: [(&str, &str); 6] = [
    ("events", "received_at"),
    ("tracker_states", "received_at"),
    ("tracker_readings", "received_at"),
    ("notifications", "received_at"),
    ("security_session_changes", "observed_at"),
    ("tracker_lifecycle", "received_at"),
];

fn q(source: sqlx::Error) -> StoreError {
    StoreError::Query {
        what: "reading status",
        source,
    }
}

/// Reads the report; `configured` are the source names of the config file.
pub async fn gather(store: &Store, configured: &[String]) -> Result<StatusReport, StoreError> {
    let mut names: Vec<String> = configured.to_vec();
    let stored: Vec<(String,)> = store
        .fetch_all(
            "SELECT DISTINCT source FROM connections UNION SELECT DISTINCT source FROM session_events",
            &[],
        )
        .await
        .map_err(q)?;
    for (n,) in stored {
        if !names.contains(&n) {
            names.push(n);
        }
    }
    let mut sources = Vec::new();
    for name in names {
        let by_name = [Param::Text(&name)];
        let last_event: Option<LastEvent> = store
            .fetch_optional(
                "SELECT event, occurred_at AS at, initiator, reason FROM session_events \
                 WHERE source = $1 ORDER BY occurred_at DESC, id DESC LIMIT 1",
                &by_name,
            )
            .await
            .map_err(q)?;
        let last_connection: Option<LastConnection> = store
            .fetch_optional(
                "SELECT id, opened_at, closed_at, close_reason FROM connections \
                 WHERE source = $1 ORDER BY opened_at DESC, id DESC LIMIT 1",
                &by_name,
            )
            .await
            .map_err(q)?;
        let mut last_data_at = None;
        for (table, col) in DATA {
            let sql = format!("SELECT max({col}) FROM {table} WHERE source = $1");
            let t: Option<(DbTime,)> = store.fetch_optional(&sql, &by_name).await.map_err(q)?;
            last_data_at = last_data_at.max(t.and_then(|(t,)| t.0));
        }
        sources.push(SourceReport {
            configured: configured.contains(&name),
            name,
            last_event,
            last_connection,
            last_data_at,
            lease: None,
        });
    }
    let nodes = cluster(store, &mut sources).await.map_err(q)?;
    Ok(StatusReport {
        storage: store.shown_url().to_string(),
        sources,
        counts: store.table_counts().await?,
        gaps: crate::backfill::gaps::unrecovered(store).await.map_err(q)?,
        nodes,
    })
}

/// Fills each source's lease and returns the nodes, when the cluster tables exist
/// (PostgreSQL from migration 0004 on). A lease of a source neither configured nor
/// recorded adds that source to the report.
async fn cluster(
    store: &Store,
    sources: &mut Vec<SourceReport>,
) -> Result<Vec<NodeRow>, sqlx::Error> {
    let Some(pool) = store.postgres_pool() else {
        return Ok(Vec::new());
    };
    let present: bool = sqlx::query_scalar(
        "SELECT to_regclass('leases') IS NOT NULL AND to_regclass('nodes') IS NOT NULL",
    )
    .fetch_one(pool)
    .await?;
    if !present {
        return Ok(Vec::new());
    }
    let leases: Vec<LeaseDb> = sqlx::query_as(
        "SELECT source, holder, term, expires_at, \
                extract(epoch FROM expires_at - now())::float8 AS expires_in \
         FROM leases ORDER BY source",
    )
    .fetch_all(pool)
    .await?;
    for l in leases {
        let row = LeaseRow {
            holder: l.holder,
            term: l.term,
            expires_at: l.expires_at,
            expires_in: l.expires_in,
        };
        match sources.iter_mut().find(|s| s.name == l.source) {
            Some(s) => s.lease = Some(row),
            None => sources.push(SourceReport {
                name: l.source,
                configured: false,
                last_event: None,
                last_connection: None,
                last_data_at: None,
                lease: Some(row),
            }),
        }
    }
    sqlx::query_as(
        "SELECT node, host, version, started_at, last_seen_at, \
                extract(epoch FROM now() - last_seen_at)::float8 AS seen_ago, stopped_at \
         FROM nodes ORDER BY node",
    )
    .fetch_all(pool)
    .await
}

/// A `leases` row as read.
#[derive(sqlx::FromRow)]
struct LeaseDb {
    source: String,
    holder: Option<String>,
    term: i64,
    expires_at: Option<DateTime<Utc>>,
    expires_in: Option<f64>,
}

fn secs(s: f64) -> String {
    let d = std::time::Duration::from_secs_f64(s.abs().min(1e12));
    humantime::format_duration(std::time::Duration::from_millis(d.as_millis() as u64)).to_string()
}

fn lease_line(l: &LeaseRow) -> String {
    let expiry = match (l.expires_at, l.expires_in) {
        (Some(at_), Some(s)) if s >= 0.0 => format!("expires {} (in {})", at(at_), secs(s)),
        (Some(at_), Some(s)) => format!("expired {} ({} ago)", at(at_), secs(s)),
        _ => "never held".to_string(),
    };
    match &l.holder {
        Some(h) => format!("held by {h}, term {}, {expiry}", l.term),
        None if l.term == 0 => "not held yet".to_string(),
        None => format!("released (term {}), free to claim", l.term),
    }
}

fn ago(now: DateTime<Utc>, t: DateTime<Utc>) -> String {
    let d = (now - t).to_std().unwrap_or_default();
    let secs = std::time::Duration::from_secs(d.as_secs());
    format!("{} ago", humantime::format_duration(secs))
}

fn at(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%d %H:%M:%S UTC").to_string()
}

/// The text `wsvault status` prints.
pub fn render(r: &StatusReport, now: DateTime<Utc>) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "storage: {}", r.storage);
    if r.sources.is_empty() {
        let _ = writeln!(out, "no sources configured or recorded");
    }
    for s in &r.sources {
        let note = if s.configured {
            ""
        } else {
            " (not in this config)"
        };
        let _ = writeln!(out, "\nsource {}{note}: {}", s.name, s.state());
        match &s.last_event {
            Some(e) => {
                let why = e
                    .reason
                    .as_deref()
                    .map(|r| format!(" ({r})"))
                    .unwrap_or_default();
                let _ = writeln!(
                    out,
                    "  last lifecycle event: {}{why} at {}, {}",
                    e.event,
                    at(e.at),
                    ago(now, e.at)
                );
            }
            None => {
                let _ = writeln!(out, "  last lifecycle event: none");
            }
        }
        match &s.last_connection {
            Some(c) => match c.closed_at {
                None => {
                    let _ = writeln!(out, "  connection {}: open since {}", c.id, at(c.opened_at));
                }
                Some(closed) => {
                    let why = c.close_reason.as_deref().unwrap_or("no reason recorded");
                    let _ = writeln!(
                        out,
                        "  connection {}: opened {}, closed {} ({why})",
                        c.id,
                        at(c.opened_at),
                        at(closed)
                    );
                }
            },
            None => {
                let _ = writeln!(out, "  connection: none recorded");
            }
        }
        match s.last_data_at {
            Some(t) => {
                let _ = writeln!(out, "  last event: {}, {}", at(t), ago(now, t));
            }
            None => {
                let _ = writeln!(out, "  last event: none recorded");
            }
        }
        if let Some(l) = &s.lease {
            let _ = writeln!(out, "  lease: {}", lease_line(l));
        }
    }
    if !r.nodes.is_empty() {
        let _ = writeln!(out, "\nnodes:");
        for n in &r.nodes {
            let state = match n.stopped_at {
                Some(t) => format!("stopped {}", at(t)),
                None => format!(
                    "last heartbeat {} ({} ago)",
                    at(n.last_seen_at),
                    secs(n.seen_ago)
                ),
            };
            let _ = writeln!(
                out,
                "  {} (host {}, version {}, started {}): {state}",
                n.node,
                n.host.as_deref().unwrap_or("unknown"),
                n.version,
                at(n.started_at)
            );
        }
    }
    if r.gaps.is_empty() {
        let _ = writeln!(out, "\ngaps: every recorded blind period is recovered");
    } else {
        let _ = writeln!(out, "\ngaps not fully recovered:");
        for g in &r.gaps {
            let trackers = match g.trackers_total {
                Some(t) => format!("{}/{t} trackers", g.trackers_done),
                None => "trackers not listed yet".to_string(),
            };
            let why = g
                .error
                .as_deref()
                .map(|e| format!("; {e}"))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "  {} gap {} ({}): {} to {}, {}, {trackers}, {} points, {} attempts{why}",
                g.source,
                g.id,
                g.cause,
                at(g.from_time),
                at(g.to_time),
                g.status,
                g.points,
                g.attempts
            );
        }
    }
    let _ = writeln!(out, "\nrows per table:");
    for (table, n) in &r.counts {
        let _ = writeln!(out, "  {table:<26} {n:>12}");
    }
    out
}
