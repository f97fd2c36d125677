//! Period arithmetic and coverage of the partitions (no database).

use super::*;

fn t(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s)
        .map(|d| d.with_timezone(&Utc))
        .unwrap_or_default()
}

#[test]
fn periods_start_at_multiples_from_the_epoch() {
    let day = Duration::from_secs(86_400);
    assert_eq!(
        period_start(t("2026-03-02T17:05:00Z"), day),
        t("2026-03-02T00:00:00Z")
    );
    let six = Duration::from_secs(6 * 3600);
    assert_eq!(
        period_start(t("2026-03-02T17:05:00Z"), six),
        t("2026-03-02T12:00:00Z")
    );
    assert_eq!(
        part_name("events", t("2026-03-02T00:00:00Z")),
        "events_p20260302"
    );
    assert_eq!(
        part_name("events", t("2026-03-02T12:00:00Z")),
        "events_p2026030212"
    );
}

#[test]
fn uncovered_leaves_out_existing_partitions() {
    let p = |a: &str, b: &str| Part {
        name: String::new(),
        lower: t(a),
        upper: t(b),
    };
    let parts = [
        p("2026-03-02T00:00:00Z", "2026-03-02T06:00:00Z"),
        p("2026-03-02T12:00:00Z", "2026-03-03T00:00:00Z"),
    ];
    assert_eq!(
        uncovered(t("2026-03-02T00:00:00Z"), t("2026-03-04T00:00:00Z"), &parts),
        vec![
            (t("2026-03-02T06:00:00Z"), t("2026-03-02T12:00:00Z")),
            (t("2026-03-03T00:00:00Z"), t("2026-03-04T00:00:00Z")),
        ]
    );
    assert!(uncovered(t("2026-03-02T12:00:00Z"), t("2026-03-03T00:00:00Z"), &parts).is_empty());
}
