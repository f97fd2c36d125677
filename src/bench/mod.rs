//! `wsvault bench`: end-to-end benchmarks and the fault soak, the figures users size
//! hardware from (BENCHMARKS.md).
//!
//! Every measurement runs the real daemon binary as a separate process (`wsvault run`
//! with a generated config), fed by the Navixy simulator on loopback inside this
//! process, writing to a fresh database: a temp SQLite file, or a PostgreSQL database
//! created from an admin URL and dropped afterwards. The ceilings of each backend are
//! the same rows written by the plainest fast path of that database, without the
//! wsvault writer ([`ceiling`]): in one transaction (the physical ceiling, the
//! headline ratio) and committed every `batch_size` rows (the per-batch one). Memory is read from `/proc/PID/status` of the daemon;
//! latency is the writer's receipt-to-commit histogram, logged by the daemon at exit.
//!
//! `--queries` is the other kind of figure: how the SQL cookbook answers on a big
//! database ([`queries`]), filled in-process through the library's writer rather
//! than through a daemon process, since what it measures is the reading side.
//!
//! This module only measures: it never changes how the daemon stores anything, never
//! touches a database it did not create, and never talks to anything but loopback.

mod ceiling;
pub mod cookbook;
mod daemon;
mod ingest;
mod machine;
mod queries;
mod soak;
mod stall;
mod target;

use std::path::PathBuf;
use std::time::Duration;

pub use target::Backend;

/// Env var naming a PostgreSQL admin URL (shared with the test suite).
pub const PG_ENV: &str = "WSVAULT_TEST_POSTGRES_URL";

/// Flags of `wsvault bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Which backends to measure; default: both when a PostgreSQL URL is known, else sqlite.
    #[arg(long, value_enum)]
    pub backend: Option<BackendChoice>,
    /// PostgreSQL admin URL; a fresh database is created from it and dropped after.
    #[arg(long, env = PG_ENV, hide_env_values = true)]
    pub postgres_url: Option<String>,
    /// Tracker states to ingest in the throughput run (readings come on top); 0 skips it.
    #[arg(long, default_value_t = 200_000)]
    pub records: u64,
    /// Offered rates (tracker states/s) of the latency runs, comma separated; 0 skips them.
    #[arg(long, value_delimiter = ',', default_value = "1000,10000")]
    pub rate: Vec<u64>,
    /// Length of each latency run, in seconds.
    #[arg(long, default_value_t = 20)]
    pub seconds: u64,
    /// Length of the database stall during the memory run, in seconds; 0 skips it.
    #[arg(long, default_value_t = 30)]
    pub stall: u64,
    /// Throughput runs (ingest + ceiling) per backend; min and median are reported.
    #[arg(long, default_value_t = 1)]
    pub repeat: u32,
    /// `[storage] batch_size` of the daemon (and commit size of the per-batch ceiling).
    #[arg(long, default_value_t = 500)]
    pub batch_size: usize,
    /// `[storage] queue_capacity` of the daemon; default: the daemon's default.
    #[arg(long)]
    pub queue_capacity: Option<usize>,
    /// States only: no readings_batch subscription.
    #[arg(long)]
    pub no_readings: bool,
    /// Run the fault soak for this long instead of the benchmarks (e.g. "5m").
    #[arg(long, value_parser = humantime::parse_duration)]
    pub soak: Option<Duration>,
    /// Seed of the soak's fault schedule.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// The daemon binary to run; default: this executable.
    #[arg(long)]
    pub daemon_exe: Option<PathBuf>,
    /// Run the SQL cookbook benchmark instead: fill a database with `--rows` tracker
    /// states (and readings, events, sessions in proportion) and time every cookbook
    /// statement, its plan and the retention runs.
    #[arg(long)]
    pub queries: bool,
    /// Tracker states of the `--queries` fill.
    #[arg(long, default_value_t = 10_000_000)]
    pub rows: u64,
}

/// `--backend`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// A temp SQLite file.
    Sqlite,
    /// A fresh database on the PostgreSQL server of the admin URL.
    Postgres,
    /// SQLite, then PostgreSQL.
    Both,
}

