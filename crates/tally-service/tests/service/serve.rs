//! `serve` on a real loopback socket, with a small router standing in for a role's app
//! (`tally-server`'s own socket tests run the collector's app through it): bounded
//! connections, shedding of stalled ones, write and stall timeouts, and the body deadline.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::routing::{get, post};
use tally_service::serve::{Limits, with_body_deadline};
use tally_test_support::background::serve_router;
use tally_test_support::raw_http;

/// A role's app in miniature: a health probe, a response worth pipelining, and an endpoint
/// that takes a body (read whole, within `body_timeout`, by `with_body_deadline`).
fn app(body_timeout: Duration) -> Router {
    let router = Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/config.json", get(|| async { "x".repeat(2048) }))
        .route("/echo", post(|body: Bytes| async move { body }));
    with_body_deadline(router, body_timeout, 1 << 20)
}

/// Starts `serve` on 127.0.0.1 in a background runtime; returns its address.
fn start(limits: Limits, body_timeout: Duration) -> (SocketAddr, tokio::runtime::Runtime) {
    serve_router(app(body_timeout), limits)
}

/// Every slot busy with a request being handled: a further client waits in the backlog until
/// one is free. Slots held by idle connections are taken back for it instead.
#[test]
fn bounds_concurrent_connections() {
    let limits = Limits {
        max_connections: 2,
        header_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let (addr, _runtime) = start(limits, Duration::from_secs(5));
    // Two uploads whose bodies are still coming take both slots.
    let busy = || {
        let mut stream = TcpStream::connect(addr).unwrap();
        stream
            .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\n{\"week\"")
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
    let request = b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n";
    raw_http::exchange_within(addr, request, timeout)
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

/// Eight connection slots and every timeout (header, write, stall) a minute: far longer than
/// any test here, so only the one a test shortens can act.
fn patient_limits() -> Limits {
    Limits {
        max_connections: 8,
        header_timeout: Duration::from_secs(60),
        write_timeout: Duration::from_secs(60),
        stall_timeout: Duration::from_secs(60),
    }
}

/// Clients that pipeline requests and never read the answers, more of them
/// than there are connection slots, do not keep a health probe out, even with write and stall
/// timeouts far longer than the test: the accept loop sheds stalled connections.
#[test]
fn stalled_readers_do_not_keep_health_probes_out() {
    let limits = patient_limits();
    let (addr, _runtime) = start(limits, Duration::from_secs(5));
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

/// A response nobody reads is abandoned after the write timeout, freeing
/// its slot, although the stall timeout is far away.
#[test]
fn a_response_nobody_reads_is_abandoned_after_the_write_timeout() {
    let limits = Limits {
        write_timeout: Duration::from_millis(500),
        ..patient_limits()
    };
    let (addr, _runtime) = start(limits, Duration::from_secs(5));
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
    let limits = Limits {
        stall_timeout: Duration::from_millis(500),
        ..patient_limits()
    };
    let (addr, _runtime) = start(limits, Duration::from_secs(60));
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

/// A body that trickles is answered 408 after the body deadline and the connection closed; a
/// body declared over the limit is 413 at once; a whole body reaches the handler.
#[test]
fn bodies_arrive_within_the_deadline_or_are_refused() {
    let limits = Limits {
        header_timeout: Duration::from_secs(30),
        stall_timeout: Duration::from_secs(30),
        ..Limits::default()
    };
    let (addr, _runtime) = start(limits, Duration::from_millis(300));
    let mut stalled = TcpStream::connect(addr).unwrap();
    stalled
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stalled
        .write_all(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 500\r\n\r\nab")
        .unwrap();
    let began = Instant::now();
    let answer = raw_http::read_answer(&mut stalled);
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(began.elapsed() < Duration::from_secs(3));

    let answer = raw_http::exchange(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10000000\r\n\r\n{",
    );
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");

    let answer = raw_http::exchange(
        addr,
        b"POST /echo HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello",
    );
    assert!(
        answer.starts_with("HTTP/1.1 200") && answer.ends_with("hello"),
        "{answer}"
    );
}
