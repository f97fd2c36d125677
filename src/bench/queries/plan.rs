//! Reading query plans: `EXPLAIN QUERY PLAN` on SQLite, `EXPLAIN (FORMAT JSON)` on
//! PostgreSQL, and the one verdict the benchmark needs from them: does the plan walk
//! a whole table of interest (a history table for the cookbook, the pruned table for
//! retention): a `SCAN` of it on SQLite, a `Seq Scan` or an index scan without an
//! index condition on PostgreSQL? Such a plan grows with the table, so a statement
//! that is fast on a small database becomes slow on a big one.
//!
//! SQLite names a table in its plan by the alias the statement (or a view it reads)
//! gave it, so aliases are resolved from the statement's and the views' text.

use std::collections::{BTreeMap, BTreeSet};

/// Words that can follow a table name without being its alias.
const NOT_ALIASES: [&str; 18] = [
    "where",
    "join",
    "on",
    "order",
    "group",
    "limit",
    "left",
    "inner",
    "cross",
    "using",
    "set",
    "as",
    "union",
    "natural",
    "full",
    "right",
    "window",
    "returning",
];

/// Alias (or bare name) → tables it stands for, for every table of `tables` in `sql`.
pub fn aliases(sql: &str, tables: &[&str]) -> BTreeMap<String, BTreeSet<String>> {
    let words: Vec<String> = sql
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| !w.is_empty())
        .map(str::to_ascii_lowercase)
        .collect();
    let mut out: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (i, w) in words.iter().enumerate() {
        if !tables.contains(&w.as_str()) {
            continue;
        }
        out.entry(w.clone()).or_default().insert(w.clone());
        let mut next = words.get(i + 1);
        if next.is_some_and(|n| n == "as") {
            next = words.get(i + 2);
        }
        if let Some(alias) = next
            && !NOT_ALIASES.contains(&alias.as_str())
        {
            out.entry(alias.clone()).or_default().insert(w.clone());
        }
    }
    out
}

/// The full scans of the tables `aliases` names in a SQLite plan (its `detail`
/// lines), each as the plan line that shows it.
pub fn sqlite_full_scans(
    details: &[String],
    aliases: &BTreeMap<String, BTreeSet<String>>,
) -> Vec<String> {
    details
        .iter()
        .filter(|d| {
            let Some(rest) = d.trim().strip_prefix("SCAN ") else {
                return false;
            };
            let name = rest.split_whitespace().next().unwrap_or_default();
            aliases.contains_key(&name.to_ascii_lowercase())
        })
        .cloned()
        .collect()
}

/// The full scans of `tables` in a PostgreSQL JSON plan, each described as
/// "Seq Scan on TABLE" or "Index Scan on TABLE without a condition".
pub fn postgres_full_scans(plan: &serde_json::Value, tables: &[&str]) -> Vec<String> {
    let mut out = Vec::new();
    walk(plan, tables, &mut out);
    out
}

/// `scans` without the sequential scans of `empty` relations: the partitions a
/// daemon creates ahead of time and the DEFAULT partition hold no rows, so the
/// planner rightly reads them whole (nothing to read); they are not full scans of
/// history.
pub fn without_empty(scans: Vec<String>, empty: &BTreeSet<String>) -> Vec<String> {
    scans
        .into_iter()
        .filter(|s| {
            s.strip_prefix("Seq Scan on ")
                .is_none_or(|rel| !empty.contains(rel))
        })
        .collect()
}

/// Whether relation `rel` is `table` or one of its time partitions (PostgreSQL:
/// `<table>_pYYYYMMDD[HH]` and `<table>_default`, see `ops::partitions`).
fn is_part_of(rel: &str, table: &str) -> bool {
    rel == table
        || rel.strip_prefix(table).is_some_and(|rest| {
            rest == "_default"
                || rest
                    .strip_prefix("_p")
                    .is_some_and(|d| !d.is_empty() && d.bytes().all(|b| b.is_ascii_digit()))
        })
}

