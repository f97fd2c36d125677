//! A loopback TCP proxy that can cut the line on demand, for outage tests.
//!
//! Tests put it between a client (the writer's PostgreSQL pool, a WebSocket session)
//! and a real server, then [`TcpProxy::cut`] to simulate the network or the server
//! going away: every live connection is reset and new ones are refused until
//! [`TcpProxy::restore`]. It forwards bytes unchanged and never inspects them; it is
//! a test tool and must never be used on anything but loopback.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Shared between the proxy handle, its accept loop and every connection task.
struct State {
    /// While set, accepted connections are reset at once.
    cut: AtomicBool,
    /// Bumped by `cut`; every connection task watches it and resets its sockets.
    generation: watch::Sender<u64>,
}

/// A running proxy on `127.0.0.1:<ephemeral>` forwarding to one upstream address.
/// Dropping it stops accepting and resets every live connection.
pub struct TcpProxy {
    addr: SocketAddr,
    state: Arc<State>,
    accept: JoinHandle<()>,
}

impl TcpProxy {
    /// Binds `127.0.0.1:0` and starts forwarding every accepted connection to
    /// `upstream` (connected anew for each client connection).
    pub async fn start(upstream: SocketAddr) -> io::Result<TcpProxy> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let (generation, _) = watch::channel(0u64);
        let state = Arc::new(State {
            cut: AtomicBool::new(false),
            generation,
        });
        let accept = tokio::spawn(accept_loop(listener, upstream, state.clone()));
        Ok(TcpProxy {
            addr,
            state,
            accept,
        })
    }

    /// The address clients should connect to instead of the upstream.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Simulates an outage: resets every live connection (the peers see a
    /// connection reset, not a clean close) and refuses new ones until `restore`.
    pub fn cut(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
        self.state.generation.send_modify(|g| *g += 1);
    }

    /// Ends the outage: new connections are forwarded again.
    pub fn restore(&self) {
        self.state.cut.store(false, Ordering::SeqCst);
    }

    /// Whether the proxy is currently cut.
    pub fn is_cut(&self) -> bool {
        self.state.cut.load(Ordering::SeqCst)
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.state.generation.send_modify(|g| *g += 1);
    }
}

/// Closes `stream` with a reset so the peer notices at once.
fn reset(stream: TcpStream) {
    let _ = stream.set_zero_linger();
    drop(stream);
}

async fn accept_loop(listener: TcpListener, upstream: SocketAddr, state: Arc<State>) {
    loop {
        let client = match listener.accept().await {
            Ok((client, _)) => client,
            Err(e) => {
                tracing::debug!(error = %e, "proxy accept failed");
                continue;
            }
        };
        // Subscribe before checking the flag, so a cut racing with this connection
        // is still seen by it.
        let mut generation = state.generation.subscribe();
        if state.cut.load(Ordering::SeqCst) {
            reset(client);
            continue;
        }
        let state = state.clone();
        tokio::spawn(async move {
            let Ok(mut server) = TcpStream::connect(upstream).await else {
                reset(client);
                return;
            };
            if state.cut.load(Ordering::SeqCst) {
                reset(client);
                reset(server);
                return;
            }
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            let mut client = client;
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = generation.changed() => {}
            }
            reset(client);
            reset(server);
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    async fn echo_server() -> SocketAddr {
        let l = TcpListener::bind(("127.0.0.1", 0)).await.unwrap();
        let addr = l.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = l.accept().await {
                tokio::spawn(async move {
                    let (mut r, mut w) = s.split();
                    let _ = tokio::io::copy(&mut r, &mut w).await;
                });
            }
        });
        addr
    }

    async fn round_trip(addr: SocketAddr) -> io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(addr).await?;
        s.write_all(b"ping").await?;
        let mut buf = [0u8; 4];
        s.read_exact(&mut buf).await?;
        Ok(buf.to_vec())
    }

    #[tokio::test]
    async fn forwards_cuts_and_restores() {
        let proxy = TcpProxy::start(echo_server().await).await.unwrap();
        assert_eq!(round_trip(proxy.addr()).await.unwrap(), b"ping");

        let mut live = TcpStream::connect(proxy.addr()).await.unwrap();
        live.write_all(b"a").await.unwrap();
        let mut one = [0u8; 1];
        live.read_exact(&mut one).await.unwrap();

        proxy.cut();
        assert!(proxy.is_cut());
        // The live connection is reset: reading yields an error or EOF, never data.
        let mut buf = [0u8; 8];
        let read = tokio::time::timeout(std::time::Duration::from_secs(2), live.read(&mut buf))
            .await
            .expect("a cut connection must end promptly");
        assert!(matches!(read, Err(_) | Ok(0)), "{read:?}");
        assert!(round_trip(proxy.addr()).await.is_err());

        proxy.restore();
        assert_eq!(round_trip(proxy.addr()).await.unwrap(), b"ping");
    }
}
