//! A resumable JSON syntax scanner: tells whether the text fed so far is a complete
//! JSON value, a valid beginning of one, or can no longer become one.
//!
//! Why it exists: [`super::Reassembler`] must decide after every frame whether an
//! unframed message is finished. Re-parsing the whole buffer with serde at every
//! frame made reassembly quadratic, and serde's end-of-input classification is not
//! a "valid prefix" test (it calls `1.`, `-` or `1e` at the end of input syntax
//! errors), so a frame boundary inside a number broke the message. This scanner
//! keeps its state between frames and looks at each byte once; serde still
//! validates each completed message once (the scanner does not check what serde
//! checks beyond the grammar, such as its nesting limit).
//!
//! Works on bytes: every byte of a multi-byte UTF-8 character is ≥ 0x80, which is
//! only valid inside a string, where the scanner passes it through.

/// What the text fed so far amounts to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Status {
    /// A whole value (possibly followed by whitespace).
    Complete,
    /// A valid beginning of a value: more text is needed.
    Incomplete,
    /// No continuation can make this JSON; `at` is the offending byte's offset
    /// within the text fed since the last [`Scanner::reset`].
    Error {
        /// Offset of the first byte that cannot belong to a JSON value here.
        at: usize,
    },
}

/// Where a number is in its grammar (RFC 8259 §6).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Num {
    /// After `-`: a digit must follow.
    Minus,
    /// A leading `0`: no further integer digits may follow.
    Zero,
    /// Integer digits.
    Int,
    /// After `.`: a digit must follow.
    Dot,
    /// Fraction digits.
    Frac,
    /// After `e`/`E`: a sign or digit must follow.
    Exp,
    /// After the exponent's sign: a digit must follow.
    ExpSign,
    /// Exponent digits.
    ExpDigits,
}

