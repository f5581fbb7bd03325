//! Everything the CLI prints passes through [`Escaping`], so that text from outside sources
//! (a config's trusted comment and fields, a collector's answers and errors, the contents of
//! reports and files in the data directory, paths) cannot drive the terminal.
//!
//! Promise: no control character reaches stdout or stderr except newline and tab. Every other
//! C0 and C1 control (ESC, CR, BEL, backspace, DEL, U+0080 to U+009F) and every bidirectional
//! override or isolate (U+202A to U+202E, U+2066 to U+2069, which can make a line read other
//! than it is) is written as `\u` and four hex digits, a form that is also a valid escape
//! inside a JSON string, so `--json` output stays valid JSON. Bytes that are not UTF-8 are
//! written as `\x` and two hex digits. Done on the whole stream rather than per value, so no
//! new line of output can forget it; tally's own text has no control characters to lose.

use std::borrow::Cow;
use std::io::{self, Write};

/// Whether `c` is escaped on output.
fn needs_escape(c: char) -> bool {
    (c.is_control() && c != '\n' && c != '\t')
        || matches!(c, '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// `text` with every character [`Escaping`] would escape escaped.
pub fn escape_control(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        if needs_escape(c) {
            out.push_str(&format!("\\u{:04x}", u32::from(c)));
        } else {
            out.push(c);
        }
    }
    Cow::Owned(out)
}

/// A writer that escapes control characters on their way to `inner` (see the module docs).
/// A UTF-8 sequence split across two writes is joined before it is judged.
pub struct Escaping<W: Write> {
    inner: W,
    /// The start of a UTF-8 sequence whose end has not been written yet (at most 3 bytes).
    pending: Vec<u8>,
}

impl<W: Write> Escaping<W> {
    /// Wraps `inner`.
    pub fn new(inner: W) -> Self {
        Escaping {
            inner,
            pending: Vec::new(),
        }
    }

    fn write_valid(&mut self, text: &str) -> io::Result<()> {
        self.inner.write_all(escape_control(text).as_bytes())
    }

    fn write_invalid(&mut self, bytes: &[u8]) -> io::Result<()> {
        for b in bytes {
            write!(self.inner, "\\x{b:02x}")?;
        }
        Ok(())
    }
}

impl<W: Write> Write for Escaping<W> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let joined;
        let mut rest: &[u8] = if self.pending.is_empty() {
            buf
        } else {
            let mut bytes = std::mem::take(&mut self.pending);
            bytes.extend_from_slice(buf);
            joined = bytes;
            &joined
        };
        loop {
            match std::str::from_utf8(rest) {
                Ok(text) => {
                    self.write_valid(text)?;
                    break;
                }
                Err(e) => {
                    let (valid, after) = rest.split_at(e.valid_up_to());
                    // The first `valid_up_to` bytes are UTF-8, so the fallback never happens.
                    self.write_valid(std::str::from_utf8(valid).unwrap_or_default())?;
                    match e.error_len() {
                        Some(n) => {
                            self.write_invalid(&after[..n])?;
                            rest = &after[n..];
                        }
                        // An incomplete sequence at the end: wait for the next write.
                        None => {
                            self.pending = after.to_vec();
                            break;
                        }
                    }
                }
            }
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        self.inner.flush()
    }
}

impl<W: Write> Drop for Escaping<W> {
    fn drop(&mut self) {
        // A sequence that never got its end is not UTF-8.
        let pending = std::mem::take(&mut self.pending);
        let _ = self.write_invalid(&pending);
        let _ = self.inner.flush();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn through(pieces: &[&[u8]]) -> String {
        let mut out = Vec::new();
        {
            let mut w = Escaping::new(&mut out);
            for piece in pieces {
                w.write_all(piece).unwrap();
            }
        }
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn terminal_controls_are_escaped_text_is_not() {
        assert_eq!(
            through(&[b"ok \x1b[31mred\x1b]0;title\x07\r\x08x\x7f\n\ttab"]),
            "ok \\u001b[31mred\\u001b]0;title\\u0007\\u000d\\u0008x\\u007f\n\ttab"
        );
        assert_eq!(
            through(&["C1 \u{9b}31m, bidi \u{202e}abc\u{2069}, ü ✓".as_bytes()]),
            "C1 \\u009b31m, bidi \\u202eabc\\u2069, ü ✓"
        );
        assert_eq!(through(&[b"bad \xff\xfe end"]), "bad \\xff\\xfe end");
    }

    #[test]
    fn sequences_split_across_writes_are_joined() {
        let check = "✓".as_bytes();
        let csi = "\u{9b}".as_bytes();
        assert_eq!(
            through(&[&check[..1], &check[1..2], &check[2..], &csi[..1], &csi[1..]]),
            "✓\\u009b"
        );
        // Never completed: not UTF-8.
        assert_eq!(through(&[b"a", &check[..2]]), "a\\xe2\\x9c");
    }

    #[test]
    fn escaped_json_stays_json() {
        let value = serde_json::json!({ "comment": "\u{9b}2J\u{7f}" });
        let printed = through(&[serde_json::to_string(&value).unwrap().as_bytes()]);
        let back: serde_json::Value = serde_json::from_str(&printed).unwrap();
        assert_eq!(back, value);
    }
}