/// Why a benchmark could not run or complete. Figures are only printed for runs
/// that completed; a failure names the phase.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A PostgreSQL run was asked for without an admin URL.
    #[error("PostgreSQL benchmarks need an admin URL: pass --postgres-url or set {PG_ENV}")]
    NoPostgresUrl,
    /// Connecting to or migrating a benchmark database failed.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
    /// A query of the harness itself failed.
    #[error("benchmark query failed while {what}: {source}")]
    Sql {
        /// What the harness was doing.
        what: &'static str,
        #[source]
        source: sqlx::Error,
    },
    /// Files, processes, sockets of the harness.
    #[error("{what}: {source}")]
    Io {
        /// What the harness was doing, naming the file or process.
        what: String,
        #[source]
        source: std::io::Error,
    },
    /// The daemon exited or misbehaved; the text names its log file.
    #[error("daemon: {0}")]
    Daemon(String),
    /// A phase did not finish in time.
    #[error("timed out after {after:?} while {what}")]
    Timeout {
        /// The phase that did not finish.
        what: String,
        /// How long it was given.
        after: Duration,
    },
    /// The soak found records lost or duplicated.
    #[error("soak failed: {0}")]
    SoakFailed(String),
}

impl BenchError {
    fn sql(what: &'static str) -> impl FnOnce(sqlx::Error) -> BenchError {
        move |source| BenchError::Sql { what, source }
    }

    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> BenchError {
        let what = what.into();
        move |source| BenchError::Io { what, source }
    }
}

/// Runs what the flags ask for and prints the figures to stdout as they come.
pub async fn run(args: BenchArgs) -> Result<(), BenchError> {
    let backends = backends(&args)?;
    let (exe, exe_dir) = daemon_exe(&args)?;
    let admin = args.postgres_url.as_deref().map(str::trim);
    machine::print_header(admin, &args).await;
    let mut result = Ok(());
    let mut reports = Vec::new();
    for backend in backends {
        let env = target::Env {
            backend,
            admin: admin.map(str::to_string),
            exe: exe.clone(),
        };
        result = match args.soak {
            Some(d) => soak::run(&env, d, args.seed).await,
            None if args.queries => queries::run(&env, args.rows).await.map(|r| reports.push(r)),
            None => bench_backend(&env, &args).await,
        };
        if result.is_err() {
            break;
        }
    }
    if result.is_ok() {
        queries::print_table(&reports);
    }
    if let Some(dir) = exe_dir {
        let _ = std::fs::remove_dir_all(dir);
    }
    result
}

/// The daemon binary: `--daemon-exe`, or a private copy of this executable, so a
/// rebuild of the shared target directory during a run cannot swap the binary
/// under measurement (`/proc/self/exe` still reads a replaced file).
fn daemon_exe(args: &BenchArgs) -> Result<(PathBuf, Option<PathBuf>), BenchError> {
    if let Some(p) = &args.daemon_exe {
        return Ok((p.clone(), None));
    }
    let dir = std::env::temp_dir().join(format!("wsvault-bench-exe-{}", std::process::id()));
    std::fs::create_dir_all(&dir).map_err(BenchError::io(format!("creating {}", dir.display())))?;
    let exe = dir.join("wsvault");
    std::fs::copy("/proc/self/exe", &exe).map_err(BenchError::io(
        "copying this executable for the daemon runs",
    ))?;
    Ok((exe, Some(dir)))
}

fn backends(args: &BenchArgs) -> Result<Vec<Backend>, BenchError> {
    let have_pg = args
        .postgres_url
        .as_deref()
        .is_some_and(|u| !u.trim().is_empty());
    let choice = args.backend.unwrap_or(if have_pg {
        BackendChoice::Both
    } else {
        BackendChoice::Sqlite
    });
    let list = match choice {
        BackendChoice::Sqlite => vec![Backend::Sqlite],
        BackendChoice::Postgres => vec![Backend::Postgres],
        BackendChoice::Both => vec![Backend::Sqlite, Backend::Postgres],
    };
    if list.contains(&Backend::Postgres) && !have_pg {
        return Err(BenchError::NoPostgresUrl);
    }
    Ok(list)
}

