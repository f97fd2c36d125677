//! The process-wide set of secrets every sink masks.
//!
//! Secrets are known at different times: the configured ones when the config is
//! loaded, a Navixy session hash only after `user/auth`, a Tradernet signature at
//! each connect. Each owner (the config, a source) publishes its current list under
//! its own name, replacing what it published before, so the set stays bounded
//! however often a source reconnects; the sinks always see the union.
//!
//! Reads vastly outnumber writes (every record and log line against a handful of
//! logins and connects), so an `RwLock` over a prebuilt [`Matcher`] is enough:
//! readers never block each other and a write rebuilds the matcher only when the
//! owner's list actually changed.

use super::{Matcher, header_secrets};
use crate::config::{Config, NavixyAuth, SourceConfig, SourceKind, TradernetAuth};
use crate::record::Record;
use std::borrow::Cow;
use std::collections::BTreeMap;
use std::sync::{Arc, LazyLock, RwLock};

/// The owner name under which the config's secrets are published.
pub const CONFIG_OWNER: &str = "\u{0}config";

#[derive(Default)]
struct Registry {
    owners: BTreeMap<String, Vec<String>>,
    matcher: Arc<Matcher>,
}

static REGISTRY: LazyLock<RwLock<Registry>> = LazyLock::new(RwLock::default);

/// Makes `secrets` the list of `owner`, replacing the one it published before.
pub fn publish<I, S>(owner: &str, secrets: I)
where
    I: IntoIterator<Item = S>,
    S: Into<String>,
{
    let mut list: Vec<String> = secrets
        .into_iter()
        .map(Into::into)
        .filter(|s| !s.is_empty())
        .collect();
    list.sort();
    list.dedup();
    let mut reg = REGISTRY.write().unwrap_or_else(|e| e.into_inner());
    if reg.owners.get(owner) == Some(&list) {
        return;
    }
    reg.owners.insert(owner.to_string(), list);
    let matcher = Matcher::new(reg.owners.values().flatten());
    reg.matcher = Arc::new(matcher);
}

/// The current matcher (cheap: an `Arc` clone), for a caller that masks many texts.
pub fn current() -> Arc<Matcher> {
    REGISTRY
        .read()
        .unwrap_or_else(|e| e.into_inner())
        .matcher
        .clone()
}

/// `text` with every known secret masked; borrowed when it holds none.
pub fn text(text: &str) -> Cow<'_, str> {
    let reg = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    match reg.matcher.redact(text) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        Cow::Owned(s) => Cow::Owned(s),
    }
}

/// [`text`] for bytes (a formatted log line).
pub fn bytes(text: &[u8]) -> Cow<'_, [u8]> {
    let reg = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    match reg.matcher.redact_bytes(text) {
        Cow::Borrowed(_) => Cow::Borrowed(text),
        Cow::Owned(b) => Cow::Owned(b),
    }
}

/// Masks every known secret in every text field of `r`.
pub fn record(r: &mut Record) {
    let reg = REGISTRY.read().unwrap_or_else(|e| e.into_inner());
    if !reg.matcher.is_empty() {
        super::record::redact_record(&reg.matcher, r);
    }
}

/// Every secret the config holds: the storage password, each source's
/// credentials, JSON-RPC header values, and secret-looking query values or
/// passwords in source URLs.
pub fn of_config(cfg: &Config) -> Vec<String> {
    let mut out = url_secrets(cfg.storage.url.trim());
    for s in &cfg.sources {
        out.extend(of_source(s));
    }
    out
}

/// Every secret one source's config holds (see [`of_config`]).
pub fn of_source(s: &SourceConfig) -> Vec<String> {
    let mut out = url_secrets(s.url.as_str());
    match &s.kind {
        SourceKind::Navixy(n) => match &n.auth {
            NavixyAuth::ApiKeyHash(h) => out.push(h.expose().to_string()),
            NavixyAuth::Login { password, .. } => out.push(password.expose().to_string()),
        },
        SourceKind::Tradernet(t) => match &t.auth {
            TradernetAuth::Sid(sid) => out.push(sid.expose().to_string()),
            TradernetAuth::ApiKey {
                public_key,
                private_key,
            } => {
                out.push(public_key.expose().to_string());
                out.push(private_key.expose().to_string());
            }
            TradernetAuth::None => {}
        },
        SourceKind::JsonRpc(j) => out.extend(header_secrets(&j.headers)),
    }
    out
}

/// A URL's password (as written and decoded) and its secret-named query values.
fn url_secrets(url: &str) -> Vec<String> {
    let Ok(u) = url::Url::parse(url) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    if let Some(p) = u.password() {
        out.push(p.to_string());
        let decoded = url::form_urlencoded::parse(format!("p={p}").as_bytes())
            .next()
            .map(|(_, v)| v.into_owned());
        out.extend(decoded);
    }
    for (k, v) in u.query_pairs() {
        if super::is_secret_param(&k) {
            out.push(v.into_owned());
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_replace_their_own_list_and_the_union_is_masked() {
        publish("test-owner-a", ["aaaa-secret-one"]);
        publish("test-owner-b", ["bbbb-secret-two"]);
        assert_eq!(text("x aaaa-secret-one bbbb-secret-two"), "x *** ***");
        publish("test-owner-a", ["aaaa-secret-three"]);
        assert_eq!(
            text("aaaa-secret-one aaaa-secret-three"),
            "aaaa-secret-one ***"
        );
        assert!(matches!(text("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn url_passwords_and_secret_query_values_are_secrets() {
        let s = url_secrets("postgres://u:p%40ss-word@h/db?sslmode=disable&token=tok-tok-1");
        assert!(s.contains(&"p%40ss-word".to_string()));
        assert!(s.contains(&"p@ss-word".to_string()));
        assert!(s.contains(&"tok-tok-1".to_string()));
        assert!(!s.iter().any(|v| v == "disable"));
    }
}
