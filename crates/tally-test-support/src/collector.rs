//! A fake collector: a real HTTP/1.1 server on 127.0.0.1 (one thread, one request per
//! connection) that serves what a test puts in it and records every request; and addresses
//! where nothing answers, for the network failures.
//!
//! A path answers with its [`Reply`] (set with [`FakeCollector::reply`], or
//! [`FakeCollector::publish`] for a config and its signature), else 404. Uploads
//! (`POST /upload/…`) take their answers from a queue ([`FakeCollector::answer_uploads_with`]),
//! then `200 ok`. The real collector is `tally-server serve`; this one is for the client's tests,
//! which need answers a real collector would not give on demand.

use std::collections::{HashMap, VecDeque};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

/// What the collector answers for a path.
#[derive(Clone, Debug)]
pub enum Reply {
    /// `200 OK` with this body.
    Ok(Vec<u8>),
    /// This status, with an empty body.
    Status(u16),
    /// This status with this body.
    StatusWithBody(u16, String),
    /// Accept the connection, never answer (until the collector stops, at most 10 s).
    Hang,
    /// `302 Found` to this `Location`.
    Redirect(String),
}

/// One request the collector received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

#[derive(Default)]
struct State {
    routes: HashMap<String, Reply>,
    upload_answers: VecDeque<Reply>,
    requests: Vec<Request>,
}

/// The fake collector; stops when dropped.
pub struct FakeCollector {
    /// `http://127.0.0.1:<port>`.
    pub url: String,
    state: Arc<Mutex<State>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl FakeCollector {
    pub fn start() -> FakeCollector {
        let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
        let url = format!("http://{}", listener.local_addr().expect("its address"));
        let state = Arc::new(Mutex::new(State::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (state, stop) = (state.clone(), stop.clone());
            std::thread::spawn(move || {
                // Bounded: a test never makes anywhere near this many requests.
                for stream in listener.incoming().take(1000) {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        serve(stream, &state, &stop);
                    }
                }
            })
        };
        FakeCollector {
            url,
            state,
            stop,
            thread: Some(thread),
        }
    }

    /// Answers `path` with `reply` from now on.
    pub fn reply(&self, path: &str, reply: Reply) {
        self.lock().routes.insert(path.to_string(), reply);
    }

    /// Serves `body` as `/config.json` and `signature` as `/config.json.minisig`.
    pub fn publish(&self, body: impl AsRef<[u8]>, signature: impl AsRef<[u8]>) {
        self.reply("/config.json", Reply::Ok(body.as_ref().to_vec()));
        self.reply(
            "/config.json.minisig",
            Reply::Ok(signature.as_ref().to_vec()),
        );
    }

    /// Answers the next upload not yet answered with `status` and `body` (then `200 ok`).
    pub fn answer_uploads_with(&self, status: u16, body: &str) {
        self.lock()
            .upload_answers
            .push_back(Reply::StatusWithBody(status, body.to_string()));
    }

    /// Every request so far, in order.
    pub fn requests(&self) -> Vec<Request> {
        self.lock().requests.clone()
    }

    /// How many requests so far.
    pub fn request_count(&self) -> usize {
        self.lock().requests.len()
    }

    /// The uploads (`POST`s) so far, in order.
    pub fn uploads(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().expect("the collector's state")
    }
}

impl Drop for FakeCollector {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(stream: TcpStream, state: &Mutex<State>, stop: &AtomicBool) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream);
    let Some(request) = read_request(&mut reader) else {
        return;
    };
    let reply = {
        let mut state = state.lock().expect("the collector's state");
        let routed = state.routes.get(&request.path).cloned();
        let reply = match routed {
            Some(reply) => reply,
            None if request.method == "POST" && request.path.starts_with("/upload/") => state
                .upload_answers
                .pop_front()
                .unwrap_or(Reply::StatusWithBody(200, "ok".into())),
            None => Reply::Status(404),
        };
        state.requests.push(request);
        reply
    };
    let mut stream = reader.into_inner();
    let (status, extra_header, body) = match reply {
        Reply::Ok(body) => (200, String::new(), body),
        Reply::Status(status) => (status, String::new(), Vec::new()),
        Reply::StatusWithBody(status, body) => (status, String::new(), body.into_bytes()),
        Reply::Redirect(to) => (302, format!("location: {to}\r\n"), Vec::new()),
        Reply::Hang => {
            // Hold the connection open, bounded, until the test is over.
            for _ in 0..200 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
            return;
        }
    };
    let head = format!(
        "HTTP/1.1 {status} Fake\r\n{extra_header}content-length: {}\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&body);
    let _ = stream.flush();
}

/// The request line, headers (only `content-length` is kept) and body; `None` when the
/// client went away first.
fn read_request(reader: &mut BufReader<TcpStream>) -> Option<Request> {
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() || request_line.is_empty() {
        return None;
    }
    let mut parts = request_line.split_whitespace();
    let method = parts.next().unwrap_or_default().to_string();
    let path = parts.next().unwrap_or_default().to_string();
    let mut length = 0usize;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).is_err() || line == "\r\n" || line.is_empty() {
            break;
        }
        if let Some((name, value)) = line.split_once(':')
            && name.eq_ignore_ascii_case("content-length")
        {
            length = value.trim().parse().unwrap_or(0);
        }
    }
    let mut body = vec![0; length.min(1 << 20)];
    reader.read_exact(&mut body).ok()?;
    Some(Request { method, path, body })
}

/// A URL on loopback where nothing listens: connecting is refused.
pub fn unreachable_url() -> String {
    format!("http://127.0.0.1:{}", crate::free_port())
}

/// A listener that accepts connections (the kernel queues them) and never answers, and its
/// URL: a collector that keeps a client waiting. Keep the listener alive while it is used.
pub fn silent_collector() -> (TcpListener, String) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("a loopback port");
    let url = format!("http://{}", listener.local_addr().expect("its address"));
    (listener, url)
}
