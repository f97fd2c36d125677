//! Turning a stream of WebSocket text frames back into whole messages, with memory
//! bounded by the configured maximum message size.
//!
//! [`Framer`] handles Atmosphere's `length|message` framing (TrackMessageSize on):
//! lengths count UTF-16 code units, as Java strings do, never bytes. [`Reassembler`]
//! handles the unframed case, where an older server splits a large JSON message
//! across frames. Neither ever interprets a message beyond "is it complete JSON".

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
    /// messages (`0|`) are dropped. After an error the framer is reset.
    pub fn push(&mut self, frame: &str) -> Result<Vec<String>, FramingError> {
        self.buf.push_str(frame);
        let result = self.drain_messages();
        if result.is_err() {
            *self = Framer::new(self.max);
        }
        result
    }

    /// True while part of a message (or of its length) is buffered.
    pub fn is_mid_message(&self) -> bool {
        !self.buf.is_empty() || self.need.is_some()
    }

    fn drain_messages(&mut self) -> Result<Vec<String>, FramingError> {
        let mut out = Vec::new();
        loop {
            let Some(need) = self.need else {
                match self.read_header()? {
                    Some(n) => {
                        self.need = Some(n);
                        self.scanned_bytes = 0;
                        self.scanned_units = 0;
                        continue;
                    }
                    None => return Ok(out),
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
                return Ok(out);
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
#[derive(Debug, Clone, PartialEq)]
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
}

/// Reassembles JSON messages split across frames when there is no framing: a frame
/// that ends mid-JSON (serde reports an end-of-input error) is buffered and the next
/// frame appended, up to `max_message_bytes`. Each attempt re-parses the buffer,
/// which the bound keeps affordable.
#[derive(Debug, Clone)]
pub struct Reassembler {
    buf: String,
    max: usize,
}

enum Attempt {
    Done,
    Truncated,
    Invalid(String),
}

fn attempt(text: &str) -> Attempt {
    match serde_json::from_str::<serde::de::IgnoredAny>(text) {
        Ok(_) => Attempt::Done,
        Err(e) if e.classify() == Category::Eof => Attempt::Truncated,
        Err(e) => Attempt::Invalid(e.to_string()),
    }
}

impl Reassembler {
    /// A reassembler holding at most `max_message_bytes` of one unfinished message.
    pub fn new(max_message_bytes: usize) -> Self {
        Reassembler {
            buf: String::new(),
            max: max_message_bytes,
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
    /// is then cleared.
    pub fn push(&mut self, frame: &str) -> Result<Vec<Piece>, OversizeError> {
        let mut out = Vec::new();
        if self.buf.is_empty() {
            if frame.trim().is_empty() {
                return Ok(out);
            }
            self.start(frame, &mut out)?;
            return Ok(out);
        }
        let mut joined = std::mem::take(&mut self.buf);
        joined.push_str(frame);
        match attempt(&joined) {
            Attempt::Done => out.push(Piece::Message { text: joined }),
            Attempt::Truncated => self.keep(joined)?,
            Attempt::Invalid(error) => {
                joined.truncate(joined.len() - frame.len());
                out.push(Piece::Malformed {
                    text: joined,
                    error,
                });
                if !frame.trim().is_empty() {
                    self.start(frame, &mut out)?;
                }
            }
        }
        Ok(out)
    }

    fn start(&mut self, frame: &str, out: &mut Vec<Piece>) -> Result<(), OversizeError> {
        match attempt(frame) {
            Attempt::Done => out.push(Piece::Message {
                text: frame.to_string(),
            }),
            Attempt::Truncated => self.keep(frame.to_string())?,
            Attempt::Invalid(error) => out.push(Piece::Malformed {
                text: frame.to_string(),
                error,
            }),
        }
        Ok(())
    }

    fn keep(&mut self, text: String) -> Result<(), OversizeError> {
        if text.len() > self.max {
            self.buf.clear();
            return Err(OversizeError {
                size: text.len(),
                max: self.max,
            });
        }
        self.buf = text;
        Ok(())
    }
}
