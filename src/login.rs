//! Navixy `user/auth` login: the one HTTP call a session makes besides its socket,
//! shared with the source's backfill worker ([`SharedLogin`]).
//!
//! It sits below both `session` and `backfill` (each imports it; it imports neither),
//! so sharing one login does not tie those two modules into an import cycle.
//!
//! The hash it yields is cached by the session across reconnects; a new login happens
//! only when the hash is dead (`logout`, error 3/4), at most `max_logins_per_10min`
//! times per ten minutes, and never again after an answer that retrying cannot fix
//! (102 wrong login or password, 103 not activated, second factor required): Navixy
//! blocks accounts that hammer the login. Passwords and hashes never reach a log line.

use crate::config::Secret;
use std::collections::VecDeque;
use std::time::{Duration, Instant};
use url::Url;

const WINDOW: Duration = Duration::from_secs(600);

/// Why a login did not yield a hash.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// Retrying cannot help: the operator must fix the account or the config.
    #[error("login refused for good ({code}: {description}); fix the credentials and reload")]
    Fatal { code: i64, description: String },
    /// Two-factor authentication is on for this user; a daemon cannot answer it.
    #[error(
        "login needs a second factor, which a daemon cannot provide; use an API key hash instead"
    )]
    SecondFactor,
    /// The server refused for now (limits, queue, overload): retry after a backoff.
    #[error("login refused for now ({code}: {description}); will retry")]
    Refused { code: i64, description: String },
    /// The HTTP call failed (network, timeout, unparsable answer): retry after a backoff.
    #[error("login call failed: {0}")]
    Transport(String),
    /// The local limit of logins per ten minutes is reached.
    #[error("login limit of {limit} per 10 minutes reached; next attempt in {wait:?}")]
    RateLimited { limit: u32, wait: Duration },
}

impl AuthError {
    /// True when no further login may be attempted automatically.
    pub fn is_fatal(&self) -> bool {
        matches!(self, AuthError::Fatal { .. } | AuthError::SecondFactor)
    }
}

/// Logs in to Navixy and limits how often.
pub struct Authenticator {
    client: reqwest::Client,
    url: Url,
    login: String,
    password: Secret,
    limit: u32,
    recent: VecDeque<Instant>,
}

impl Authenticator {
    /// An authenticator for `login`/`password` at `url` (the full `user/auth` URL);
    /// `https://` trusts the OS store plus `ca_file`, like the WebSocket.
    pub fn new(
        url: Url,
        login: String,
        password: Secret,
        limit: u32,
        timeout: Duration,
        ca_file: Option<&std::path::Path>,
    ) -> Self {
        let mut builder = reqwest::Client::builder()
            .timeout(timeout)
            .user_agent(crate::config::default_user_agent());
        match crate::tls::client_config(ca_file) {
            Ok(tls) => builder = builder.use_preconfigured_tls((*tls).clone()),
            // The config loader already read ca_file; this is a file gone since.
            Err(e) => tracing::warn!("login client: {e}; trusting the OS store only"),
        }
        let client = builder.build().unwrap_or_default();
        Authenticator {
            client,
            url,
            login,
            password,
            limit: limit.max(1),
            recent: VecDeque::new(),
        }
    }

    /// How long until another login is allowed (zero when allowed now).
    pub fn wait_before_next(&mut self, now: Instant) -> Duration {
        while self
            .recent
            .front()
            .is_some_and(|t| now.duration_since(*t) >= WINDOW)
        {
            self.recent.pop_front();
        }
        if (self.recent.len() as u32) < self.limit {
            return Duration::ZERO;
        }
        self.recent
            .front()
            .map(|t| WINDOW.saturating_sub(now.duration_since(*t)))
            .unwrap_or(Duration::ZERO)
    }

    /// One login attempt, counted against the limit whatever its outcome.
    pub async fn login(&mut self) -> Result<Secret, AuthError> {
        let now = Instant::now();
        let wait = self.wait_before_next(now);
        if !wait.is_zero() {
            return Err(AuthError::RateLimited {
                limit: self.limit,
                wait,
            });
        }
        self.recent.push_back(now);
        let body = serde_json::json!({"login": self.login, "password": self.password.expose()});
        let resp = self
            .client
            .post(self.url.clone())
            .json(&body)
            .send()
            .await
            .map_err(|e| AuthError::Transport(e.without_url().to_string()))?;
        let status = resp.status();
        let text = resp
            .text()
            .await
            .map_err(|e| AuthError::Transport(e.without_url().to_string()))?;
        parse_answer(status.as_u16(), &text)
    }
}

