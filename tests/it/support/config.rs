//! The daemon's config file for end-to-end tests: one builder, [`config`], with test
//! timings every test starts from, and the `[[sources]]` tables the tests share.
//!
//! A test that depends on a timing states it: its `storage` and `supervisor` lines
//! override the defaults key by key (or add keys), so the file holds each key once.

/// `[storage]` defaults besides the URL: small batches flushed every 20 ms, short
/// SQLite lock waits and write retries (outage tests see a retry within 200 ms).
const STORAGE: &[(&str, &str)] = &[
    ("batch_size", "500"),
    ("flush_interval", "\"20ms\""),
    ("busy_timeout", "\"100ms\""),
    ("retry_max", "\"200ms\""),
];

/// `[supervisor]` defaults: reconnects within a few hundred milliseconds, loopback
/// connects, an idle deadline no healthy simulator comes near, and no connection
/// counted stable during a test (so the backoff never resets behind its back).
const SUPERVISOR: &[(&str, &str)] = &[
    ("backoff_initial", "\"50ms\""),
    ("backoff_max", "\"300ms\""),
    ("connect_timeout", "\"3s\""),
    ("idle_timeout", "\"10s\""),
    ("stable_after", "\"1h\""),
];

/// The whole config file: `[storage]` for `url` and `[supervisor]`, each from the
/// defaults above overridden or extended by `storage` / `supervisor` (`key = value`
/// lines, may be empty), then `rest` verbatim (`[[sources]]` and any other tables).
pub fn config(url: &str, storage: &str, supervisor: &str, rest: &str) -> String {
    let url = format!("\"{url}\"");
    let mut storage_defaults = vec![("url", url.as_str())];
    storage_defaults.extend_from_slice(STORAGE);
    format!(
        "{}\n{}\n{rest}\n",
        section("storage", &storage_defaults, storage),
        section("supervisor", SUPERVISOR, supervisor)
    )
}

/// A TOML table `[name]` with `defaults` (key, value) overridden or extended by
/// `lines` (`key = value` lines).
fn section(name: &str, defaults: &[(&str, &str)], lines: &str) -> String {
    let mut keys: Vec<(String, String)> = defaults
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    for line in lines.lines().map(str::trim).filter(|l| !l.is_empty()) {
        let (k, v) = line.split_once('=').expect("key = value");
        let (k, v) = (k.trim().to_string(), v.trim().to_string());
        match keys.iter_mut().find(|(name, _)| *name == k) {
            Some(slot) => slot.1 = v,
            None => keys.push((k, v)),
        }
    }
    let body: Vec<String> = keys.iter().map(|(k, v)| format!("{k} = {v}")).collect();
    format!("[{name}]\n{}\n", body.join("\n"))
}

/// A `[[sources]]` table of kind jsonrpc against `ws_url`; `handle` makes it differ.
pub fn jsonrpc_source(name: &str, ws_url: &str, handle: i64) -> String {
    format!(
        r#"
[[sources]]
name = "{name}"
kind = "jsonrpc"
url = "{ws_url}"
requests = [ {{ method = "GetActiveDoc", handle = {handle}, params = [] }} ]
"#
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn overrides_replace_defaults_and_new_keys_are_added() {
        let text = config(
            "sqlite://x.db",
            "traffic = true\nbatch_size = 1",
            "backoff_max = \"2s\"",
            "[http]\nlisten = \"127.0.0.1:0\"\n",
        );
        let toml: toml::Table = text.parse().expect("valid TOML");
        let storage = toml["storage"].as_table().unwrap();
        assert_eq!(storage["url"].as_str(), Some("sqlite://x.db"));
        assert_eq!(storage["batch_size"].as_integer(), Some(1));
        assert_eq!(storage["traffic"].as_bool(), Some(true));
        assert_eq!(storage["flush_interval"].as_str(), Some("20ms"));
        let sup = toml["supervisor"].as_table().unwrap();
        assert_eq!(sup["backoff_max"].as_str(), Some("2s"));
        assert_eq!(sup["backoff_initial"].as_str(), Some("50ms"));
        assert!(toml["http"].is_table());
    }
}
