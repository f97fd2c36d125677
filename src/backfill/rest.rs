//! The Navixy REST calls a backfill makes: `tracker/list`, `track/read`,
//! `tracker/sensor/list`, `tracker/sensor/data/read` (see `protocols/navixy-rest.md`
//! in the design notes).
//!
//! Every call is a POST with a JSON body (the documented form) carrying the hash, so
//! no secret ever sits in a URL that an error text could print. Calls wait for a
//! token of the account's bucket first (Navixy allows 50 requests/s per user; all
//! sources of one account share one bucket), and a rate-limit answer (HTTP 429 or
//! error 15), a 5xx, a timeout or a transport failure is retried with jittered
//! exponential backoff (`backon`). A dead hash (error 3/4) leads to one new login for
//! login sources, shared with the WebSocket session. Answers are read leniently:
//! unknown fields are ignored, `success: false` under HTTP 200 is an error like
//! under 4xx, and texts that could echo a secret are redacted.

use crate::config::{NavixyAuth, NavixyConfig, Secret};
use crate::login::{AuthError, SharedLogin};
use crate::redact::Redactor;
use crate::telemetry::emit;
use crate::telemetry::events::{BackfillRequest, BackfillRetrying};
use backon::{ExponentialBuilder, Retryable};
use governor::{DefaultDirectRateLimiter, Quota, RateLimiter};
use serde_json::{Map, Value, json};
use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;
use url::Url;

/// How many times one call is tried before its error is returned.
const MAX_TRIES: usize = 10;

/// Why a REST call gave no usable answer.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RestError {
    /// The server answered with a Navixy error code that retrying cannot fix
    /// (201 tracker not found, 208 blocked, 211 span too big, 228 discrete sensor, …).
    #[error("{code}: {description}")]
    Api { code: i64, description: String },
    /// Worth retrying later (rate limit, 5xx, timeout, network), and the retries of
    /// this call are used up.
    #[error("{0}")]
    Transient(String),
    /// The credential is refused and no new one can be had now.
    #[error("authentication failed: {0}")]
    Auth(String),
}

impl RestError {
    fn retriable(&self) -> bool {
        matches!(self, RestError::Transient(_))
    }
}

/// How the client authenticates.
enum Credential {
    Key(Secret),
    Login(Arc<SharedLogin>),
}

/// One account's token bucket, shared by every source of that account on this host.
fn bucket(account: String, rate: u32) -> Arc<DefaultDirectRateLimiter> {
    static BUCKETS: OnceLock<Mutex<HashMap<String, Arc<DefaultDirectRateLimiter>>>> =
        OnceLock::new();
    let map = BUCKETS.get_or_init(Mutex::default);
    let mut map = map
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    map.entry(account)
        .or_insert_with(|| {
            // A burst of one: any one-second window then holds at most `rate` + 1
            // calls, never the `2 × rate` a full bucket would allow.
            let period = Duration::from_secs_f64(1.0 / f64::from(rate.max(1)));
            let quota = Quota::with_period(period)
                .unwrap_or_else(|| Quota::per_second(NonZeroU32::MIN))
                .allow_burst(NonZeroU32::MIN);
            Arc::new(RateLimiter::direct(quota))
        })
        .clone()
}

/// A Navixy REST client for one source.
pub struct Rest {
    client: reqwest::Client,
    base: Url,
    credential: Credential,
    /// The hash in use (login sources), so a dead one is reported as dead.
    hash: Mutex<Option<Secret>>,
    limiter: Arc<DefaultDirectRateLimiter>,
    backoff: ExponentialBuilder,
    redactor: Mutex<Redactor>,
    source: String,
    iso: bool,
}

