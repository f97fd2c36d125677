//! The SQLite database as files: created private, and migrated by one process at a time.
//!
//! Outside systemd (whose unit sets `UMask=0077`) a new database would be created with
//! the process umask, typically world-readable 0644, and its `-wal`/`-shm` with it:
//! the records hold positions, logins and IP addresses. Creating the empty file with
//! mode 0600 first is enough, because SQLite gives `-wal` and `-shm` the main file's
//! permissions. An existing file keeps the permissions the operator gave it.
//!
//! sqlx's SQLite migrator takes no lock (its PostgreSQL one holds an advisory lock), so
//! two processes starting on a fresh file both found no migration applied and the
//! second failed with `table connections already exists`. [`MigrateLock`] serialises
//! them with an advisory `flock` on a file beside the database. It must be a separate
//! file: closing any descriptor of the database file itself would drop the POSIX locks
//! SQLite holds on it in this process.

use sqlx::sqlite::SqliteConnectOptions;
use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

/// Mode of every file wsvault creates beside the database.
const PRIVATE: u32 = 0o600;

/// The database file of `options`, or `None` for an in-memory database.
pub(crate) fn database_path(options: &SqliteConnectOptions, url: &str) -> Option<PathBuf> {
    let path = options.get_filename();
    let text = path.to_string_lossy();
    let in_memory = text.is_empty()
        || text == ":memory:"
        || text.starts_with("file:")
        || url.to_ascii_lowercase().contains("mode=memory");
    (!in_memory).then(|| path.to_path_buf())
}

/// Creates `path` empty with mode 0600 when it does not exist yet (SQLite then
/// initialises it); leaves an existing file alone.
pub(crate) fn create_private(path: &Path) -> io::Result<()> {
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(PRIVATE)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// An exclusive lock held while migrations run (and while a pool opens its first
/// connection, which may switch the file to WAL); released on drop (or when the
/// process dies, so a crashed migrator never blocks the next one).
pub(crate) struct MigrateLock {
    _file: File,
}

impl MigrateLock {
    /// Waits (off the async threads) until no other process migrates `database`.
    pub(crate) async fn acquire(database: &Path) -> io::Result<MigrateLock> {
        let mut name = database.as_os_str().to_owned();
        name.push(".migrate-lock");
        let path = PathBuf::from(name);
        tokio::task::spawn_blocking(move || {
            let file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(PRIVATE)
                .open(&path)?;
            file.lock()?;
            Ok(MigrateLock { _file: file })
        })
        .await
        .map_err(io::Error::other)?
    }
}
