//! Masks secrets in a stream of frames stored one row each (`traffic`), where a
//! secret may be cut by a frame boundary.
//!
//! Masking each frame alone misses a secret split over two frames: each half is
//! stored in clear. A frame's row is queued before the next frame exists, so the
//! rule has two sides:
//!
//! * the head of a frame is matched together with the raw tail of what came
//!   before (a carry of the longest secret's length minus one byte, enough for any
//!   secret that ends in this frame), and whatever part of a secret lies in this
//!   frame is masked;
//! * the tail of a frame that could begin a secret — its last bytes equal the first
//!   [`MIN_SECRET_LEN`] or more bytes of some secret — is masked already, since the
//!   next frame may complete it.
//!
//! So of any secret in the stream, at most its first `MIN_SECRET_LEN - 1` bytes are
//! stored in clear (when a frame boundary falls that close to its start); every
//! other byte is masked. The price is that a frame ending with the first bytes of a
//! secret that does not follow loses those bytes to the mask: rare for real
//! credentials, and only in `traffic`, the debugging capture.

use super::{MIN_SECRET_LEN, Matcher, matcher::mask_ranges};

/// The masking state of one direction of one connection.
#[derive(Debug, Default, Clone)]
pub struct StreamRedactor {
    /// The raw (unmasked) end of the stream so far; never stored.
    carry: String,
}

impl StreamRedactor {
    /// `frame` masked as described in the module doc; remembers its raw tail.
    pub fn frame(&mut self, m: &Matcher, frame: &str) -> String {
        if m.is_empty() {
            self.carry.clear();
            return frame.to_string();
        }
        let offset = self.carry.len();
        let mut joined = std::mem::take(&mut self.carry);
        joined.push_str(frame);
        let bytes = joined.as_bytes();
        let mut ranges: Vec<(usize, usize)> = m
            .find(bytes)
            .into_iter()
            .filter(|&(_, end)| end > offset)
            .map(|(start, end)| (start.max(offset) - offset, end - offset))
            .collect();
        if let Some(start) = m.partial_tail(bytes) {
            ranges.push((start.max(offset) - offset, bytes.len() - offset));
        }
        let out = if ranges.is_empty() {
            frame.to_string()
        } else {
            ranges.sort_unstable();
            let masked = mask_ranges(frame.as_bytes(), &ranges);
            String::from_utf8(masked)
                .unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
        };
        let keep = m.max_len().saturating_sub(1).max(MIN_SECRET_LEN);
        let mut cut = joined.len().saturating_sub(keep);
        while !joined.is_char_boundary(cut) {
            cut += 1;
        }
        self.carry = joined.split_off(cut);
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const H: &str = "0123456789abcdef0123456789abcdef";

    /// The longest run of `H`'s bytes, taken in order from one position of `H`,
    /// that the stored rows show in clear across frame boundaries.
    fn longest_clear_run(rows: &[String]) -> usize {
        let joined: String = rows.concat();
        let mut best = 0;
        for start in 0..H.len() {
            for len in (1..=H.len() - start).rev() {
                if joined.contains(&H[start..start + len]) {
                    best = best.max(len);
                    break;
                }
            }
        }
        best
    }

    #[test]
    fn a_secret_cut_at_any_position_leaves_less_than_min_len_in_clear() {
        let m = Matcher::new([H]);
        let message = format!(r#"{{"action":"subscribe","hash":"{H}","x":1}}"#);
        for cut in 1..message.len() {
            for second in [cut + 1, message.len()] {
                let second = second.min(message.len());
                let pieces = [&message[..cut], &message[cut..second], &message[second..]];
                let mut r = StreamRedactor::default();
                let rows: Vec<String> = pieces
                    .iter()
                    .filter(|p| !p.is_empty())
                    .map(|p| r.frame(&m, p))
                    .collect();
                for row in &rows {
                    assert!(!row.contains(H), "cut {cut}/{second}: {rows:?}");
                }
                let clear = longest_clear_run(&rows);
                assert!(
                    clear < MIN_SECRET_LEN,
                    "cut {cut}/{second}: {clear} bytes in clear: {rows:?}"
                );
            }
        }
    }

    #[test]
    fn frames_without_secrets_are_kept_verbatim() {
        let m = Matcher::new([H]);
        let mut r = StreamRedactor::default();
        for f in ["{\"a\":1}", "X", "{\"hash\":\"***\"}", "ünïcødé"] {
            assert_eq!(r.frame(&m, f), f);
        }
    }
}