impl Rest {
    /// A client for `cfg`'s account at its `api_url`; `login` is the session's shared
    /// login for login sources (a fresh one is made when absent).
    pub fn new(
        source: &str,
        cfg: &NavixyConfig,
        login: Option<Arc<SharedLogin>>,
        backoff: (Duration, Duration),
        connect_timeout: Duration,
        ca_file: Option<&std::path::Path>,
    ) -> Rest {
        let b = &cfg.backfill;
        let mut builder = reqwest::Client::builder()
            .timeout(b.timeout)
            .connect_timeout(connect_timeout)
            .user_agent(crate::config::default_user_agent());
        match crate::tls::client_config(ca_file) {
            Ok(tls) => builder = builder.use_preconfigured_tls((*tls).clone()),
            // The config loader already read ca_file; this is a file gone since.
            Err(e) => tracing::warn!("backfill client: {e}; trusting the OS store only"),
        }
        let client = builder.build().unwrap_or_default();
        let mut redactor = Redactor::new(Vec::<String>::new());
        let (credential, account) = match &cfg.auth {
            NavixyAuth::ApiKeyHash(h) => {
                redactor.add(h.expose());
                use sha2::Digest;
                let digest = hex::encode(&sha2::Sha256::digest(h.expose().as_bytes())[..8]);
                (Credential::Key(h.clone()), format!("key:{digest}"))
            }
            NavixyAuth::Login {
                login: user,
                password,
            } => {
                redactor.add(password.expose());
                let shared = login.unwrap_or_else(|| {
                    SharedLogin::new(crate::login::Authenticator::new(
                        cfg.auth_url.clone(),
                        user.clone(),
                        password.clone(),
                        cfg.max_logins_per_10min,
                        connect_timeout,
                        ca_file,
                    ))
                });
                (Credential::Login(shared), format!("login:{user}"))
            }
        };
        let host = format!(
            "{}:{}",
            b.api_url.host_str().unwrap_or(""),
            b.api_url.port_or_known_default().unwrap_or(0)
        );
        let (min, max) = backoff;
        Rest {
            client,
            base: b.api_url.clone(),
            credential,
            hash: Mutex::new(None),
            limiter: bucket(format!("{host}/{account}"), b.rate),
            backoff: ExponentialBuilder::default()
                .with_min_delay(min.min(max))
                .with_max_delay(max)
                .with_jitter()
                .with_max_times(MAX_TRIES - 1),
            redactor: Mutex::new(redactor),
            source: source.to_string(),
            iso: cfg.iso_datetime,
        }
    }

    /// Whether times are sent and read as ISO 8601 (`iso_datetime`).
    pub fn iso(&self) -> bool {
        self.iso
    }

    /// Removes every credential this client knows from `text`.
    pub fn redact(&self, text: &str) -> String {
        self.redactor
            .lock()
            .map(|r| r.redact(text))
            .unwrap_or_else(|_| crate::redact::MASK.to_string())
    }

    /// `BASE/<path>` with `params`; the answer object when `success` is true.
    pub async fn call(&self, path: &str, params: Map<String, Value>) -> Result<Value, RestError> {
        let attempt = || self.once(path, &params);
        let result = attempt
            .retry(self.backoff)
            .sleep(tokio::time::sleep)
            .when(RestError::retriable)
            .notify(|e, wait| {
                emit(BackfillRetrying {
                    source: &self.source,
                    path,
                    wait,
                    error: e,
                });
            })
            .await;
        emit(BackfillRequest {
            source: &self.source,
            outcome: if result.is_ok() { "ok" } else { "error" },
        });
        result
    }

    async fn current_hash(&self, dead: Option<&Secret>) -> Result<Secret, RestError> {
        match &self.credential {
            Credential::Key(h) => Ok(h.clone()),
            Credential::Login(shared) => {
                let hash = shared.fresh(dead).await.map_err(|e| match e {
                    AuthError::Transport(_) | AuthError::RateLimited { .. } => {
                        RestError::Transient(self.redact(&e.to_string()))
                    }
                    AuthError::Refused { .. } => RestError::Transient(self.redact(&e.to_string())),
                    _ => RestError::Auth(self.redact(&e.to_string())),
                })?;
                if let Ok(mut r) = self.redactor.lock() {
                    r.add(hash.expose());
                }
                if let Ok(mut h) = self.hash.lock() {
                    *h = Some(hash.clone());
                }
                Ok(hash)
            }
        }
    }

    async fn once(&self, path: &str, params: &Map<String, Value>) -> Result<Value, RestError> {
        let known = self.hash.lock().ok().and_then(|h| h.clone());
        let hash = match (&self.credential, known) {
            (Credential::Login(_), Some(h)) => h,
            _ => self.current_hash(None).await?,
        };
        match self.post(path, params, &hash).await {
            Err(RestError::Api { code: 3 | 4, .. })
                if matches!(self.credential, Credential::Login(_)) =>
            {
                // The session hash died: one new login (shared with the session), then once more.
                let fresh = self.current_hash(Some(&hash)).await?;
                self.post(path, params, &fresh).await.map_err(|e| match e {
                    RestError::Api {
                        code: 3 | 4,
                        description,
                    } => RestError::Auth(description),
                    other => other,
                })
            }
            Err(RestError::Api {
                code: 3 | 4,
                description,
            }) => Err(RestError::Auth(format!(
                "the API key hash is refused ({description})"
            ))),
            other => other,
        }
    }

