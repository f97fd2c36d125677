//! Runs the real `wsvault` binary for end-to-end tests: config file in a temp dir,
//! stderr captured to a file so tests can search the log, signals sent with `kill`.
//!
//! Waiting for the process happens on a blocking thread, so the test's runtime keeps
//! serving the in-process simulators (which must answer the daemon's unsubscribe and
//! close while it shuts down).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

use wsvault::store::Store;

use super::LIMIT;
use super::db::{TestDb, count};
use super::lifecycle::{Ev, events, wait_events};
use super::wait::{tail, wait_count, wait_for};

/// The binary to run: `WSVAULT_TEST_BIN` when set (a private copy, for machines
/// where several worktrees share one target dir and overwrite `target/debug/wsvault`),
/// else the one cargo built for this test.
pub fn binary() -> PathBuf {
    std::env::var_os("WSVAULT_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_wsvault")))
}

/// A running daemon process; killed if dropped while still running.
pub struct Daemon {
    child: Child,
    pub log_path: PathBuf,
    pub config_path: PathBuf,
}

impl Daemon {
    /// Writes `config` to `dir/wsvault.toml` and starts `wsvault run` on it.
    pub fn start(dir: &Path, config: &str) -> Daemon {
        let config_path = dir.join("wsvault.toml");
        std::fs::write(&config_path, config).unwrap();
        Self::start_with(dir, &config_path, &[])
    }

    /// Starts `wsvault run --config PATH` with extra environment variables.
    pub fn start_with(dir: &Path, config_path: &Path, env: &[(&str, &str)]) -> Daemon {
        let n = std::fs::read_dir(dir).map(|d| d.count()).unwrap_or(0);
        let log_path = dir.join(format!("wsvault-{n}.log"));
        let log = std::fs::File::create(&log_path).unwrap();
        let mut cmd = Command::new(binary());
        cmd.arg("run")
            .arg("--config")
            .arg(config_path)
            .current_dir(dir)
            .env("RUST_LOG", "info,wsvault=debug")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::from(log));
        for (k, v) in env {
            cmd.env(k, v);
        }
        let child = cmd.spawn().unwrap();
        Daemon {
            child,
            log_path,
            config_path: config_path.to_path_buf(),
        }
    }

    /// The process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends a signal by name (TERM, INT, HUP, USR1, USR2, KILL).
    pub fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(self.pid().to_string())
            .status()
            .unwrap()
            .success();
        assert!(ok, "kill -{sig} failed");
    }

    /// The log so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log_path).unwrap_or_default()
    }

    /// Waits (at most [`LIMIT`]) until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str) {
        wait_log_within(self, needle, LIMIT).await;
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then waits for the exit; asserts it was clean (status 0) and returns
    /// the log.
    pub async fn stop(self) -> String {
        let (status, log) = self.terminate().await;
        assert!(
            status.success(),
            "daemon exit {status}; log:\n{}",
            tail(&log)
        );
        log
    }

    /// SIGTERM, then waits for the exit (kills after [`LIMIT`]); returns status and
    /// log, for tests that check the status themselves.
    pub async fn terminate(mut self) -> (ExitStatus, String) {
        if self.running() {
            self.signal("TERM");
        }
        self.wait(LIMIT).await
    }

    /// Waits for the exit (kills and panics after `limit`); returns status and log.
    pub async fn wait(self, limit: Duration) -> (ExitStatus, String) {
        tokio::task::spawn_blocking(move || self.wait_blocking(limit))
            .await
            .expect("wait task")
    }

    fn wait_blocking(mut self, limit: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + limit;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return (st, self.log());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let st = self.child.wait().unwrap();
                panic!(
                    "daemon did not exit within {limit:?} ({st}); log:\n{}",
                    tail(&self.log())
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

async fn wait_log_within(daemon: &Daemon, needle: &str, limit: Duration) {
    let what = format!("a log line containing {needle:?}");
    wait_for(
        limit,
        &what,
        Some(daemon),
        || async { daemon.log().contains(needle) },
        |found| *found,
    )
    .await;
}

/// Waits until the daemon is up (READY), then opens `db` without migrating it: two
/// processes migrating one SQLite file at once race on `CREATE TABLE`.
pub async fn daemon_store(daemon: &Daemon, db: &TestDb) -> Store {
    daemon.wait_log("wsvault running").await;
    Store::connect(&db.cfg)
        .await
        .unwrap_or_else(|e| panic!("connect: {e}"))
}

/// A running daemon with the store the test reads through and the directory that
/// holds its config and log.
pub struct Run {
    pub store: Store,
    pub daemon: Option<Daemon>,
    pub dir: tempfile::TempDir,
}

impl Run {
    /// Migrates `db` (so the daemon's own migration is a no-op and the test can read
    /// at once), writes `config` and starts the real binary on it.
    pub async fn start(db: &TestDb, config: &str) -> Run {
        let store = db.store().await;
        let dir = tempfile::tempdir().unwrap();
        let daemon = Daemon::start(dir.path(), config);
        Run {
            store,
            daemon: Some(daemon),
            dir,
        }
    }

    pub fn daemon(&mut self) -> &mut Daemon {
        self.daemon.as_mut().expect("daemon still running")
    }

    /// The daemon's log so far.
    pub fn log(&self) -> String {
        self.daemon.as_ref().map(Daemon::log).unwrap_or_default()
    }

    /// True while the process runs.
    pub fn alive(&mut self) -> bool {
        self.daemon().running()
    }

    /// [`Daemon::terminate`].
    pub async fn stop(&mut self) -> (ExitStatus, String) {
        self.daemon
            .take()
            .expect("daemon still running")
            .terminate()
            .await
    }

    /// Waits (at most `limit`) until the log contains `needle`.
    pub async fn wait_log(&self, needle: &str, limit: Duration) {
        let daemon = self.daemon.as_ref().expect("daemon still running");
        wait_log_within(daemon, needle, limit).await;
    }

    /// `count(*)` of a FROM clause.
    pub async fn count(&self, from: &str) -> i64 {
        count(&self.store, from).await
    }

    /// [`wait_count`] on this run's store.
    pub async fn wait_count(&self, from: &str, pred: impl Fn(i64) -> bool) -> i64 {
        wait_count(&self.store, self.daemon.as_ref(), from, pred).await
    }

    /// Lifecycle rows of `source`, oldest first.
    pub async fn lifecycle(&self, source: &str) -> Vec<Ev> {
        events(&self.store, source).await
    }

    /// [`wait_events`] on this run's store.
    pub async fn wait_lifecycle(
        &self,
        source: &str,
        what: &str,
        pred: impl FnMut(&[Ev]) -> bool,
    ) -> Vec<Ev> {
        let daemon = self.daemon.as_ref().expect("daemon still running");
        wait_events(&self.store, daemon, source, what, pred).await
    }
}
