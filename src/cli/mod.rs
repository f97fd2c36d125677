//! Command-line interface: parses arguments and calls into the library. The only
//! place besides `main.rs` that uses `anyhow`: errors here are for humans.

pub mod demo;
pub mod docs;

use crate::config::{self, Config};
use anyhow::Context;
use clap::{Parser, Subcommand};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

/// Keeps WebSocket subscriptions alive and records every event in SQL.
#[derive(Debug, Parser)]
#[command(name = "wsvault", version, about)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Cmd,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Cmd {
    /// Run the daemon: migrate, connect every source, record until SIGTERM.
    Run(ConfigArg),
    /// Validate a config file and print what it configures.
    CheckConfig(ConfigArg),
    /// Create or upgrade the database schema, then exit; with --partition, also
    /// convert PostgreSQL history tables that are not partitioned yet.
    Migrate(MigrateArgs),
    /// Serve a loopback simulator of an upstream API (tests, demo, benchmarks).
    Simulate(Box<SimulateArgs>),
    /// Copy the database consistently while the daemon runs (SQLite), or print the
    /// pg_dump command (PostgreSQL).
    Backup(BackupArgs),
    /// Show each source's connection state and the row counts, from the database.
    Status(ConfigArg),
    /// Record three simulated sources into ./wsvault-demo.db for a few seconds and
    /// show what was stored.
    Demo(DemoArgs),
    /// End-to-end benchmarks (simulator → daemon → database) or the fault soak.
    Bench(Box<crate::bench::BenchArgs>),
    /// Write the man page and shell completions under DIR (for packaging).
    #[command(hide = true)]
    Generate(GenerateArgs),
}

/// `wsvault migrate --config FILE [--partition [--ranges N]]`.
#[derive(Debug, clap::Args)]
pub struct MigrateArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// PostgreSQL: convert tracker_states, tracker_readings, events and traffic into
    /// time partitions when they are not yet (a database that held rows when the
    /// partitioning migration ran). Copies range by range with progress, resumes
    /// where an earlier run stopped, keeps each old table as `<table>_old`.
    #[arg(long)]
    pub partition: bool,
    /// With --partition: copy at most N partition ranges in this run, then stop (a
    /// later run resumes), to spread the copy over quiet hours.
    #[arg(long, value_name = "N", requires = "partition")]
    pub ranges: Option<usize>,
}

/// `wsvault generate DIR`.
#[derive(Debug, clap::Args)]
pub struct GenerateArgs {
    /// Receives man/wsvault.1 and completions/{wsvault.bash,_wsvault,wsvault.fish}.
    pub dir: PathBuf,
}

/// `wsvault backup --config FILE --to PATH`.
#[derive(Debug, clap::Args)]
pub struct BackupArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Where the copy goes (SQLite: required, must not exist) or the dump file the
    /// printed pg_dump command writes (PostgreSQL: default wsvault.dump).
    #[arg(long)]
    pub to: Option<PathBuf>,
}

/// `wsvault demo [--seconds N] [--db PATH]`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// How long to record.
    #[arg(long, default_value_t = 10)]
    pub seconds: u64,
    /// The SQLite file to record into (overwritten).
    #[arg(long, default_value = "wsvault-demo.db")]
    pub db: PathBuf,
}

/// `wsvault simulate KIND --listen ADDR …`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    #[command(subcommand)]
    pub kind: SimKind,
}

/// Which upstream to simulate.
#[derive(Debug, Subcommand)]
pub enum SimKind {
    /// Navixy Atmosphere event subscription (plus user/auth over HTTP on the same port).
    Navixy {
        #[arg(long, default_value = "127.0.0.1:8801")]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        args: crate::sim::navixy::NavixySimArgs,
    },
    /// Tradernet security sessions.
    Tradernet {
        #[arg(long, default_value = "127.0.0.1:8802")]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        args: crate::sim::tradernet::TradernetSimArgs,
    },
    /// JSON-RPC notification stream (Qlik engine style).
    Jsonrpc {
        #[arg(long, default_value = "127.0.0.1:8803")]
        listen: std::net::SocketAddr,
        #[command(flatten)]
        args: crate::sim::jsonrpc::JsonRpcSimArgs,
    },
}

/// `--config PATH`.
#[derive(Debug, clap::Args)]
pub struct ConfigArg {
    /// Config file (TOML); WSVAULT__SECTION__KEY variables override its keys.
    #[arg(long, short, default_value_os_t = config::default_config_path())]
    pub config: PathBuf,
}

/// Exit code for a configuration the daemon refuses (EX_CONFIG from sysexits.h).
pub const EXIT_CONFIG: u8 = 78;

