//! Turning a stream of WebSocket text frames back into whole messages, with memory
//! bounded by the configured maximum message size.
//!
//! [`Framer`] handles Atmosphere's `length|message` framing (TrackMessageSize on):
//! lengths count UTF-16 code units, as Java strings do, never bytes. [`Reassembler`]
//! handles the unframed case, where an older server splits a large JSON message
//! across frames. Neither ever interprets a message beyond "is it complete JSON".

use super::json_scan::{Scanner, Status};
use serde_json::error::Category;

/// More length digits than this cannot describe a message we would accept anyway.
const MAX_LENGTH_DIGITS: usize = 20;

/// A framing violation. Once one happens the stream cannot be resynchronised (the
/// next message boundary is unknown), so the caller must reconnect.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum FramingError {
    #[error(
        "Atmosphere frame does not start with `length|`: the server may not have \
         TrackMessageSize on; set track_message_size = false for this source"
    )]
    /// The text where a length should be is not `digits|`.
    InvalidLength,
    #[error(
        "Atmosphere message of {size} (UTF-16 units or bytes) exceeds max_message_bytes = {max}; \
         raise max_message_bytes if such messages are expected"
    )]
    /// A declared length, or the bytes received for one message, beyond the bound.
    TooLarge {
        /// The declared UTF-16 length, or the bytes buffered, whichever tripped.
        size: usize,
        /// The configured `max_message_bytes`.
        max: usize,
    },
    #[error("Atmosphere length ends inside a surrogate pair: the server's framing is inconsistent")]
    /// The declared length cuts a non-BMP character in half.
    SplitsCodePoint,
}

/// What one [`Framer::push`] produced: the messages completed, in order, and the
/// framing violation that stopped it, if any.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deframed {
    /// Every message completed before the end of the frame or the violation.
    pub messages: Vec<String>,
    /// Set when the stream broke: the caller records the unread text and reconnects.
    pub broken: Option<Broken>,
}

/// A framing violation and the text it left unread, which no message boundary
/// can be found in any more: kept so the caller can record it instead of losing
/// it silently.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broken {
    /// What was wrong.
    pub error: FramingError,
    /// The buffered text from the broken message (or length) onwards.
    pub unread: String,
}

/// `length|message` de-framing with a carried-over remainder.
#[derive(Debug, Clone)]
pub struct Framer {
    buf: String,
    /// Declared length of the message in progress, once its header was read.
    need: Option<usize>,
    /// How far into `buf` the message in progress has been measured.
    scanned_bytes: usize,
    scanned_units: usize,
    max: usize,
}

impl Framer {
    /// A framer that refuses any message longer than `max_message_bytes` (checked
    /// both as declared UTF-16 units and as the UTF-8 bytes actually received).
    pub fn new(max_message_bytes: usize) -> Self {
        Framer {
            buf: String::new(),
            need: None,
            scanned_bytes: 0,
            scanned_units: 0,
            max: max_message_bytes,
        }
    }

    /// Feeds one frame; returns every message it completed, in order. A message (or
    /// its length digits) cut at the end of the frame waits for the next one. Empty
    /// messages (`0|`) are dropped. A framing error does not take back the messages
    /// completed before it: they come with the error and the text the framer could
    /// not read, and the framer is reset.
    pub fn push(&mut self, frame: &str) -> Deframed {
        self.buf.push_str(frame);
        let mut messages = Vec::new();
        match self.drain_messages(&mut messages) {
            Ok(()) => Deframed {
                messages,
                broken: None,
            },
            Err(error) => {
                let unread = std::mem::take(&mut self.buf);
                *self = Framer::new(self.max);
                Deframed {
                    messages,
                    broken: Some(Broken { error, unread }),
                }
            }
        }
    }

    /// True while part of a message (or of its length) is buffered.
    pub fn is_mid_message(&self) -> bool {
        !self.buf.is_empty() || self.need.is_some()
    }

