//! The one HTTP request tally makes with a report: `POST {endpoint}/upload/{week}`.
//!
//! Promises: TLS through rustls, proxy variables (`HTTPS_PROXY`, `HTTP_PROXY`, `ALL_PROXY`,
//! `NO_PROXY`) honoured, a connect and a total timeout, no redirects followed (a report goes to
//! the pinned endpoint or nowhere), and a bounded read of the answer. The answer is classified
//! into exactly one [`PostOutcome`], which decides the report's fate.

use std::time::Duration;

/// How long to wait for a connection to the collector.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long one whole request may take, from connecting to reading the answer.
pub const TOTAL_TIMEOUT: Duration = Duration::from_secs(30);
/// The most of a collector's answer that is read (and kept as a refusal's reason).
pub const MAX_ANSWER_BYTES: u64 = 4096;

/// What became of one POST.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PostOutcome {
    /// 2xx: the collector has the report.
    Accepted { status: u16 },
    /// 4xx: the collector refused the report; sending it again would not help.
    Refused { status: u16, reason: String },
    /// 5xx, a redirect, or no answer at all: try again on a later run.
    Retry { reason: String },
}

/// An HTTP agent with tally's timeouts, proxy handling and no redirects.
pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT))
        .timeout_global(Some(TOTAL_TIMEOUT))
        .http_status_as_error(false)
        .max_redirects(0)
        .user_agent(concat!("tally/", env!("CARGO_PKG_VERSION")))
        .build()
        .into()
}

/// Posts `body` (a report's canonical JSON) to `url` and classifies the answer.
pub fn post_report(agent: &ureq::Agent, url: &str, body: &[u8]) -> PostOutcome {
    let response = match agent
        .post(url)
        .header("content-type", "application/json")
        .send(body)
    {
        Ok(response) => response,
        Err(err) => {
            return PostOutcome::Retry {
                reason: format!("no answer from {url}: {err}"),
            };
        }
    };
    let status = response.status().as_u16();
    let answer = read_answer(response);
    match status {
        200..=299 => PostOutcome::Accepted { status },
        400..=499 => PostOutcome::Refused {
            status,
            reason: if answer.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {answer}")
            },
        },
        300..=399 => PostOutcome::Retry {
            reason: format!("HTTP {status}: the collector redirects, which tally does not follow"),
        },
        _ => PostOutcome::Retry {
            reason: if answer.is_empty() {
                format!("HTTP {status}")
            } else {
                format!("HTTP {status}: {answer}")
            },
        },
    }
}

/// Reads at most [`MAX_ANSWER_BYTES`] of the answer as one printable line.
fn read_answer(mut response: ureq::http::Response<ureq::Body>) -> String {
    let text = response
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()
        .map(|bytes| String::from_utf8_lossy(&bytes).into_owned())
        .unwrap_or_default();
    printable_line(&text)
}

/// Collapses whitespace and drops control characters, so a collector's answer cannot mess up
/// a terminal or a `.reason` file.
pub fn printable_line(text: &str) -> String {
    text.split_whitespace()
        .map(|word| word.chars().filter(|c| !c.is_control()).collect::<String>())
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn answers_become_one_printable_line() {
        assert_eq!(
            printable_line("bad\n\x1b[31mreport\t x "),
            "bad [31mreport x"
        );
    }
}