fn walk(v: &serde_json::Value, tables: &[&str], out: &mut Vec<String>) {
    match v {
        serde_json::Value::Array(items) => items.iter().for_each(|i| walk(i, tables, out)),
        serde_json::Value::Object(map) => {
            let node = map.get("Node Type").and_then(|n| n.as_str());
            let rel = map.get("Relation Name").and_then(|n| n.as_str());
            if let (Some(node), Some(rel)) = (node, rel)
                && tables.iter().any(|t| is_part_of(rel, t))
            {
                let indexed = matches!(node, "Index Scan" | "Index Only Scan");
                if node == "Seq Scan" {
                    out.push(format!("Seq Scan on {rel}"));
                } else if indexed && !map.contains_key("Index Cond") {
                    out.push(format!("{node} on {rel} without a condition"));
                }
            }
            map.values().for_each(|c| walk(c, tables, out));
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::cookbook::HISTORY_TABLES;

    #[test]
    fn seq_scans_of_empty_partitions_are_not_counted() {
        let empty: BTreeSet<String> = ["events_default".to_string()].into();
        let scans = vec![
            "Seq Scan on events_default".to_string(),
            "Seq Scan on events_p20260302".to_string(),
            "Index Scan on events_default without a condition".to_string(),
        ];
        assert_eq!(
            without_empty(scans, &empty),
            vec![
                "Seq Scan on events_p20260302".to_string(),
                "Index Scan on events_default without a condition".to_string(),
            ]
        );
    }

    #[test]
    fn partitions_count_as_their_table() {
        assert!(is_part_of("events", "events"));
        assert!(is_part_of("events_p20260302", "events"));
        assert!(is_part_of("events_p2026030212", "events"));
        assert!(is_part_of("events_default", "events"));
        assert!(!is_part_of("events_hourly", "events"));
        assert!(!is_part_of("events_p", "events"));
        assert!(!is_part_of("tracker_states_old", "tracker_states"));
    }

    #[test]
    fn aliases_map_to_their_tables() {
        let a = aliases(
            "SELECT * FROM tracker_states AS s JOIN events e ON e.x = s.x \
             JOIN security_sessions AS p ON true WHERE events.kind = 'x'",
            &HISTORY_TABLES,
        );
        assert_eq!(a["s"], BTreeSet::from(["tracker_states".to_string()]));
        assert_eq!(a["e"], BTreeSet::from(["events".to_string()]));
        assert!(a.contains_key("events") && a.contains_key("tracker_states"));
        assert!(!a.contains_key("p"), "security_sessions is not history");
        assert!(!a.contains_key("where") && !a.contains_key("on"));
    }

    #[test]
    fn sqlite_scan_lines_of_history_tables_are_flagged() {
        let a = aliases("SELECT 1 FROM events AS e, tracker_states", &HISTORY_TABLES);
        let details: Vec<String> = [
            "SCAN e",
            "SEARCH tracker_states USING INDEX x (source=?)",
            "SCAN tracker_states USING COVERING INDEX y",
            "SCAN latest",
            "SCAN (subquery-4)",
            "USE TEMP B-TREE FOR ORDER BY",
        ]
        .map(String::from)
        .to_vec();
        assert_eq!(
            sqlite_full_scans(&details, &a),
            vec![
                "SCAN e".to_string(),
                "SCAN tracker_states USING COVERING INDEX y".into()
            ]
        );
    }

    #[test]
    fn postgres_seq_scans_and_unbounded_index_scans_are_flagged() {
        let plan = serde_json::json!([{ "Plan": {
            "Node Type": "Nested Loop",
            "Plans": [
                { "Node Type": "Seq Scan", "Relation Name": "events" },
                { "Node Type": "Seq Scan", "Relation Name": "gaps" },
                { "Node Type": "Index Scan", "Relation Name": "tracker_states",
                  "Index Cond": "(source = 'a')" },
                { "Node Type": "Index Only Scan", "Relation Name": "tracker_readings" }
            ]
        }}]);
        assert_eq!(
            postgres_full_scans(&plan, &HISTORY_TABLES),
            vec![
                "Seq Scan on events".to_string(),
                "Index Only Scan on tracker_readings without a condition".into()
            ]
        );
    }
}
