//! Loopback simulator of a JSON-RPC 2.0 WebSocket server in the style of Qlik's
//! engine (`OnConnected` on connect, notifications, request/response), as Qlik's
//! public enigma.js and engine API documentation describe it.
//!
//! Owns the public API; the wire behaviour lives in `jsonrpc/conn.rs`. Notifications
//! carry a global, gap-free `n` so tests can check order and completeness. It must
//! never depend on wsvault's own client code.

mod conn;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use serde_json::Value;

use super::fanout::Fanout;
use super::faults::{Command, Faults, MALFORMED_FRAME};
use super::observe::Observed;
use super::server::ServerHandle;

/// Everything the JSON-RPC simulator can be told at start; `Default` suits the demo.
#[derive(Debug, Clone)]
pub struct JsonRpcSimConfig {
    /// Period between notifications.
    pub interval: Duration,
    /// Stop after this many notifications; `None` = never.
    pub count: Option<u64>,
    /// Notification methods, used in rotation (`n` picks `methods[(n-1) % len]`).
    pub methods: Vec<String>,
    /// Connections after the first get `SESSION_ATTACHED` instead of `SESSION_CREATED`.
    pub attach_on_reconnect: bool,
    /// Requests for this method get an `error` object instead of a `result`.
    pub error_method: Option<String>,
    /// Generate notifications even with no connection open (they are then lost).
    /// Off by default so that every `n` is offered to a client.
    pub run_without_connections: bool,
    /// Drop every connection (no close frame) this long after it opened.
    pub drop_every: Option<Duration>,
    /// Start silent.
    pub silent: bool,
}

impl Default for JsonRpcSimConfig {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(1),
            count: None,
            methods: ["OnProgress", "OnChange", "OnTick"]
                .map(str::to_owned)
                .to_vec(),
            attach_on_reconnect: false,
            error_method: None,
            run_without_connections: false,
            drop_every: None,
            silent: false,
        }
    }
}

/// Command-line flags of `wsvault simulate jsonrpc`.
#[derive(Debug, Clone, clap::Args)]
pub struct JsonRpcSimArgs {
    /// Period between notifications (e.g. "1s").
    #[arg(long, default_value = "1s", value_parser = humantime::parse_duration)]
    pub interval: Duration,
    /// Stop after this many notifications.
    #[arg(long)]
    pub count: Option<u64>,
    /// Notification method (repeatable; default OnProgress, OnChange, OnTick).
    #[arg(long = "method")]
    pub methods: Vec<String>,
    /// Reconnections get SESSION_ATTACHED.
    #[arg(long)]
    pub attach_on_reconnect: bool,
    /// Method whose requests fail with an error object.
    #[arg(long)]
    pub error_method: Option<String>,
    /// Drop every connection (no close frame) this long after it opened.
    #[arg(long, value_parser = humantime::parse_duration)]
    pub drop_every: Option<Duration>,
}

impl From<JsonRpcSimArgs> for JsonRpcSimConfig {
    fn from(a: JsonRpcSimArgs) -> Self {
        let defaults = JsonRpcSimConfig::default();
        Self {
            interval: a.interval,
            count: a.count,
            methods: if a.methods.is_empty() {
                defaults.methods.clone()
            } else {
                a.methods
            },
            attach_on_reconnect: a.attach_on_reconnect,
            error_method: a.error_method,
            drop_every: a.drop_every,
            ..defaults
        }
    }
}

/// One WebSocket connection as the simulator saw it.
#[derive(Debug, Clone, Default)]
pub struct JsonRpcConnection {
    /// Connection number, from 1.
    pub id: u64,
    /// Path and query of the upgrade request.
    pub target: String,
    /// Upgrade request headers, in order.
    pub headers: Vec<(String, String)>,
    /// `qSessionState` sent in `OnConnected`.
    pub session_state: String,
    /// Every request received on this connection, parsed.
    pub requests: Vec<Value>,
}

/// One notification written to one connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SentNotification {
    /// Connection number it was written to.
    pub connection: u64,
    /// Its global number (1, 2, 3… over all connections).
    pub n: u64,
    /// Its method.
    pub method: String,
}

/// What the simulator has seen and done, for assertions. Lists are capped at
/// [`super::observe::RECORD_CAP`] entries (oldest dropped).
#[derive(Debug, Clone, Default)]
pub struct JsonRpcStats {
    /// WebSocket connections accepted.
    pub connections: u64,
    /// WebSocket connections currently open.
    pub open_connections: u64,
    /// The most connections ever open at once: a test that one client at a time
    /// holds the stream (cluster handovers) asserts it stays 1.
    pub max_open_connections: u64,
    /// Connections dropped on purpose.
    pub drops: u64,
    /// Connections closed on purpose with a close frame (`close_now`).
    pub closes: u64,
    /// Per connection: upgrade request and requests received.
    pub connection_log: Vec<JsonRpcConnection>,
    /// Requests received over all connections.
    pub requests_received: u64,
    /// Highest `n` generated so far (notifications are numbered from 1).
    pub notifications_generated: u64,
    /// Every notification written, with its connection.
    pub notifications_sent: Vec<SentNotification>,
    /// Text frames written (OnConnected, notifications, responses, injected frames).
    pub frames_sent: u64,
    /// Client frames that were not JSON-RPC requests.
    pub other_client_frames: Vec<String>,
}

