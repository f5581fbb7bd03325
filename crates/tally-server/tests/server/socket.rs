//! The app on a real loopback socket through `serve::serve`: bounded connections, header and
//! body read timeouts, and a real HTTP client (`ureq`), plus the client's own config fetch.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use crate::common::*;
use tally_server::serve::{Limits, serve};

/// Starts the server on 127.0.0.1 in a background runtime; returns its address.
fn start(
    collector: &Collector,
    store: &std::path::Path,
    limits: Limits,
    body_timeout: Duration,
) -> (SocketAddr, tokio::runtime::Runtime) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (json, sig) = collector.config_bytes();
    let key = collector.public_key();
    let store = store.to_path_buf();
    let addr = runtime.block_on(async move {
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
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(serve(
            listener,
            tally_server::app(state),
            limits,
            std::future::pending(),
            Duration::ZERO,
        ));
        addr
    });
    (addr, runtime)
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
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
    let mut response = agent
        .post(&format!("{base}/upload/{WEEK}"))
        .send(&body(&r)[..])
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(response.body_mut().read_to_string().unwrap(), "stored\n");
    let mut refused = agent
        .post(&format!("{base}/upload/{WEEK}"))
        .send(&b"{}"[..])
        .unwrap();
    assert_eq!(refused.status(), 400);
    assert!(
        refused
            .body_mut()
            .read_to_string()
            .unwrap()
            .starts_with("report is not a valid report")
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
    for file in files_under(store.path()) {
        let bytes = std::fs::read(&file).unwrap();
        assert!(
            !String::from_utf8_lossy(&bytes).contains("127.0.0.1"),
            "{} holds a client address",
            file.display()
        );
    }
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
    let mut answer = Vec::new();
    let _ = stalled.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(began.elapsed() < Duration::from_secs(3));
    assert!(stored_reports(store.path()).is_empty());
}

/// Sends `request` on a new connection and returns the answer's status code (0 if the server
/// closed the connection without one).
fn status_of(addr: SocketAddr, request: &[u8]) -> u16 {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    // The server may answer and close before all of an oversized request is written.
    let _ = stream.write_all(request);
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    let answer = String::from_utf8_lossy(&answer);
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
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
