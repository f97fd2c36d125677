//! Keeps secrets out of logs, stored URLs and stored traffic.
//!
//! Three mechanisms, all needed: query parameters and userinfo passwords are masked
//! by name (so a URL is safe even before we know which values are secret); a
//! [`Redactor`] replaces a protocol's known secret values in the text it builds;
//! and the process-wide [`secrets`] registry masks every secret known anywhere at
//! the sinks nothing can bypass: the writer's queue ([`crate::store::RecordSink`]),
//! the log writer ([`crate::telemetry`]) and what commands print. The registry is
//! what catches a secret echoed by a server in a place no protocol code expected.

mod matcher;
pub mod record;
pub mod secrets;
mod stream;

pub use matcher::{MIN_SECRET_LEN, Matcher};
pub use stream::StreamRedactor;

use url::Url;

/// The mask written in place of a secret.
pub const MASK: &str = "***";

/// Query parameter names whose values are credentials, compared case-insensitively.
const SECRET_PARAMS: &[&str] = &[
    "hash",
    "sid",
    "password",
    "token",
    "access_token",
    "api_key",
    "apikey",
    "key",
    "x-ntapi-publickey",
    "x-ntapi-sig",
    "signature",
    "sig",
];

pub(crate) fn is_secret_param(name: &str) -> bool {
    SECRET_PARAMS.iter().any(|p| p.eq_ignore_ascii_case(name))
}

/// A copy of `url` with its password and secret query values masked.
pub fn redact_url(url: &Url) -> String {
    let mut out = url.clone();
    if out.password().is_some() {
        let _ = out.set_password(Some(MASK));
    }
    if out.query().is_some() {
        let pairs: Vec<(String, String)> = out
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_param(&k) {
                    MASK.to_string()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        out.query_pairs_mut().clear().extend_pairs(pairs);
    }
    // `***` is percent-encoded by the serializer; put the plain mask back.
    out.to_string().replace("%2A%2A%2A", MASK)
}

/// Same as [`redact_url`] for a URL held as text; text that is not a URL is masked
/// whole rather than risk printing a credential.
pub fn redact_url_str(url: &str) -> String {
    match Url::parse(url) {
        Ok(u) => redact_url(&u),
        Err(_) => MASK.to_string(),
    }
}

/// The secrets in a JSON-RPC source's configured headers: every header value (any
/// header may carry a credential: Authorization, Cookie, X-Qlik-*…), plus, for values
/// shaped `scheme credential` (`Bearer …`, `Basic …`), the credential alone, which a
/// server may quote without its scheme. Lives here, not in the protocol, because the
/// process-wide secret set needs it too and must not depend on protocols.
pub fn header_secrets(headers: &[(String, crate::config::Secret)]) -> Vec<String> {
    let mut out = Vec::new();
    for (_, v) in headers {
        let v = v.expose().trim();
        if v.is_empty() {
            continue;
        }
        out.push(v.to_string());
        if let Some((_scheme, credential)) = v.split_once(char::is_whitespace) {
            let credential = credential.trim();
            if !credential.is_empty() && !out.iter().any(|s| s == credential) {
                out.push(credential.to_string());
            }
        }
    }
    out
}

/// Replaces known secret values in free text.
#[derive(Clone, Default)]
pub struct Redactor {
    secrets: Vec<String>,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Redactor({} secrets)", self.secrets.len())
    }
}

impl Redactor {
    /// A redactor for these secret values; empty strings are ignored (they would
    /// match everywhere) and so are values shorter than 4 characters.
    pub fn new<I, S>(secrets: I) -> Self
    where
        I: IntoIterator<Item = S>,
        S: Into<String>,
    {
        let mut r = Redactor::default();
        for s in secrets {
            r.add(s);
        }
        r
    }

    /// Learns one more secret (e.g. a session hash obtained by login).
    pub fn add(&mut self, secret: impl Into<String>) {
        let s = secret.into();
        if s.len() >= 4 && !self.secrets.contains(&s) {
            self.secrets.push(s);
            // Longest first, so a secret containing another is masked whole.
            self.secrets.sort_by_key(|s| std::cmp::Reverse(s.len()));
        }
    }

    /// `text` with every known secret replaced by [`MASK`].
    pub fn redact(&self, text: &str) -> String {
        let mut out = text.to_string();
        for s in &self.secrets {
            if out.contains(s.as_str()) {
                out = out.replace(s.as_str(), MASK);
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_query_secrets_and_password_are_masked() {
        let u = Url::parse("wss://u:pw@h/x?SID=abc123&a=1&X-NtApi-Sig=deadbeef").unwrap();
        let r = redact_url(&u);
        assert!(!r.contains("abc123") && !r.contains("deadbeef") && !r.contains("pw@"));
        assert!(r.contains("SID=***") && r.contains("a=1") && r.contains("u:***@"));
    }

    #[test]
    fn redactor_masks_every_occurrence() {
        let r = Redactor::new(["0123456789abcdef", ""]);
        assert_eq!(
            r.redact(r#"{"hash":"0123456789abcdef","x":"0123456789abcdef"}"#),
            r#"{"hash":"***","x":"***"}"#
        );
    }

    #[test]
    fn unparsable_url_is_masked_whole() {
        assert_eq!(redact_url_str("not a url with secret"), MASK);
    }
}
