//! The daemon under test as a separate process: the real binary (`wsvault run`) with
//! a generated config, its log in a file, its memory and CPU read from `/proc`.
//!
//! Running it apart from the simulator and the harness is what makes the RSS figures
//! honest (nothing of the harness is counted) and the CPU split visible. The process
//! is killed if the harness drops it without stopping it.

use super::BenchError;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};
use tokio::process::{Child, Command};

/// What the generated config says beyond the database and the simulator URL.
#[derive(Debug, Clone)]
pub struct DaemonSettings {
    /// `[storage] batch_size`.
    pub batch_size: usize,
    /// `[storage] queue_capacity`; `None` keeps the daemon's default.
    pub queue_capacity: Option<usize>,
    /// Subscribe to readings_batch as well as state_batch.
    pub readings: bool,
    /// `[supervisor] idle_timeout`.
    pub idle_timeout: Duration,
}

impl Default for DaemonSettings {
    fn default() -> Self {
        DaemonSettings {
            batch_size: 500,
            queue_capacity: None,
            readings: true,
            idle_timeout: Duration::from_secs(150),
        }
    }
}

/// The `wsvault.toml` the daemon runs with: the daemon's defaults (flush 100 ms,
/// default queue capacity) unless the settings say otherwise.
pub fn config_toml(storage_url: &str, ws_url: &str, s: &DaemonSettings) -> String {
    let readings = if s.readings {
        "\n  { type = \"readings_batch\", target = \"all\" },"
    } else {
        ""
    };
    format!(
        r#"[storage]
url = "{storage_url}"
batch_size = {batch}
flush_interval = "100ms"
{queue}raw_events = "envelope"

[supervisor]
backoff_initial = "100ms"
backoff_max = "2s"
idle_timeout = "{idle}ms"
stable_after = "1s"

[log]
format = "json"
level = "info"

[[sources]]
name = "bench"
kind = "navixy"
url = "{ws_url}"
api_key_hash = "{key}"
subscriptions = [
  {{ type = "state_batch", target = "all" }},{readings}
]
"#,
        batch = s.batch_size,
        queue = s
            .queue_capacity
            .map_or_else(String::new, |q| format!("queue_capacity = {q}\n")),
        idle = s.idle_timeout.as_millis(),
        key = crate::sim::navixy::DEFAULT_API_KEY,
    )
}

/// Memory of a process, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy, Default)]
pub struct Mem {
    /// Resident set now, MiB.
    pub rss_mib: f64,
    /// Peak resident set so far (VmHWM), MiB.
    pub hwm_mib: f64,
}

/// Reads VmRSS and VmHWM of `pid`.
pub fn mem_of(pid: u32) -> Option<Mem> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = |name: &str| {
        text.lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .map(|kib| kib / 1024.0)
    };
    Some(Mem {
        rss_mib: field("VmRSS:")?,
        hwm_mib: field("VmHWM:")?,
    })
}

/// User + system CPU seconds of `pid` (`self` for this process), from `/proc/PID/stat`
/// (clock ticks of 1/100 s, the Linux default).
pub fn cpu_seconds(pid: &str) -> f64 {
    let Ok(text) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return 0.0;
    };
    // Fields after the command name (which may contain spaces) start at ") ".
    let rest = text.rsplit_once(") ").map_or("", |(_, r)| r);
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    (ticks(11) + ticks(12)) / 100.0
}

/// The writer's final log line, as the daemon printed it at exit.
#[derive(Debug, Clone, Copy, Default)]
pub struct WriterLine {
    pub retries: u64,
    pub lost: u64,
    pub latency_count: u64,
    /// `None` when no record was committed or beyond the histogram's last bound.
    pub p50_ms: Option<f64>,
    pub p99_ms: Option<f64>,
}

/// A running daemon.
pub struct Daemon {
    child: Child,
    pid: u32,
    log: PathBuf,
    started: Instant,
}

