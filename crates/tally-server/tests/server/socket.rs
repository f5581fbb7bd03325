//! The app on a real loopback socket through `serve::serve`: bounded connections, header and
//! body read timeouts, and a real HTTP client (`ureq`), plus the client's own config fetch.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::support::*;
use tally_server::serve::Limits;
use tally_test_support::background::{background_runtime, serve_router_on};
use tally_test_support::raw_http;

/// Starts the server on 127.0.0.1 in a background runtime; returns its address.
fn start(
    collector: &Collector,
    store: &std::path::Path,
    limits: Limits,
    body_timeout: Duration,
) -> (SocketAddr, tokio::runtime::Runtime) {
    let runtime = background_runtime();
    let (json, sig) = collector.config_bytes();
    let key = collector.public_key();
    let store = store.to_path_buf();
    let app = runtime.block_on(async move {
        let options = tally_server::Options {
            threshold: 1,
            clock: tally_server::clock::Clock::Fixed(today()),
            body_timeout,
            ..tally_server::Options::default()
        };
        let store = tally_server::store::Store::open(store.to_str().unwrap()).unwrap();
        let state = tally_server::AppState::open(store, json, sig, &key, options)
            .await
            .unwrap();
        tally_server::app(state)
    });
    let addr = serve_router_on(&runtime, app, limits);
    (addr, runtime)
}

#[test]
fn uploads_over_loopback_and_the_client_fetches_the_config() {
    let collector = Collector::new();
    let store = tempfile::tempdir().unwrap();
    let (addr, _runtime) = start(
        &collector,
        store.path(),
        Limits::default(),
        Duration::from_secs(5),
    );
    let base = format!("http://{addr}");
    let agent = agent();
    let r = report(0.42, "1.95.0", &[("cargo/invocations", 5)]);
    assert_eq!(
        post_upload(&agent, &base, &body(&r)),
        (200, "stored\n".to_string())
    );
    let (status, refused) = post_upload(&agent, &base, b"{}");
    assert_eq!(status, 400);
    assert!(
        refused.starts_with("report is not a valid report"),
        "{refused}"
    );

    // The real client (tally-config) fetches and verifies the served config.
    let client_dir = tempfile::tempdir().unwrap();
    let key_text = std::fs::read_to_string(&collector.public_key).unwrap();
    let endpoint = tally_config::endpoint::Endpoint::new(&base, &[key_text]).unwrap();
    let verified =
        tally_config::fetch::fetch(&endpoint, client_dir.path(), today(), &Default::default())
            .unwrap();
    assert_eq!(verified.config.version, 1);

    // The store never holds the client's address.
    assert_no_client_address_stored(store.path());
}

#[test]
fn cuts_off_clients_that_trickle_headers_or_bodies() {
    let collector = Collector::new();
    let store = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_connections: 16,
        header_timeout: Duration::from_millis(300),
        ..Limits::default()
    };
    let (addr, _runtime) = start(&collector, store.path(), limits, Duration::from_millis(300));

    // Headers one byte at a time, never finished: the connection is closed.
    let mut slow = TcpStream::connect(addr).unwrap();
    slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    let began = Instant::now();
    let mut closed = false;
    for byte in b"POST /upload/2026-11-16 HTTP/1.1\r\nHost: x\r\nX-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa" {
        if slow.write_all(&[*byte]).is_err() {
            closed = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
        if began.elapsed() > Duration::from_secs(3) {
            break;
        }
    }
    if !closed {
        let mut rest = Vec::new();
        // The server closes: read returns (0 bytes, or a 408 and then EOF), well before 5 s.
        let _ = slow.read_to_end(&mut rest);
    }
    assert!(
        began.elapsed() < Duration::from_secs(4),
        "a trickling client was not cut off"
    );

    // A body that never arrives: 408 after the body timeout.
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stalled
        .write_all(
            b"POST /upload/2026-11-16 HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{\"week\"",
        )
        .unwrap();
    let began = Instant::now();
    let answer = raw_http::read_answer(&mut stalled);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(began.elapsed() < Duration::from_secs(3));
    assert!(stored_reports(store.path()).is_empty());
}

/// Sends `request` on a new connection and returns the answer's status code (0 if the server
/// closed the connection without one).
fn status_of(addr: SocketAddr, request: &[u8]) -> u16 {
    raw_http::status(&raw_http::exchange(addr, request))
}

