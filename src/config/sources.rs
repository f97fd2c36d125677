//! The protocol-specific halves of `[[sources]]` entries.

use super::build::{default_user_agent, parse_url};
use super::load::{ConfigError, check_keys};
use super::types::*;
use super::value::Node;
use serde_json::Value;
use std::path::Path;
use std::time::Duration;
use url::Url;

fn bad(n: &Node<'_>, key: &str, message: impl Into<String>) -> ConfigError {
    ConfigError::BadValue {
        key: key.into(),
        place: n.place().into(),
        message: message.into(),
    }
}

/// `…/event/subscription` → `…/user/auth`, `wss` → `https`, `ws` → `http`.
pub fn derive_auth_url(ws: &Url) -> Url {
    auth_url_under(&derive_api_url(ws))
}

/// The REST base of a subscription URL: `wss://HOST/v2/event/subscription` →
/// `https://HOST/v2` (`ws` → `http` for loopback tests). Navixy serves the REST
/// calls and the WebSocket under the same base.
pub fn derive_api_url(ws: &Url) -> Url {
    let mut u = ws.clone();
    let scheme = if ws.scheme() == "ws" { "http" } else { "https" };
    let _ = u.set_scheme(scheme);
    let path = ws.path().trim_end_matches('/');
    let base = path
        .strip_suffix("/event/subscription")
        .unwrap_or(path)
        .to_string();
    u.set_path(&base);
    u.set_query(None);
    u
}

/// `BASE/user/auth` for a REST base.
fn auth_url_under(api: &Url) -> Url {
    let mut u = api.clone();
    let base = api.path().trim_end_matches('/').to_string();
    u.set_path(&format!("{base}/user/auth"));
    u
}

/// The `backfill*` and `api_url` keys of a Navixy source.
fn backfill(n: &Node<'_>, api_url: Url) -> Result<NavixyBackfill, ConfigError> {
    let max_span = n
        .duration("backfill_max_span")?
        .unwrap_or(Duration::from_secs(7 * 86_400));
    if max_span < Duration::from_secs(60) {
        return Err(bad(
            n,
            "backfill_max_span",
            "must be at least 1m: it is the longest window asked in one track/read, \
             and the backfill splits further when the server refuses a span (error 211)",
        ));
    }
    let timeout = n
        .duration("backfill_timeout")?
        .unwrap_or(Duration::from_secs(30));
    if timeout.is_zero() {
        return Err(bad(
            n,
            "backfill_timeout",
            "must be more than 0s: it bounds the wait for one REST answer",
        ));
    }
    Ok(NavixyBackfill {
        enabled: n.bool("backfill")?.unwrap_or(true),
        api_url,
        rate: n
            .int("backfill_rate", 1..=50)
            .map_err(|_| {
                bad(
                    n,
                    "backfill_rate",
                    "expected a whole number of requests per second from 1 to 50 \
                 (Navixy allows 50 per user; the default 10 leaves room for other clients)",
                )
            })?
            .unwrap_or(10) as u32,
        max_span,
        readings: n.bool("backfill_readings")?.unwrap_or(true),
        delay: n
            .duration("backfill_delay")?
            .unwrap_or(Duration::from_secs(10)),
        timeout,
    })
}

