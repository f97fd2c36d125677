//! Runs the real `wsvault` binary for end-to-end tests: config file in a temp dir,
//! stderr captured to a file so tests can search the log, signals sent with `kill`.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// The binary to run: `WSVAULT_TEST_BIN` when set (a private copy, for machines
/// where several worktrees share one target dir and overwrite `target/debug/wsvault`),
/// else the one cargo built for this test.
pub fn binary() -> PathBuf {
    std::env::var_os("WSVAULT_TEST_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_BIN_EXE_wsvault")))
}

/// A running daemon process.
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

    /// Sends a signal by name (TERM, INT, HUP, USR1, USR2).
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

    /// Waits until the log contains `needle`.
    pub fn wait_log(&self, needle: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            if self.log().contains(needle) {
                return true;
            }
            std::thread::sleep(Duration::from_millis(25));
        }
        false
    }

    /// True while the process runs.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then waits for exit (kills after `timeout`); returns status and log.
    pub fn stop(mut self, timeout: Duration) -> (ExitStatus, String) {
        if self.running() {
            self.signal("TERM");
        }
        self.wait(timeout)
    }

    /// Waits for exit (kills after `timeout`); returns status and log.
    pub fn wait(mut self, timeout: Duration) -> (ExitStatus, String) {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(st)) = self.child.try_wait() {
                return (st, self.log());
            }
            if Instant::now() > deadline {
                let _ = self.child.kill();
                let st = self.child.wait().unwrap();
                panic!(
                    "daemon did not exit within {timeout:?} ({st}); log:\n{}",
                    self.log()
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
