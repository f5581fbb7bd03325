//! Test support: a temporary data directory with counter files, a real HTTP collector on
//! loopback, signed configs, and ways to run the CLI (in-process with an explicit environment,
//! or as a real process).
#![allow(dead_code)]

use std::collections::VecDeque;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use tally_config::signing::TestKeyPair;
use tally_home::{Day, Env, Home};

/// What one CLI run printed.
#[derive(Debug)]
pub struct Output {
    pub code: ExitCode,
    pub stdout: String,
    pub stderr: String,
}

impl Output {
    pub fn ok(&self) -> bool {
        self.code == ExitCode::SUCCESS
    }
}

/// A temporary tally data directory whose week starts on Monday.
pub struct Fixture {
    _dir: tempfile::TempDir,
    pub home: Home,
}

impl Fixture {
    pub fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("tally");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::write(root.join("weekday"), "monday\n").unwrap();
        Fixture {
            home: Home::at(root),
            _dir: dir,
        }
    }

    pub fn root(&self) -> &Path {
        self.home.root()
    }

    /// An environment with this data directory, `TALLY_NOW=today` and the extra pairs.
    pub fn env(&self, today: &str, extra: &[(&str, &str)]) -> Env {
        let mut pairs: Vec<(OsString, OsString)> = vec![
            ("TALLY_DIR".into(), self.root().into()),
            ("TALLY_NOW".into(), today.into()),
        ];
        pairs.extend(
            extra
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        );
        Env::from_pairs(pairs)
    }

    /// Runs the CLI in this process.
    pub fn run(&self, today: &str, extra: &[(&str, &str)], args: &[&str]) -> Output {
        run_in_process(&self.env(today, extra), args)
    }

    /// Adds `count` to each counter of `program@version`, in the week containing `day`.
    pub fn count(&self, day: &str, program: &str, version: &str, counters: &[(&str, u64)]) {
        let (file, _) = self
            .home
            .counter_store()
            .open_current(program, version, day.parse::<Day>().unwrap())
            .unwrap();
        for (name, n) in counters {
            file.add(name, *n).unwrap();
        }
    }

    /// The names of the files in `reports/<folder>/`, sorted.
    pub fn reports(&self, folder: &str) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.home.reports_dir().join(folder))
            .map(|entries| {
                entries
                    .filter_map(Result::ok)
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .filter(|n| !n.starts_with('.'))
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    /// Every file under the data directory, relative, sorted.
    pub fn all_files(&self) -> Vec<String> {
        fn walk(dir: &Path, base: &Path, out: &mut Vec<String>) {
            let Ok(entries) = std::fs::read_dir(dir) else {
                return;
            };
            for entry in entries.filter_map(Result::ok) {
                let path = entry.path();
                if path.is_dir() {
                    walk(&path, base, out);
                } else {
                    out.push(path.strip_prefix(base).unwrap().display().to_string());
                }
            }
        }
        let mut out = Vec::new();
        walk(self.root(), self.root(), &mut out);
        out.sort();
        out
    }
}

/// Runs the CLI in this process with exactly this environment.
pub fn run_in_process(env: &Env, args: &[&str]) -> Output {
    let mut stdout = Vec::new();
    let mut stderr = Vec::new();
    let argv: Vec<OsString> = std::iter::once("tally")
        .chain(args.iter().copied())
        .map(OsString::from)
        .collect();
    let code = {
        let mut io = tally_commands::Io {
            out: &mut stdout,
            err: &mut stderr,
            interactive: false,
        };
        tally_commands::run_with(argv, env, &mut io)
    };
    Output {
        code,
        stdout: String::from_utf8(stdout).unwrap(),
        stderr: String::from_utf8(stderr).unwrap(),
    }
}

/// The CLI as a real program: this crate's `tally-commands` binary.
pub fn cli_exe() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_tally-commands"))
}

/// A collector's signing key and a config it signs.
pub struct Collector {
    pub key: TestKeyPair,
}

impl Collector {
    pub fn new() -> Collector {
        Collector {
            key: TestKeyPair::generate(),
        }
    }