    fn drain_messages(&mut self, out: &mut Vec<String>) -> Result<(), FramingError> {
        loop {
            let Some(need) = self.need else {
                match self.read_header()? {
                    Some(n) => {
                        self.need = Some(n);
                        self.scanned_bytes = 0;
                        self.scanned_units = 0;
                        continue;
                    }
                    None => return Ok(()),
                }
            };
            if self.scanned_units < need {
                for c in self.buf[self.scanned_bytes..].chars() {
                    self.scanned_units += c.len_utf16();
                    self.scanned_bytes += c.len_utf8();
                    if self.scanned_units >= need {
                        break;
                    }
                }
            }
            if self.scanned_units > need {
                return Err(FramingError::SplitsCodePoint);
            }
            if self.scanned_bytes > self.max {
                return Err(FramingError::TooLarge {
                    size: self.scanned_bytes,
                    max: self.max,
                });
            }
            if self.scanned_units < need {
                return Ok(());
            }
            let message: String = self.buf.drain(..self.scanned_bytes).collect();
            self.need = None;
            if !message.is_empty() {
                out.push(message);
            }
        }
    }

    /// Reads `digits|` at the start of the buffer. `Ok(None)`: nothing or only part
    /// of the digits buffered so far.
    fn read_header(&mut self) -> Result<Option<usize>, FramingError> {
        if self.buf.is_empty() {
            return Ok(None);
        }
        let digits_end = self
            .buf
            .bytes()
            .position(|b| !b.is_ascii_digit())
            .unwrap_or(self.buf.len());
        let digits = &self.buf[..digits_end];
        if digits.len() > MAX_LENGTH_DIGITS {
            return Err(FramingError::InvalidLength);
        }
        let declared: Option<usize> = if digits.is_empty() {
            None
        } else {
            let n: u128 = digits.parse().map_err(|_| FramingError::InvalidLength)?;
            if n > self.max as u128 {
                return Err(FramingError::TooLarge {
                    size: usize::try_from(n).unwrap_or(usize::MAX),
                    max: self.max,
                });
            }
            Some(n as usize)
        };
        match self.buf[digits_end..].chars().next() {
            None => Ok(None),
            Some('|') => match declared {
                Some(n) => {
                    self.buf.drain(..=digits_end);
                    Ok(Some(n))
                }
                None => Err(FramingError::InvalidLength),
            },
            Some(_) => Err(FramingError::InvalidLength),
        }
    }
}

/// One complete result of [`Reassembler::push`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Piece {
    /// A whole JSON message, exactly as received (frames concatenated). It is only
    /// checked to be JSON, not built into a value: the protocol reads it once, in
    /// whatever form suits it.
    Message {
        /// The message text.
        text: String,
    },
    /// Text that is not JSON (a syntax error, not a truncation): report and keep it.
    Malformed {
        /// The offending text, to be stored as a JSON string.
        text: String,
        /// serde's description of the syntax error.
        error: String,
    },
}

/// A split message grew beyond the bound; its buffered text was discarded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "a JSON message split across frames grew past max_message_bytes = {max} ({size} bytes \
     buffered); raise max_message_bytes if such messages are expected"
)]
pub struct OversizeError {
    /// Bytes the unfinished message had reached.
    pub size: usize,
    /// The configured `max_message_bytes`.
    pub max: usize,
    /// What the same frame completed before the overflow (the malformed start of
    /// an earlier message): the caller handles it as usual, so nothing is lost.
    pub before: Vec<Piece>,
}

/// Reassembles JSON messages split across frames when there is no framing: a frame
/// that ends inside a JSON value is buffered and the next frame appended, up to
/// `max_message_bytes`. Whether the value is finished is decided by a resumable
/// scanner that looks at each new byte once, so a boundary may fall anywhere (inside
/// a number, a string or an escape) and reassembly stays linear in the message
/// size; serde then checks each finished message once.
///
/// A top-level bare number that ends exactly at a frame's end counts as finished
/// (as serde reads a frame); containers and strings are never ambiguous.
#[derive(Debug, Clone)]
pub struct Reassembler {
    buf: String,
    scanner: Scanner,
    max: usize,
    /// Bytes looked at by the scanner and serde so far: the linearity tests'
    /// measure of work.
    examined: u64,
}

