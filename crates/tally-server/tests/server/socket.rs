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

/// Every slot busy with a request being handled: a further client waits in the backlog until
/// one is free. Slots held by idle connections are taken back for it instead.
#[test]
fn bounds_concurrent_connections() {
    let collector = Collector::new();
    let store = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_connections: 2,
        header_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let (addr, _runtime) = start(&collector, store.path(), limits, Duration::from_secs(5));
    // Two uploads whose bodies are still coming take both slots.
    let busy = || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(
                b"POST /upload/2026-11-16 HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{\"week\"",
            )
            .unwrap();
        stream
    };
    let first = busy();
    let second = busy();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = TcpStream::connect(addr).unwrap(); // queued in the backlog, not served
    third
        .set_read_timeout(Some(Duration::from_millis(800)))
        .unwrap();
    third
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut buf = [0u8; 64];
    let waited = third.read(&mut buf);
    assert!(
        waited.is_err(),
        "a third connection was served beyond the limit of two"
    );
    // Freeing a slot lets it through.
    drop(first);
    third
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut answer = String::new();
    third.read_to_string(&mut answer).unwrap();
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    drop(second);

    // Two connections that send nothing hold both slots: a new client gets in by shedding one.
    let mut idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
    std::thread::sleep(Duration::from_millis(100));
    let began = Instant::now();
    assert!(probe(addr, Duration::from_secs(5)).starts_with("HTTP/1.1 200"));
    assert!(began.elapsed() < Duration::from_secs(3));
    let mut closed = 0;
    for stream in &mut idle {
        stream
            .set_read_timeout(Some(Duration::from_millis(200)))
            .unwrap();
        if matches!(stream.read(&mut buf), Ok(0)) {
            closed += 1;
        }
    }
    assert!(closed >= 1, "no idle connection was closed to make room");
}

/// `GET /healthz` on a new connection; the whole answer, or what arrived within `timeout`.
fn probe(addr: SocketAddr, timeout: Duration) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_read_timeout(Some(timeout)).unwrap();
    stream
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
        .unwrap();
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// A client that pipelines `GET /config.json` and never reads an answer, writing until its
/// socket takes no more for `patience` (at most 32 MiB). Returns it and the requests sent.
fn stalled_pipeliner(addr: SocketAddr, patience: Duration) -> (TcpStream, usize) {
    const REQUEST: &[u8] = b"GET /config.json HTTP/1.1\r\nHost: x\r\n\r\n";
    let mut stream = TcpStream::connect(addr).unwrap();
    stream.set_write_timeout(Some(patience)).unwrap();
    let chunk = REQUEST.repeat(256);
    let mut sent = 0;
    while sent < 32 << 20 {
        // Continue where the last write stopped: the stream stays a sequence of whole requests.
        match stream.write(&chunk[sent % chunk.len()..]) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    (stream, sent / REQUEST.len())
}

/// Clients that pipeline requests and never read the answers, more of them than there are
/// connection slots, do not keep a health probe out, even with write and stall timeouts far
/// longer than the test: the accept loop sheds stalled connections.
#[test]
fn stalled_readers_do_not_keep_health_probes_out() {
    let collector = Collector::new();
    let store = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_connections: 8,
        header_timeout: Duration::from_secs(60),
        write_timeout: Duration::from_secs(60),
        stall_timeout: Duration::from_secs(60),
    };
    let (addr, _runtime) = start(&collector, store.path(), limits, Duration::from_secs(5));
    let clients: Vec<_> = (0..12)
        .map(|_| std::thread::spawn(move || stalled_pipeliner(addr, Duration::from_millis(500))))
        .collect();
    let clients: Vec<(TcpStream, usize)> = clients.into_iter().map(|c| c.join().unwrap()).collect();
    let requests: usize = clients.iter().map(|(_, n)| n).sum();
    assert!(
        requests > 12 * 1000,
        "only {requests} requests were pipelined"
    );
    for round in 0..3 {
        let began = Instant::now();
        let answer = probe(addr, Duration::from_secs(10));
        let waited = began.elapsed();
        assert!(
            answer.starts_with("HTTP/1.1 200") && answer.ends_with("ok\n"),
            "probe {round}: {answer:?} after {waited:?}"
        );
        assert!(
            waited < Duration::from_secs(3),
            "probe {round} waited {waited:?}"
        );
        eprintln!(
            "12 clients pipelined {requests} requests unread; probe {round} answered in {waited:?}"
        );
    }
    drop(clients);
}

/// A response nobody reads is abandoned after the write timeout, freeing its slot, although the
/// stall timeout is far away.
#[test]
fn a_response_nobody_reads_is_abandoned_after_the_write_timeout() {
    let collector = Collector::new();
    let store = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_connections: 8,
        header_timeout: Duration::from_secs(60),
        write_timeout: Duration::from_millis(500),
        stall_timeout: Duration::from_secs(60),
    };
    let (addr, _runtime) = start(&collector, store.path(), limits, Duration::from_secs(5));
    let (mut stream, requests) = stalled_pipeliner(addr, Duration::from_millis(300));
    // Five times the write timeout: room for a busy machine.
    std::thread::sleep(Duration::from_millis(2500));
    // Had the server kept the connection, reading now would let it answer every request and
    // then wait for more (the read would time out); it closed it instead.
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let began = Instant::now();
    let mut answers = Vec::new();
    let mut buf = vec![0u8; 1 << 16];
    let ended = loop {
        match stream.read(&mut buf) {
            Ok(0) => break "end of stream",
            Ok(n) => answers.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => break "reset",
            Err(e) => panic!(
                "the connection is still open after {:?}: {e}",
                began.elapsed()
            ),
        }
    };
    let answered = answers.windows(12).filter(|w| w == b"HTTP/1.1 200").count();
    eprintln!("{ended}: {answered} of {requests} pipelined requests answered");
    assert!(
        answered < requests,
        "{ended}: all {requests} requests were answered"
    );
}

/// A connection that moves no byte while no request of it is handled is closed after the stall
/// timeout, whatever else hyper would wait for (here the header timeout is far longer): one
/// that never sends a request, and one that stops after its first.
#[test]
fn a_connection_that_moves_nothing_is_closed_after_the_stall_timeout() {
    let collector = Collector::new();
    let store = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_connections: 8,
        header_timeout: Duration::from_secs(60),
        write_timeout: Duration::from_secs(60),
        stall_timeout: Duration::from_millis(500),
    };
    let (addr, _runtime) = start(&collector, store.path(), limits, Duration::from_secs(60));
    let silent = TcpStream::connect(addr).unwrap();
    let mut quiet = TcpStream::connect(addr).unwrap();
    quiet
        .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let began = Instant::now();
    for (what, mut stream) in [("silent", silent), ("quiet after a request", quiet)] {
        stream
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut answer = Vec::new();
        let result = stream.read_to_end(&mut answer);
        let waited = began.elapsed();
        assert!(result.is_ok(), "{what}: {result:?} after {waited:?}");
        assert!(
            waited < Duration::from_secs(3),
            "{what}: still open after {waited:?}"
        );
    }
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
