//! A third-party tool counting through `tally-counter`, end to end: the example tool
//! (`examples/tally-example-greet`) built by cargo and run with real arguments at a day in a
//! past week; its counters in `tally show --json`; the week turned into a report and uploaded
//! by `tally upload` to a real `tally-server` on loopback serving a signed config that names
//! the tool's program and counters (as `tally demo` does for the shimmed tools); and the
//! collector's JSON and program page publishing them. No argument value the tool was given
//! appears in any file tally wrote.
//!
//! Binaries: `tally-example-greet` and `tally-server`, built once for every test that needs
//! them (`support::workspace_binaries`).

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use tally_home::Day;
use tally_protocol::Report;
use tally_protocol::aggregate::{ProgramWeek, WeeksIndex};

use crate::support::{TALLY, World, ok};
use tally_test_support::command::spawn_listening;

const PROGRAM: &str = "tally-example-greet";

/// A running `tally-server serve`, stopped on drop.
struct Server {
    child: Child,
    base: String,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A collector: a fresh key, `config` signed with it, the server on a free loopback port at
/// `today` with publication threshold 1. Returns the server and the public key line.
fn collector(server_bin: &Path, dir: &Path, config: &str, today: Day) -> (Server, String) {
    let (public, secret) = (dir.join("c.pub"), dir.join("c.key"));
    ok(Command::new(server_bin)
        .arg("keygen")
        .arg("--public-key")
        .arg(&public)
        .arg("--secret-key")
        .arg(&secret)
        .arg("--no-password")
        .env_remove("TALLY_SERVER_KEY_PASSWORD"));
    let config_path = dir.join("config.json");
    std::fs::write(&config_path, config).unwrap();
    ok(Command::new(server_bin)
        .arg("sign")
        .arg(&config_path)
        .arg("--secret-key")
        .arg(&secret)
        .env_remove("TALLY_SERVER_KEY_PASSWORD"));
    let key = std::fs::read_to_string(&public)
        .unwrap()
        .lines()
        .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
        .unwrap()
        .to_string();
    std::fs::create_dir(dir.join("store")).unwrap();
    let started = spawn_listening(
        Command::new(server_bin)
            .arg("serve")
            .args([
                "--addr",
                "127.0.0.1:0",
                "--threshold",
                "1",
                "--flush-ms",
                "50",
            ])
            .arg("--store")
            .arg(dir.join("store"))
            .arg("--config")
            .arg(&config_path)
            .arg("--key")
            .arg(&public)
            .env("TALLY_NOW", today.to_string())
            .stdin(Stdio::null())
            .stderr(Stdio::inherit()),
    );
    let port = started
        .port
        .unwrap_or_else(|| panic!("tally-server did not start: {:?}", started.first_line));
    let server = Server {
        child: started.child,
        base: format!("http://127.0.0.1:{port}"),
    };
    (server, key)
}

/// `GET path` on the server (HTTP/1.1, one request per connection): status and body.
fn get(server: &Server, path: &str) -> (u16, String) {
    let addr = server.base.trim_start_matches("http://");
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(30)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).unwrap();
    let text = String::from_utf8_lossy(&response).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = if head
        .to_ascii_lowercase()
        .contains("transfer-encoding: chunked")
    {
        unchunk(body)
    } else {
        body.to_string()
    };
    (status, body)
}

fn unchunk(mut body: &str) -> String {
    let mut out = String::new();
    while let Some((size, rest)) = body.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            break;
        };
        if n == 0 {
            break;
        }
        out.push_str(&rest[..n]);
        body = rest[n..].trim_start_matches("\r\n");
    }
    out
}

/// The counters the collector asks for: every name the example tool can count.
fn config(expires: Day) -> String {
    let counters = [
        "tally-example-greet/invocations",
        "tally-example-greet/subcommand:{hello,bye,other}",
        "tally-example-greet/flag:{-v,--color}",
        "tally-example-greet/hello/flag:{--loud,--times}",
        "tally-example-greet/color:{auto,always,never}",
        "tally-example-greet/hello/greeted",
        "tally-example-greet/name-length:{<4,<16,>=16}",
        "tally-example-greet/time:{<0.1s,<1s,<10s,<60s,>=60s}",
        "tally-example-greet/other",
    ];
    let config = serde_json::json!({
        "version": 1,
        "expires": expires.to_string(),
        "sample_rate": 1.0,
        "os": [std::env::consts::OS],
        "arch": [std::env::consts::ARCH],
        "programs": [{
            "name": PROGRAM,
            "versions": ">=0.1.0",
            "counters": counters.iter().map(|c| serde_json::json!({"name": c, "rate": 1.0})).collect::<Vec<_>>(),
        }],
    });
    serde_json::to_string_pretty(&config).unwrap()
}

/// What the three runs below count, the time buckets summed apart.
fn expected() -> BTreeMap<String, u64> {
    crate::support::map(&[
        ("tally-example-greet/invocations", 3),
        ("tally-example-greet/subcommand:hello", 2),
        ("tally-example-greet/subcommand:bye", 1),
        ("tally-example-greet/hello/flag:--loud", 1),
        ("tally-example-greet/hello/flag:--times", 1),
        ("tally-example-greet/flag:-v", 1),
        ("tally-example-greet/flag:--color", 1),
        ("tally-example-greet/color:never", 1),
        ("tally-example-greet/hello/greeted", 4),
        ("tally-example-greet/name-length:<16", 2),
        ("tally-example-greet/name-length:<4", 1),
    ])
}

