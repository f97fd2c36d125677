//! The daemon's `/metrics` and `/healthz` seen from outside: its HTTP address from
//! its log, plain GETs, waiting for an answer, and reading one Prometheus sample.

use std::time::Duration;

use super::LIMIT;
use super::daemon::Daemon;
use super::wait::wait_for;

/// The `/metrics` + `/healthz` address the daemon logged.
pub async fn http_addr(daemon: &Daemon) -> String {
    daemon.wait_log("http listening on ").await;
    let log = daemon.log();
    let rest = log.split("http listening on ").nth(1).expect("listen line");
    rest.split_whitespace().next().expect("address").to_string()
}

/// `GET http://addr/path`: (status, body).
pub async fn get(addr: &str, path: &str) -> (u16, String) {
    let resp = reqwest::Client::new()
        .get(format!("http://{addr}{path}"))
        .timeout(Duration::from_secs(5))
        .send()
        .await
        .unwrap_or_else(|e| panic!("GET {path}: {e}"));
    let status = resp.status().as_u16();
    (status, resp.text().await.expect("body"))
}

/// Polls `GET path` until `pred(status, body)` holds; returns that answer.
pub async fn wait_http(
    addr: &str,
    path: &str,
    what: &str,
    pred: impl Fn(u16, &str) -> bool,
) -> (u16, String) {
    let what = format!("{path} to show {what}");
    wait_for(LIMIT, &what, None, || get(addr, path), |(s, b)| pred(*s, b)).await
}

/// The value of the Prometheus sample whose line starts with `series` (name and
/// labels exactly as rendered, e.g. `wsvault_source_connected{source="rpc"}`).
pub fn sample(metrics: &str, series: &str) -> Option<f64> {
    metrics.lines().find_map(|l| {
        l.strip_prefix(series)
            .and_then(|rest| rest.trim().parse::<f64>().ok())
    })
}
