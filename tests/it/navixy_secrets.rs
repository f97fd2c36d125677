//! End to end, secrets: hashes and passwords never reach the log,
//! `connections.url`, `events`, `session_events`, `traffic` or `rejected` (nor any
//! byte of the SQLite files), while `traffic` proves they were masked rather than
//! never sent. The real `wsvault` binary against two in-process simulators, on
//! SQLite and (when configured) PostgreSQL.

use crate::support::navixy::*;
use crate::support::*;
use wsvault::sim::navixy::NavixySimConfig;

each_backend!(hashes_and_passwords_are_never_logged_or_stored);
async fn hashes_and_passwords_are_never_logged_or_stored(backend: Backend) {
    const KEY: &str = "5ec7e75ec7e75ec7e75ec7e75ec7e7aa";
    const PASSWORD: &str = "Pa55-w0rd-never-stored";
    for db in test_databases(backend).await {
        let keyed = start_sim(NavixySimConfig {
            api_keys: vec![KEY.into()],
            ..small_fleet()
        })
        .await;
        let logged = start_sim(NavixySimConfig {
            password: PASSWORD.into(),
            ..small_fleet()
        })
        .await;
        let sources = format!(
            "{}\n{}",
            navixy_source(
                "keyed",
                &keyed,
                &format!("api_key_hash = \"{KEY}\"\n{ALL_DATA}")
            ),
            navixy_source("logged", &logged, &login_lines(PASSWORD))
        );
        let cfg = config(
            &db.cfg.url,
            "traffic = true\nraw_events = \"full\"",
            "",
            &sources,
        );
        let mut run = Run::start(&db, &cfg).await;
        for source in ["keyed", "logged"] {
            run.wait_lifecycle(source, "subscribed", |r| n_events(r, "subscribed") == 1)
                .await;
        }
        // A logout makes a second session hash; the first must stay hidden too.
        logged.control().send_logout();
        run.wait_lifecycle("logged", "resumed", |r| n_events(r, "resumed") == 1)
            .await;
        let (status, log) = run.stop().await;
        assert!(
            status.success(),
            "[{}] exit {status}; log:\n{}",
            db.label,
            tail(&log)
        );
        wait_sim(logged.control(), "the unsubscribe", SOON, |s| {
            !s.unsubscribe_messages.is_empty()
        })
        .await;

        let mut secrets = vec![KEY.to_string(), PASSWORD.to_string()];
        secrets.extend(hashes_used(&logged.control().stats()));
        assert_eq!(secrets.len(), 4, "[{}] two session hashes", db.label);
        for secret in &secrets {
            assert!(
                !log.contains(secret.as_str()),
                "[{}] secret in the log",
                db.label
            );
            for (table, column) in [
                ("connections", "url"),
                ("connections", "close_reason"),
                ("events", "payload"),
                ("traffic", "payload"),
                ("session_events", "reason"),
                ("session_events", "detail"),
                ("rejected", "payload"),
            ] {
                let text = if db.label == "postgres" {
                    format!("CAST({column} AS TEXT)")
                } else {
                    column.to_string()
                };
                let hits = run
                    .count(&format!("{table} WHERE {text} LIKE '%{secret}%'"))
                    .await;
                assert_eq!(hits, 0, "[{}] secret in {table}.{column}", db.label);
            }
        }
        // Redacted, not merely absent: the subscribe and unsubscribe frames are in
        // `traffic` with the hash masked.
        for action in ["subscribe", "unsubscribe"] {
            let masked = run
                .count(&format!(
                    "traffic WHERE direction = 'sent' AND payload LIKE '%\"action\":\"{action}\"%' \
                     AND payload LIKE '%\"hash\":\"***\"%'"
                ))
                .await;
            assert!(
                masked >= 2,
                "[{}] {masked} masked {action} frames",
                db.label
            );
        }
        assert!(run.count("traffic WHERE direction = 'received'").await > 10);
        if let Some(path) = db.sqlite_path() {
            let mut bytes = Vec::new();
            for suffix in ["", "-wal", "-shm", "-journal"] {
                let mut p = path.clone().into_os_string();
                p.push(suffix);
                if let Ok(b) = std::fs::read(&p) {
                    bytes.extend(b);
                }
            }
            assert!(bytes.len() > 4096);
            for secret in &secrets {
                let found = bytes.windows(secret.len()).any(|w| w == secret.as_bytes());
                assert!(!found, "[sqlite] a secret is in the database files");
            }
        }
        keyed.shutdown().await;
        logged.shutdown().await;
    }
}
