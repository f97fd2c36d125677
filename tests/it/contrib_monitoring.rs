//! The monitoring kit in `contrib/` (Prometheus rules, Grafana dashboard) only helps
//! if every metric it queries exists: a renamed or never-exported metric turns an
//! alert into one that can never fire. This starts the real daemon against a
//! simulator, scrapes `/metrics`, and checks every name the kit uses against it; the
//! rules also go through `promtool check rules` when promtool is installed.

use crate::support::navixy::{ALL_DATA, api_key_line, navixy_source};
use crate::support::*;
use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;
use wsvault::sim::jsonrpc::{JsonRpcSim, JsonRpcSimConfig};
use wsvault::sim::navixy::{NavixySim, NavixySimConfig};

const RULES: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/contrib/prometheus/wsvault.rules.yml"
);
const DASHBOARD: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/contrib/grafana/wsvault.json");

/// Every `wsvault_[a-z_]+` in `text`, with the histogram series suffixes removed so
/// `wsvault_write_seconds_bucket` and `wsvault_write_seconds` compare equal.
fn metric_names(text: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("wsvault_") {
        let tail = &rest[at..];
        let len = tail
            .find(|c: char| !(c.is_ascii_lowercase() || c == '_'))
            .unwrap_or(tail.len());
        names.insert(base_name(&tail[..len]).to_string());
        rest = &tail[len..];
    }
    names
}

fn base_name(name: &str) -> &str {
    ["_bucket", "_sum", "_count"]
        .iter()
        .find_map(|s| name.strip_suffix(s))
        .unwrap_or(name)
}

/// Names used in the rules' `expr:` values (the annotations mention none).
fn rule_names() -> BTreeSet<String> {
    let text = std::fs::read_to_string(RULES).expect("rules file");
    let mut exprs = String::new();
    let mut in_expr = false;
    for line in text.lines() {
        let trimmed = line.trim_start();
        if let Some(e) = trimmed.strip_prefix("expr:") {
            exprs.push_str(e);
            exprs.push('\n');
            in_expr = e.trim() == "|";
        } else if in_expr && line.starts_with("          ") {
            exprs.push_str(trimmed);
            exprs.push('\n');
        } else {
            in_expr = false;
        }
    }
    metric_names(&exprs)
}

/// Names used in the dashboard's target expressions and template queries.
fn dashboard_names() -> BTreeSet<String> {
    let text = std::fs::read_to_string(DASHBOARD).expect("dashboard file");
    let dash: serde_json::Value = serde_json::from_str(&text).expect("dashboard is JSON");
    let mut exprs = String::new();
    collect_exprs(&dash, &mut exprs);
    metric_names(&exprs)
}

