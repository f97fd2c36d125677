//! `wsvault backup`: a consistent copy of a live database.
//!
//! SQLite: `VACUUM INTO` on a separate connection. In WAL mode that is one read
//! transaction, so the copy is a snapshot between two writer commits (never half a
//! batch) and the daemon keeps writing meanwhile. The copy is written next to the
//! target as `*.partial`, checked with `PRAGMA integrity_check`, and only then renamed
//! into place. PostgreSQL: the `pg_dump` command to run, with the password redacted.
//! This module never overwrites an existing file and never prints a password.

use crate::config::StorageConfig;
use crate::store::TABLES;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, Connection};
use std::path::{Path, PathBuf};
use std::str::FromStr;

/// Why a backup failed.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The target exists; a backup never overwrites.
    #[error("{0} already exists; remove it or choose another --to path")]
    Exists(PathBuf),
    /// The storage URL is neither SQLite nor PostgreSQL.
    #[error("storage url {0} is not sqlite:// or postgres://; nothing to back up")]
    Unsupported(String),
    /// A database step failed.
    #[error("backup failed while {what}: {source}")]
    Sqlite {
        /// The step.
        what: &'static str,
        /// The driver's error.
        #[source]
        source: sqlx::Error,
    },
    /// The copy is damaged (it was removed).
    #[error("the copy failed PRAGMA integrity_check: {0}; the copy was removed")]
    Integrity(String),
    /// Moving the finished copy into place failed.
    #[error("cannot move the copy to {path}: {source}")]
    Io {
        /// The target.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
}

/// What `backup` did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BackupOutcome {
    /// A checked copy of the SQLite database.
    Sqlite {
        /// Where the copy is.
        path: PathBuf,
        /// Row count per contract table in the copy.
        counts: Vec<(String, i64)>,
    },
    /// PostgreSQL: run this command (password redacted).
    Postgres {
        /// The suggested `pg_dump` invocation.
        command: String,
    },
}

fn db(what: &'static str) -> impl FnOnce(sqlx::Error) -> BackupError {
    move |source| BackupError::Sqlite { what, source }
}

/// Quotes `s` for a POSIX shell.
fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The `pg_dump` command for `url` writing a custom-format dump to `to`; the password
/// is redacted (supply it through `PGPASSWORD` or `~/.pgpass`).
pub fn pg_dump_command(url: &str, to: &Path) -> String {
    format!(
        "pg_dump --format=custom --file={} {}",
        shell_quote(&to.display().to_string()),
        shell_quote(&crate::redact::redact_url_str(url))
    )
}

/// Backs up the database of `storage` to `to`.
pub async fn backup(storage: &StorageConfig, to: &Path) -> Result<BackupOutcome, BackupError> {
    let url = storage.url.trim();
    let scheme = url.split_once(':').map(|(s, _)| s.to_ascii_lowercase());
    match scheme.as_deref() {
        Some("postgres" | "postgresql") => Ok(BackupOutcome::Postgres {
            command: pg_dump_command(url, to),
        }),
        Some("sqlite") => sqlite_backup(storage, url, to).await,
        _ => Err(BackupError::Unsupported(crate::redact::redact_url_str(url))),
    }
}

async fn sqlite_backup(
    storage: &StorageConfig,
    url: &str,
    to: &Path,
) -> Result<BackupOutcome, BackupError> {
    if to.exists() {
        return Err(BackupError::Exists(to.to_path_buf()));
    }
    let mut partial = to.as_os_str().to_owned();
    partial.push(".partial");
    let partial = PathBuf::from(partial);
    let _ = std::fs::remove_file(&partial);
    let options = SqliteConnectOptions::from_str(url)
        .map_err(db("reading the storage url"))?
        .create_if_missing(false)
        .busy_timeout(storage.busy_timeout.max(std::time::Duration::from_secs(5)));
    let mut live = SqliteConnection::connect_with(&options)
        .await
        .map_err(db("opening the live database"))?;
    let copied = sqlx::query("VACUUM INTO ?1")
        .bind(partial.display().to_string())
        .execute(&mut live)
        .await
        .map_err(db("copying with VACUUM INTO"));
    let _ = live.close().await;
    copied?;
    let checked = check_copy(&partial).await;
    let counts = match checked {
        Ok(c) => c,
        Err(e) => {
            let _ = std::fs::remove_file(&partial);
            return Err(e);
        }
    };
    std::fs::rename(&partial, to).map_err(|source| BackupError::Io {
        path: to.to_path_buf(),
        source,
    })?;
    Ok(BackupOutcome::Sqlite {
        path: to.to_path_buf(),
        counts,
    })
}

/// Runs `PRAGMA integrity_check` on a copy and counts its rows.
pub async fn check_copy(path: &Path) -> Result<Vec<(String, i64)>, BackupError> {
    let options = SqliteConnectOptions::new()
        .filename(path)
        .read_only(true)
        .create_if_missing(false);
    let mut copy = SqliteConnection::connect_with(&options)
        .await
        .map_err(db("opening the copy"))?;
    let verdict: Vec<String> = sqlx::query_scalar("PRAGMA integrity_check")
        .fetch_all(&mut copy)
        .await
        .map_err(db("checking the copy"))?;
    if verdict != ["ok"] {
        let _ = copy.close().await;
        return Err(BackupError::Integrity(verdict.join("; ")));
    }
    let mut counts = Vec::with_capacity(TABLES.len());
    for table in TABLES {
        let n: i64 = sqlx::query_scalar(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
            .fetch_one(&mut copy)
            .await
            .map_err(db("counting rows in the copy"))?;
        counts.push((table.to_string(), n));
    }
    let _ = copy.close().await;
    Ok(counts)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pg_dump_command_redacts_the_password_and_quotes() {
        let cmd = pg_dump_command(
            "postgres://wsv:s3cret@db.example/wsvault",
            Path::new("/backups/it's.dump"),
        );
        assert!(!cmd.contains("s3cret"), "{cmd}");
        assert!(cmd.starts_with("pg_dump --format=custom --file='/backups/it'\\''s.dump' "));
        assert!(cmd.contains("db.example/wsvault"), "{cmd}");
    }
}
