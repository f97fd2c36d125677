//! The accept loop and task ownership shared by the simulators.
//!
//! Owns the listening socket, one task per connection and any background tasks
//! (generators, schedulers). Shutting down or dropping the handle aborts every one
//! of them, so a test that forgets to shut a simulator down cannot leak a port or
//! a task into the next test. It never speaks a protocol.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::sync::oneshot;
use tokio::task::{JoinHandle, JoinSet};

/// A running simulator's sockets and tasks.
#[derive(Debug)]
pub(crate) struct ServerHandle {
    addr: SocketAddr,
    stop: Option<oneshot::Sender<()>>,
    accept: Option<JoinHandle<()>>,
    background: Vec<JoinHandle<()>>,
}

impl ServerHandle {
    /// Binds `listen` and serves every accepted connection with `handler` on its
    /// own task.
    pub async fn bind<F, Fut>(listen: SocketAddr, handler: F) -> std::io::Result<Self>
    where
        F: Fn(TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let (stop_tx, stop_rx) = oneshot::channel();
        let accept = tokio::spawn(accept_loop(listener, Arc::new(handler), stop_rx));
        Ok(Self {
            addr,
            stop: Some(stop_tx),
            accept: Some(accept),
            background: Vec::new(),
        })
    }

    /// The bound address (the real port when bound to port 0).
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Ties a background task's life to the server's.
    pub fn attach(&mut self, task: JoinHandle<()>) {
        self.background.push(task);
    }

    /// Stops accepting, drops every open connection (no close frame) and stops the
    /// background tasks; returns once all of them are gone.
    pub async fn shutdown(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if let Some(accept) = self.accept.take() {
            let _ = accept.await;
        }
        for task in self.background.drain(..) {
            task.abort();
            let _ = task.await;
        }
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if let Some(accept) = &self.accept {
            accept.abort();
        }
        for task in &self.background {
            task.abort();
        }
    }
}

async fn accept_loop<F, Fut>(
    listener: TcpListener,
    handler: Arc<F>,
    mut stop: oneshot::Receiver<()>,
) where
    F: Fn(TcpStream, SocketAddr) -> Fut + Send + Sync + 'static,
    Fut: Future<Output = ()> + Send + 'static,
{
    // Dropping the JoinSet on return aborts every connection task.
    let mut conns = JoinSet::new();
    loop {
        tokio::select! {
            _ = &mut stop => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    let _ = stream.set_nodelay(true);
                    conns.spawn(handler(stream, peer));
                }
                Err(err) => {
                    // Out of descriptors and the like: back off briefly, keep serving.
                    tracing::warn!(error = %err, "simulator accept failed");
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
        }
    }
}
