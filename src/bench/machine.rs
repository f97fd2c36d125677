//! The machine a benchmark ran on, printed before the figures: CPU model and count,
//! memory, kernel, load average, PostgreSQL server version and the build profile.
//! Figures without this are not comparable. Reads `/proc` only (and one `SELECT
//! version()`); never fails a run.

use super::BenchArgs;
use sqlx::Connection as _;

fn proc_field(path: &str, key: &str) -> Option<String> {
    std::fs::read_to_string(path).ok().and_then(|t| {
        t.lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_once(':'))
            .map(|(_, v)| v.trim().to_string())
    })
}

/// One line per fact, each starting with `machine:`.
pub async fn print_header(admin: Option<&str>, args: &BenchArgs) {
    let cpus = std::thread::available_parallelism().map_or(0, usize::from);
    let model = proc_field("/proc/cpuinfo", "model name").unwrap_or_else(|| "unknown".into());
    let mem = proc_field("/proc/meminfo", "MemTotal").unwrap_or_else(|| "unknown".into());
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_string())
        .unwrap_or_else(|_| "unknown".into());
    let load = std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into());
    let profile = if cfg!(debug_assertions) {
        "debug"
    } else {
        "release"
    };
    println!("machine: {cpus} CPUs, {model}, {mem} RAM, kernel {kernel}, load average {load}");
    let mut pg = String::from("not used");
    if let Some(url) = admin
        && let Ok(mut c) = sqlx::PgConnection::connect(url).await
    {
        pg = sqlx::query_scalar::<_, String>("SHOW server_version")
            .fetch_one(&mut c)
            .await
            .unwrap_or_else(|e| format!("unknown ({e})"));
        let _ = c.close().await;
    }
    if args.queries {
        println!(
            "machine: wsvault {} ({profile} build), PostgreSQL {pg}; queries: {} tracker states through the writer (batch_size 500, queue_capacity 5000)",
            env!("CARGO_PKG_VERSION"),
            args.rows
        );
        return;
    }
    println!(
        "machine: wsvault {} ({profile} build), PostgreSQL {pg}; daemon batch_size {}, flush_interval 100ms, queue_capacity {}, readings {}",
        env!("CARGO_PKG_VERSION"),
        args.batch_size,
        args.queue_capacity
            .map_or_else(|| "default".to_string(), |q| q.to_string()),
        if args.no_readings { "off" } else { "on" }
    );
}
