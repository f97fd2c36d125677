//! The ceilings: the rows one ingest run stored, written again into a fresh database
//! of the same schema by the plainest fast path of that database, without the
//! wsvault writer, queue or protocol. SQLite: prepared multi-row `INSERT`s (256 rows
//! per statement, the daemon's largest) on one connection, WAL. PostgreSQL: `COPY …
//! FROM STDIN` into the target tables (text format, [`postgres`]).
//!
//! Two ceilings, because they answer different questions (issue 15):
//! - the **physical** ceiling writes every row in **one** transaction: the speed at
//!   which the database itself takes a backlog, whatever a client does. The daemon's
//!   headline ratio is to this one.
//! - the **per-batch** ceiling commits every `batch_size` rows, each table's share in
//!   proportion like the daemon's mixed batches: what the daemon could reach if it
//!   kept today's commit size and wasted nothing else. The gap between the two is the
//!   price of the commit size.
//!
//! Reading the rows back is not timed; encoding them for the wire is.

mod postgres;

use super::BenchError;
use super::target::{Env, Target};
use sqlx::Row as _;
use std::time::Instant;

/// One stored value, typed as SQLite stores it (PostgreSQL values travel as text).
#[derive(Debug, Clone)]
pub enum Val {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
}

#[derive(Debug, Clone, Copy)]
pub(super) enum Ty {
    Int,
    Real,
    Text,
}

pub(super) struct Table {
    pub(super) name: &'static str,
    pub(super) cols: &'static [(&'static str, Ty)],
}

const STATES: Table = Table {
    name: "tracker_states",
    cols: &[
        ("source", Ty::Text),
        ("source_id", Ty::Int),
        ("state_time", Ty::Text),
        ("received_at", Ty::Text),
        ("lat", Ty::Real),
        ("lng", Ty::Real),
        ("speed", Ty::Real),
        ("heading", Ty::Real),
        ("connection_status", Ty::Text),
        ("movement_status", Ty::Text),
        ("payload", Ty::Text),
    ],
};

const READINGS: Table = Table {
    name: "tracker_readings",
    cols: &[
        ("source", Ty::Text),
        ("tracker_id", Ty::Int),
        ("reading_kind", Ty::Text),
        ("name", Ty::Text),
        ("value", Ty::Text),
        ("value_num", Ty::Real),
        ("units", Ty::Text),
        ("update_time", Ty::Text),
        ("received_at", Ty::Text),
        ("payload", Ty::Text),
    ],
};

const EVENTS: Table = Table {
    name: "events",
    cols: &[
        ("id", Ty::Int),
        ("source", Ty::Text),
        ("connection_id", Ty::Int),
        ("received_at", Ty::Text),
        ("kind", Ty::Text),
        ("payload", Ty::Text),
        ("item_count", Ty::Int),
    ],
};

/// The rows of the three high-volume tables of one run.
#[derive(Debug, Default)]
pub struct Rows {
    pub states: Vec<Vec<Val>>,
    pub readings: Vec<Vec<Val>>,
    pub events: Vec<Vec<Val>>,
}

impl Rows {
    fn total(&self) -> usize {
        self.states.len() + self.readings.len() + self.events.len()
    }
}

fn select(t: &Table, pg: bool) -> String {
    let cols: Vec<String> = t
        .cols
        .iter()
        .map(|(c, _)| {
            if pg {
                format!("{c}::text")
            } else {
                (*c).to_string()
            }
        })
        .collect();
    format!("SELECT {} FROM {} ORDER BY id", cols.join(", "), t.name)
}

async fn read_table(target: &Target, t: &Table) -> Result<Vec<Vec<Val>>, BenchError> {
    let what = "reading rows back for the ceiling run";
    if let Some(p) = target.store.sqlite_pool() {
        let rows = sqlx::query(sqlx::AssertSqlSafe(select(t, false)))
            .fetch_all(p)
            .await
            .map_err(BenchError::sql(what))?;
        rows.iter()
            .map(|r| {
                t.cols
                    .iter()
                    .enumerate()
                    .map(|(i, (_, ty))| {
                        Ok(match ty {
                            Ty::Int => r.try_get::<Option<i64>, _>(i)?.map_or(Val::Null, Val::Int),
                            Ty::Real => {
                                r.try_get::<Option<f64>, _>(i)?.map_or(Val::Null, Val::Real)
                            }
                            Ty::Text => r
                                .try_get::<Option<String>, _>(i)?
                                .map_or(Val::Null, Val::Text),
                        })
                    })
                    .collect::<Result<Vec<Val>, sqlx::Error>>()
                    .map_err(BenchError::sql(what))
            })
            .collect()
    } else if let Some(p) = target.store.postgres_pool() {
        let rows = sqlx::query(sqlx::AssertSqlSafe(select(t, true)))
            .fetch_all(p)
            .await
            .map_err(BenchError::sql(what))?;
        rows.iter()
            .map(|r| {
                (0..t.cols.len())
                    .map(|i| {
                        Ok(r.try_get::<Option<String>, _>(i)?
                            .map_or(Val::Null, Val::Text))
                    })
                    .collect::<Result<Vec<Val>, sqlx::Error>>()
                    .map_err(BenchError::sql(what))
            })
            .collect()
    } else {
        Ok(Vec::new())
    }
}

/// Reads the stored states, readings and events of a finished run.
pub async fn read_rows(target: &Target) -> Result<Rows, BenchError> {
    Ok(Rows {
        states: read_table(target, &STATES).await?,
        readings: read_table(target, &READINGS).await?,
        events: read_table(target, &EVENTS).await?,
    })
}

