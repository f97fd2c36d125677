//! systemd notifications from the real binary, read on a `NOTIFY_SOCKET` the test
//! owns: READY=1 only after the first attempts, WATCHDOG=1 while progressing and not
//! while the writer is wedged, STOPPING=1 on SIGTERM, EXTEND_TIMEOUT_USEC while a
//! migration waits on a locked database; and JSON log lines with `[log] format`.

use crate::support::*;
use sqlx::Connection as _;
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqliteJournalMode};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use wsvault::sim::jsonrpc::{JsonRpcSim, JsonRpcSimConfig};

fn any() -> std::net::SocketAddr {
    ([127, 0, 0, 1], 0).into()
}

/// Every datagram received on a notify socket, with its arrival time.
#[derive(Clone)]
struct Notes {
    path: std::path::PathBuf,
    got: Arc<Mutex<Vec<(Instant, String)>>>,
}

impl Notes {
    fn listen(dir: &Path) -> Notes {
        let path = dir.join("notify.sock");
        let sock = UnixDatagram::bind(&path).unwrap();
        sock.set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let got = Arc::new(Mutex::new(Vec::new()));
        let sink = got.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            loop {
                match sock.recv(&mut buf) {
                    Ok(n) => sink.lock().unwrap().push((
                        Instant::now(),
                        String::from_utf8_lossy(&buf[..n]).into_owned(),
                    )),
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                    Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
                    Err(_) => return,
                }
                if Arc::strong_count(&sink) == 1 {
                    return;
                }
            }
        });
        Notes { path, got }
    }

    fn all(&self) -> Vec<(Instant, String)> {
        self.got.lock().unwrap().clone()
    }

    fn count(&self, needle: &str) -> usize {
        self.all()
            .iter()
            .filter(|(_, m)| m.contains(needle))
            .count()
    }

    fn first(&self, needle: &str) -> Option<(Instant, String)> {
        self.all().into_iter().find(|(_, m)| m.contains(needle))
    }

    fn last(&self, needle: &str) -> Option<Instant> {
        self.all()
            .into_iter()
            .rev()
            .find(|(_, m)| m.contains(needle))
            .map(|(t, _)| t)
    }

    async fn wait(&self, needle: &str, n: usize) {
        let what = format!("{n}x {needle:?} (last: every notification)");
        let messages = || async { self.all().into_iter().map(|(_, m)| m).collect::<Vec<_>>() };
        let enough = |m: &Vec<String>| m.iter().filter(|m| m.contains(needle)).count() >= n;
        wait_for(LIMIT, &what, None, messages, enough).await;
    }
}

