//! Test support: configs, signing with the `minisign` crate, and a real HTTP server on
//! loopback that serves whatever the test puts in it.

#![allow(dead_code)]

use std::collections::HashMap;
use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tally_protocol::Day;

pub fn day(s: &str) -> Day {
    s.parse().unwrap()
}

/// A valid config body with the given version and expiry.
pub fn config_body(version: u64, expires: &str) -> Vec<u8> {
    format!(
        r#"{{
  "version": {version},
  "expires": "{expires}",
  "sample_rate": 0.5,
  "os": ["linux"],
  "arch": ["x86_64"],
  "programs": [
    {{ "name": "cargo", "versions": ">=1.70.0",
      "counters": [ {{ "name": "cargo/subcommand:{{build,test}}", "rate": 0.25 }} ] }}
  ]
}}
"#
    )
    .into_bytes()
}

pub struct Key {
    pub public: String,
    secret: minisign::SecretKey,
}

impl Key {
    pub fn generate() -> Key {
        let pair = minisign::KeyPair::generate_unencrypted_keypair().unwrap();
        Key {
            public: pair.pk.to_base64(),
            secret: pair.sk,
        }
    }

    pub fn sign(&self, body: &[u8]) -> Vec<u8> {
        minisign::sign(
            None,
            &self.secret,
            body,
            Some("collector test config"),
            None,
        )
        .unwrap()
        .into_string()
        .into_bytes()
    }
}

/// What the server answers for a path.
#[derive(Clone)]
pub enum Reply {
    Ok(Vec<u8>),
    Status(u16),
    /// Accept the connection, never answer (until the server stops).
    Hang,
    /// `302 Found` to this `Location`.
    Redirect(String),
}

/// A tiny HTTP/1.1 server on 127.0.0.1: one thread, one request per connection.
pub struct Server {
    pub url: String,
    routes: Arc<Mutex<HashMap<String, Reply>>>,
    pub requests: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let routes: Arc<Mutex<HashMap<String, Reply>>> = Arc::default();
        let requests = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let (routes, requests, stop) = (routes.clone(), requests.clone(), stop.clone());
            std::thread::spawn(move || {
                // Bounded: a test never makes anywhere near this many requests.
                for stream in listener.incoming().take(1000) {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(stream) = stream else { continue };
                    requests.fetch_add(1, Ordering::SeqCst);
                    serve(stream, &routes, &stop);
                }
            })
        };
        Server {
            url,
            routes,
            requests,
            stop,
            thread: Some(thread),
        }
    }

    pub fn set(&self, path: &str, reply: Reply) {
        self.routes.lock().unwrap().insert(path.to_string(), reply);
    }

    /// Serves `body` as the config and `signature` as its signature.
    pub fn publish(&self, body: &[u8], signature: &[u8]) {
        self.set("/config.json", Reply::Ok(body.to_vec()));
        self.set("/config.json.minisig", Reply::Ok(signature.to_vec()));
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

fn serve(mut stream: TcpStream, routes: &Mutex<HashMap<String, Reply>>, stop: &AtomicBool) {
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut request = Vec::new();
    let mut buf = [0u8; 1024];
    while !request.windows(4).any(|w| w == b"\r\n\r\n") && request.len() < 64 * 1024 {
        match stream.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => request.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&request);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let reply = routes
        .lock()
        .unwrap()
        .get(&path)
        .cloned()
        .unwrap_or(Reply::Status(404));
    match reply {
        Reply::Ok(body) => {
            let head = format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            );
            let _ = stream.write_all(head.as_bytes());
            let _ = stream.write_all(&body);
        }
        Reply::Status(code) => {
            let head =
                format!("HTTP/1.1 {code} Nope\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            let _ = stream.write_all(head.as_bytes());
        }
        Reply::Redirect(to) => {
            let head = format!(
                "HTTP/1.1 302 Found\r\nLocation: {to}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
            );
            let _ = stream.write_all(head.as_bytes());
        }
        Reply::Hang => {
            // Hold the connection open, bounded, until the test is over.
            for _ in 0..200 {
                if stop.load(Ordering::SeqCst) {
                    break;
                }
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees `stop`.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