/// Splits off the time buckets (how long a run took depends on the machine) and checks that
/// there is one per run.
fn without_times(mut counters: BTreeMap<String, u64>) -> BTreeMap<String, u64> {
    let times: u64 = counters
        .iter()
        .filter(|(name, _)| name.starts_with("tally-example-greet/time:"))
        .map(|(_, n)| n)
        .sum();
    assert_eq!(times, 3, "one time bucket per run: {counters:?}");
    counters.retain(|name, _| !name.starts_with("tally-example-greet/time:"));
    counters
}

#[test]
fn a_tool_counting_through_the_library_is_reported_uploaded_and_published() {
    let binaries = crate::support::workspace_binaries();
    let (greet, server_bin) = (&binaries.greet, &binaries.server);
    let world = World::new();
    let today = tally_home::env::system_today();
    let day = |offset: i64| today.plus_days(offset).unwrap();
    let (consent, build_day) = (day(-21), day(-10));
    let collector_dir = world.tmp.path().join("collector");
    std::fs::create_dir(&collector_dir).unwrap();
    let (server, key) = collector(server_bin, &collector_dir, &config(day(90)), today);

    // The user turns uploads on (this makes the data directory: tally is installed).
    let mut on = world.direct(TALLY);
    on.env("TALLY_NOW", consent.to_string()).args([
        "on",
        "--endpoint",
        &server.base,
        "--key",
        &key,
    ]);
    ok(&mut on);

    // The tool, run three times with real arguments, in a week after consent.
    for args in [
        &["hello", "--loud", "--times", "3", "Alice Secret"][..],
        &["-v", "--color", "never", "bye", "Bob"],
        &["hello"],
    ] {
        let mut run = world.direct(greet.to_str().unwrap());
        run.env("TALLY_NOW", build_day.to_string()).args(args);
        let out = ok(&mut run);
        assert!(!out.stdout.is_empty());
    }

    // `tally show --json`: the program and its counters, as for any tool.
    let mut show = world.direct(TALLY);
    show.env("TALLY_NOW", build_day.to_string())
        .args(["show", "--json"]);
    let shown: serde_json::Value = serde_json::from_slice(&ok(&mut show).stdout).unwrap();
    let section = shown["weeks"]
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|w| w["programs"].as_array().unwrap())
        .find(|p| p["program"] == PROGRAM)
        .unwrap_or_else(|| panic!("{PROGRAM} not in tally show: {shown}"));
    assert_eq!(section["version"], "0.3.1");
    let counters: BTreeMap<String, u64> =
        serde_json::from_value(section["counters"].clone()).unwrap();
    assert_eq!(without_times(counters), expected());

    // The week ends: `tally upload` makes the report and sends it.
    let mut upload = world.direct(TALLY);
    upload.env("TALLY_NOW", today.to_string()).arg("upload");
    let uploaded = ok(&mut upload);
    let local_dir = world.data.join("reports/local");
    let local: Vec<PathBuf> = std::fs::read_dir(&local_dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(local.len(), 1, "{uploaded:?}");
    let report = Report::parse(&std::fs::read(&local[0]).unwrap()).unwrap();
    let section = report
        .programs
        .iter()
        .find(|p| p.program == PROGRAM)
        .expect("the tool's section in the local report");
    assert_eq!(without_times(section.counters.clone()), expected());
    let sent = std::fs::read_dir(world.data.join("reports/sent"))
        .map(|d| d.count())
        .unwrap_or(0);
    assert_eq!(
        sent,
        1,
        "the report was not accepted: {}",
        String::from_utf8_lossy(&uploaded.stderr)
    );

    // The collector publishes the tool's week.
    let deadline = Instant::now() + Duration::from_secs(60);
    let index: WeeksIndex = loop {
        let (status, body) = get(&server, "/api/weeks");
        let index: Option<WeeksIndex> = (status == 200)
            .then(|| serde_json::from_str(&body).ok())
            .flatten();
        match index {
            Some(index) if index.weeks.iter().any(|w| w.programs.contains_key(PROGRAM)) => {
                break index;
            }
            _ if Instant::now() > deadline => panic!("nothing published: {status} {body}"),
            _ => std::thread::sleep(Duration::from_millis(100)),
        }
    };
    let week = index
        .weeks
        .iter()
        .find(|w| w.programs.contains_key(PROGRAM))
        .unwrap();
    let (status, body) = get(&server, &format!("/api/weeks/{}/{PROGRAM}", week.week));
    assert_eq!(status, 200, "{body}");
    let published: ProgramWeek = serde_json::from_str(&body).unwrap();
    let totals: BTreeMap<String, u64> = published
        .counters
        .iter()
        .map(|c| (c.name.clone(), c.total.expect("a plain week has totals")))
        .collect();
    assert_eq!(without_times(totals), expected());
    let (status, page) = get(&server, &format!("/programs/{PROGRAM}"));
    assert_eq!(status, 200);
    for name in [
        "tally-example-greet/invocations",
        "tally-example-greet/hello/greeted",
    ] {
        assert!(page.contains(name), "{name} not on the program page");
    }

    // No argument value reached any file tally wrote.
    for (path, bytes) in world.data_files() {
        let text = String::from_utf8_lossy(&bytes);
        for value in ["Alice", "Secret", "Bob"] {
            assert!(!text.contains(value), "{value} in {}", path.display());
        }
    }
}
