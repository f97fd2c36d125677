//! Atmosphere details of the Navixy simulator: the framework version gate, the
//! tracking id of the handshake frame and UTF-16 message lengths for
//! `X-Atmosphere-TrackMessageSize` framing.
//!
//! Pure functions; no I/O.

use rand::Rng;

/// Lowest Atmosphere framework version the server accepts (older: HTTP 501).
const MIN_FRAMEWORK: (u32, u32, u32) = (2, 2, 1);

/// Whether an `X-Atmosphere-Framework` value (e.g. `2.3.6-javascript`) is too old.
/// Unparsable values are let through, as the point is only to refuse known-old clients.
pub(super) fn framework_too_old(version: &str) -> bool {
    let numeric = version.split('-').next().unwrap_or("");
    let mut parts = numeric.split('.').map(|p| p.parse::<u32>().ok());
    match (
        parts.next().flatten(),
        parts.next().flatten(),
        parts.next().flatten(),
    ) {
        (Some(a), b, c) => (a, b.unwrap_or(0), c.unwrap_or(0)) < MIN_FRAMEWORK,
        _ => false,
    }
}

/// A fresh random tracking id in UUID v4 form.
pub(super) fn tracking_uuid() -> String {
    let b: [u8; 16] = rand::rng().random();
    let h = hex::encode(b);
    format!(
        "{}-{}-4{}-a{}-{}",
        &h[0..8],
        &h[8..12],
        &h[13..16],
        &h[17..20],
        &h[20..32]
    )
}

/// Length of `text` in UTF-16 code units, as Atmosphere counts it. ASCII text (all
/// generated data) is measured without decoding it: one unit per byte.
pub(super) fn utf16_len(text: &str) -> usize {
    if text.is_ascii() {
        text.len()
    } else {
        text.encode_utf16().count()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn framework_versions_and_utf16_lengths() {
        assert!(framework_too_old("2.2.0-javascript"));
        assert!(framework_too_old("1.0"));
        assert!(!framework_too_old("2.3.6-javascript"));
        assert!(!framework_too_old("2.2.1"));
        assert!(!framework_too_old("garbage"));
        assert_eq!(utf16_len("X"), 1);
        assert_eq!(utf16_len("é😀"), 3);
        assert_eq!(utf16_len("a|é"), 3);
        let uuid = tracking_uuid();
        assert_eq!(uuid.len(), 36);
        assert_eq!(uuid.matches('-').count(), 4);
    }
}