/// Figures of one ceiling run.
#[derive(Debug)]
pub struct Ceiling {
    pub method: String,
    pub rows: usize,
    pub secs: f64,
    pub rows_per_s: f64,
}

/// How many rows a ceiling commits at a time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Commit {
    /// Every row in one transaction: the database's own bulk speed.
    Once,
    /// A commit every so many rows (the daemon's `batch_size`).
    Every(usize),
}

impl Commit {
    fn batches(self, total: usize) -> usize {
        match self {
            Commit::Once => 1,
            Commit::Every(n) => total.div_ceil(n.max(1)).max(1),
        }
    }

    fn describe(self) -> String {
        match self {
            Commit::Once => "one transaction".into(),
            Commit::Every(n) => format!("one transaction per {n} rows"),
        }
    }
}

/// Writes `rows` into a fresh database of `env.backend` by the plain path.
pub async fn measure(env: &Env, rows: &Rows, commit: Commit) -> Result<Ceiling, BenchError> {
    let target = Target::create(env, "ceiling").await?;
    let result = write_all(&target, rows, commit.batches(rows.total())).await;
    target.cleanup().await;
    let (method, secs) = result?;
    let n = rows.total();
    Ok(Ceiling {
        method: format!("{method}, {}", commit.describe()),
        rows: n,
        secs,
        rows_per_s: n as f64 / secs,
    })
}

/// Slice `k` of `n` nearly equal slices of `v`.
pub(super) fn slice<T>(v: &[T], k: usize, n: usize) -> &[T] {
    let start = v.len() * k / n;
    let end = v.len() * (k + 1) / n;
    &v[start..end]
}

/// The three tables with their rows, in the order every ceiling writes them.
pub(super) type Tables<'a> = [(&'static Table, &'a Vec<Vec<Val>>); 3];

async fn write_all(
    target: &Target,
    rows: &Rows,
    batches: usize,
) -> Result<(&'static str, f64), BenchError> {
    let tables: Tables<'_> = [
        (&STATES, &rows.states),
        (&READINGS, &rows.readings),
        (&EVENTS, &rows.events),
    ];
    if let Some(pool) = target.store.sqlite_pool() {
        sqlite_write(pool, &tables, batches).await
    } else if let Some(pool) = target.store.postgres_pool() {
        postgres::write(&target.url, pool, &tables, batches).await
    } else {
        Ok(("none", 0.0))
    }
}

async fn sqlite_write(
    pool: &sqlx::SqlitePool,
    tables: &Tables<'_>,
    batches: usize,
) -> Result<(&'static str, f64), BenchError> {
    let what = "writing the ceiling rows";
    let mut conn = pool.acquire().await.map_err(BenchError::sql(what))?;
    let full: Vec<String> = tables.iter().map(|(t, _)| insert_sql(t, CHUNK)).collect();
    let started = Instant::now();
    for k in 0..batches {
        sqlx::query("BEGIN IMMEDIATE")
            .execute(&mut *conn)
            .await
            .map_err(BenchError::sql(what))?;
        for (i, (t, all)) in tables.iter().enumerate() {
            for chunk in slice(all, k, batches).chunks(CHUNK) {
                let sql = if chunk.len() == CHUNK {
                    full[i].clone()
                } else {
                    insert_sql(t, chunk.len())
                };
                sqlite_insert(&mut conn, sql, chunk)
                    .await
                    .map_err(BenchError::sql(what))?;
            }
        }
        sqlx::query("COMMIT")
            .execute(&mut *conn)
            .await
            .map_err(BenchError::sql(what))?;
    }
    Ok((
        "prepared 256-row INSERTs, WAL",
        started.elapsed().as_secs_f64(),
    ))
}

/// Rows per SQLite statement: the daemon's largest chunk.
const CHUNK: usize = 256;

fn insert_sql(t: &Table, rows: usize) -> String {
    let one = format!("({})", vec!["?"; t.cols.len()].join(","));
    let cols: Vec<&str> = t.cols.iter().map(|(c, _)| *c).collect();
    format!(
        "INSERT INTO {} ({}) VALUES {}",
        t.name,
        cols.join(", "),
        vec![one; rows].join(",")
    )
}

async fn sqlite_insert(
    conn: &mut sqlx::SqliteConnection,
    sql: String,
    chunk: &[Vec<Val>],
) -> Result<(), sqlx::Error> {
    let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
    for row in chunk {
        for v in row {
            q = match v {
                Val::Null => q.bind(None::<i64>),
                Val::Int(i) => q.bind(*i),
                Val::Real(f) => q.bind(*f),
                Val::Text(s) => q.bind(s.as_str()),
            };
        }
    }
    q.execute(&mut *conn).await.map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slices_cover_everything_once() {
        let v: Vec<u32> = (0..10).collect();
        let all: Vec<u32> = (0..3).flat_map(|k| slice(&v, k, 3).to_vec()).collect();
        assert_eq!(all, v);
    }

    #[test]
    fn one_transaction_is_one_batch_and_per_batch_rounds_up() {
        assert_eq!(Commit::Once.batches(1_000_000), 1);
        assert_eq!(Commit::Every(500).batches(1_001), 3);
        assert_eq!(Commit::Every(500).batches(0), 1);
        assert_eq!(Commit::Every(0).batches(10), 10);
    }
}