/// A clean server-side close: the close frame every open connection sends when
/// told to (`JsonRpcControl::close_now`), so clients can be tested on a server that
/// ends the session with a status code (1000 included) rather than a bare drop.
#[derive(Debug, Clone)]
pub(crate) struct CloseWith {
    code: u16,
    reason: String,
}

/// State shared by the control handle, the generator and the connection tasks.
#[derive(Debug)]
struct Shared {
    cfg: JsonRpcSimConfig,
    stats: Observed<JsonRpcStats>,
    faults: Faults<CloseWith>,
    fanout: Arc<Fanout<Arc<(u64, String)>>>,
    next_conn: AtomicU64,
}

/// Handle to steer a running JSON-RPC simulator and observe it. Cheap to clone.
#[derive(Debug, Clone)]
pub struct JsonRpcControl {
    shared: Arc<Shared>,
}

impl JsonRpcControl {
    /// A copy of the counters and records.
    pub fn stats(&self) -> JsonRpcStats {
        self.shared.stats.snapshot()
    }

    /// Waits until `pred` holds for the stats or `timeout` passes; returns whether it held.
    pub async fn wait_until(
        &self,
        pred: impl FnMut(&JsonRpcStats) -> bool,
        timeout: Duration,
    ) -> bool {
        self.shared.stats.wait_until(pred, timeout).await
    }

    /// Drops every open connection now, without a close frame; returns how many.
    pub fn drop_now(&self) -> usize {
        self.shared.faults.command(Command::Drop)
    }

    /// Closes every open connection now with a close frame carrying `code` and
    /// `reason` (then waits briefly for the client's answer); returns how many.
    pub fn close_now(&self, code: u16, reason: &str) -> usize {
        self.shared.faults.command(Command::Proto(CloseWith {
            code,
            reason: reason.to_owned(),
        }))
    }

    /// Drops each connection this long after it opened (`None` = never).
    pub fn set_drop_every(&self, every: Option<Duration>) {
        self.shared.faults.set_drop_every(every);
    }

    /// Silent: send nothing, read nothing, keep sockets open; notifications pause.
    /// Commands other than drops issued while silent are discarded.
    pub fn set_silent(&self, silent: bool) {
        self.shared.faults.set_silent(silent);
    }

    /// Sends one frame that is not JSON.
    pub fn send_malformed(&self) -> usize {
        self.send_raw(MALFORMED_FRAME)
    }

    /// Sends `text` verbatim as one frame.
    pub fn send_raw(&self, text: &str) -> usize {
        self.shared.faults.command(Command::Raw(text.to_owned()))
    }
}

/// A running JSON-RPC simulator. Dropping it stops it too; `shutdown` waits for it.
#[derive(Debug)]
pub struct JsonRpcSim {
    server: ServerHandle,
    control: JsonRpcControl,
}

impl JsonRpcSim {
    /// Binds `listen` (port 0 allowed) and serves WebSocket connections on any path.
    pub async fn start(listen: SocketAddr, cfg: JsonRpcSimConfig) -> std::io::Result<JsonRpcSim> {
        let shared = Arc::new(Shared {
            stats: Observed::new(JsonRpcStats::default()),
            faults: Faults::new(cfg.silent, cfg.drop_every),
            fanout: Fanout::new(),
            next_conn: AtomicU64::new(1),
            cfg,
        });
        let conn_shared = Arc::clone(&shared);
        let mut server = ServerHandle::bind(listen, move |stream, _peer| {
            conn::serve(Arc::clone(&conn_shared), stream)
        })
        .await?;
        server.attach(tokio::spawn(conn::generate(Arc::clone(&shared))));
        Ok(JsonRpcSim {
            server,
            control: JsonRpcControl { shared },
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.server.addr()
    }

    /// `ws://ADDR/app/engineData` (any path is served).
    pub fn ws_url(&self) -> String {
        format!("ws://{}/app/engineData", self.addr())
    }

    /// The control and observation handle.
    pub fn control(&self) -> &JsonRpcControl {
        &self.control
    }

    /// Stops serving: open connections are dropped without a close frame.
    pub async fn shutdown(self) {
        self.server.shutdown().await;
    }
}

impl Shared {
    fn conn_number(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::SeqCst)
    }
}

/// Serves until Ctrl-C (for `wsvault simulate jsonrpc`), printing the URL first.
pub async fn run_until_ctrl_c(listen: SocketAddr, cfg: JsonRpcSimConfig) -> std::io::Result<()> {
    let sim = JsonRpcSim::start(listen, cfg).await?;
    println!("jsonrpc simulator listening: ws {}", sim.ws_url());
    tokio::signal::ctrl_c().await?;
    sim.shutdown().await;
    Ok(())
}