/// Loads the config, or prints why not; config errors get their own exit code so
/// systemd's `RestartPreventExitStatus=78` stops a restart loop on a broken file.
/// Its secrets are made known to every sink before anything can log or print them.
fn load(path: &Path) -> Result<Config, ExitCode> {
    let cfg = config::load(path).map_err(|e| {
        eprintln!("error: {e}");
        ExitCode::from(EXIT_CONFIG)
    })?;
    crate::redact::secrets::publish(
        crate::redact::secrets::CONFIG_OWNER,
        crate::redact::secrets::of_config(&cfg),
    );
    Ok(cfg)
}

/// Runs the parsed command.
pub fn main(cli: Cli) -> ExitCode {
    match cli.command {
        Cmd::CheckConfig(a) => match load(&a.config) {
            Ok(cfg) => {
                let mut text = format!("{}: OK\n", a.config.display());
                text.push_str(&format!(
                    "storage: {} (batch_size {}, commit_max_rows {}, commit_max_bytes {}, flush_interval {:?}, queue_capacity {})\n",
                    crate::redact::redact_url_str(&cfg.storage.url),
                    cfg.storage.batch_size,
                    cfg.storage.commit_max_rows,
                    cfg.storage.commit_max_bytes,
                    cfg.storage.flush_interval,
                    cfg.storage.queue_capacity
                ));
                if cfg
                    .storage
                    .url
                    .trim()
                    .to_ascii_lowercase()
                    .starts_with("postgres")
                {
                    text.push_str(&format!(
                        "partitions: {} each (tracker_states, tracker_readings, events, traffic)\n",
                        humantime::format_duration(cfg.storage.partition)
                    ));
                }
                if let Some(c) = &cfg.cluster {
                    text.push_str(&format!(
                        "cluster: node {} (lease_ttl {}, renew_every {}, gives a source up {} before its lease expires)\n",
                        c.node,
                        humantime::format_duration(c.lease_ttl),
                        humantime::format_duration(c.renew_every),
                        humantime::format_duration(c.safety_margin()),
                    ));
                }
                for s in &cfg.sources {
                    text.push_str(&format!(
                        "source {} ({}): {}\n",
                        s.name,
                        s.kind.name(),
                        crate::redact::redact_url(&s.url)
                    ));
                }
                report(out(&text).map_err(anyhow::Error::from))
            }
            Err(code) => code,
        },
        Cmd::Run(a) => {
            let cfg = match load(&a.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            crate::telemetry::init(&cfg.log);
            report(runtime().and_then(|rt| rt.block_on(run(cfg, a.config))))
        }
        Cmd::Simulate(a) => {
            crate::telemetry::init(&crate::config::LogConfig::default());
            report(runtime().and_then(|rt| rt.block_on(simulate(a.kind))))
        }
        Cmd::Backup(a) => {
            let cfg = match load(&a.config.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            crate::telemetry::init(&quiet(&cfg.log));
            report(runtime().and_then(|rt| rt.block_on(backup(cfg, a.to))))
        }
        Cmd::Status(a) => {
            let cfg = match load(&a.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            crate::telemetry::init(&quiet(&cfg.log));
            report(runtime().and_then(|rt| rt.block_on(status(cfg))))
        }
        Cmd::Bench(a) => {
            crate::telemetry::init(&crate::config::LogConfig {
                level: Some("warn,sqlx=error".into()),
                ..Default::default()
            });
            report(runtime().and_then(|rt| {
                rt.block_on(crate::bench::run(*a))
                    .context("benchmark failed")
            }))
        }
        Cmd::Demo(a) => {
            crate::telemetry::init(&quiet(&crate::config::LogConfig::default()));
            let seconds = std::time::Duration::from_secs(a.seconds);
            report(runtime().and_then(|rt| {
                rt.block_on(async { demo::run(&a.db, seconds).await.map(drop) })
                    .context("demo failed")
            }))
        }
        Cmd::Generate(a) => report(
            docs::write_all(&a.dir)
                .map(|paths| paths.iter().for_each(|p| println!("{}", p.display())))
                .with_context(|| format!("cannot write under {}", a.dir.display())),
        ),
        Cmd::Migrate(a) => {
            let cfg = match load(&a.config.config) {
                Ok(c) => c,
                Err(code) => return code,
            };
            crate::telemetry::init(&cfg.log);
            let partition = a.partition.then_some(a.ranges);
            report(runtime().and_then(|rt| rt.block_on(migrate(cfg, partition))))
        }
    }
}

/// Writes a command's output to stdout. A reader that left early (`wsvault status |
/// head -2`) closes the pipe: that is the reader's choice, not a failure, so a broken
/// pipe ends the output quietly instead of panicking like `println!` (exit 101).
pub fn out(text: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut stdout = std::io::stdout().lock();
    match stdout
        .write_all(text.as_bytes())
        .and_then(|()| stdout.flush())
    {
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        r => r,
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn report(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {}", crate::redact::secrets::text(&format!("{e:#}")));
            ExitCode::FAILURE
        }
    }
}

async fn run(cfg: Config, path: PathBuf) -> anyhow::Result<()> {
    let sup = crate::supervisor::Supervisor::start(cfg, Some(path)).await?;
    let report = sup.run_until_signal(std::future::pending()).await?;
    if report.lost > 0 {
        anyhow::bail!("{} records could not be written before exit", report.lost);
    }
    Ok(())
}

/// One-shot commands log warnings and errors only, unless `[log] level` or
/// `RUST_LOG` says otherwise: their output is for the operator's terminal.
fn quiet(log: &crate::config::LogConfig) -> crate::config::LogConfig {
    crate::config::LogConfig {
        format: log.format,
        level: Some(log.level.clone().unwrap_or_else(|| "warn".into())),
    }
}

async fn backup(cfg: Config, to: Option<PathBuf>) -> anyhow::Result<()> {
    use crate::ops::backup::BackupOutcome;
    let is_sqlite = cfg
        .storage
        .url
        .trim()
        .to_ascii_lowercase()
        .starts_with("sqlite:");
    let to = match to {
        Some(p) => p,
        None if is_sqlite => anyhow::bail!("--to PATH is required to back up a SQLite database"),
        None => PathBuf::from("wsvault.dump"),
    };
    let text = match crate::ops::backup::backup(&cfg.storage, &to).await? {
        BackupOutcome::Sqlite { path, counts } => {
            let mut text = format!(
                "backup of {} written to {} (integrity_check: ok)\n",
                crate::redact::redact_url_str(&cfg.storage.url),
                path.display()
            );
            for (table, n) in counts {
                text.push_str(&format!("  {table:<26} {n:>12}\n"));
            }
            text
        }
        BackupOutcome::Postgres { command } => format!(
            "PostgreSQL is backed up with pg_dump; run (password from PGPASSWORD or ~/.pgpass):\n  {command}\n"
        ),
    };
    Ok(out(&text)?)
}

async fn status(cfg: Config) -> anyhow::Result<()> {
    let store = crate::store::Store::connect(&cfg.storage).await?;
    let names: Vec<String> = cfg.sources.iter().map(|s| s.name.clone()).collect();
    let report = crate::ops::status::gather(&store, &names).await.context(
        "cannot read the status; has the daemon (or wsvault migrate) created the schema?",
    )?;
    store.close().await;
    // Rows written before secrets were masked at the writer (or by a source since
    // removed from the config) may still hold one: mask what is printed too.
    let text = crate::ops::status::render(&report, chrono::Utc::now());
    Ok(out(&crate::redact::secrets::text(&text))?)
}

/// `partition`: `Some(ranges limit)` with `--partition`.
async fn migrate(cfg: Config, partition: Option<Option<usize>>) -> anyhow::Result<()> {
    use crate::ops::partition_convert::{Outcome, convert};
    let store = crate::store::Store::connect(&cfg.storage).await?;
    store.migrate().await?;
    out(&format!(
        "migrations applied to {}\n",
        crate::redact::redact_url_str(&cfg.storage.url)
    ))?;
    let Some(ranges) = partition else {
        store.close().await;
        return Ok(());
    };
    let mut failed_out = None;
    let mut say = |line: String| {
        if let Err(e) = out(&format!("{line}\n")) {
            failed_out.get_or_insert(e);
        }
    };
    let outcome = convert(&store, cfg.storage.partition, ranges, &mut say).await;
    store.close().await;
    if let Some(e) = failed_out {
        return Err(e.into());
    }
    match outcome? {
        Outcome::Done => out("every history table is partitioned\n")?,
        Outcome::Paused => {
            out("conversion paused (--ranges); run the same command again to go on\n")?
        }
    }
    Ok(())
}

async fn simulate(kind: SimKind) -> anyhow::Result<()> {
    use crate::sim::{jsonrpc, navixy, tradernet};
    match kind {
        SimKind::Navixy { listen, args } => navixy::run_until_ctrl_c(listen, args.into()).await,
        SimKind::Tradernet { listen, args } => {
            tradernet::run_until_ctrl_c(listen, args.into()).await
        }
        SimKind::Jsonrpc { listen, args } => jsonrpc::run_until_ctrl_c(listen, args.into()).await,
    }
    .context("simulator failed")
}
