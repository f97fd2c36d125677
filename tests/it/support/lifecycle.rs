//! The lifecycle tables read back as plain rows (`session_events`, `connections`),
//! and the check that secrets are stored nowhere.
//!
//! Shared by every end-to-end test that asserts on the recorded lifecycle, whatever
//! the upstream kind.

use chrono::{DateTime, Utc};
use wsvault::store::Store;

use super::LIMIT;
use super::daemon::Daemon;
use super::db::{TestDb, fetch_cells, scalar};
use super::wait::wait_for;

/// One `session_events` row.
#[derive(Debug, Clone, PartialEq)]
pub struct Ev {
    pub id: i64,
    pub connection_id: Option<i64>,
    pub at: DateTime<Utc>,
    pub event: String,
    pub initiator: Option<String>,
    pub code: Option<i64>,
    pub reason: Option<String>,
}

/// One `connections` row.
#[derive(Debug, Clone, PartialEq)]
pub struct ConnRow {
    pub id: i64,
    pub url: String,
    pub opened_at: DateTime<Utc>,
    pub closed_at: Option<DateTime<Utc>>,
    pub close_code: Option<i64>,
    pub close_reason: Option<String>,
}

/// `source`'s lifecycle rows in the order they were minted.
pub async fn events(store: &Store, source: &str) -> Vec<Ev> {
    let sql = format!(
        "SELECT id, connection_id, occurred_at, event, initiator, code, reason \
         FROM session_events WHERE source = '{source}' ORDER BY id"
    );
    fetch_cells(store, &sql)
        .await
        .into_iter()
        .map(|r| Ev {
            id: r[0].i64(),
            connection_id: r[1].opt_i64(),
            at: r[2].ts(),
            event: r[3].text(),
            initiator: r[4].opt_text(),
            code: r[5].opt_i64(),
            reason: r[6].opt_text(),
        })
        .collect()
}

/// `source`'s connections in the order they were opened.
pub async fn connections(store: &Store, source: &str) -> Vec<ConnRow> {
    let sql = format!(
        "SELECT id, url, opened_at, closed_at, close_code, close_reason \
         FROM connections WHERE source = '{source}' ORDER BY id"
    );
    fetch_cells(store, &sql)
        .await
        .into_iter()
        .map(|r| ConnRow {
            id: r[0].i64(),
            url: r[1].text(),
            opened_at: r[2].ts(),
            closed_at: r[3].opt_ts(),
            close_code: r[4].opt_i64(),
            close_reason: r[5].opt_text(),
        })
        .collect()
}

/// How many of `evs` are `event`.
pub fn n_events(evs: &[Ev], event: &str) -> usize {
    evs.iter().filter(|e| e.event == event).count()
}

/// The event names of `evs`, for compact sequence assertions.
pub fn names(evs: &[Ev]) -> Vec<&str> {
    evs.iter().map(|e| e.event.as_str()).collect()
}

/// Polls `source`'s lifecycle rows until `pred` holds; panics with the rows and the
/// daemon log after [`LIMIT`].
pub async fn wait_events(
    store: &Store,
    daemon: &Daemon,
    source: &str,
    what: &str,
    mut pred: impl FnMut(&[Ev]) -> bool,
) -> Vec<Ev> {
    let what = format!("{what} ({source})");
    wait_for(
        LIMIT,
        &what,
        Some(daemon),
        || events(store, source),
        |evs| pred(evs),
    )
    .await
}

/// Asserts none of `secrets` appears anywhere in `db` (SQLite: the bytes of the
/// database file and its `-wal`/`-shm`/journal companions; PostgreSQL: the text of
/// every row of every contract table) nor in `log`. `control` is a string known to
/// be stored, found by the same search so the check cannot pass vacuously. Call
/// after the daemon stopped.
pub async fn assert_nowhere(
    db: &TestDb,
    store: &Store,
    secrets: &[&str],
    control: &str,
    log: &str,
) {
    let label = db.label;
    for s in secrets {
        assert!(s.len() >= 8, "test secret {s:?} too short to search for");
        assert!(!log.contains(s), "{label}: secret {s:?} in the log:\n{log}");
    }
    if let Some(path) = db.sqlite_path() {
        let dir = path.parent().expect("db dir");
        let stem = path
            .file_name()
            .expect("db name")
            .to_string_lossy()
            .to_string();
        let mut files = 0;
        let mut control_found = false;
        for entry in std::fs::read_dir(dir).expect("read db dir") {
            let entry = entry.expect("dir entry");
            let name = entry.file_name().to_string_lossy().to_string();
            if !name.starts_with(&stem) {
                continue;
            }
            files += 1;
            let bytes = std::fs::read(entry.path()).expect("read db file");
            control_found |= bytes
                .windows(control.len())
                .any(|w| w == control.as_bytes());
            for s in secrets {
                let found = bytes.windows(s.len()).any(|w| w == s.as_bytes());
                assert!(!found, "{label}: secret {s:?} in {name}");
            }
        }
        assert!(files >= 1, "{label}: no database file found at {path:?}");
        assert!(
            control_found,
            "{label}: control {control:?} not found in the files"
        );
    } else {
        let mut control_found = 0;
        for table in wsvault::store::TABLES {
            let sql =
                format!("SELECT count(*) FROM {table} AS t WHERE strpos(t::text, '{control}') > 0");
            control_found += scalar(store, &sql).await;
            for s in secrets {
                let sql =
                    format!("SELECT count(*) FROM {table} AS t WHERE strpos(t::text, '{s}') > 0");
                assert_eq!(scalar(store, &sql).await, 0, "{label}: {s:?} in {table}");
            }
        }
        assert!(control_found > 0, "{label}: control {control:?} not found");
    }
}
