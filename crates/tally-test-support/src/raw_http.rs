//! Raw HTTP/1.1 over a loopback socket, for tests of what a server does with requests no
//! well-behaved client sends (stalled, oversized, malformed) and of its connection limits.

use std::io::{Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::Duration;

/// Sends the bytes `request` on a new connection to `addr` and returns everything the server
/// answered until it closed the connection (reads give up after 5 s). A failed write is not an
/// error: a server may answer and close before all of an oversized request is written.
pub fn exchange(addr: impl ToSocketAddrs, request: &[u8]) -> String {
    exchange_within(addr, request, Duration::from_secs(5))
}

/// [`exchange`], with reads giving up after `timeout`: what arrived by then.
pub fn exchange_within(addr: impl ToSocketAddrs, request: &[u8], timeout: Duration) -> String {
    let mut stream = TcpStream::connect(addr).expect("connecting to the server");
    stream
        .set_read_timeout(Some(timeout))
        .expect("a read timeout");
    let _ = stream.write_all(request);
    read_answer(&mut stream)
}

/// Everything `stream` receives until the server closes it (or a read times out), as text.
pub fn read_answer(stream: &mut TcpStream) -> String {
    let mut answer = Vec::new();
    let _ = stream.read_to_end(&mut answer);
    String::from_utf8_lossy(&answer).into_owned()
}

/// The status code of a raw `answer`; 0 when the server closed without one.
pub fn status(answer: &str) -> u16 {
    answer
        .strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}
