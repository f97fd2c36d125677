//! Typed reads from the merged config tree, each failure phrased for an operator.
//!
//! A [`Node`] is one table of the tree plus a human name for where it sits
//! (`[storage]`, `source \`fleet-eu\``), so every error can say where to look.

use super::load::ConfigError;
use super::types::Secret;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;

/// Duration constants shared by defaults and validation.
pub mod durations {
    use std::time::Duration;
    /// Stand-in for "keep forever" where a duration is syntactically required.
    pub const FOREVER: Duration = Duration::from_secs(u64::MAX / 4);
}

/// One table of the config tree and where it sits.
pub struct Node<'a> {
    value: Option<&'a serde_json::Map<String, Value>>,
    place: String,
}

impl<'a> Node<'a> {
    /// `value` must be a table (or absent, meaning all defaults); anything else is an
    /// error naming `place`.
    pub fn new(value: Option<&'a Value>, place: impl Into<String>) -> Result<Self, ConfigError> {
        let place = place.into();
        match value {
            None | Some(Value::Null) => Ok(Node { value: None, place }),
            Some(Value::Object(m)) => Ok(Node {
                value: Some(m),
                place,
            }),
            Some(_) => Err(ConfigError::BadValue {
                key: place.clone(),
                place: "the config".into(),
                message: "expected a table".into(),
            }),
        }
    }

    /// Where this table sits, for messages.
    pub fn place(&self) -> &str {
        &self.place
    }

    /// Keys present in this table.
    pub fn keys(&self) -> Vec<String> {
        self.value
            .map(|m| m.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Raw access for nested tables and arrays.
    pub fn get(&self, key: &str) -> Option<&'a Value> {
        self.value.and_then(|m| m.get(key)).filter(|v| !v.is_null())
    }

    fn bad(&self, key: &str, message: impl Into<String>) -> ConfigError {
        ConfigError::BadValue {
            key: key.to_string(),
            place: self.place.clone(),
            message: message.into(),
        }
    }

    /// A required key, with the "missing required key" error when absent.
    pub fn require<T>(
        &self,
        key: &str,
        v: Result<Option<T>, ConfigError>,
    ) -> Result<T, ConfigError> {
        v?.ok_or_else(|| ConfigError::MissingKey {
            key: key.to_string(),
            place: self.place.clone(),
        })
    }

    /// An optional string.
    pub fn string(&self, key: &str) -> Result<Option<String>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(_) => Err(self.bad(key, "expected a string")),
        }
    }

    /// An optional boolean.
    pub fn bool(&self, key: &str) -> Result<Option<bool>, ConfigError> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(Value::String(s)) => s
                .parse()
                .map(Some)
                .map_err(|_| self.bad(key, format!("expected true or false, got `{s}`"))),
            Some(_) => Err(self.bad(key, "expected true or false")),
        }
    }

    /// An optional integer within `range`.
    pub fn int(
        &self,
        key: &str,
        range: std::ops::RangeInclusive<i64>,
    ) -> Result<Option<i64>, ConfigError> {
        let n = match self.get(key) {
            None => return Ok(None),
            Some(Value::Number(n)) => n.as_i64(),
            Some(Value::String(s)) => s.trim().parse().ok(),
            Some(_) => None,
        };
        match n {
            Some(n) if range.contains(&n) => Ok(Some(n)),
            Some(n) => Err(self.bad(
                key,
                format!("{n} is out of range {}..={}", range.start(), range.end()),
            )),
            None => Err(self.bad(key, "expected a whole number")),
        }
    }

    /// An optional duration written as text (`"250ms"`, `"5s"`, `"30d"`).
    pub fn duration(&self, key: &str) -> Result<Option<Duration>, ConfigError> {
        let raw = match self.get(key) {
            None => return Ok(None),
            Some(Value::String(s)) => s.clone(),
            Some(other) => other.to_string(),
        };
        match humantime::parse_duration(raw.trim()) {
            Ok(d) => Ok(Some(d)),
            Err(_) => Err(ConfigError::BadDuration {
                value: raw,
                key: key.to_string(),
                place: self.place.clone(),
            }),
        }
    }

    /// A secret given inline (`key`) or through a file (`key_file`, e.g. a systemd
    /// credential); both at once is refused as ambiguous.
    pub fn secret(&self, key: &str, base: &Path) -> Result<Option<Secret>, ConfigError> {
        let file_key = format!("{key}_file");
        let inline = self.string(key)?;
        let file = self.string(&file_key)?;
        match (inline, file) {
            (Some(_), Some(_)) => {
                Err(self.bad(key, format!("set either `{key}` or `{file_key}`, not both")))
            }
            (Some(s), None) if s.is_empty() => Err(self.bad(key, "is empty")),
            (Some(s), None) => Ok(Some(Secret::new(s))),
            (None, Some(f)) => {
                let path = expand_credentials_dir(&f, base);
                let text =
                    std::fs::read_to_string(&path).map_err(|source| ConfigError::SecretFile {
                        path: path.clone(),
                        key: file_key.clone(),
                        place: self.place.clone(),
                        source,
                    })?;
                let value = text.trim_end_matches(['\n', '\r']).to_string();
                if value.is_empty() {
                    return Err(self.bad(&file_key, format!("{} is empty", path.display())));
                }
                Ok(Some(Secret::new(value)))
            }
            (None, None) => Ok(None),
        }
    }
}

/// `*_file` paths may start with `$CREDENTIALS_DIRECTORY/` (systemd `LoadCredential=`);
/// relative paths are read relative to the config file.
fn expand_credentials_dir(raw: &str, base: &Path) -> std::path::PathBuf {
    for prefix in ["$CREDENTIALS_DIRECTORY/", "${CREDENTIALS_DIRECTORY}/"] {
        if let Some(rest) = raw.strip_prefix(prefix) {
            let dir = std::env::var_os("CREDENTIALS_DIRECTORY").unwrap_or_default();
            return Path::new(&dir).join(rest);
        }
    }
    let p = Path::new(raw);
    if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    }
}