    /// A config body: `version`, `expires`, `sample_rate`, and for cargo the given counters.
    pub fn config(
        &self,
        version: u64,
        expires: &str,
        sample_rate: f64,
        counters: &[(&str, f64)],
    ) -> String {
        let counters: Vec<serde_json::Value> = counters
            .iter()
            .map(|(name, rate)| serde_json::json!({ "name": name, "rate": rate }))
            .collect();
        serde_json::to_string_pretty(&serde_json::json!({
            "version": version,
            "expires": expires,
            "sample_rate": sample_rate,
            "os": [std::env::consts::OS],
            "arch": [std::env::consts::ARCH],
            "programs": [
                { "name": "cargo", "versions": ">=1.0.0", "counters": counters }
            ]
        }))
        .unwrap()
    }

    pub fn sign(&self, body: &str) -> String {
        self.key.sign(body.as_bytes(), "tally test config")
    }
}

/// One request the server received.
#[derive(Debug, Clone)]
pub struct Request {
    pub method: String,
    pub path: String,
    pub body: Vec<u8>,
}

#[derive(Default)]
struct ServerState {
    config: Option<(Vec<u8>, Vec<u8>)>,
    /// Statuses (and bodies) to answer uploads with, in order; then 200.
    upload_answers: VecDeque<(u16, String)>,
    requests: Vec<Request>,
}

/// A real HTTP/1.1 collector on 127.0.0.1: serves `/config.json(.minisig)`, records every
/// request, and answers uploads as told. Stops when dropped.
pub struct Server {
    pub url: String,
    state: Arc<Mutex<ServerState>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    pub fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let state = Arc::new(Mutex::new(ServerState::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let state = state.clone();
            let stop = stop.clone();
            std::thread::spawn(move || {
                // Bounded: no test makes anywhere near this many requests.
                for stream in listener.incoming().take(500) {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    if let Ok(stream) = stream {
                        serve(stream, &state);
                    }
                }
            })
        };
        Server {
            url,
            state,
            stop,
            thread: Some(thread),
        }
    }

    pub fn set_config(&self, body: &str, signature: &str) {
        self.state.lock().unwrap().config =
            Some((body.as_bytes().to_vec(), signature.as_bytes().to_vec()));
    }

    pub fn answer_uploads_with(&self, status: u16, body: &str) {
        self.state
            .lock()
            .unwrap()
            .upload_answers
            .push_back((status, body.to_string()));
    }

    pub fn requests(&self) -> Vec<Request> {
        self.state.lock().unwrap().requests.clone()
    }

    pub fn uploads(&self) -> Vec<Request> {
        self.requests()
            .into_iter()
            .filter(|r| r.method == "POST")
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect(self.url.trim_start_matches("http://"));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

fn serve(stream: TcpStream, state: &Mutex<ServerState>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut reader = BufReader::new(stream);
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() || request_line.is_empty() {
        return;
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
    if reader.read_exact(&mut body).is_err() {
        return;
    }
    let (status, answer) = {
        let mut state = state.lock().unwrap();
        state.requests.push(Request {
            method: method.clone(),
            path: path.clone(),
            body,
        });
        match (method.as_str(), path.as_str()) {
            ("GET", "/config.json") => match &state.config {
                Some((config, _)) => (200, config.clone()),
                None => (404, b"no config".to_vec()),
            },
            ("GET", "/config.json.minisig") => match &state.config {
                Some((_, sig)) => (200, sig.clone()),
                None => (404, b"no config".to_vec()),
            },
            ("POST", p) if p.starts_with("/upload/") => {
                let (status, text) = state
                    .upload_answers
                    .pop_front()
                    .unwrap_or((200, "ok".into()));
                (status, text.into_bytes())
            }
            _ => (404, b"not found".to_vec()),
        }
    };
    let mut stream = reader.into_inner();
    let head = format!(
        "HTTP/1.1 {status} X\r\ncontent-length: {}\r\ncontent-type: text/plain\r\nconnection: close\r\n\r\n",
        answer.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(&answer);
    let _ = stream.flush();
}