impl Num {
    /// True when the number may end here.
    fn can_end(self) -> bool {
        matches!(self, Num::Zero | Num::Int | Num::Frac | Num::ExpDigits)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// A value must come (start, after `:`, after `,` in an array).
    Value,
    /// After `[`: a value or `]`.
    ValueOrEnd,
    /// After `{`: a key or `}`.
    KeyOrEnd,
    /// After `,` in an object: a key.
    Key,
    /// After a key: `:`.
    Colon,
    /// After a member or element: `,` or the container's end.
    CommaOrEnd,
    /// The top-level value is complete: only whitespace may follow.
    Done,
    /// Inside a string (`key`: an object key, so `:` follows it).
    Str { key: bool },
    /// After a backslash in a string.
    Escape { key: bool },
    /// Inside `\uXXXX`, with this many hex digits still to come.
    Unicode { key: bool, left: u8 },
    /// Inside a number.
    Number(Num),
    /// Inside `true`, `false` or `null`: these bytes must still follow.
    Literal(&'static [u8]),
    /// A syntax error was found; stays so until reset.
    Failed { at: usize },
}

/// The scanner's state between frames: the open containers (a byte each, `{` or
/// `[`), the current grammar position and how many bytes were fed.
#[derive(Debug, Clone)]
pub(crate) struct Scanner {
    stack: Vec<u8>,
    mode: Mode,
    fed: usize,
}

impl Default for Scanner {
    fn default() -> Self {
        Scanner {
            stack: Vec::new(),
            mode: Mode::Value,
            fed: 0,
        }
    }
}

fn is_ws(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\n' | b'\r')
}

impl Scanner {
    /// Forgets everything: the next byte starts a new value.
    pub(crate) fn reset(&mut self) {
        self.stack.clear();
        self.mode = Mode::Value;
        self.fed = 0;
    }

    /// Feeds the next bytes of the text and says what the whole text fed since the
    /// last reset amounts to. A top-level number is complete at the end of the text
    /// fed (as serde reads a frame): only container and string boundaries are
    /// unambiguous across frames.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Status {
        for &b in bytes {
            if let Mode::Failed { .. } = self.mode {
                break;
            }
            self.step(b);
            self.fed += 1;
        }
        match self.mode {
            Mode::Failed { at } => Status::Error { at },
            Mode::Done => Status::Complete,
            Mode::Number(n) if self.stack.is_empty() && n.can_end() => Status::Complete,
            _ => Status::Incomplete,
        }
    }

    fn fail(&mut self) {
        self.mode = Mode::Failed { at: self.fed };
    }

    /// A value just ended: the container (if any) expects `,` or its end.
    fn value_done(&mut self) {
        self.mode = if self.stack.is_empty() {
            Mode::Done
        } else {
            Mode::CommaOrEnd
        };
    }

    fn step(&mut self, b: u8) {
        match self.mode {
            Mode::Str { key } => match b {
                b'"' if key => self.mode = Mode::Colon,
                b'"' => self.value_done(),
                b'\\' => self.mode = Mode::Escape { key },
                0x00..=0x1f => self.fail(),
                _ => {}
            },
            Mode::Escape { key } => match b {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => {
                    self.mode = Mode::Str { key }
                }
                b'u' => self.mode = Mode::Unicode { key, left: 4 },
                _ => self.fail(),
            },
            Mode::Unicode { key, left } => {
                if !b.is_ascii_hexdigit() {
                    self.fail();
                } else if left == 1 {
                    self.mode = Mode::Str { key };
                } else {
                    self.mode = Mode::Unicode {
                        key,
                        left: left - 1,
                    };
                }
            }
            Mode::Literal(rest) => match rest.split_first() {
                Some((&want, tail)) if want == b => {
                    if tail.is_empty() {
                        self.value_done();
                    } else {
                        self.mode = Mode::Literal(tail);
                    }
                }
                _ => self.fail(),
            },
            Mode::Number(n) => self.number(n, b),
            _ if is_ws(b) => {}
            Mode::Value => self.value_start(b),
            Mode::ValueOrEnd => {
                if b == b']' {
                    self.close(b'[');
                } else {
                    self.value_start(b);
                }
            }
            Mode::KeyOrEnd | Mode::Key => match b {
                b'"' => self.mode = Mode::Str { key: true },
                b'}' if self.mode == Mode::KeyOrEnd => self.close(b'{'),
                _ => self.fail(),
            },
            Mode::Colon => match b {
                b':' => self.mode = Mode::Value,
                _ => self.fail(),
            },
            Mode::CommaOrEnd => match (b, self.stack.last()) {
                (b',', Some(b'{')) => self.mode = Mode::Key,
                (b',', _) => self.mode = Mode::Value,
                (b'}', _) => self.close(b'{'),
                (b']', _) => self.close(b'['),
                _ => self.fail(),
            },
            Mode::Done | Mode::Failed { .. } => self.fail(),
        }
    }

    fn close(&mut self, open: u8) {
        if self.stack.last() == Some(&open) {
            self.stack.pop();
            self.value_done();
        } else {
            self.fail();
        }
    }

    fn value_start(&mut self, b: u8) {
        match b {
            b'{' => {
                self.stack.push(b'{');
                self.mode = Mode::KeyOrEnd;
            }
            b'[' => {
                self.stack.push(b'[');
                self.mode = Mode::ValueOrEnd;
            }
            b'"' => self.mode = Mode::Str { key: false },
            b't' => self.mode = Mode::Literal(b"rue"),
            b'f' => self.mode = Mode::Literal(b"alse"),
            b'n' => self.mode = Mode::Literal(b"ull"),
            b'-' => self.mode = Mode::Number(Num::Minus),
            b'0' => self.mode = Mode::Number(Num::Zero),
            b'1'..=b'9' => self.mode = Mode::Number(Num::Int),
            _ => self.fail(),
        }
    }

    fn number(&mut self, n: Num, b: u8) {
        let next = match (n, b) {
            (Num::Minus, b'0') => Some(Num::Zero),
            (Num::Minus, b'1'..=b'9') => Some(Num::Int),
            (Num::Int, b'0'..=b'9') => Some(Num::Int),
            (Num::Zero | Num::Int, b'.') => Some(Num::Dot),
            (Num::Dot | Num::Frac, b'0'..=b'9') => Some(Num::Frac),
            (Num::Zero | Num::Int | Num::Frac, b'e' | b'E') => Some(Num::Exp),
            (Num::Exp, b'+' | b'-') => Some(Num::ExpSign),
            (Num::Exp | Num::ExpSign | Num::ExpDigits, b'0'..=b'9') => Some(Num::ExpDigits),
            _ => None,
        };
        match next {
            Some(next) => self.mode = Mode::Number(next),
            None if n.can_end() => {
                // The byte ends the number and belongs to what follows it.
                self.value_done();
                self.step(b);
            }
            None => self.fail(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scan(text: &str) -> Status {
        Scanner::default().feed(text.as_bytes())
    }

    #[test]
    fn whole_values_are_complete() {
        for text in [
            "{}",
            "[]",
            " {\"a\" : [1, -0.5e+3, true, false, null, \"x\\u00e9\\n\"]} \n",
            "\"s\"",
            "12",
            "-0",
            "1.5E7",
            "true",
            "[[],{}]",
            "{\"a\":{\"b\":[{}]}}",
        ] {
            assert_eq!(scan(text), Status::Complete, "{text}");
            assert!(serde_json::from_str::<serde::de::IgnoredAny>(text).is_ok());
        }
    }

    #[test]
    fn beginnings_are_incomplete_wherever_they_stop() {
        let text = r#"{"a":[1.25e-3,-7,0,"x\"\u00e9y",true,null,{"k":false}],"b":-0.5}"#;
        for cut in 0..text.len() {
            assert_eq!(scan(&text[..cut]), Status::Incomplete, "{}", &text[..cut]);
        }
        assert_eq!(scan(text), Status::Complete);
        // Resuming at every cut gives the same answer as one feed.
        for cut in 0..text.len() {
            let mut s = Scanner::default();
            assert_eq!(s.feed(&text.as_bytes()[..cut]), Status::Incomplete);
            assert_eq!(
                s.feed(&text.as_bytes()[cut..]),
                Status::Complete,
                "cut {cut}"
            );
        }
    }

    #[test]
    fn syntax_errors_are_found_at_the_first_bad_byte() {
        for (text, at) in [
            ("x", 0),
            ("{\"a\" 1}", 5),
            ("{\"a\":1,}", 7),
            ("[1,]", 3),
            ("[1}", 2),
            ("{]", 1),
            ("01", 1),
            ("-a", 1),
            ("1.e", 2),
            ("1e+}", 3),
            ("tru ", 3),
            ("{\"a\":1} x", 8),
            ("\"\\x\"", 2),
            ("\"\\u12g4\"", 5),
            ("\"a\u{1}\"", 2),
            ("{\"a\":1}}", 7),
        ] {
            assert_eq!(scan(text), Status::Error { at }, "{text}");
            assert!(serde_json::from_str::<serde::de::IgnoredAny>(text).is_err());
        }
    }
}
