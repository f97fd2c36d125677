//! Smoke test of `wsvault bench`: the real binary, a tiny record count, SQLite (plus
//! PostgreSQL when `WSVAULT_TEST_POSTGRES_URL` is set). It checks that every figure
//! the benchmark promises is printed and sane, not how fast this machine is.

use std::process::Command;

fn figure(out: &str, prefix: &str, key: &str) -> f64 {
    let line = out
        .lines()
        .find(|l| l.starts_with(prefix) && l.contains(key))
        .unwrap_or_else(|| panic!("no line starting {prefix:?} with {key:?} in:\n{out}"));
    let after = &line[line.find(key).map(|i| i + key.len()).unwrap_or(0)..];
    let num: String = after
        .trim_start()
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    num.parse()
        .unwrap_or_else(|_| panic!("no number after {key:?} in {line:?}"))
}

#[test]
fn bench_prints_throughput_ceiling_latency_and_memory() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsvault"));
    cmd.args([
        "bench",
        "--records",
        "1000",
        "--rate",
        "500",
        "--seconds",
        "2",
        "--stall",
        "2",
    ]);
    let pg = std::env::var("WSVAULT_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty());
    if pg.is_none() {
        cmd.args(["--backend", "sqlite"])
            .env_remove("WSVAULT_TEST_POSTGRES_URL");
    }
    let out = cmd.output().expect("run wsvault bench");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("machine: 2 CPUs") || stdout.contains("machine: "));
    assert!(stdout.contains("build)"), "{stdout}");
    let mut labels = vec!["[sqlite]"];
    if pg.is_some() {
        labels.push("[postgres]");
    }
    for l in labels {
        // Every generated state was stored: 100 trackers x 10 states.
        assert_eq!(figure(&stdout, l, "ingest"), 1000.0, "{stdout}");
        assert!(
            figure(&stdout, l, "states + ") > 0.0,
            "readings stored: {stdout}"
        );
        assert!(figure(&stdout, l, "s = ") > 0.0, "states/s: {stdout}");
        // Both ceilings, the one-transaction (physical) one and the per-batch one.
        assert!(
            figure(&stdout, l, "wsvault/physical ceiling = ") > 0.0,
            "{stdout}"
        );
        assert!(
            figure(&stdout, l, "wsvault/per-batch ceiling = ") > 0.0,
            "{stdout}"
        );
        assert!(figure(&stdout, l, "throughput:") > 0.0, "{stdout}");
        assert!(figure(&stdout, l, "p50") > 0.0, "{stdout}");
        assert!(
            figure(&stdout, l, "p99") >= figure(&stdout, l, "p50"),
            "{stdout}"
        );
        let rss = figure(&stdout, l, "full rate peak RSS");
        assert!(rss > 1.0 && rss < 1024.0, "{stdout}");
        assert!(figure(&stdout, l, "max") > 0.0, "{stdout}");
    }
}
