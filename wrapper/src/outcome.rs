//! Reading how a compile fared from a copy of its stderr: the diagnostics rustc writes as JSON
//! lines (`--error-format=json`, cargo's default) and the message of a compiler panic.
//!
//! Promises:
//! - Only a diagnostic's `code.code` and `level` are read; the JSON parser skips the message,
//!   the spans and the rendered text without keeping them, and the names counted come from
//!   `tally_grammar::outcome` (a fixed vocabulary), so nothing the compiler printed about the
//!   user's code can reach a counter file.
//! - Bounded: at most [`MAX_LINE`] bytes of one line and [`MAX_TOTAL`] bytes of a whole
//!   compile are looked at; a longer line is skipped, and past the total nothing more is read
//!   (the compile is then also counted as `rustc/diagnostics:capped`). Memory stays within
//!   one line's cap.
//! - Input of any shape (text, broken JSON, lines split across reads) is taken without panic.

use serde::Deserialize;
use tally_grammar::outcome::{CAPPED, diagnostic_name};

/// The longest line parsed. rustc's diagnostics are a few kilobytes, rendered text included;
/// one naming a huge type can be far longer, and is skipped.
pub const MAX_LINE: usize = 256 << 10;
/// The most stderr bytes of one compile that are looked at.
pub const MAX_TOTAL: usize = 32 << 20;

/// What a compile's stderr said, as counter names.
#[derive(Debug, Default)]
pub struct StderrReader {
    /// Parse JSON diagnostics (the compile was asked for them).
    json: bool,
    /// The line being gathered, while within [`MAX_LINE`].
    line: Vec<u8>,
    /// The current line went past [`MAX_LINE`]: skip it up to its newline.
    skipping: bool,
    /// Bytes looked at so far.
    seen: usize,
    capped: bool,
    /// The compiler said it panicked.
    pub panicked: bool,
    /// Diagnostic names with their counts, in first-seen order.
    counts: Vec<(String, u64)>,
}

/// The fields of a rustc JSON diagnostic that are read. rustc writes `$message_type`,
/// `message`, `code` and `level` first and the bulk (spans, children, the rendered text) after
/// them, so the parser stops as soon as it has the three it needs: on a crate with 1,000
/// warnings that skips most of 1.5 MB of JSON (bench/README.md, "Wrapper"). In any other order
/// the whole line is parsed as before.
#[derive(Default)]
struct Head<'a> {
    message_type: Option<&'a str>,
    /// `Some(None)`: the diagnostic has no code.
    code: Option<Option<&'a str>>,
    level: Option<&'a str>,
}

impl Head<'_> {
    fn complete(&self) -> bool {
        self.message_type.is_some() && self.code.is_some() && self.level.is_some()
    }
}

#[derive(Deserialize)]
struct Code<'a> {
    #[serde(borrow)]
    code: &'a str,
}

/// Fills a [`Head`] from a diagnostic's top-level object, stopping (with an error the caller
/// recognises by the head being complete) once it holds all three fields.
struct HeadSeed<'h, 'a>(&'h mut Head<'a>);

impl<'de> serde::de::DeserializeSeed<'de> for HeadSeed<'_, 'de> {
    type Value = ();

    fn deserialize<D: serde::Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_map(self)
    }
}

impl<'de> serde::de::Visitor<'de> for HeadSeed<'_, 'de> {
    type Value = ();

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a rustc diagnostic")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        use serde::de::Error as _;
        while let Some(key) = map.next_key::<&str>()? {
            match key {
                "$message_type" => self.0.message_type = Some(map.next_value()?),
                "code" => {
                    self.0.code = Some(map.next_value::<Option<Code<'de>>>()?.map(|c| c.code));
                }
                "level" => self.0.level = Some(map.next_value()?),
                _ => {
                    map.next_value::<serde::de::IgnoredAny>()?;
                }
            }
            if self.0.complete() {
                return Err(A::Error::custom("the rest is not read"));
            }
        }
        Ok(())
    }
}

/// What rustc prints when it panics (an internal compiler error), on its own line as text,
/// whatever the error format.
const PANIC_MESSAGE: &[u8] = b"the compiler unexpectedly panicked";

impl StderrReader {
    pub fn new(json: bool) -> StderrReader {
        StderrReader {
            json,
            ..StderrReader::default()
        }
    }

    /// Takes the next bytes of stderr, as they were read.
    pub fn feed(&mut self, mut chunk: &[u8]) {
        if self.capped {
            return;
        }
        if self.seen + chunk.len() > MAX_TOTAL {
            chunk = &chunk[..MAX_TOTAL - self.seen];
            self.capped = true;
        }
        self.seen += chunk.len();
        while let Some(end) = memchr::memchr(b'\n', chunk) {
            self.take(&chunk[..end]);
            if !self.skipping {
                let line = std::mem::take(&mut self.line);
                self.line_done(&line);
                self.line = line;
            }
            self.line.clear();
            self.skipping = false;
            chunk = &chunk[end + 1..];
        }
        self.take(chunk);
    }

    /// Adds part of a line, or starts skipping it when it gets too long.
    fn take(&mut self, part: &[u8]) {
        if self.skipping {
            return;
        }
        if self.line.len() + part.len() > MAX_LINE {
            self.skipping = true;
            self.line = Vec::new();
        } else {
            self.line.extend_from_slice(part);
        }
    }

    fn line_done(&mut self, line: &[u8]) {
        if self.json && line.starts_with(b"{\"$message_type\":\"diagnostic\"") {
            use serde::de::DeserializeSeed;
            let mut head = Head::default();
            let parsed = HeadSeed(&mut head)
                .deserialize(&mut serde_json::Deserializer::from_slice(line))
                .is_ok();
            if (parsed || head.complete())
                && head.message_type == Some("diagnostic")
                && let Some(name) = diagnostic_name(head.code.flatten(), head.level.unwrap_or(""))
            {
                self.add(name);
            }
        } else if !line.starts_with(b"{") && contains(line, PANIC_MESSAGE) {
            self.panicked = true;
        }
    }

