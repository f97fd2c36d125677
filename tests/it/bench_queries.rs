//! Smoke test of `wsvault bench --queries`: the real binary, a tiny fill (2 000
//! states), SQLite (plus PostgreSQL when `WSVAULT_TEST_POSTGRES_URL` is set). It
//! checks that the fill went through, that every cookbook question and both
//! retention runs are timed and printed in the result table, and that no SQLite
//! plan walks a whole history table (SQLite plans without statistics, so its plan
//! does not depend on the table's size). How fast this machine is, it leaves alone.

use std::process::Command;
use wsvault::bench::cookbook::QUESTIONS;

/// The number in the table row of `name`, column `col` (1 = SQLite, 2 = PostgreSQL).
fn cell(out: &str, name: &str, col: usize) -> Option<f64> {
    let prefix = format!("| {name} |");
    let line = out.lines().find(|l| l.starts_with(&prefix))?;
    line.split('|').nth(col + 1)?.trim().parse().ok()
}

#[test]
fn bench_queries_prints_every_question_and_retention_run() {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_wsvault"));
    cmd.args(["bench", "--queries", "--rows", "2000"]);
    let pg = std::env::var("WSVAULT_TEST_POSTGRES_URL")
        .ok()
        .filter(|u| !u.trim().is_empty());
    if pg.is_none() {
        cmd.args(["--backend", "sqlite"])
            .env_remove("WSVAULT_TEST_POSTGRES_URL");
    }
    let out = cmd.output().expect("run wsvault bench --queries");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed:\n{stdout}\n{stderr}");
    assert!(stdout.contains("queries: 2000 tracker states"), "{stdout}");

    let mut labels = vec![("[sqlite]", 1)];
    if pg.is_some() {
        labels.push(("[postgres]", 2));
    }
    for (label, col) in labels {
        let fill = stdout
            .lines()
            .find(|l| {
                l.starts_with(label) && l.contains("fill:") && l.contains("through the writer")
            })
            .unwrap_or_else(|| panic!("no fill line for {label}:\n{stdout}"));
        // 400 trackers × 5 rounds, minus nothing: the silent ones report at round 0.
        assert!(fill.contains("2000 tracker_states"), "{fill}");
        assert!(fill.contains("1200 tracker_readings"), "{fill}");
        for q in QUESTIONS {
            let ms = cell(&stdout, q.name, col)
                .unwrap_or_else(|| panic!("no {label} figure for {:?}:\n{stdout}", q.name));
            assert!((0.0..60_000.0).contains(&ms), "{}: {ms}", q.name);
            let line = stdout
                .lines()
                .find(|l| l.starts_with(label) && l.contains(&format!("] {}: ", q.name)))
                .unwrap_or_else(|| panic!("no {label} line for {:?}:\n{stdout}", q.name));
            if label == "[sqlite]" {
                assert!(line.ends_with("plan ok"), "{line}");
            }
        }
        for run in [
            "retention: the oldest ~30 % (whole days)",
            "retention: steady state (the next 5 minutes)",
        ] {
            assert!(cell(&stdout, run, col).is_some(), "{run}:\n{stdout}");
        }
        let deleted = stdout
            .lines()
            .find(|l| {
                l.starts_with(label)
                    && l.contains("retention: the oldest ~30 % (whole days): deleted")
            })
            .unwrap_or_else(|| panic!("no retention line:\n{stdout}"));
        // The cutoff is 5 minutes past the midnight nearest to 70 % kept: 23–37 % of
        // the week, so of the 5 rounds of 400 states one or two are (partly) before it.
        let states: u64 = deleted
            .split(": deleted ")
            .nth(1)
            .and_then(|r| r.split(' ').next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no state count in {deleted}"));
        assert!((1..=800).contains(&states), "{deleted}");
        assert!(
            stdout
                .lines()
                .any(|l| l.starts_with(label) && l.contains("retention cutoff of the first run")),
            "{stdout}"
        );
    }
}