/// serde's description of why `text` is not one JSON value (its wording is what
/// operators already see); the scanner's offset if serde disagrees.
fn syntax_error(text: &str, at: usize) -> String {
    match serde_json::from_str::<serde::de::IgnoredAny>(text) {
        Err(e) if e.classify() != Category::Eof => e.to_string(),
        _ => format!("invalid JSON at byte {at}"),
    }
}

impl Reassembler {
    /// A reassembler holding at most `max_message_bytes` of one unfinished message.
    pub fn new(max_message_bytes: usize) -> Self {
        Reassembler {
            buf: String::new(),
            scanner: Scanner::default(),
            max: max_message_bytes,
            examined: 0,
        }
    }

    /// True while an unfinished message is buffered.
    pub fn is_mid_message(&self) -> bool {
        !self.buf.is_empty()
    }

    /// Feeds one frame. A blank frame with nothing buffered yields nothing. If the
    /// buffered text plus this frame is a syntax error, the buffered text is reported
    /// malformed and the frame is tried on its own (a fresh message after a lost
    /// tail). Errors only when the unfinished message outgrows the bound; the buffer
    /// is then cleared, and pieces the frame completed first come with the error.
    pub fn push(&mut self, frame: &str) -> Result<Vec<Piece>, OversizeError> {
        let mut out = Vec::new();
        if self.buf.is_empty() {
            if frame.trim().is_empty() {
                return Ok(out);
            }
            self.start(frame, &mut out)?;
            return Ok(out);
        }
        let old_len = self.buf.len();
        self.buf.push_str(frame);
        match self.feed(frame) {
            Status::Complete => out.push(self.finish()),
            Status::Incomplete => self.check_size()?,
            Status::Error { at } => {
                let error = syntax_error(&self.buf, at);
                self.buf.truncate(old_len);
                out.push(Piece::Malformed {
                    text: std::mem::take(&mut self.buf),
                    error,
                });
                self.scanner.reset();
                if !frame.trim().is_empty()
                    && let Err(mut e) = self.start(frame, &mut out)
                {
                    e.before = out;
                    return Err(e);
                }
            }
        }
        Ok(out)
    }

    fn start(&mut self, frame: &str, out: &mut Vec<Piece>) -> Result<(), OversizeError> {
        self.scanner.reset();
        self.buf.push_str(frame);
        match self.feed(frame) {
            Status::Complete => out.push(self.finish()),
            Status::Incomplete => self.check_size()?,
            Status::Error { at } => {
                self.scanner.reset();
                out.push(Piece::Malformed {
                    error: syntax_error(frame, at),
                    text: std::mem::take(&mut self.buf),
                });
            }
        }
        Ok(())
    }

    /// Bytes buffered of the unfinished message, for the property tests.
    #[cfg(test)]
    pub(crate) fn buf_len(&self) -> usize {
        self.buf.len()
    }

    /// Bytes examined so far (scanner and serde), for the linearity tests.
    #[cfg(test)]
    pub(crate) fn examined(&self) -> u64 {
        self.examined
    }

    fn feed(&mut self, frame: &str) -> Status {
        self.examined += frame.len() as u64;
        self.scanner.feed(frame.as_bytes())
    }

    /// The buffered text is one whole value by the grammar: serde has the last word.
    fn finish(&mut self) -> Piece {
        self.scanner.reset();
        let text = std::mem::take(&mut self.buf);
        self.examined += text.len() as u64;
        match serde_json::from_str::<serde::de::IgnoredAny>(&text) {
            Ok(_) => Piece::Message { text },
            Err(e) => Piece::Malformed {
                text,
                error: e.to_string(),
            },
        }
    }

    fn check_size(&mut self) -> Result<(), OversizeError> {
        if self.buf.len() > self.max {
            let size = self.buf.len();
            self.buf = String::new();
            self.scanner.reset();
            return Err(OversizeError {
                size,
                max: self.max,
                before: Vec::new(),
            });
        }
        Ok(())
    }
}
