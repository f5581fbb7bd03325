//! The aggregators serve through the collector's listener: a body that trickles is cut off
//! with 408, a client that never finishes its headers is cut off, and connections that stall
//! do not keep others out (they are shed when every slot is taken).

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use tally_dap::draft::messages::Report;

use crate::support::{Options, deploy};
use tally_test_support::raw_http;

#[test]
fn aggregators_bound_connections_headers_and_bodies() {
    let limits: Vec<String> = [
        "--max-connections",
        "2",
        "--header-timeout",
        "0.5",
        "--body-timeout",
        "0.5",
        "--stall-timeout",
        "30",
    ]
    .map(String::from)
    .to_vec();
    let d = deploy(Options {
        leader_args: limits.clone(),
        helper_args: limits,
        ..Options::default()
    });
    for aggregator in [&d.leader, &d.helper] {
        let addr = ("127.0.0.1", aggregator.port);
        // An upload whose body never arrives: 408 after the body timeout.
        let mut trickle = TcpStream::connect(addr).unwrap();
        trickle
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let head = format!(
            "PUT /tasks/{}/reports HTTP/1.1\r\nHost: x\r\nContent-Type: {}\r\nContent-Length: 5000\r\n\r\nab",
            d.task_id(),
            Report::MEDIA_TYPE
        );
        trickle.write_all(head.as_bytes()).unwrap();
        let began = Instant::now();
        let answer = raw_http::read_answer(&mut trickle);
        assert!(
            answer.starts_with("HTTP/1.1 408"),
            "{}: {answer}",
            aggregator.role
        );
        assert!(began.elapsed() < Duration::from_secs(3));

        // Headers that never end: the connection is closed after the header timeout.
        let mut slow = TcpStream::connect(addr).unwrap();
        slow.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        slow.write_all(b"GET /hpke_config HTTP/1.1\r\nHost: x\r\nX-Slow: a")
            .unwrap();
        let began = Instant::now();
        let mut rest = Vec::new();
        let _ = slow.read_to_end(&mut rest);
        assert!(
            began.elapsed() < Duration::from_secs(3),
            "{}",
            aggregator.role
        );

        // Both slots held by connections that send nothing: a new client still gets in (one
        // of them is shed), though the stall timeout is far away.
        let idle: Vec<TcpStream> = (0..2).map(|_| TcpStream::connect(addr).unwrap()).collect();
        std::thread::sleep(Duration::from_millis(400));
        let began = Instant::now();
        let answer = raw_http::exchange(
            addr,
            b"GET /hpke_config HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        assert!(
            answer.starts_with("HTTP/1.1 200"),
            "{}: {answer}",
            aggregator.role
        );
        assert!(began.elapsed() < Duration::from_secs(3));
        drop(idle);
    }
}
