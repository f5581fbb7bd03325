//! The app on a real loopback socket through `serve::serve`: bounded connections, header and
//! body read timeouts, and a real HTTP client (`ureq`), plus the client's own config fetch.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use common::*;
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

#[test]
fn bounds_concurrent_connections() {
    let collector = Collector::new();
    let store = tempfile::tempdir().unwrap();
    let limits = Limits {
        max_connections: 2,
        header_timeout: Duration::from_secs(30),
    };
    let (addr, _runtime) = start(&collector, store.path(), limits, Duration::from_secs(5));
    // Two idle connections take both slots.
    let first = TcpStream::connect(addr).unwrap();
    let second = TcpStream::connect(addr).unwrap();
    std::thread::sleep(Duration::from_millis(200));
    let mut third = TcpStream::connect(addr).unwrap(); // queued in the backlog, not served
    third
        .set_read_timeout(Some(Duration::from_millis(500)))
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
}