fn collect_exprs(v: &serde_json::Value, out: &mut String) {
    match v {
        serde_json::Value::Object(map) => {
            for (k, v) in map {
                match (k.as_str(), v) {
                    ("expr" | "definition", serde_json::Value::String(s)) => {
                        out.push_str(s);
                        out.push('\n');
                    }
                    _ => collect_exprs(v, out),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|i| collect_exprs(i, out)),
        _ => {}
    }
}

/// Metric names of the sample lines in a Prometheus text exposition.
fn scraped_names(body: &str) -> BTreeSet<String> {
    body.lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| l.split(['{', ' ']).next())
        .filter(|n| n.starts_with("wsvault_"))
        .map(|n| base_name(n).to_string())
        .collect()
}

#[test]
fn the_name_scanner_finds_names_and_strips_histogram_suffixes() {
    let names = metric_names(
        "rate(wsvault_write_seconds_bucket{x=\"1\"}[5m]) / wsvault_writer_queue_capacity > 0.8",
    );
    let want: BTreeSet<String> = ["wsvault_write_seconds", "wsvault_writer_queue_capacity"]
        .into_iter()
        .map(String::from)
        .collect();
    assert_eq!(names, want);
    assert!(
        rule_names().len() >= 8,
        "rules use too few names: {:?}",
        rule_names()
    );
    assert!(
        dashboard_names().len() >= 10,
        "dashboard uses too few names"
    );
}

/// Series only a daemon with `[cluster]` (PostgreSQL) exports.
fn is_cluster_metric(name: &str) -> bool {
    ["wsvault_lease", "wsvault_fenced", "wsvault_cluster"]
        .iter()
        .any(|p| name.starts_with(p))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_metric_the_kit_uses_exists_in_a_live_scrape() {
    let db = sqlite_database();
    let rpc = JsonRpcSim::start(
        ([127, 0, 0, 1], 0).into(),
        JsonRpcSimConfig {
            interval: Duration::from_millis(20),
            ..JsonRpcSimConfig::default()
        },
    )
    .await
    .unwrap();
    // A Navixy source too: its backfill worker exports the gap and backfill series.
    let navixy = NavixySim::start(([127, 0, 0, 1], 0).into(), NavixySimConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let sources = jsonrpc_source("rpc", &rpc.ws_url(), -1)
        + &navixy_source("fleet", &navixy, &format!("{}\n{ALL_DATA}", api_key_line()));
    let cfg = config(
        &db.cfg.url,
        "",
        "",
        &format!("[http]\nlisten = \"127.0.0.1:0\"\n{sources}"),
    );
    let daemon = Daemon::start(dir.path(), &cfg);
    let addr = http_addr(&daemon).await;

    let used: BTreeSet<String> = rule_names()
        .union(&dashboard_names())
        .filter(|n| !is_cluster_metric(n))
        .cloned()
        .collect();
    // Some series appear only after the first event, batch or commit: wait for them,
    // then report whatever is still missing.
    let missing = || async {
        let (status, body) = get(&addr, "/metrics").await;
        assert_eq!(status, 200, "/metrics answered {status}: {body}");
        let have = scraped_names(&body);
        used.difference(&have).cloned().collect::<Vec<_>>()
    };
    let what = "every metric contrib/ uses in /metrics (last: the ones missing)";
    wait_for(LIMIT, what, Some(&daemon), missing, Vec::is_empty).await;
    daemon.stop().await;
}

/// The lease rules and panels: scraped from a daemon with `[cluster]` on
/// PostgreSQL (one node holding a JSON-RPC source).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_cluster_metric_the_kit_uses_exists_in_a_cluster_scrape() {
    let Some(db) = test_databases(Backend::Postgres).await.into_iter().next() else {
        return; // skipped: the support module said so
    };
    let used: BTreeSet<String> = rule_names()
        .union(&dashboard_names())
        .filter(|n| is_cluster_metric(n))
        .cloned()
        .collect();
    assert!(
        used.len() >= 4,
        "the kit should use the lease metrics: {used:?}"
    );
    let rpc = JsonRpcSim::start(([127, 0, 0, 1], 0).into(), JsonRpcSimConfig::default())
        .await
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        &db.cfg.url,
        "",
        "",
        &format!(
            "[http]\nlisten = \"127.0.0.1:0\"\n[cluster]\nnode = \"kit\"\nlease_ttl = \"3s\"\n{}",
            jsonrpc_source("rpc", &rpc.ws_url(), -1)
        ),
    );
    let daemon = Daemon::start(dir.path(), &cfg);
    let addr = http_addr(&daemon).await;
    let missing = || async {
        let (status, body) = get(&addr, "/metrics").await;
        assert_eq!(status, 200, "/metrics answered {status}: {body}");
        let have = scraped_names(&body);
        used.difference(&have).cloned().collect::<Vec<_>>()
    };
    let what = "every lease metric contrib/ uses in /metrics (last: the ones missing)";
    wait_for(LIMIT, what, Some(&daemon), missing, Vec::is_empty).await;
    daemon.stop().await;
}

#[test]
fn the_rules_pass_promtool() {
    let out = match std::process::Command::new("promtool")
        .args(["check", "rules", Path::new(RULES).to_str().unwrap()])
        .output()
    {
        Ok(o) => o,
        Err(e) => {
            eprintln!("SKIPPED: promtool is not installed here ({e}); .ci/run installs it");
            return;
        }
    };
    assert!(
        out.status.success(),
        "promtool check rules failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