    async fn post(
        &self,
        path: &str,
        params: &Map<String, Value>,
        hash: &Secret,
    ) -> Result<Value, RestError> {
        self.limiter.until_ready().await;
        let mut url = self.base.clone();
        let base_path = self.base.path().trim_end_matches('/').to_string();
        url.set_path(&format!("{base_path}/{path}"));
        let mut body = params.clone();
        body.insert("hash".into(), json!(hash.expose()));
        if self.iso {
            body.insert("iso_datetime".into(), json!(true));
        }
        let mut req = self.client.post(url).json(&Value::Object(body));
        if self.iso {
            req = req.header("NVX-ISO-DateTime", "true");
        }
        let resp = req
            .send()
            .await
            .map_err(|e| RestError::Transient(self.redact(&e.without_url().to_string())))?;
        let status = resp.status().as_u16();
        let text = resp
            .text()
            .await
            .map_err(|e| RestError::Transient(self.redact(&e.without_url().to_string())))?;
        classify(status, &text).map_err(|e| match e {
            RestError::Api { code, description } => RestError::Api {
                code,
                description: self.redact(&description),
            },
            RestError::Transient(t) => RestError::Transient(self.redact(&t)),
            RestError::Auth(t) => RestError::Auth(self.redact(&t)),
        })
    }
}

/// Interprets one answer (pure, so every shape is unit-tested).
pub fn classify(http_status: u16, text: &str) -> Result<Value, RestError> {
    let parsed: Option<Value> = serde_json::from_str(text).ok();
    let code = parsed
        .as_ref()
        .and_then(|v| v.pointer("/status/code"))
        .and_then(Value::as_i64);
    let description = parsed
        .as_ref()
        .and_then(|v| v.pointer("/status/description"))
        .and_then(Value::as_str)
        .unwrap_or("no description")
        .to_string();
    if http_status == 429 || code == Some(15) {
        return Err(RestError::Transient(format!(
            "rate limited (HTTP {http_status}, {description})"
        )));
    }
    if http_status >= 500 {
        return Err(RestError::Transient(format!(
            "server error HTTP {http_status}"
        )));
    }
    let Some(v) = parsed else {
        return Err(RestError::Transient(format!(
            "HTTP {http_status} with a body that is not JSON"
        )));
    };
    if v.get("success").and_then(Value::as_bool) == Some(true) {
        return Ok(v);
    }
    match code {
        // 8: queue error, 13: operation failed for now — both worth a retry.
        Some(8) => Err(RestError::Transient(format!("8: {description}"))),
        Some(code) => Err(RestError::Api { code, description }),
        None => Err(RestError::Transient(format!(
            "HTTP {http_status} without success or error code"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_are_classified() {
        assert!(classify(200, r#"{"success":true,"list":[],"extra":{"x":1}}"#).is_ok());
        assert!(matches!(
            classify(
                429,
                r#"{"success":false,"status":{"code":15,"description":"Too many requests"}}"#
            ),
            Err(RestError::Transient(_))
        ));
        assert!(matches!(
            classify(429, "slow down"),
            Err(RestError::Transient(_))
        ));
        assert!(matches!(
            classify(
                400,
                r#"{"success":false,"status":{"code":15,"description":"x"}}"#
            ),
            Err(RestError::Transient(_))
        ));
        assert!(matches!(
            classify(503, "<html>"),
            Err(RestError::Transient(_))
        ));
        assert!(matches!(
            classify(
                200,
                r#"{"success":false,"status":{"code":211,"description":"span"}}"#
            ),
            Err(RestError::Api { code: 211, .. })
        ));
        assert!(matches!(
            classify(
                400,
                r#"{"success":false,"status":{"code":201,"description":"gone"}}"#
            ),
            Err(RestError::Api { code: 201, .. })
        ));
        assert!(matches!(
            classify(200, "not json"),
            Err(RestError::Transient(_))
        ));
    }
}
