//! The PostgreSQL ceilings: `COPY … FROM STDIN` (text format) into the target tables,
//! through `psql` when it is installed (libpq sets `TCP_NODELAY`), else through sqlx.

use super::{Table, Tables, Val, slice};
use crate::bench::BenchError;
use std::fmt::Write as _;
use std::time::Instant;

/// `psql` gets the data in pieces of about this size, so a one-transaction ceiling of
/// a million rows never holds all of them as text at once.
const PIPE_CHUNK: usize = 1 << 20;

/// Writes every table's rows in `batches` transactions; returns the method and the
/// seconds it took.
pub(super) async fn write(
    url: &str,
    pool: &sqlx::PgPool,
    tables: &Tables<'_>,
    batches: usize,
) -> Result<(&'static str, f64), BenchError> {
    if psql_available() {
        let started = Instant::now();
        psql_copy(url, tables, batches).await?;
        return Ok((
            "psql (libpq, TCP_NODELAY) COPY FROM STDIN",
            started.elapsed().as_secs_f64(),
        ));
    }
    let what = "writing the ceiling rows";
    let mut conn = pool.acquire().await.map_err(BenchError::sql(what))?;
    let started = Instant::now();
    let mut buf = String::new();
    for k in 0..batches {
        sqlx::query("BEGIN")
            .execute(&mut *conn)
            .await
            .map_err(BenchError::sql(what))?;
        for (t, all) in tables {
            let part = slice(all, k, batches);
            if part.is_empty() {
                continue;
            }
            let mut copy = conn
                .copy_in_raw(&copy_stmt(t))
                .await
                .map_err(BenchError::sql(what))?;
            for rows in part.chunks(1_000) {
                buf.clear();
                for row in rows {
                    copy_line(&mut buf, row);
                }
                copy.send(buf.as_bytes())
                    .await
                    .map_err(BenchError::sql(what))?;
            }
            copy.finish().await.map_err(BenchError::sql(what))?;
        }
        sqlx::query("COMMIT")
            .execute(&mut *conn)
            .await
            .map_err(BenchError::sql(what))?;
    }
    Ok((
        "sqlx COPY FROM STDIN (no TCP_NODELAY)",
        started.elapsed().as_secs_f64(),
    ))
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
async fn psql_copy(url: &str, tables: &Tables<'_>, batches: usize) -> Result<(), BenchError> {
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
                if buf.len() >= PIPE_CHUNK {
                    stdin
                        .write_all(buf.as_bytes())
                        .await
                        .map_err(BenchError::io("writing to psql"))?;
                    buf.clear();
                }
            }
            buf.push_str("\\.\n");
        }
        buf.push_str("COMMIT;\n");
        stdin
            .write_all(buf.as_bytes())
            .await
            .map_err(BenchError::io("writing to psql"))?;
        buf.clear();
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
}
