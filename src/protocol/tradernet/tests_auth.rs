//! Credentials on the connect URL (SID, signed query), their redaction list, and
//! the User-Agent header.

use super::auth::{KEPT_SIGNATURES, sign};
use super::tests::{Clock, build, cfg, proto};
use super::*;
use crate::config::{RawEvents, Secret, TradernetAuth};
use hmac::{Hmac, Mac};
use sha2::Sha256;

fn query(url: &Url) -> Vec<(String, String)> {
    url.query_pairs()
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect()
}

#[test]
fn url_carries_the_sid() {
    let p = build(
        cfg(TradernetAuth::Sid(Secret::new("s1d/+&x"))),
        RawEvents::Envelope,
        chrono_tz::Tz::UTC,
    );
    let url = p.connect_url(Clock::new().at(0.0).now);
    assert_eq!(url.host_str(), Some("wss.tradernet.com"));
    assert_eq!(
        query(&url),
        vec![("SID".to_string(), "s1d/+&x".to_string())]
    );
    assert_eq!(p.secrets(), vec!["s1d/+&x".to_string()]);
}

#[test]
fn url_carries_key_timestamp_and_hmac_signature() {
    let p = build(
        cfg(TradernetAuth::ApiKey {
            public_key: Secret::new("pub-key-77"),
            private_key: Secret::new("priv-key-0123"),
        }),
        RawEvents::Envelope,
        chrono_tz::Tz::UTC,
    );
    let clock = Clock::new();
    let url = p.connect_url(clock.at(0.0).now);

    let mut mac = Hmac::<Sha256>::new_from_slice(b"priv-key-0123").unwrap();
    mac.update(b"1772438400");
    let expected = hex::encode(mac.finalize().into_bytes());
    // Same value from an unrelated implementation (Python's hmac module).
    assert_eq!(
        expected,
        "5d6a4a332c5f1a34f80c48db7be595ff2d36ccec9952f1bea1adcc794aac1836"
    );
    assert_eq!(
        query(&url),
        vec![
            ("X-NtApi-PublicKey".to_string(), "pub-key-77".to_string()),
            ("X-NtApi-Timestamp".to_string(), "1772438400".to_string()),
            ("X-NtApi-Sig".to_string(), expected.clone()),
        ]
    );

    // Each connect signs anew; the recent signatures stay known for redaction.
    let later = p.connect_url(clock.at(5.0).now);
    let sig2 = query(&later)[2].1.clone();
    assert_ne!(sig2, expected);
    let secrets = p.secrets();
    for s in [
        "pub-key-77",
        "priv-key-0123",
        expected.as_str(),
        sig2.as_str(),
    ] {
        assert!(secrets.iter().any(|x| x == s), "{s} missing from secrets");
    }
    for i in 0..10 {
        p.connect_url(clock.at(10.0 + f64::from(i)).now);
    }
    assert_eq!(p.secrets().len(), 2 + KEPT_SIGNATURES);
    assert!(
        !p.secrets().contains(&expected),
        "old signatures are dropped"
    );
}

#[test]
fn sign_matches_rfc4231_vector() {
    assert_eq!(
        sign(&Secret::new("Jefe"), "what do ya want for nothing?"),
        "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
    );
}

#[test]
fn url_without_auth_is_the_configured_url() {
    let p = build(
        cfg(TradernetAuth::None),
        RawEvents::Envelope,
        chrono_tz::Tz::UTC,
    );
    assert_eq!(
        p.connect_url(Clock::new().at(0.0).now).as_str(),
        "wss://wss.tradernet.com/"
    );
    assert!(p.secrets().is_empty());
}

#[test]
fn user_agent_is_configured_or_the_product_default() {
    let p = proto(RawEvents::Envelope);
    assert_eq!(
        p.connect_headers(),
        vec![("User-Agent".to_string(), "wsvault/test".to_string())]
    );
    let mut c = cfg(TradernetAuth::None);
    c.user_agent = String::new();
    let p = build(c, RawEvents::Envelope, chrono_tz::Tz::UTC);
    assert_eq!(p.connect_headers()[0].1, DEFAULT_USER_AGENT);
    assert!(DEFAULT_USER_AGENT.starts_with("wsvault/"));
}
