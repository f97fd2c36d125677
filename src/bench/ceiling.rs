//! The ceiling: the rows one ingest run stored, written again into a fresh database
//! of the same schema by the plainest fast path of that database, without the
//! wsvault writer, queue or protocol. SQLite: prepared multi-row `INSERT`s (256 rows
//! per statement, the daemon's largest), one transaction per batch. PostgreSQL: `COPY … FROM STDIN` (text
//! format), one transaction per batch. Batches hold `batch_size` rows, each table's
//! share in proportion, like the daemon's mixed batches.
//!
//! Reading the rows back is not timed; encoding them for the wire is.

use super::BenchError;
use super::target::{Env, Target};
use sqlx::Row as _;
use std::fmt::Write as _;
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
enum Ty {
    Int,
    Real,
    Text,
}

struct Table {
    name: &'static str,
    cols: &'static [(&'static str, Ty)],
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
    pub method: &'static str,
    pub rows: usize,
    pub secs: f64,
    pub rows_per_s: f64,
}

/// Writes `rows` into a fresh database of `env.backend` by the plain path.
pub async fn measure(env: &Env, rows: &Rows, batch_size: usize) -> Result<Ceiling, BenchError> {
    let target = Target::create(env, "ceiling").await?;
    let result = write_all(&target, rows, batch_size.max(1)).await;
    target.cleanup().await;
    let (method, secs) = result?;
    let n = rows.total();
    Ok(Ceiling {
        method,
        rows: n,
        secs,
        rows_per_s: n as f64 / secs,
    })
}

/// Slice `k` of `n` nearly equal slices of `v`.
fn slice<T>(v: &[T], k: usize, n: usize) -> &[T] {
    let start = v.len() * k / n;
    let end = v.len() * (k + 1) / n;
    &v[start..end]
}

async fn write_all(
    target: &Target,
    rows: &Rows,
    batch_size: usize,
) -> Result<(&'static str, f64), BenchError> {
    let batches = rows.total().div_ceil(batch_size).max(1);
    let tables = [
        (&STATES, &rows.states),
        (&READINGS, &rows.readings),
        (&EVENTS, &rows.events),
    ];
    let what = "writing the ceiling rows";
    if let Some(pool) = target.store.sqlite_pool() {
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
            "prepared 256-row INSERTs, one transaction per batch",
            started.elapsed().as_secs_f64(),
        ))
    } else if let Some(pool) = target.store.postgres_pool() {
        if psql_available() {
            let started = Instant::now();
            psql_copy(&target.url, &tables, batches).await?;
            return Ok((
                "psql (libpq, TCP_NODELAY) COPY FROM STDIN, one transaction per batch",
                started.elapsed().as_secs_f64(),
            ));
        }
        let mut conn = pool.acquire().await.map_err(BenchError::sql(what))?;
        let started = Instant::now();
        let mut buf = String::new();
        for k in 0..batches {
            sqlx::query("BEGIN")
                .execute(&mut *conn)
                .await
                .map_err(BenchError::sql(what))?;
            for (t, all) in &tables {
                let part = slice(all, k, batches);
                if part.is_empty() {
                    continue;
                }
                buf.clear();
                for row in part {
                    copy_line(&mut buf, row);
                }
                let mut copy = conn
                    .copy_in_raw(&copy_stmt(t))
                    .await
                    .map_err(BenchError::sql(what))?;
                copy.send(buf.as_bytes())
                    .await
                    .map_err(BenchError::sql(what))?;
                copy.finish().await.map_err(BenchError::sql(what))?;
            }
            sqlx::query("COMMIT")
                .execute(&mut *conn)
                .await
                .map_err(BenchError::sql(what))?;
        }
        Ok((
            "sqlx COPY FROM STDIN (no TCP_NODELAY), one transaction per batch",
            started.elapsed().as_secs_f64(),
        ))
    } else {
        Ok(("none", 0.0))
    }
}

fn copy_stmt(t: &Table) -> String {
    let cols: Vec<&str> = t.cols.iter().map(|(c, _)| *c).collect();
    format!("COPY {} ({}) FROM STDIN", t.name, cols.join(", "))
}

fn psql_available() -> bool {
    std::process::Command::new("psql")
        .arg("--version")
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

/// The PostgreSQL ceiling through libpq: sqlx 0.9.0 leaves Nagle on, which costs a
/// delayed ACK (~40 ms) per COPY and would make the "ceiling" slower than wsvault.
async fn psql_copy(
    url: &str,
    tables: &[(&Table, &Vec<Vec<Val>>)],
    batches: usize,
) -> Result<(), BenchError> {
    use tokio::io::AsyncWriteExt as _;
    let mut child = tokio::process::Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(BenchError::io("starting psql"))?;
    let mut stdin = child
        .stdin
        .take()
        .ok_or_else(|| BenchError::Daemon("psql has no stdin".into()))?;
    let mut buf = String::new();
    for k in 0..batches {
        buf.clear();
        buf.push_str("BEGIN;\n");
        for (t, all) in tables {
            let part = slice(all, k, batches);
            if part.is_empty() {
                continue;
            }
            buf.push_str(&copy_stmt(t));
            buf.push_str(";\n");
            for row in part {
                copy_line(&mut buf, row);
            }
            buf.push_str("\\.\n");
        }
        buf.push_str("COMMIT;\n");
        stdin
            .write_all(buf.as_bytes())
            .await
            .map_err(BenchError::io("writing to psql"))?;
    }
    drop(stdin);
    let out = child
        .wait_with_output()
        .await
        .map_err(BenchError::io("waiting for psql"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BenchError::Daemon(format!(
            "psql COPY failed: {}",
            String::from_utf8_lossy(&out.stderr)
        )))
    }
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

/// One row in COPY text format: tab-separated, `\N` for NULL, backslash escapes.
fn copy_line(buf: &mut String, row: &[Val]) {
    for (i, v) in row.iter().enumerate() {
        if i > 0 {
            buf.push('\t');
        }
        match v {
            Val::Null => buf.push_str("\\N"),
            Val::Int(n) => {
                let _ = write!(buf, "{n}");
            }
            Val::Real(f) => {
                let _ = write!(buf, "{f}");
            }
            Val::Text(s) => {
                for c in s.chars() {
                    match c {
                        '\\' => buf.push_str("\\\\"),
                        '\t' => buf.push_str("\\t"),
                        '\n' => buf.push_str("\\n"),
                        '\r' => buf.push_str("\\r"),
                        c => buf.push(c),
                    }
                }
            }
        }
    }
    buf.push('\n');
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn copy_text_escapes() {
        let mut b = String::new();
        copy_line(
            &mut b,
            &[
                Val::Int(1),
                Val::Null,
                Val::Text("a\tb\\c\nd".into()),
                Val::Real(1.5),
            ],
        );
        assert_eq!(b, "1\t\\N\ta\\tb\\\\c\\nd\t1.5\n");
    }

    #[test]
    fn slices_cover_everything_once() {
        let v: Vec<u32> = (0..10).collect();
        let all: Vec<u32> = (0..3).flat_map(|k| slice(&v, k, 3).to_vec()).collect();
        assert_eq!(all, v);
    }
}