/// One account's login shared by the WebSocket session and the backfill of a source,
/// so both use the same session hash and a dead hash leads to one new login, not
/// two: Navixy limits logins per user (error 104) and blocks accounts that hammer it.
pub struct SharedLogin {
    auth: tokio::sync::Mutex<Authenticator>,
    current: std::sync::Mutex<Option<Secret>>,
}

impl SharedLogin {
    /// Shares `auth` (its per-window limit then counts the logins of both users).
    pub fn new(auth: Authenticator) -> std::sync::Arc<Self> {
        std::sync::Arc::new(SharedLogin {
            auth: tokio::sync::Mutex::new(auth),
            current: std::sync::Mutex::new(None),
        })
    }

    /// The hash of the last successful login, if any.
    pub fn current(&self) -> Option<Secret> {
        self.current.lock().ok().and_then(|c| c.clone())
    }

    /// A hash other than `dead`: the cached one when another user already logged in
    /// again, else one new login (subject to the login limits).
    pub async fn fresh(&self, dead: Option<&Secret>) -> Result<Secret, AuthError> {
        let mut auth = self.auth.lock().await;
        if let Some(c) = self.current()
            && Some(&c) != dead
        {
            return Ok(c);
        }
        let hash = auth.login().await?;
        if let Ok(mut c) = self.current.lock() {
            *c = Some(hash.clone());
        }
        Ok(hash)
    }
}

/// Interprets a `user/auth` answer (pure, so every shape is unit-tested).
pub fn parse_answer(http_status: u16, text: &str) -> Result<Secret, AuthError> {
    let v: serde_json::Value = serde_json::from_str(text).map_err(|_| {
        AuthError::Transport(format!("HTTP {http_status} with a body that is not JSON"))
    })?;
    if v.get("type").and_then(|t| t.as_str()) == Some("second_factor_required") {
        return Err(AuthError::SecondFactor);
    }
    if v.get("success").and_then(|s| s.as_bool()) == Some(true)
        && let Some(hash) = v.get("hash").and_then(|h| h.as_str())
        && !hash.is_empty()
    {
        return Ok(Secret::new(hash));
    }
    let code = v
        .pointer("/status/code")
        .and_then(|c| c.as_i64())
        .unwrap_or(-1);
    let description = v
        .pointer("/status/description")
        .and_then(|d| d.as_str())
        .unwrap_or("no description")
        .to_string();
    match code {
        102 | 103 => Err(AuthError::Fatal { code, description }),
        _ => Err(AuthError::Refused { code, description }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        let ok = parse_answer(
            200,
            r#"{"success":true,"type":"authenticated","hash":"abcd1234abcd1234"}"#,
        );
        assert_eq!(ok.unwrap().expose(), "abcd1234abcd1234");
        let wrong = parse_answer(
            200,
            r#"{"success":false,"status":{"code":102,"description":"Wrong login or password"}}"#,
        );
        assert!(wrong.unwrap_err().is_fatal());
        assert!(
            parse_answer(200, r#"{"success":true,"type":"second_factor_required"}"#)
                .unwrap_err()
                .is_fatal()
        );
        let busy = parse_answer(
            429,
            r#"{"success":false,"status":{"code":105,"description":"Too many"}}"#,
        );
        assert!(matches!(busy, Err(AuthError::Refused { code: 105, .. })));
        assert!(matches!(
            parse_answer(502, "<html>"),
            Err(AuthError::Transport(_))
        ));
    }

    #[test]
    fn logins_are_limited_per_window() {
        let mut a = Authenticator::new(
            Url::parse("http://127.0.0.1:1/v2/user/auth").unwrap(),
            "u".into(),
            Secret::new("p"),
            2,
            Duration::from_secs(1),
            None,
        );
        let t0 = Instant::now();
        a.recent.push_back(t0);
        assert_eq!(a.wait_before_next(t0), Duration::ZERO);
        a.recent.push_back(t0);
        assert!(a.wait_before_next(t0) > Duration::from_secs(590));
        assert_eq!(a.wait_before_next(t0 + WINDOW), Duration::ZERO);
    }
}