pub(super) fn navixy(n: &Node<'_>, url: &Url, base: &Path) -> Result<NavixyConfig, ConfigError> {
    let hash = n.secret("api_key_hash", base)?;
    let login = n.string("login")?;
    let password = n.secret("password", base)?;
    let auth = match (hash, login, password) {
        (Some(h), None, None) => NavixyAuth::ApiKeyHash(h),
        (None, Some(login), Some(password)) => NavixyAuth::Login { login, password },
        (Some(_), _, _) => {
            return Err(bad(
                n,
                "api_key_hash",
                "set either api_key_hash (or api_key_hash_file) or login + password, not both",
            ));
        }
        (None, Some(_), None) => {
            return Err(ConfigError::MissingKey {
                key: "password".into(),
                place: n.place().into(),
            });
        }
        (None, None, Some(_)) => {
            return Err(ConfigError::MissingKey {
                key: "login".into(),
                place: n.place().into(),
            });
        }
        (None, None, None) => {
            return Err(ConfigError::MissingKey {
                key: "api_key_hash (or api_key_hash_file, or login + password)".into(),
                place: n.place().into(),
            });
        }
    };
    let api_url = match n.string("api_url")? {
        Some(raw) => parse_url(n, "api_url", &raw, &["http", "https"], "https://")?,
        None => derive_api_url(url),
    };
    let auth_url = match n.string("auth_url")? {
        Some(raw) => parse_url(n, "auth_url", &raw, &["http", "https"], "https://")?,
        None => auth_url_under(&api_url),
    };
    let backfill = backfill(n, api_url)?;
    let subscriptions = match n.get("subscriptions") {
        None => vec![NavixySubscription {
            kind: NavixyRequestType::StateBatch,
            target: NavixyTarget::All,
            rate_limit: None,
            format: None,
            sensor_type: None,
            include_components: None,
        }],
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .enumerate()
            .map(|(i, v)| subscription(v, &format!("{} subscriptions[{i}]", n.place())))
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(bad(
                n,
                "subscriptions",
                "expected a non-empty array of tables",
            ));
        }
    };
    Ok(NavixyConfig {
        auth,
        auth_url,
        subscriptions,
        track_message_size: n.bool("track_message_size")?.unwrap_or(false),
        iso_datetime: n.bool("iso_datetime")?.unwrap_or(false),
        max_logins_per_10min: n.int("max_logins_per_10min", 1..=100)?.unwrap_or(3) as u32,
        backfill,
    })
}

fn subscription(v: &Value, place: &str) -> Result<NavixySubscription, ConfigError> {
    let n = Node::new(Some(v), place)?;
    check_keys(
        &n,
        &[
            "type",
            "target",
            "tracker_ids",
            "rate_limit",
            "format",
            "sensor_type",
            "include_components",
        ],
    )?;
    let kind = match n.require("type", n.string("type"))?.as_str() {
        "state" => NavixyRequestType::State,
        "state_batch" => NavixyRequestType::StateBatch,
        "readings_batch" => NavixyRequestType::ReadingsBatch,
        "iot_monitor" => NavixyRequestType::IotMonitor,
        other => {
            return Err(bad(
                &n,
                "type",
                format!("`{other}` is not one of state, state_batch, readings_batch, iot_monitor"),
            ));
        }
    };
    let ids = match n.get("tracker_ids") {
        None => None,
        Some(Value::Array(a)) => Some(
            a.iter()
                .map(|x| {
                    x.as_i64()
                        .ok_or_else(|| bad(&n, "tracker_ids", "expected whole numbers"))
                })
                .collect::<Result<Vec<_>, _>>()?,
        ),
        Some(_) => return Err(bad(&n, "tracker_ids", "expected an array of tracker ids")),
    };
    let target = match (n.string("target")?.as_deref(), ids) {
        (Some("all"), None) if kind != NavixyRequestType::State => NavixyTarget::All,
        (None, None) if kind != NavixyRequestType::State => NavixyTarget::All,
        (Some("selected") | None, Some(ids)) if !ids.is_empty() => NavixyTarget::Selected(ids),
        (Some("all"), Some(_)) => {
            return Err(bad(
                &n,
                "tracker_ids",
                "given with target = \"all\"; use target = \"selected\"",
            ));
        }
        (Some(t), _) if t != "all" && t != "selected" => {
            return Err(bad(&n, "target", format!("`{t}` is not all or selected")));
        }
        _ => {
            return Err(ConfigError::MissingKey {
                key: "tracker_ids".into(),
                place: place.into(),
            });
        }
    };
    if kind == NavixyRequestType::IotMonitor
        && let NavixyTarget::Selected(ids) = &target
        && ids.len() > 10
    {
        return Err(bad(
            &n,
            "tracker_ids",
            "iot_monitor accepts at most 10 trackers",
        ));
    }
    if let Some(f) = n.string("format")?
        && f != "full"
        && f != "compact"
    {
        return Err(bad(&n, "format", format!("`{f}` is not full or compact")));
    }
    Ok(NavixySubscription {
        kind,
        target,
        rate_limit: n.string("rate_limit")?,
        format: n.string("format")?,
        sensor_type: n.string("sensor_type")?,
        include_components: n.bool("include_components")?,
    })
}