/// HTTP-level tricks (the audit's 31): path traversal in the week, encoded slashes, non-dates,
/// oversized and contradictory bodies, oversized heads. Each gets a 4xx, nothing is stored,
/// nothing is written outside the store, and the server keeps answering.
#[test]
fn http_level_tricks_get_a_4xx_and_touch_nothing() {
    let collector = Collector::new();
    let outer = tempfile::tempdir().unwrap();
    let store = outer.path().join("store");
    let (addr, _runtime) = start(
        &collector,
        &store,
        Limits::default(),
        Duration::from_secs(1),
    );
    let good = body(&report(0.5, "1.95.0", &[("cargo/invocations", 1)]));
    let post = |path: &str| {
        let mut request = format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
            good.len()
        )
        .into_bytes();
        request.extend_from_slice(&good);
        request
    };
    let get = |path: &str| {
        format!("GET {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n").into_bytes()
    };
    let raw = |head: &str, body: &[u8]| {
        let mut request = head.as_bytes().to_vec();
        request.extend_from_slice(body);
        request
    };
    let chunked = {
        let mut body = Vec::new();
        for _ in 0..150 {
            body.extend_from_slice(b"400\r\n");
            body.extend_from_slice(&[b' '; 1024]);
            body.extend_from_slice(b"\r\n");
        }
        body.extend_from_slice(b"0\r\n\r\n");
        body
    };
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("dot-dot in the week", post("/upload/..")),
        ("encoded slashes", post("/upload/..%2F..%2Fescape")),
        (
            "encoded dots and slashes",
            post("/upload/%2e%2e%2f%2e%2e%2fescape"),
        ),
        (
            "a day, then a climb",
            post("/upload/2026-11-16%2F..%2F..%2Fescape"),
        ),
        ("a plain climb", post("/upload/../../escape")),
        ("two segments", post("/upload/2026-11-16/../2026-11-09")),
        ("backslashes", post("/upload/..%5C..%5Cescape")),
        ("a NUL", post("/upload/2026-11-16%00")),
        ("full-width dots", post("/upload/%EF%BC%8E%EF%BC%8E")),
        ("month 13", post("/upload/2026-13-01")),
        ("February 30", post("/upload/2026-02-30")),
        ("no dashes", post("/upload/20261116")),
        ("a time", post("/upload/2026-11-16T00:00:00Z")),
        ("a signed year", post("/upload/+2026-11-16")),
        ("an empty week", post("/upload/")),
        ("a URL week unlike the report's", post("/upload/2026-11-09")),
        ("a GET of the upload", get(&format!("/upload/{WEEK}"))),
        ("an API climb", get("/api/weeks/..%2F..%2Fconfigs/cargo")),
        (
            "an API program climb",
            get(&format!("/api/weeks/{WEEK}/..%2F..%2Fconfigs%2F1.json")),
        ),
        ("an API non-date", get("/api/weeks/yesterday/cargo")),
        ("a page climb", get("/programs/..%2F..%2Fconfigs%2F1.json")),
        ("a file under the store", get("/configs/1.json")),
        (
            "a declared body over the limit",
            raw(
                "POST /upload/2026-11-16 HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n",
                b"{",
            ),
        ),
        (
            "a chunked body over the limit",
            raw(
                "POST /upload/2026-11-16 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n",
                &chunked,
            ),
        ),
        (
            "two different lengths",
            raw(
                &format!(
                    "POST /upload/2026-11-16 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nContent-Length: 5\r\n\r\n",
                    good.len()
                ),
                &good,
            ),
        ),
        (
            "a length and chunked",
            raw(
                &format!(
                    "POST /upload/2026-11-16 HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nTransfer-Encoding: chunked\r\n\r\n",
                    good.len()
                ),
                &good,
            ),
        ),
        (
            "a negative length",
            raw(
                "POST /upload/2026-11-16 HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n",
                b"",
            ),
        ),
        (
            "a body cut short",
            raw(
                &format!(
                    "POST /upload/2026-11-16 HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n",
                    good.len()
                ),
                &good[..good.len() / 2],
            ),
        ),
        (
            "a huge header",
            raw(
                &format!(
                    "GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: {}\r\n\r\n",
                    "a".repeat(600_000)
                ),
                b"",
            ),
        ),
        (
            "a huge path",
            get(&format!("/healthz?{}", "a".repeat(600_000))),
        ),
        (
            "not HTTP",
            b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03\r\n\r\n".to_vec(),
        ),
    ];
    for (what, request) in &cases {
        let status = status_of(addr, request);
        assert!(
            (400..500).contains(&status),
            "{what}: answered {status}, not a 4xx"
        );
    }
    eprintln!("{} HTTP-level tricks, each answered 4xx", cases.len());
    assert!(stored_reports(&store).is_empty());
    let outside: Vec<_> = std::fs::read_dir(outer.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(outside, ["store"], "something was written beside the store");
    assert_eq!(status_of(addr, &post(&format!("/upload/{WEEK}"))), 200);
}