impl Daemon {
    /// Writes `config` into `dir` and starts `exe run --config …`.
    pub fn spawn(exe: &Path, dir: &Path, config: &str) -> Result<Daemon, BenchError> {
        let cfg_path = dir.join("wsvault.toml");
        std::fs::write(&cfg_path, config)
            .map_err(BenchError::io(format!("writing {}", cfg_path.display())))?;
        let log = dir.join("daemon.log");
        let log_file = std::fs::File::create(&log)
            .map_err(BenchError::io(format!("creating {}", log.display())))?;
        let child = Command::new(exe)
            .arg("run")
            .arg("--config")
            .arg(&cfg_path)
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log_file)
            .kill_on_drop(true)
            .spawn()
            .map_err(BenchError::io(format!("starting {} run", exe.display())))?;
        let pid = child
            .id()
            .ok_or_else(|| BenchError::Daemon("the daemon exited at once".into()))?;
        Ok(Daemon {
            child,
            pid,
            log,
            started: Instant::now(),
        })
    }

    /// Memory now; `None` once the process is gone.
    pub fn mem(&self) -> Option<Mem> {
        mem_of(self.pid)
    }

    /// CPU seconds used so far.
    pub fn cpu_seconds(&self) -> f64 {
        cpu_seconds(&self.pid.to_string())
    }

    /// Fails when the daemon has exited (with the end of its log).
    pub fn check_alive(&mut self) -> Result<(), BenchError> {
        match self.child.try_wait() {
            Ok(None) => Ok(()),
            Ok(Some(status)) => Err(BenchError::Daemon(format!(
                "exited early ({status}) after {:.1} s; log {}:\n{}",
                self.started.elapsed().as_secs_f64(),
                self.log.display(),
                self.log_tail()
            ))),
            Err(e) => Err(BenchError::io("watching the daemon")(e)),
        }
    }

    fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(8)..].join("\n")
    }

    /// SIGTERM, wait for the drain (at most `limit`), and read the writer's last line.
    pub async fn stop(mut self, limit: Duration) -> Result<WriterLine, BenchError> {
        let _ = std::process::Command::new("kill")
            .args(["-TERM", &self.pid.to_string()])
            .status();
        let status = match tokio::time::timeout(limit, self.child.wait()).await {
            Ok(r) => r.map_err(BenchError::io("waiting for the daemon"))?,
            Err(_) => {
                let _ = self.child.kill().await;
                return Err(BenchError::Timeout {
                    what: format!(
                        "the daemon drained after SIGTERM (log {})",
                        self.log.display()
                    ),
                    after: limit,
                });
            }
        };
        let line = writer_line(&std::fs::read_to_string(&self.log).unwrap_or_default());
        match line {
            Some(l) if status.success() => Ok(l),
            _ => Err(BenchError::Daemon(format!(
                "stopped with {status}; log {}:\n{}",
                self.log.display(),
                self.log_tail()
            ))),
        }
    }
}

/// Finds the `storage writer finished` line of a JSON log.
fn writer_line(log: &str) -> Option<WriterLine> {
    let v: serde_json::Value = log
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find(|v| v.get("message").and_then(|m| m.as_str()) == Some("storage writer finished"))?;
    let u = |k: &str| v.get(k).and_then(serde_json::Value::as_u64).unwrap_or(0);
    let ms = |k: &str| {
        v.get(k)
            .and_then(serde_json::Value::as_f64)
            .filter(|x| *x >= 0.0)
    };
    Some(WriterLine {
        retries: u("retries"),
        lost: u("lost"),
        latency_count: u("latency_count"),
        p50_ms: ms("latency_p50_ms"),
        p99_ms: ms("latency_p99_ms"),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_writer_line() {
        let log = r#"{"level":"INFO","message":"connected"}
{"timestamp":"x","level":"INFO","message":"storage writer finished","written":10,"batches":1,"retries":2,"rejected":0,"lost":0,"latency_count":10,"latency_p50_ms":3.0,"latency_p99_ms":-1.0}
"#;
        let l = writer_line(log).unwrap();
        assert_eq!((l.retries, l.lost, l.latency_count), (2, 0, 10));
        assert_eq!((l.p50_ms, l.p99_ms), (Some(3.0), None));
        assert!(writer_line("not json").is_none());
    }

    #[test]
    fn reads_own_memory_and_cpu() {
        let m = mem_of(std::process::id()).unwrap();
        assert!(m.rss_mib > 0.0 && m.hwm_mib >= m.rss_mib);
        assert!(cpu_seconds("self") >= 0.0);
    }
}
