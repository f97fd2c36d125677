//! Tradernet credentials on the connect URL: `?SID=…`, or the signed query
//! (`X-NtApi-PublicKey`, `X-NtApi-Timestamp`, `X-NtApi-Sig`).
//!
//! Owns the only code that reads the clear text of a Tradernet credential and the
//! memory of recent signatures, so [`UrlAuth::secrets`] can name every value that
//! may have reached the wire. It must never log or return a credential anywhere
//! except in the URL it builds and in that secrets list.

use crate::config::{Secret, TradernetAuth};
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::collections::VecDeque;
use std::sync::{Mutex, MutexGuard};
use url::Url;

/// How many recent signatures are kept: a signature computed for one connect may
/// still be in flight (or in a log line) after the next one is computed.
pub(super) const KEPT_SIGNATURES: usize = 4;

/// A source's configured auth plus the signatures it produced lately.
#[derive(Debug)]
pub(super) struct UrlAuth {
    auth: TradernetAuth,
    /// Newest last. `connect_url` takes `&self`, hence the lock (a `Mutex` rather
    /// than a `RefCell` keeps the protocol `Sync` as well as `Send`).
    signatures: Mutex<VecDeque<String>>,
}

impl UrlAuth {
    pub(super) fn new(auth: TradernetAuth) -> Self {
        UrlAuth {
            auth,
            signatures: Mutex::new(VecDeque::new()),
        }
    }

    fn signatures(&self) -> MutexGuard<'_, VecDeque<String>> {
        // A poisoned lock only means a panic elsewhere; the list itself is still valid.
        self.signatures.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Appends the credential's query parameters to `url`; the signature (if any) is
    /// computed for `now` and remembered for redaction.
    pub(super) fn apply(&self, url: &mut Url, now: DateTime<Utc>) {
        match &self.auth {
            TradernetAuth::Sid(sid) => {
                url.query_pairs_mut().append_pair("SID", sid.expose());
            }
            TradernetAuth::ApiKey {
                public_key,
                private_key,
            } => {
                let timestamp = now.timestamp().to_string();
                let sig = sign(private_key, &timestamp);
                {
                    let mut sigs = self.signatures();
                    if !sigs.contains(&sig) {
                        sigs.push_back(sig.clone());
                    }
                    while sigs.len() > KEPT_SIGNATURES {
                        sigs.pop_front();
                    }
                }
                url.query_pairs_mut()
                    .append_pair("X-NtApi-PublicKey", public_key.expose())
                    .append_pair("X-NtApi-Timestamp", &timestamp)
                    .append_pair("X-NtApi-Sig", &sig);
            }
            TradernetAuth::None => {}
        }
    }

    /// SID, both keys and the recent signatures (empty values left out).
    pub(super) fn secrets(&self) -> Vec<String> {
        let mut out = Vec::new();
        match &self.auth {
            TradernetAuth::Sid(sid) => out.push(sid.expose().to_string()),
            TradernetAuth::ApiKey {
                public_key,
                private_key,
            } => {
                out.push(public_key.expose().to_string());
                out.push(private_key.expose().to_string());
                out.extend(self.signatures().iter().cloned());
            }
            TradernetAuth::None => {}
        }
        out.retain(|s| !s.is_empty());
        out
    }
}

/// Lowercase hex HMAC-SHA256 of `message` keyed with the private key, as the
/// signed-query scheme of Tradernet's Python SDK expects.
pub(super) fn sign(private_key: &Secret, message: &str) -> String {
    // HMAC accepts keys of any length, so this never fails in practice; an empty
    // signature would simply be refused upstream.
    match Hmac::<Sha256>::new_from_slice(private_key.expose().as_bytes()) {
        Ok(mut mac) => {
            mac.update(message.as_bytes());
            hex::encode(mac.finalize().into_bytes())
        }
        Err(_) => String::new(),
    }
}