pub(super) fn tradernet(n: &Node<'_>, base: &Path) -> Result<TradernetConfig, ConfigError> {
    let sid = n.secret("sid", base)?;
    let public_key = n.secret("public_key", base)?;
    let private_key = n.secret("private_key", base)?;
    let auth = match (sid, public_key, private_key) {
        (Some(s), None, None) => TradernetAuth::Sid(s),
        (None, Some(public_key), Some(private_key)) => TradernetAuth::ApiKey {
            public_key,
            private_key,
        },
        (None, None, None) => TradernetAuth::None,
        (Some(_), _, _) => {
            return Err(bad(
                n,
                "sid",
                "set either sid or public_key + private_key, not both",
            ));
        }
        (None, Some(_), None) => {
            return Err(ConfigError::MissingKey {
                key: "private_key".into(),
                place: n.place().into(),
            });
        }
        (None, None, Some(_)) => {
            return Err(ConfigError::MissingKey {
                key: "public_key".into(),
                place: n.place().into(),
            });
        }
    };
    let subscribe = match n.get("subscribe") {
        None => r#"["sessions"]"#.to_string(),
        Some(Value::String(s)) => match serde_json::from_str::<Value>(s) {
            Ok(Value::Array(_)) => s.clone(),
            _ => {
                return Err(bad(
                    n,
                    "subscribe",
                    "expected a JSON array such as [\"sessions\"]",
                ));
            }
        },
        Some(v @ Value::Array(_)) => v.to_string(),
        Some(_) => {
            return Err(bad(
                n,
                "subscribe",
                "expected a JSON array such as [\"sessions\"]",
            ));
        }
    };
    Ok(TradernetConfig {
        auth,
        subscribe,
        sessions_timeout: n
            .duration("sessions_timeout")?
            .unwrap_or(Duration::from_secs(30)),
        user_agent: n.string("user_agent")?.unwrap_or_else(default_user_agent),
    })
}

pub(super) fn jsonrpc(n: &Node<'_>) -> Result<JsonRpcConfig, ConfigError> {
    let headers = match n.get("headers") {
        None => Vec::new(),
        Some(Value::Object(m)) => m
            .iter()
            .map(|(k, v)| match v {
                Value::String(s) => Ok((k.clone(), Secret::new(s.clone()))),
                _ => Err(bad(n, "headers", format!("header `{k}` must be a string"))),
            })
            .collect::<Result<_, _>>()?,
        Some(_) => return Err(bad(n, "headers", "expected a table of header = \"value\"")),
    };
    let requests = match n.get("requests") {
        None => Vec::new(),
        Some(Value::Array(items)) => items
            .iter()
            .enumerate()
            .map(|(i, v)| {
                let r = Node::new(Some(v), format!("{} requests[{i}]", n.place()))?;
                check_keys(&r, &["method", "handle", "params"])?;
                Ok(JsonRpcRequest {
                    method: r.require("method", r.string("method"))?,
                    handle: r.int("handle", i64::MIN..=i64::MAX)?.unwrap_or(-1),
                    params: r
                        .get("params")
                        .cloned()
                        .unwrap_or_else(|| Value::Array(vec![])),
                })
            })
            .collect::<Result<_, ConfigError>>()?,
        Some(_) => return Err(bad(n, "requests", "expected an array of tables")),
    };
    Ok(JsonRpcConfig { headers, requests })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn auth_url_is_derived_from_the_subscription_url() {
        let u = Url::parse("wss://api.eu.navixy.com/v2/event/subscription").unwrap();
        assert_eq!(
            derive_auth_url(&u).as_str(),
            "https://api.eu.navixy.com/v2/user/auth"
        );
        let u = Url::parse("ws://127.0.0.1:9/v2/event/subscription?x=1").unwrap();
        assert_eq!(
            derive_auth_url(&u).as_str(),
            "http://127.0.0.1:9/v2/user/auth"
        );
    }

    #[test]
    fn api_url_is_derived_from_the_subscription_url() {
        let u = Url::parse("wss://api.eu.navixy.com/v2/event/subscription").unwrap();
        assert_eq!(derive_api_url(&u).as_str(), "https://api.eu.navixy.com/v2");
        let u = Url::parse("ws://127.0.0.1:9/v2/event/subscription").unwrap();
        assert_eq!(derive_api_url(&u).as_str(), "http://127.0.0.1:9/v2");
    }
}
