//! `[cluster]` through `wsvault check-config`, like `config_check`: defaults, the
//! refusal with SQLite (exit 78 and why), and every timing mistake with its own
//! message.

use std::path::{Path, PathBuf};
use std::process::Command;

const SOURCE: &str = r#"
[[sources]]
name = "engine"
kind = "jsonrpc"
url = "ws://127.0.0.1:4848/app"
"#;

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("wsvault.toml");
    std::fs::write(&p, format!("{text}\n{SOURCE}")).unwrap();
    p
}

/// Runs check-config; returns the exit code and stdout + stderr.
fn check(text: &str, env: &[(&str, &str)]) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsvault"));
    cmd.arg("check-config")
        .arg("--config")
        .arg(write(dir.path(), text));
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

fn refused(text: &str, needles: &[&str]) {
    let (code, out) = check(text, &[]);
    assert_eq!(code, Some(78), "expected exit 78 (config refused): {out}");
    for n in needles {
        assert!(out.contains(n), "expected {n:?} in: {out}");
    }
}

const PG: &str = "[storage]\nurl = \"postgres://wsvault@db.example/wsvault\"\n";

#[test]
fn cluster_defaults_to_the_host_name_and_a_third_of_the_ttl() {
    let (code, out) = check(&format!("{PG}[cluster]\n"), &[]);
    assert_eq!(code, Some(0), "{out}");
    let host = wsvault::config::host_name().expect("host name");
    assert!(
        out.contains(&format!(
            "cluster: node {host} (lease_ttl 15s, renew_every 5s, gives a source up 3s before its lease expires)"
        )),
        "{out}"
    );
}

#[test]
fn cluster_keys_and_environment_overrides() {
    let text =
        format!("{PG}[cluster]\nnode = \"vault-1\"\nlease_ttl = \"6s\"\nrenew_every = \"1s\"\n");
    let (code, out) = check(&text, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(
        out.contains("cluster: node vault-1 (lease_ttl 6s, renew_every 1s"),
        "{out}"
    );
    // The same file on every host, the name from the environment.
    let (code, out) = check(&text, &[("WSVAULT__CLUSTER__NODE", "vault-2")]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("cluster: node vault-2 "), "{out}");
}

#[test]
fn no_cluster_table_means_no_cluster() {
    let (code, out) = check(PG, &[]);
    assert_eq!(code, Some(0), "{out}");
    assert!(!out.contains("cluster:"), "{out}");
}

#[test]
fn cluster_with_sqlite_is_refused_and_says_why() {
    refused(
        "[storage]\nurl = \"sqlite://vault.db\"\n[cluster]\nnode = \"a\"\n",
        &[
            "[cluster]",
            "needs PostgreSQL storage",
            "a SQLite file belongs to one host",
        ],
    );
    // Also with the default storage URL (SQLite) and every key defaulted.
    refused("[cluster]\n", &["needs PostgreSQL storage"]);
}

#[test]
fn cluster_timing_mistakes_are_refused_one_by_one() {
    refused(
        &format!("{PG}[cluster]\nlease_ttl = \"50ms\"\n"),
        &["lease_ttl in [cluster]", "below the floor of 100ms"],
    );
    refused(
        &format!("{PG}[cluster]\nlease_ttl = \"15s\"\nrenew_every = \"10s\"\n"),
        &[
            "renew_every in [cluster]",
            "at most 6s with lease_ttl 15s",
            "3s (a fifth of the ttl)",
            "two renewals must fit",
        ],
    );
    refused(
        &format!("{PG}[cluster]\nrenew_every = \"0s\"\n"),
        &["renew_every in [cluster]", "longer than zero"],
    );
    refused(
        &format!("{PG}[cluster]\nlease_ttl = \"soon\"\n"),
        &["bad duration `soon` for lease_ttl in [cluster]"],
    );
}

#[test]
fn cluster_names_and_keys_are_checked() {
    refused(
        &format!("{PG}[cluster]\nnode = \"a b\"\n"),
        &["node in [cluster]", "`a b` is not a node name"],
    );
    refused(
        &format!("{PG}[cluster]\nnode = \"\"\n"),
        &["is not a node name"],
    );
    refused(
        &format!("{PG}[cluster]\nttl = \"5s\"\n"),
        &["unknown key `ttl` in [cluster]", "lease_ttl"],
    );
}
