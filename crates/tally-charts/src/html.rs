//! HTML building blocks shared by every page: escaping, URL path segments, count cells, and the
//! page shell.
//!
//! Every string that did not come from this crate (counter names, program names, versions,
//! week labels) goes through [`escape`] before it reaches HTML or SVG, in text and in attribute
//! values alike. The page shell carries a Content-Security-Policy that forbids every network
//! fetch and every script, so a page rendered here can neither load nor run anything foreign.

use std::fmt::Write as _;

/// Escapes text for HTML and SVG, both in element content and in double- or single-quoted
/// attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            // Control characters are not allowed in XML 1.0 (SVG); drop them rather than break
            // the document.
            c if (c as u32) < 0x20 && !matches!(c, '\n' | '\t' | '\r') => out.push('\u{FFFD}'),
            c => out.push(c),
        }
    }
    out
}

/// Percent-encodes `segment` for use as one URL path segment (every byte but RFC 3986's
/// unreserved characters), so a name can never add a path level, a query or a fragment.
pub fn path_segment(segment: &str) -> String {
    // `.` and `..` are unreserved but mean "this level" and "up one level" as whole segments.
    if segment == "." || segment == ".." {
        return "%2E".repeat(segment.len());
    }
    let mut out = String::with_capacity(segment.len());
    for byte in segment.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'.' | b'_' | b'~') {
            out.push(byte as char);
        } else {
            let _ = write!(out, "%{byte:02X}");
        }
    }
    out
}

/// The policy every page carries: nothing may be fetched from anywhere, no script runs; only the
/// inline stylesheet applies.
// SAFETY: not Rust `unsafe`: `'unsafe-inline'` is CSP's keyword for inline styles (header text).
pub const CONTENT_SECURITY_POLICY: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; base-uri 'none'; form-action 'none'";

const STYLE: &str = r#"
:root { color-scheme: light; --fg: #1b1f24; --muted: #57606a; --line: #d0d7de; --bg: #ffffff; --panel: #f6f8fa; --accent: #0969da; }
* { box-sizing: border-box; }
body { margin: 0 auto; max-width: 72rem; padding: 0.75rem; font: 15px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; color: var(--fg); background: var(--bg); }
header { border-bottom: 1px solid var(--line); margin-bottom: 1rem; }
h1 { font-size: 1.4rem; margin: 0.3rem 0; }
h2 { font-size: 1.15rem; margin: 1.4rem 0 0.4rem; }
h3 { font-size: 1rem; margin: 1rem 0 0.3rem; word-break: break-all; }
p.note, .muted { color: var(--muted); font-size: 0.9rem; }
a { color: var(--accent); }
.grid { display: grid; grid-template-columns: repeat(auto-fill, minmax(min(100%, 26rem), 1fr)); gap: 0.9rem; }
figure.chart { margin: 0; padding: 0.6rem; background: var(--panel); border: 1px solid var(--line); border-radius: 6px; min-width: 0; }
figure.chart figcaption { font-weight: 600; font-size: 0.92rem; word-break: break-all; margin-bottom: 0.3rem; }
svg.chart { display: block; width: 100%; height: auto; }
svg.chart text { font: 11px system-ui, sans-serif; fill: var(--muted); }
svg.chart .grid-line { stroke: var(--line); stroke-width: 1; }
svg.chart .axis { stroke: var(--muted); stroke-width: 1; }
svg.chart .band { stroke: none; }
svg.chart .line { fill: none; stroke-width: 2; }
ul.legend { list-style: none; margin: 0.3rem 0 0; padding: 0; display: flex; flex-wrap: wrap; gap: 0.2rem 0.9rem; font-size: 0.85rem; }
ul.legend li { display: flex; align-items: center; gap: 0.3rem; word-break: break-all; }
ul.legend .swatch { display: inline-block; width: 0.8rem; height: 0.8rem; border-radius: 2px; flex: none; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 0.9rem; }
th, td { border-bottom: 1px solid var(--line); padding: 0.25rem 0.6rem; text-align: left; white-space: nowrap; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
.simulated { background: #fff8c5; border: 1px solid #d4a72c; border-radius: 6px; padding: 0.4rem 0.7rem; font-weight: 600; }
nav.programs { display: flex; flex-wrap: wrap; gap: 0.4rem 1rem; }
"#;

/// A whole HTML document: `title` (escaped here) and `body` (already HTML).
pub fn page(title: &str, body: &str) -> String {
    let mut out = String::with_capacity(body.len() + STYLE.len() + 512);
    out.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    let _ = writeln!(
        out,
        "<meta http-equiv=\"Content-Security-Policy\" content=\"{}\">",
        escape(CONTENT_SECURITY_POLICY)
    );
    let _ = writeln!(out, "<title>{}</title>", escape(title));
    // An empty data: icon keeps the browser from asking the server for /favicon.ico.
    out.push_str("<link rel=\"icon\" href=\"data:,\">\n");
    let _ = writeln!(out, "<style>{STYLE}</style>\n</head>\n<body>");
    out.push_str(body);
    out.push_str("</body>\n</html>\n");
    out
}

/// A table cell holding a count, or a muted dash where there is none.
pub fn count_cell(out: &mut String, count: Option<u64>) {
    match count {
        Some(n) => {
            let _ = write!(out, "<td class=\"num\">{n}</td>");
        }
        None => out.push_str("<td class=\"num muted\">–</td>"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markup_and_quotes() {
        assert_eq!(
            escape("<script>alert('x' & \"y\")</script>"),
            "&lt;script&gt;alert(&#39;x&#39; &amp; &quot;y&quot;)&lt;/script&gt;"
        );
        assert_eq!(escape("a\u{0}b"), "a\u{FFFD}b");
    }

    #[test]
    fn path_segments_cannot_escape_their_level() {
        assert_eq!(path_segment("cargo-fmt"), "cargo-fmt");
        assert_eq!(path_segment("../x?y#z"), "..%2Fx%3Fy%23z");
        assert_eq!(path_segment("é"), "%C3%A9");
        assert_eq!(path_segment(".."), "%2E%2E");
    }
}
