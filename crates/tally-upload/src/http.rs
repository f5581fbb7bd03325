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
    agent_with_timeout(TOTAL_TIMEOUT)
}

/// [`agent`] with another total timeout per request (tests use a short one).
pub fn agent_with_timeout(total: Duration) -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_connect(Some(CONNECT_TIMEOUT.min(total)))
        .timeout_global(Some(total))
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
    use std::io::{Read, Write};
    use std::net::TcpListener;

    use super::*;

    /// Serves one connection: reads the request, then answers with `answer` (or nothing).
    fn one_shot(answer: Option<&'static str>) -> (String, std::thread::JoinHandle<Vec<u8>>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!(
            "http://{}/upload/2026-11-16",
            listener.local_addr().unwrap()
        );
        let thread = std::thread::spawn(move || {
            let (mut stream, _) = listener.accept().unwrap();
            stream
                .set_read_timeout(Some(Duration::from_millis(500)))
                .unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            // Until the body has arrived (the client sends it at once) or the read times out.
            while let Ok(n) = stream.read(&mut buf) {
                if n == 0 {
                    break;
                }
                request.extend_from_slice(&buf[..n]);
                if request.ends_with(b"}") {
                    break;
                }
            }
            match answer {
                Some(answer) => stream.write_all(answer.as_bytes()).unwrap(),
                None => std::thread::sleep(Duration::from_secs(3)),
            }
            request
        });
        (url, thread)
    }

    fn answer(status: &str, body: &str) -> &'static str {
        format!(
            "HTTP/1.1 {status}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
            body.len()
        )
        .leak()
    }

    #[test]
    fn classifies_answers() {
        let cases = [
            (answer("200 OK", "stored"), "accepted"),
            (answer("400 Bad Request", "counter\nnot wanted"), "refused"),
            (answer("503 Unavailable", "later"), "retry"),
            (answer("302 Found", ""), "retry"),
        ];
        for (reply, expected) in cases {
            let (url, server) = one_shot(Some(reply));
            let outcome = post_report(&agent(), &url, b"{\"week\":1}");
            let request = String::from_utf8(server.join().unwrap()).unwrap();
            assert!(
                request.starts_with("POST /upload/2026-11-16 HTTP/1.1"),
                "{request}"
            );
            assert!(
                request.ends_with("{\"week\":1}"),
                "the exact body: {request}"
            );
            let got = match &outcome {
                PostOutcome::Accepted { status: 200 } => "accepted",
                PostOutcome::Refused {
                    status: 400,
                    reason,
                } => {
                    assert_eq!(reason, "HTTP 400: counter not wanted");
                    "refused"
                }
                PostOutcome::Retry { .. } => "retry",
                other => panic!("{other:?}"),
            };
            assert_eq!(got, expected, "{reply:?}: {outcome:?}");
        }
    }

    #[test]
    fn a_collector_that_never_answers_does_not_hang_the_run() {
        let (url, server) = one_shot(None);
        let started = std::time::Instant::now();
        let outcome = post_report(&agent_with_timeout(Duration::from_secs(1)), &url, b"{}");
        assert!(matches!(outcome, PostOutcome::Retry { .. }), "{outcome:?}");
        assert!(started.elapsed() < Duration::from_secs(3));
        server.join().unwrap();
    }

    #[test]
    fn nobody_listening_means_retry() {
        let url = {
            let listener = TcpListener::bind("127.0.0.1:0").unwrap();
            format!(
                "http://{}/upload/2026-11-16",
                listener.local_addr().unwrap()
            )
        };
        let outcome = post_report(&agent(), &url, b"{}");
        assert!(
            matches!(&outcome, PostOutcome::Retry { reason } if reason.starts_with("no answer from")),
            "{outcome:?}"
        );
    }

    #[test]
    fn answers_become_one_printable_line() {
        assert_eq!(
            printable_line("bad\n\x1b[31mreport\t x "),
            "bad [31mreport x"
        );
    }
}
