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
fn partition_size_must_be_whole_hours_up_to_a_year() {
    refused(
        "[storage]\npartition = \"90m\"\n",
        &["partition in [storage]", "not a whole number of hours"],
    );
    refused(
        "[storage]\npartition = \"0s\"\n",
        &["partition in [storage]", "not a whole number of hours"],
    );
    refused(
        "[storage]\npartition = \"400d\"\n",
        &["partition in [storage]", "longer than a year"],
    );
    refused(
        "[storage]\npartition = \"a day\"\n",
        &["bad duration `a day` for partition in [storage]"],
    );
}

#[test]
fn group_commit_caps_default_and_are_checked() {
    let dir = tempfile::tempdir().unwrap();
    let (ok, out) = check(&write(dir.path(), GOOD), &[]);
    assert!(ok, "{out}");
    assert!(
        out.contains("commit_max_rows 2000, commit_max_bytes 2097152"),
        "{out}"
    );
    let p = write(dir.path(), GOOD);
    let (ok, out) = check(&p, &[("WSVAULT__STORAGE__COMMIT_MAX_ROWS", "100")]);
    assert!(!ok);
    assert!(out.contains("100 is smaller than batch_size 200"), "{out}");
    let (ok, out) = check(&p, &[("WSVAULT__STORAGE__COMMIT_MAX_BYTES", "1000")]);
    assert!(!ok);
    assert!(out.contains("commit_max_bytes"), "{out}");
    let (ok, out) = check(&p, &[("WSVAULT__STORAGE__COMMIT_MAX_ROWS", "800")]);
    assert!(ok, "{out}");
    assert!(out.contains("commit_max_rows 800"), "{out}");
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

/// Runs `check-config` on `text`; returns the exit code and everything printed.
fn check_code(text: &str) -> (Option<i32>, String) {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), text);
    let out = Command::new(env!("CARGO_BIN_EXE_wsvault"))
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// Every spelling of a SQLite database that never reaches the disk: the daemon
/// would run, report nothing lost, and keep nothing.
const IN_MEMORY_URLS: &[&str] = &[
    "sqlite::memory:",
    "sqlite://:memory:",
    "sqlite:",
    "sqlite://",
    "sqlite://?mode=memory",
    "sqlite://vault.db?mode=memory",
    "sqlite://vault.db?cache=shared&mode=memory",
    "sqlite://%3Amemory%3A",
    "sqlite://file::memory:",
    "sqlite://file::memory:%3Fcache=shared",
    "sqlite://file:vault.db%3Fmode=memory",
    "sqlite://file:",
    "sqlite://vault.db?vfs=memdb",
];

#[test]
fn in_memory_sqlite_is_refused() {
    for url in IN_MEMORY_URLS {
        let (code, out) = check_code(&format!("[storage]\nurl = \"{url}\"\n"));
        assert_eq!(code, Some(78), "{url}: {out}");
        assert!(out.contains("url in [storage]"), "{url}: {out}");
        assert!(
            out.contains("in-memory") || out.contains("names no file"),
            "{url}: {out}"
        );
        assert!(out.contains("sqlite://PATH"), "{url}: {out}");
    }
}

#[test]
fn empty_variable_expanded_into_the_url_is_refused() {
    // `url = "sqlite://$DB"` in a unit file or script with DB unset.
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), GOOD);
    let (ok, out) = check(&p, &[("WSVAULT__STORAGE__URL", "sqlite://")]);
    assert!(!ok, "{out}");
    assert!(out.contains("names no file"), "{out}");
}

#[test]
fn sqlite_files_still_pass() {
    for url in [
        "sqlite://vault.db",
        "sqlite:vault.db",
        "sqlite:///var/lib/wsvault/vault.db",
        "sqlite://vault.db?mode=rwc",
        "sqlite://file:vault.db",
    ] {
        let (code, out) = check_code(&format!("[storage]\nurl = \"{url}\"\n"));
        assert_eq!(code, Some(0), "{url}: {out}");
    }
}