    fn add(&mut self, name: String) {
        match self.counts.iter_mut().find(|(n, _)| *n == name) {
            Some((_, count)) => *count += 1,
            None => self.counts.push((name, 1)),
        }
    }

    /// The end of stderr: the counter names with how often each occurred.
    pub fn finish(mut self) -> Vec<(String, u64)> {
        if !self.skipping && !self.line.is_empty() && !self.capped {
            let line = std::mem::take(&mut self.line);
            self.line_done(&line);
        }
        if self.capped {
            self.add(CAPPED.to_string());
        }
        self.counts
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    memchr::memmem::find(haystack, needle).is_some()
}

#[cfg(test)]
mod tests {
    use super::*;

    const E0308: &str = r#"{"$message_type":"diagnostic","message":"mismatched types","code":{"code":"E0308","explanation":"long text"},"level":"error","spans":[{"file_name":"/home/qx/secret.rs","byte_start":1,"byte_end":2,"line_start":1,"line_end":1,"column_start":1,"column_end":2,"is_primary":true,"text":[{"text":"let qx_token = \"sk_live_qx\";","highlight_start":1,"highlight_end":2}],"label":null,"suggested_replacement":null,"suggestion_applicability":null,"expansion":null}],"children":[],"rendered":"error[E0308]: mismatched types\n"}"#;
    const UNUSED: &str = r#"{"$message_type":"diagnostic","message":"unused variable: `qx_secret`","code":{"code":"unused_variables","explanation":null},"level":"warning","spans":[],"children":[{"message":"note","code":null,"level":"note","spans":[],"children":[],"rendered":null}],"rendered":"warning: unused variable\n"}"#;
    const CLIPPY: &str = r#"{"$message_type":"diagnostic","message":"unneeded `return` statement","code":{"code":"clippy::needless_return","explanation":null},"level":"warning","spans":[],"children":[],"rendered":"r"}"#;
    const SUMMARY: &str = r#"{"$message_type":"diagnostic","message":"aborting due to 1 previous error","code":null,"level":"error","spans":[],"children":[],"rendered":"error: aborting\n"}"#;
    const ARTIFACT: &str =
        r#"{"$message_type":"artifact","artifact":"/t/libqx.rmeta","emit":"metadata"}"#;

    fn read(json: bool, text: &str, chunk: usize) -> (Vec<(String, u64)>, bool) {
        let mut reader = StderrReader::new(json);
        for part in text.as_bytes().chunks(chunk) {
            reader.feed(part);
        }
        let panicked = reader.panicked;
        (reader.finish(), panicked)
    }

    #[test]
    fn counts_codes_and_lints_however_the_lines_are_split() {
        let text = [
            E0308,
            ARTIFACT,
            UNUSED,
            CLIPPY,
            UNUSED,
            SUMMARY,
            "plain text",
        ]
        .join("\n");
        for chunk in [1, 7, 64, 100_000] {
            let (counts, panicked) = read(true, &text, chunk);
            assert_eq!(
                counts,
                [
                    ("rustc/error:E0308".to_string(), 1),
                    ("rustc/lint:unused_variables:warn".to_string(), 2),
                    ("clippy/lint:needless_return:warn".to_string(), 1),
                ],
                "chunk {chunk}"
            );
            assert!(!panicked);
            assert!(counts.iter().all(|(n, _)| !n.contains("qx")));
        }
        // Without JSON diagnostics nothing is parsed.
        assert_eq!(read(false, &text, 64).0, []);
    }

    #[test]
    fn notices_a_compiler_panic() {
        let text = "thread 'rustc' panicked at x.rs:1:1\n\nerror: the compiler unexpectedly panicked. This is a bug\n";
        assert!(read(true, text, 5).1);
        assert!(read(false, text, 5).1);
        // A diagnostic quoting the words is not a panic.
        let quoted = r#"{"$message_type":"diagnostic","message":"the compiler unexpectedly panicked","code":null,"level":"warning"}"#;
        assert!(!read(true, quoted, 5).1);
    }

    #[test]
    fn long_lines_are_skipped_and_the_total_is_capped() {
        let long = format!(
            r#"{{"$message_type":"diagnostic","message":"{}","code":{{"code":"E0308"}},"level":"error"}}"#,
            "x".repeat(MAX_LINE)
        );
        let text = [long.as_str(), UNUSED].join("\n");
        assert_eq!(
            read(true, &text, 4096).0,
            [("rustc/lint:unused_variables:warn".to_string(), 1)]
        );
        let mut reader = StderrReader::new(true);
        let line = format!("{UNUSED}\n");
        let lines = MAX_TOTAL / line.len() + 10;
        for _ in 0..lines {
            reader.feed(line.as_bytes());
        }
        let counts = reader.finish();
        assert_eq!(counts[0].0, "rustc/lint:unused_variables:warn");
        assert_eq!(counts[0].1, (MAX_TOTAL / line.len()) as u64);
        assert_eq!(counts[1], (CAPPED.to_string(), 1));
    }

    #[test]
    fn broken_input_is_ignored() {
        for text in [
            "{\"$message_type\":\"diagnostic\",\"code\":",
            "{\"$message_type\":\"diagnostic\",\"code\":{\"code\":5},\"level\":\"error\"}",
            "\u{0}\u{ff}garbage{{{",
        ] {
            assert_eq!(read(true, text, 3).0, []);
        }
    }
}
