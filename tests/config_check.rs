//! `wsvault check-config` against real files: every kind of mistake gets its own
//! message and a non-zero exit; a good file passes and never prints a secret.

use std::path::{Path, PathBuf};
use std::process::Command;

const GOOD: &str = r#"
[storage]
url = "sqlite://vault.db"
batch_size = 200
flush_interval = "50ms"

[supervisor]
backoff_initial = "100ms"
backoff_max = "5s"

[[sources]]
name = "fleet-eu"
kind = "navixy"
url = "wss://api.eu.navixy.com/v2/event/subscription"
api_key_hash = "0123456789abcdef0123456789abcdef"
subscriptions = [
  { type = "state_batch", target = "all", rate_limit = "5s" },
  { type = "readings_batch", target = "selected", tracker_ids = [501, 502] },
]

[[sources]]
name = "broker"
kind = "tradernet"
url = "wss://wss.tradernet.com/"
sid = "sid-secret-value-123"

[[sources]]
name = "engine"
kind = "jsonrpc"
url = "ws://127.0.0.1:4848/app"
requests = [ { method = "GetActiveDoc", handle = -1, params = [] } ]
"#;

fn write(dir: &Path, text: &str) -> PathBuf {
    let p = dir.join("wsvault.toml");
    std::fs::write(&p, text).unwrap();
    p
}

fn check(path: &Path, env: &[(&str, &str)]) -> (bool, String) {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsvault"));
    cmd.arg("check-config").arg("--config").arg(path);
    for (k, v) in env {
        cmd.env(k, v);
    }
    let out = cmd.output().unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn refused(text: &str, needles: &[&str]) {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = check(&write(dir.path(), text), &[]);
    assert!(!ok, "expected refusal, got success: {out}");
    for n in needles {
        assert!(out.contains(n), "expected {n:?} in: {out}");
    }
}

#[test]
fn good_config_passes_without_printing_secrets() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = check(&write(dir.path(), GOOD), &[]);
    assert!(ok, "{out}");
    assert!(out.contains("source fleet-eu (navixy)"), "{out}");
    assert!(out.contains("source engine (jsonrpc)"), "{out}");
    assert!(!out.contains("0123456789abcdef0123456789abcdef"));
    assert!(!out.contains("sid-secret-value-123"));
}

#[test]
fn missing_file() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = check(&dir.path().join("nope.toml"), &[]);
    assert!(!ok);
    assert!(out.contains("nope.toml not found"), "{out}");
}

#[test]
fn toml_syntax_error_names_the_line() {
    refused(
        "[storage]\nbatch_size = 10\nurl = \"sqlite://x.db\n",
        &["TOML syntax error", "line 3"],
    );
}

#[test]
fn unknown_key() {
    refused(
        "[storage]\nbatchsize = 10\n",
        &["unknown key `batchsize` in [storage]", "batch_size"],
    );
    refused(
        "[[sources]]\nname = \"a\"\nkind = \"jsonrpc\"\nurl = \"ws://127.0.0.1/\"\nurll = 1\n",
        &["unknown key `urll` in source `a`"],
    );
}

#[test]
fn missing_required_key() {
    refused(
        "[[sources]]\nname = \"a\"\nkind = \"jsonrpc\"\n",
        &["missing required key `url` in source `a`"],
    );
    refused(
        "[[sources]]\nname = \"a\"\nkind = \"navixy\"\nurl = \"wss://h/v2/event/subscription\"\n",
        &["missing required key `api_key_hash (or api_key_hash_file, or login + password)`"],
    );
}

#[test]
fn unknown_source_kind() {
    refused(
        "[[sources]]\nname = \"a\"\nkind = \"mqtt\"\nurl = \"wss://h/\"\n",
        &["unknown source kind `mqtt` in source `a`"],
    );
}

#[test]
fn duplicate_source_name() {
    refused(
        "[[sources]]\nname = \"a\"\nkind = \"jsonrpc\"\nurl = \"wss://h/\"\n\
         [[sources]]\nname = \"a\"\nkind = \"jsonrpc\"\nurl = \"wss://g/\"\n",
        &["duplicate source name `a`"],
    );
}

#[test]
fn bad_url_scheme() {
    refused(
        "[[sources]]\nname = \"a\"\nkind = \"jsonrpc\"\nurl = \"http://h/\"\n",
        &["bad URL scheme `http` for url in source `a`", "wss://"],
    );
    refused(
        "[storage]\nurl = \"mysql://h/db\"\n",
        &["bad URL scheme `mysql` for url in [storage]"],
    );
}

#[test]
fn bad_duration() {
    refused(
        "[storage]\nflush_interval = \"5 parsecs\"\n",
        &["bad duration `5 parsecs` for flush_interval in [storage]"],
    );
}

#[test]
fn environment_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), GOOD);
    let (ok, out) = check(&p, &[("WSVAULT__STORAGE__BATCH_SIZE", "77")]);
    assert!(ok, "{out}");
    assert!(out.contains("batch_size 77"), "{out}");
    let (ok, out) = check(&p, &[("WSVAULT__STORAGE__FLUSH_INTERVAL", "soon")]);
    assert!(!ok);
    assert!(out.contains("bad duration `soon`"), "{out}");
    let (ok, out) = check(&p, &[("WSVAULT__SOURCES__ENGINE__URL", "ftp://h/")]);
    assert!(!ok);
    assert!(
        out.contains("bad URL scheme `ftp` for url in source `engine`"),
        "{out}"
    );
}

#[test]
fn secrets_can_come_from_files() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("hash"),
        "fedcba9876543210fedcba9876543210\n",
    )
    .unwrap();
    let text = "[[sources]]\nname = \"a\"\nkind = \"navixy\"\nurl = \"wss://h/v2/event/subscription\"\n\
                api_key_hash_file = \"hash\"\n";
    let (ok, out) = check(&write(dir.path(), text), &[]);
    assert!(ok, "{out}");
    let missing = text.replace("\"hash\"", "\"absent\"");
    let (ok, out) = check(&write(dir.path(), &missing), &[]);
    assert!(!ok);
    assert!(out.contains("cannot read secret file"), "{out}");
}

#[test]
fn bad_backfill_values_are_explained() {
    let navixy = |extra: &str| {
        format!(
            "[[sources]]\nname = \"fleet\"\nkind = \"navixy\"\n\
             url = \"wss://api.eu.navixy.com/v2/event/subscription\"\n\
             api_key_hash = \"0123456789abcdef0123456789abcdef\"\n{extra}\n"
        )
    };
    refused(
        &navixy("backfill_rate = 80"),
        &["backfill_rate", "from 1 to 50"],
    );
    refused(
        &navixy("backfill_max_span = \"10s\""),
        &["backfill_max_span", "at least 1m"],
    );
    refused(
        &navixy("backfill_max_span = \"a week\""),
        &["backfill_max_span"],
    );
    refused(&navixy("backfill = \"maybe\""), &["backfill"]);
    refused(&navixy("api_url = \"ftp://x/v2\""), &["api_url"]);
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = check(
        &write(
            dir.path(),
            &navixy("backfill_rate = 20\nbackfill_max_span = \"1d\"\nbackfill_readings = false"),
        ),
        &[],
    );
    assert!(ok, "{out}");
}
