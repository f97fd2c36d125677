//! Loading: file → TOML syntax check → `config` layering with environment overrides →
//! validation into [`Config`].
//!
//! Validation walks the merged tree by hand instead of relying on serde's
//! `deny_unknown_fields`, because an operator needs one specific sentence per mistake
//! ("unknown key `urll` in source `fleet`; allowed: …"), not a serde path. This module
//! never touches the network or a database; it reads the config file and `*_file`
//! secrets only.

use super::types::*;
use super::value::{Node, durations};
use std::collections::{BTreeMap, HashSet};
use std::path::{Path, PathBuf};

/// Every way a configuration can be refused, each with its own message.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("config file {0} not found: create it or pass --config PATH")]
    Missing(PathBuf),
    #[error("cannot read config file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("TOML syntax error in {path} at line {line}, column {column}: {message}")]
    Syntax {
        path: PathBuf,
        line: usize,
        column: usize,
        message: String,
    },
    #[error("unknown key `{key}` in {place}; allowed keys: {allowed}")]
    UnknownKey {
        key: String,
        place: String,
        allowed: String,
    },
    #[error("missing required key `{key}` in {place}")]
    MissingKey { key: String, place: String },
    #[error("unknown source kind `{kind}` in {place}: expected navixy, tradernet or jsonrpc")]
    UnknownKind { kind: String, place: String },
    #[error("duplicate source name `{0}`: every [[sources]] entry needs its own name")]
    DuplicateName(String),
    #[error("bad URL scheme `{scheme}` for {key} in {place}: use {expected}")]
    BadScheme {
        scheme: String,
        key: String,
        place: String,
        expected: String,
    },
    #[error("bad URL for {key} in {place}: {message}")]
    BadUrl {
        key: String,
        place: String,
        message: String,
    },
    #[error(
        "bad duration `{value}` for {key} in {place}: write it like \"250ms\", \"5s\", \"2m\" or \"30d\""
    )]
    BadDuration {
        value: String,
        key: String,
        place: String,
    },
    #[error("bad value for {key} in {place}: {message}")]
    BadValue {
        key: String,
        place: String,
        message: String,
    },
    #[error("cannot read secret file {path} for {key} in {place}: {source}")]
    SecretFile {
        path: PathBuf,
        key: String,
        place: String,
        source: std::io::Error,
    },
    #[error("cannot apply environment overrides: {0}")]
    Env(String),
}

/// Environment variable prefix; `WSVAULT__STORAGE__URL` overrides `storage.url`.
pub const ENV_PREFIX: &str = "WSVAULT";

/// Loads and validates the config file at `path`, with environment overrides from the
/// process environment.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    load_with_env(path, std::env::vars())
}

/// Same as [`load`] with an explicit environment, so tests need not mutate the
/// process environment.
pub fn load_with_env(
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return Err(ConfigError::Missing(path.to_path_buf()));
        }
        Err(source) => {
            return Err(ConfigError::Io {
                path: path.to_path_buf(),
                source,
            });
        }
    };
    parse_str(&text, path, env)
}

/// Validates config text; `path` is only used in messages and to resolve relative
/// `*_file` paths.
pub fn parse_str(
    text: &str,
    path: &Path,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Config, ConfigError> {
    if let Err(e) = text.parse::<toml::Table>() {
        let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((0, 0));
        return Err(ConfigError::Syntax {
            path: path.to_path_buf(),
            line,
            column,
            message: e.message().to_string(),
        });
    }
    let (section_env, source_env) = split_env(env);
    let merged = config::Config::builder()
        .add_source(config::File::from_str(text, config::FileFormat::Toml))
        .add_source(
            config::Environment::with_prefix(ENV_PREFIX)
                .prefix_separator("__")
                .separator("__")
                .try_parsing(true)
                .source(Some(section_env)),
        )
        .build()
        .map_err(|e| ConfigError::Env(e.to_string()))?;
    let mut tree: serde_json::Value = merged
        .try_deserialize()
        .map_err(|e| ConfigError::Env(e.to_string()))?;
    apply_source_env(&mut tree, source_env)?;
    let base = path.parent().unwrap_or(Path::new("."));
    super::build::build(&tree, base)
}

fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let before = &text[..offset.min(text.len())];
    let line = before.matches('\n').count() + 1;
    let column = before
        .rsplit('\n')
        .next()
        .map(|l| l.chars().count())
        .unwrap_or(0)
        + 1;
    (line, column)
}

/// `WSVAULT__SOURCES__<NAME>__<KEY>` variables address a source by name (with `-`
/// written as `_`, case-insensitive), because the `config` crate cannot address array
/// elements; every other `WSVAULT__…` variable goes to the `config` crate.
type SourceEnv = Vec<(String, String, String)>;

fn split_env(
    env: impl IntoIterator<Item = (String, String)>,
) -> (config::Map<String, String>, SourceEnv) {
    let mut sections = config::Map::new();
    let mut sources = Vec::new();
    let prefix = format!("{ENV_PREFIX}__");
    for (k, v) in env {
        let Some(rest) = k.strip_prefix(&prefix) else {
            continue;
        };
        if let Some(src) = rest.strip_prefix("SOURCES__")
            && let Some((name, key)) = src.split_once("__")
        {
            sources.push((name.to_string(), key.to_ascii_lowercase(), v));
            continue;
        }
        sections.insert(k, v);
    }
    (sections, sources)
}

