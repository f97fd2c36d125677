//! The `[http] listen` endpoint: `GET /metrics` (Prometheus text) and `GET /healthz`
//! (200 or 503 with a JSON body saying why).
//!
//! A tiny HTTP/1.1 server on hyper: two read-only routes that only take a snapshot of
//! the [`Registry`]. It must never block the daemon: a slow or stuck client only holds
//! its own connection task, and a failure here never stops recording.

use super::{Registry, health, metrics};
use http_body_util::Full;
use hyper::body::{Bytes, Incoming};
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The listener could not start.
#[derive(Debug, thiserror::Error)]
#[error(
    "cannot listen for /metrics and /healthz on {addr}: {source}; change [http] listen or free the port"
)]
pub struct HttpError {
    /// The configured address.
    pub addr: SocketAddr,
    /// Why binding failed.
    #[source]
    pub source: std::io::Error,
}

/// A running listener; [`HttpServer::stop`] ends it (dropping it does too: the
/// accept loop ends when its stop sender is gone).
pub struct HttpServer {
    addr: SocketAddr,
    stop: watch::Sender<bool>,
    task: JoinHandle<()>,
}

impl HttpServer {
    /// Binds `addr` (port 0 picks one; see [`HttpServer::addr`]) and serves until stopped.
    pub async fn start(addr: SocketAddr, registry: Arc<Registry>) -> Result<HttpServer, HttpError> {
        let listener = TcpListener::bind(addr)
            .await
            .map_err(|source| HttpError { addr, source })?;
        let bound = listener
            .local_addr()
            .map_err(|source| HttpError { addr, source })?;
        let handle = metrics::install();
        let (stop, stop_rx) = watch::channel(false);
        tracing::info!(addr = %bound, "http listening on {bound} (/metrics, /healthz)");
        let task = tokio::spawn(accept_loop(listener, registry, handle, stop_rx));
        Ok(HttpServer {
            addr: bound,
            stop,
            task,
        })
    }

    /// The bound address.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops accepting and waits for the accept loop to end.
    pub async fn stop(self) {
        let _ = self.stop.send(true);
        let _ = self.task.await;
    }
}

async fn accept_loop(
    listener: TcpListener,
    registry: Arc<Registry>,
    handle: Option<metrics_exporter_prometheus::PrometheusHandle>,
    mut stop: watch::Receiver<bool>,
) {
    loop {
        let stream = tokio::select! {
            _ = super::stopped(&mut stop) => return,
            r = listener.accept() => match r {
                Ok((stream, _)) => stream,
                Err(e) => {
                    tracing::debug!("http accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
        };
        let registry = registry.clone();
        let handle = handle.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let registry = registry.clone();
                let handle = handle.clone();
                async move { Ok::<_, std::convert::Infallible>(route(&req, &registry, handle.as_ref())) }
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(Duration::from_secs(10))
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                r = conn => if let Err(e) = r { tracing::debug!("http connection: {e}") },
                _ = super::stopped(&mut stop) => {}
            }
        });
    }
}

fn respond(status: StatusCode, content_type: &'static str, body: String) -> Response<Full<Bytes>> {
    // Error texts in the body (a database's, a session's) may quote a secret.
    let body = crate::redact::secrets::text(&body).into_owned();
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = status;
    r.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static(content_type));
    r
}

fn route(
    req: &Request<Incoming>,
    registry: &Registry,
    handle: Option<&metrics_exporter_prometheus::PrometheusHandle>,
) -> Response<Full<Bytes>> {
    if req.method() != Method::GET && req.method() != Method::HEAD {
        return respond(
            StatusCode::METHOD_NOT_ALLOWED,
            "text/plain",
            "only GET\n".into(),
        );
    }
    match req.uri().path() {
        "/healthz" => {
            let snap = registry.snapshot();
            let h = health::evaluate(&snap);
            let status = if h.ok {
                StatusCode::OK
            } else {
                StatusCode::SERVICE_UNAVAILABLE
            };
            let mut body = health::to_json(&snap, &h).to_string();
            body.push('\n');
            respond(status, "application/json", body)
        }
        "/metrics" => match handle {
            Some(handle) => {
                let snap = registry.snapshot();
                let ok = health::evaluate(&snap).ok;
                respond(
                    StatusCode::OK,
                    "text/plain; version=0.0.4",
                    metrics::render(handle, &snap, ok),
                )
            }
            None => respond(
                StatusCode::INTERNAL_SERVER_ERROR,
                "text/plain",
                "metrics recorder unavailable: another recorder was installed first\n".into(),
            ),
        },
        _ => respond(
            StatusCode::NOT_FOUND,
            "text/plain",
            "not found; try /metrics or /healthz\n".into(),
        ),
    }
}