fn start_notified(dir: &Path, config: &str, notes: &Notes, watchdog: Option<&str>) -> Daemon {
    let path = dir.join("wsvault.toml");
    std::fs::write(&path, config).unwrap();
    let socket = notes.path.display().to_string();
    let mut env = vec![("NOTIFY_SOCKET", socket.as_str())];
    if let Some(usec) = watchdog {
        env.push(("WATCHDOG_USEC", usec));
    }
    Daemon::start_with(dir, &path, &env)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_after_first_attempts_watchdog_while_progressing_stopping_on_term() {
    let db = sqlite_database();
    let rpc = JsonRpcSim::start(any(), JsonRpcSimConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let notes = Notes::listen(dir.path());
    // One source up, one pointing at a closed port: READY waits for both to try.
    let sources = jsonrpc_source("up", &rpc.ws_url(), -1)
        + &jsonrpc_source("down", "ws://127.0.0.1:9/app", -1);
    let daemon = start_notified(
        dir.path(),
        &config(&db.cfg.url, "", "", &sources),
        &notes,
        Some("400000"),
    );
    notes.wait("READY=1", 1).await;
    let (ready_at, ready) = notes.first("READY=1").unwrap();
    assert!(
        ready.contains("STATUS=running: 1 of 2 sources subscribed"),
        "READY comes after the first attempts: {ready:?}"
    );
    // The log already has the failed attempt of `down` and the subscription of `up`.
    let log = daemon.log();
    assert!(log.contains("connect failed"), "{log}");
    notes.wait("WATCHDOG=1", 5).await;
    let first_ping = notes.first("WATCHDOG=1").unwrap().0;
    assert!(first_ping >= ready_at, "no ping before READY");
    assert!(log.contains("systemd watchdog enabled"), "{log}");

    let log = daemon.stop().await;
    notes.wait("STOPPING=1", 1).await;
    let stopping = notes.first("STOPPING=1").unwrap().0;
    let pings_after = notes
        .all()
        .iter()
        .filter(|(t, m)| m.contains("WATCHDOG=1") && *t > stopping)
        .count();
    assert_eq!(pings_after, 0, "no watchdog ping after STOPPING=1");
    assert!(log.contains("wsvault stopped"));
    rpc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn migration_waiting_on_a_lock_extends_the_start_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let db_path = dir.path().join("locked.db");
    // An existing WAL database whose write lock another process holds for a while.
    let opts = SqliteConnectOptions::new()
        .filename(&db_path)
        .create_if_missing(true)
        .journal_mode(SqliteJournalMode::Wal);
    let mut holder = SqliteConnection::connect_with(&opts).await.unwrap();
    sqlx::query("BEGIN EXCLUSIVE")
        .execute(&mut holder)
        .await
        .unwrap();
    let notes = Notes::listen(dir.path());
    let url = format!("sqlite://{}", db_path.display());
    let cfg = config(&url, "busy_timeout = \"30s\"", "", "");
    let daemon = start_notified(dir.path(), &cfg, &notes, None);
    notes.wait("EXTEND_TIMEOUT_USEC=10000000", 1).await;
    assert_eq!(notes.count("READY=1"), 0, "not ready while migrating");
    let extend = notes.first("EXTEND_TIMEOUT_USEC").unwrap().1;
    assert!(extend.contains("STATUS=running migrations"), "{extend:?}");
    sqlx::query("COMMIT").execute(&mut holder).await.unwrap();
    holder.close().await.unwrap();
    notes.wait("READY=1", 1).await;
    let log = daemon.stop().await;
    assert!(
        log.contains("running migrations still running") || log.contains("still running"),
        "{log}"
    );
}

/// A TCP proxy that, while stalled, holds every client chunk of 64 bytes or more
/// without closing anything: pings and `BEGIN` pass, so the pool hands out a
/// connection, but the INSERT never reaches the server and never gets an answer —
/// the writer hangs in a statement (the wedge a watchdog exists for). A plain cut
/// would not do: the pool times out and the writer *retries*, which is progress.
struct StallProxy {
    addr: std::net::SocketAddr,
    stalled: Arc<AtomicBool>,
}

impl StallProxy {
    async fn start(upstream: std::net::SocketAddr) -> StallProxy {
        let listener = tokio::net::TcpListener::bind(any()).await.unwrap();
        let addr = listener.local_addr().unwrap();
        let stalled = Arc::new(AtomicBool::new(false));
        let flag = stalled.clone();
        tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                let Ok(server) = tokio::net::TcpStream::connect(upstream).await else {
                    continue;
                };
                let (cr, cw) = client.into_split();
                let (sr, sw) = server.into_split();
                tokio::spawn(pump(cr, sw, Some(flag.clone())));
                tokio::spawn(pump(sr, cw, None));
            }
        });
        StallProxy { addr, stalled }
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    stalled: Option<Arc<AtomicBool>>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        while n >= 64 && stalled.as_ref().is_some_and(|s| s.load(Ordering::SeqCst)) {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        if to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn watchdog_stops_pinging_while_the_writer_is_wedged() {
    let Some(db) = test_databases(Backend::Postgres).await.pop() else {
        eprintln!("SKIPPED: needs {PG_ENV} (a database that hangs instead of failing)");
        return;
    };
    let proxy = StallProxy::start(pg_addr(&db.cfg.url)).await;
    let rpc = JsonRpcSim::start(
        any(),
        JsonRpcSimConfig {
            interval: Duration::from_millis(20),
            ..JsonRpcSimConfig::default()
        },
    )
    .await
    .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let notes = Notes::listen(dir.path());
    let cfg = config(
        &url_via(&db.cfg.url, proxy.addr),
        "",
        "",
        &jsonrpc_source("rpc", &rpc.ws_url(), -1),
    );
    let daemon = start_notified(dir.path(), &cfg, &notes, Some("1000000"));
    notes.wait("WATCHDOG=1", 3).await;

    proxy.stalled.store(true, Ordering::SeqCst);
    daemon.wait_log("no progress: writer").await;
    let stalled_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let last_ping = notes.last("WATCHDOG=1").unwrap();
    assert!(
        last_ping < stalled_at,
        "pinged while wedged:\n{}",
        daemon.log()
    );

    proxy.stalled.store(false, Ordering::SeqCst);
    daemon.wait_log("progress resumed").await;
    let before = notes.count("WATCHDOG=1");
    notes.wait("WATCHDOG=1", before + 2).await;
    let log = daemon.stop().await;
    assert!(log.contains("lost=0"), "{log}");
    rpc.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_log_format_emits_json_lines() {
    let db = sqlite_database();
    let rpc = JsonRpcSim::start(any(), JsonRpcSimConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sources = jsonrpc_source("rpc", &rpc.ws_url(), -1);
    let daemon = Daemon::start(
        dir.path(),
        &config(
            &db.cfg.url,
            "",
            "",
            &format!("[log]\nformat = \"json\"\n{sources}"),
        ),
    );
    daemon.wait_log("wsvault running").await;
    let log = daemon.stop().await;
    let lines: Vec<&str> = log.lines().filter(|l| !l.trim().is_empty()).collect();
    assert!(lines.len() >= 3, "{log}");
    for line in lines {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not a JSON line ({e}): {line}"));
        assert!(
            v["level"].is_string() && v["timestamp"].is_string(),
            "{line}"
        );
        assert!(v["message"].is_string(), "{line}");
    }
    assert!(log.contains(r#""message":"subscribed""#), "{log}");
    rpc.shutdown().await;
}