fn env_name(name: &str) -> String {
    name.replace('-', "_").to_ascii_uppercase()
}

fn apply_source_env(tree: &mut serde_json::Value, vars: SourceEnv) -> Result<(), ConfigError> {
    if vars.is_empty() {
        return Ok(());
    }
    let Some(sources) = tree.get_mut("sources").and_then(|s| s.as_array_mut()) else {
        return Err(ConfigError::Env(
            "WSVAULT__SOURCES__… variables set but the file has no [[sources]]".into(),
        ));
    };
    for (name, key, value) in vars {
        let target = sources.iter_mut().find(|s| {
            s.get("name")
                .and_then(|n| n.as_str())
                .is_some_and(|n| env_name(n) == name.to_ascii_uppercase())
        });
        let Some(obj) = target.and_then(|t| t.as_object_mut()) else {
            return Err(ConfigError::Env(format!(
                "WSVAULT__SOURCES__{name}__{} names no configured source",
                key.to_ascii_uppercase()
            )));
        };
        obj.insert(key, env_scalar(&value));
    }
    Ok(())
}

/// Environment values are text; read numbers and booleans the way `try_parsing` does
/// for the other sections.
fn env_scalar(v: &str) -> serde_json::Value {
    if let Ok(b) = v.parse::<bool>() {
        return b.into();
    }
    if let Ok(i) = v.parse::<i64>() {
        return i.into();
    }
    v.into()
}

/// Allowed keys per place, shared with `build` so messages list them.
pub(super) fn check_keys(node: &Node<'_>, allowed: &[&str]) -> Result<(), ConfigError> {
    for key in node.keys() {
        if !allowed.contains(&key.as_str()) {
            return Err(ConfigError::UnknownKey {
                key,
                place: node.place().to_string(),
                allowed: allowed.join(", "),
            });
        }
    }
    Ok(())
}

/// Source names must be unique: every row carries the name.
pub(super) fn check_unique<'a>(
    names: impl IntoIterator<Item = &'a str>,
) -> Result<(), ConfigError> {
    let mut seen = HashSet::new();
    for n in names {
        if !seen.insert(n) {
            return Err(ConfigError::DuplicateName(n.to_string()));
        }
    }
    Ok(())
}

/// Per-table retention ages, validated against the tables that have a time column.
pub(super) fn retention_tables(
    node: &Node<'_>,
) -> Result<Vec<(String, std::time::Duration)>, ConfigError> {
    let mut out = BTreeMap::new();
    for key in node.keys() {
        if matches!(key.as_str(), "interval" | "batch") {
            continue;
        }
        if !crate::config::RETENTION_TABLES.contains(&key.as_str()) {
            return Err(ConfigError::UnknownKey {
                key,
                place: node.place().to_string(),
                allowed: format!(
                    "interval, batch, {}",
                    crate::config::RETENTION_TABLES.join(", ")
                ),
            });
        }
        let d = node.duration(&key)?.unwrap_or(durations::FOREVER);
        out.insert(key, d);
    }
    Ok(out.into_iter().collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_never_prints_a_secret() {
        let text = r#"
[storage]
url = "postgres://wsv:pg-password-1@127.0.0.1/db"
[[sources]]
name = "n"
kind = "navixy"
url = "wss://h/v2/event/subscription"
login = "ops"
password = "navixy-password-1"
[[sources]]
name = "t"
kind = "tradernet"
url = "wss://h/"
public_key = "public-key-1"
private_key = "private-key-1"
[[sources]]
name = "j"
kind = "jsonrpc"
url = "wss://h/app"
headers = { Authorization = "Bearer token-value-1" }
"#;
        let cfg = parse_str(text, Path::new("x.toml"), Vec::new()).unwrap();
        let dbg = format!("{cfg:?}");
        for s in [
            "pg-password-1",
            "navixy-password-1",
            "public-key-1",
            "private-key-1",
            "token-value-1",
        ] {
            assert!(!dbg.contains(s), "{s} leaked in {dbg}");
        }
        assert!(dbg.contains("***"));
    }

    #[test]
    fn defaults_apply_and_tradernet_gets_a_shorter_idle_deadline() {
        let text = "[[sources]]\nname = \"t\"\nkind = \"tradernet\"\nurl = \"wss://h/\"\n";
        let cfg = parse_str(text, Path::new("x.toml"), Vec::new()).unwrap();
        assert_eq!(cfg.storage.url, "sqlite://wsvault.db");
        assert_eq!(cfg.storage.batch_size, 500);
        assert_eq!(cfg.storage.retry_max, std::time::Duration::from_secs(5));
        assert_eq!(
            cfg.sources[0].timing.idle_timeout,
            std::time::Duration::from_secs(60)
        );
        let SourceKind::Tradernet(t) = &cfg.sources[0].kind else {
            panic!("kind")
        };
        assert_eq!(t.subscribe, r#"["sessions"]"#);
        assert!(t.user_agent.starts_with("wsvault/"));
    }
}