#[test]
fn run_refuses_an_in_memory_database_before_starting() {
    let dir = tempfile::tempdir().unwrap();
    let path = write(dir.path(), "[storage]\nurl = \"sqlite::memory:\"\n");
    let err_path = dir.path().join("stderr");
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsvault"))
        .arg("run")
        .arg("--config")
        .arg(&path)
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .unwrap();
    // A refused config exits at once; a daemon that accepted it runs until
    // stopped, so give up (and fail) after a generous deadline.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            panic!(
                "`wsvault run` accepted an in-memory database and kept running: {}",
                std::fs::read_to_string(&err_path).unwrap_or_default()
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    let err = std::fs::read_to_string(&err_path).unwrap();
    assert_eq!(status.code(), Some(78), "{err}");
    assert!(err.contains("in-memory"), "{err}");
}

#[test]
fn zero_or_tiny_backoffs_are_refused() {
    for (section, key, value, floor) in [
        ("supervisor", "backoff_initial", "0s", "10ms"),
        ("supervisor", "backoff_initial", "1ms", "10ms"),
        ("supervisor", "backoff_max", "0s", "100ms"),
        ("supervisor", "backoff_max", "50ms", "100ms"),
        ("storage", "retry_max", "0s", "10ms"),
        ("storage", "retry_max", "5ms", "10ms"),
    ] {
        let text = if key == "backoff_max" {
            format!("[{section}]\nbackoff_initial = \"10ms\"\n{key} = \"{value}\"\n")
        } else {
            format!("[{section}]\n{key} = \"{value}\"\n")
        };
        let (code, out) = check_code(&text);
        assert_eq!(code, Some(78), "{key} = {value}: {out}");
        assert!(
            out.contains(&format!("{key} in [{section}]")) && out.contains(floor),
            "{key} = {value}: {out}"
        );
    }
}

#[test]
fn per_source_backoff_overrides_are_checked_too() {
    let source = "[[sources]]\nname = \"a\"\nkind = \"jsonrpc\"\nurl = \"ws://127.0.0.1/\"\n";
    let (code, out) = check_code(&format!("{source}backoff_initial = \"0s\"\n"));
    assert_eq!(code, Some(78), "{out}");
    assert!(out.contains("backoff_initial in source `a`"), "{out}");
    assert!(out.contains("10ms"), "{out}");
    let (code, out) = check_code(&format!(
        "{source}backoff_initial = \"2s\"\nbackoff_max = \"1s\"\n"
    ));
    assert_eq!(code, Some(78), "{out}");
    assert!(out.contains("backoff_max in source `a`"), "{out}");
    // The smallest values the test suites use stay valid.
    let (code, out) = check_code(&format!(
        "[storage]\nretry_max = \"50ms\"\n{source}backoff_initial = \"50ms\"\nbackoff_max = \"200ms\"\n"
    ));
    assert_eq!(code, Some(0), "{out}");
}

/// `check-config | head -1`: the reader leaves early, which must not panic the
/// printer (Rust's `println!` panics on EPIPE, exit 101).
#[test]
fn check_config_into_a_closed_pipe_does_not_panic() {
    use std::process::Stdio;
    let dir = tempfile::tempdir().unwrap();
    // Enough sources that the output exceeds any pipe buffer: the writer must
    // meet the closed pipe, whatever the scheduling.
    let mut text = String::new();
    for i in 0..3000 {
        text.push_str(&format!(
            "[[sources]]\nname = \"engine-{i}\"\nkind = \"jsonrpc\"\nurl = \"ws://127.0.0.1:4848/app\"\n"
        ));
    }
    let path = write(dir.path(), &text);
    let mut child = Command::new(env!("CARGO_BIN_EXE_wsvault"))
        .arg("check-config")
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Read one line, then close the pipe like `head -1` does.
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 16];
    std::io::Read::read_exact(&mut stdout, &mut first).unwrap();
    drop(stdout);
    let out = child.wait_with_output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_ne!(out.status.code(), Some(101), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(out.status.success(), "{:?} {err}", out.status);
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