async fn bench_backend(env: &target::Env, args: &BenchArgs) -> Result<(), BenchError> {
    let label = env.backend.name();
    let mut ratios = Vec::new();
    let mut batch_ratios = Vec::new();
    let mut states = Vec::new();
    // `--records 0` skips the throughput runs.
    let repeat = if args.records == 0 {
        0
    } else {
        args.repeat.max(1)
    };
    for i in 0..repeat {
        let run = ingest::throughput(env, args).await?;
        println!(
            "[{label}] run {}: ingest {} states + {} readings + {} events in {:.2} s = {:.0} states/s, {:.0} rows/s (steady 10-90%: {:.0} states/s); daemon peak RSS {:.1} MiB, CPU daemon {:.1} s ({:.0} us/state) / sim+harness {:.1} s",
            i + 1,
            run.states,
            run.readings,
            run.events,
            run.secs,
            run.states_per_s,
            run.rows_per_s,
            run.steady_states_per_s,
            run.peak_rss_mib,
            run.daemon_cpu_s,
            run.daemon_cpu_s * 1e6 / run.states.max(1) as f64,
            run.sim_cpu_s
        );
        if let Some(db) = run.db_cpu_s {
            println!(
                "[{label}] run {}: PostgreSQL server CPU for the run's database {db:.1} s ({:.0} us/state)",
                i + 1,
                db * 1e6 / run.states.max(1) as f64
            );
        }
        let physical = ceiling::measure(env, &run.rows, ceiling::Commit::Once).await?;
        let per_batch =
            ceiling::measure(env, &run.rows, ceiling::Commit::Every(args.batch_size)).await?;
        for (name, c) in [("physical", &physical), ("per-batch", &per_batch)] {
            println!(
                "[{label}] run {}: {name} ceiling ({}) {} rows in {:.2} s = {:.0} rows/s; wsvault/{name} ceiling = {:.0} %",
                i + 1,
                c.method,
                c.rows,
                c.secs,
                c.rows_per_s,
                run.rows_per_s / c.rows_per_s * 100.0
            );
        }
        ratios.push(run.rows_per_s / physical.rows_per_s);
        batch_ratios.push(run.rows_per_s / per_batch.rows_per_s);
        states.push(run.states_per_s);
    }
    if !states.is_empty() {
        println!(
            "[{label}] throughput: {} states/s (min {:.0}, median {:.0} of {}); ratio to the physical ceiling min {:.0} %, median {:.0} %; to the per-batch ceiling min {:.0} %, median {:.0} %",
            fmt_rate(median(&states)),
            min(&states),
            median(&states),
            states.len(),
            min(&ratios) * 100.0,
            median(&ratios) * 100.0,
            min(&batch_ratios) * 100.0,
            median(&batch_ratios) * 100.0
        );
    }
    for rate in args.rate.iter().copied().filter(|r| *r > 0) {
        let l = ingest::latency(env, args, rate).await?;
        println!(
            "[{label}] latency @{rate} states/s: p50 {} ms, p99 {} ms over {} records (achieved {:.0} states/s; daemon peak RSS {:.1} MiB)",
            fmt_ms(l.p50_ms),
            fmt_ms(l.p99_ms),
            l.count,
            l.achieved_states_per_s,
            l.peak_rss_mib
        );
    }
    if args.stall > 0 {
        let s = stall::run(env, args).await?;
        println!(
            "[{label}] memory: full rate peak RSS {:.1} MiB; {} s database stall: RSS {:.1} MiB at start, max {:.1} MiB, {:.1} MiB at end ({} states stored during the stall; first commit {:.2} s after it, {} states in the 5 s after that)",
            s.full_rate_peak_mib,
            args.stall,
            s.stall_start_mib,
            s.stall_max_mib,
            s.stall_end_mib,
            s.rows_during_stall,
            s.recovery.as_secs_f64(),
            s.rows_after_stall
        );
    }
    Ok(())
}

fn fmt_ms(v: Option<f64>) -> String {
    v.map_or_else(|| ">60000".into(), |v| format!("{v}"))
}

fn fmt_rate(v: f64) -> String {
    format!("{v:.0}")
}

fn min(v: &[f64]) -> f64 {
    v.iter().copied().fold(f64::INFINITY, f64::min)
}

fn median(v: &[f64]) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    match s.len() {
        0 => 0.0,
        n if n % 2 == 1 => s[n / 2],
        n => (s[n / 2 - 1] + s[n / 2]) / 2.0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_and_min() {
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
        assert_eq!(min(&[4.0, 1.5]), 1.5);
    }
}
