//! `tally view`: the user's own counts as charts, served on loopback or written to one file.
//!
//! The data is what tally holds on this machine: the local copies of ended weeks
//! (`reports/local/*.json`) and the counter files of weeks still running (`counters/`). It is
//! read afresh for every page request, so reloading the page shows new counts. The page is one
//! self-contained HTML document (`tally_charts::user_view`): no script, no network asset.
//!
//! Promises: the server listens only on a loopback address and answers only `GET`/`HEAD /`;
//! `--out` writes the file atomically (temp file and rename). The data is read as `tally show`
//! reads it ([`tally_report::read_weeks`]): a file that cannot be used is skipped with a warning
//! on stderr naming it, and an invalid counter file is moved to `quarantine/` unless tally is
//! off; nothing is deleted.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, bail};
use tally_charts::{UserData, UserWeek};
use tally_home::{Day, Home, Mode};
use tally_protocol::ProgramReport;
use tally_report::{Source, WeekCounts};

/// Options of `tally view`.
#[derive(Debug, Clone, clap::Args)]
pub struct ViewArgs {
    /// Write one self-contained HTML file here instead of serving the charts.
    #[arg(long, value_name = "FILE")]
    pub out: Option<PathBuf>,
    /// Address to serve on (default: 127.0.0.1 on a free port).
    #[arg(long, value_name = "HOST:PORT")]
    pub addr: Option<String>,
}

/// Longest request head a browser sends for `/`.
const MAX_REQUEST_HEAD_BYTES: u64 = 16 * 1024;
/// A client that sends its request slower than this is dropped.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

/// Runs `tally view`.
pub fn run(args: &ViewArgs, env: &tally_home::Env) -> anyhow::Result<()> {
    let home = Home::locate(env).context(
        "tally has no data directory: set TALLY_DIR to an absolute path, or HOME, and run `tally view` again",
    )?;
    if let Some(out) = &args.out {
        let page = tally_charts::user_view(&collect(&home, env, &mut warn_once()));
        write_atomically(out, page.as_bytes())?;
        println!(
            "tally view: wrote {}",
            crate::escape::escape_control(&out.display().to_string())
        );
        return Ok(());
    }
    let addr = parse_loopback(args.addr.as_deref().unwrap_or("127.0.0.1:0"))?;
    let listener = TcpListener::bind(addr).with_context(|| {
        format!("could not listen on {addr}; pick another port with --addr 127.0.0.1:PORT")
    })?;
    let local = listener
        .local_addr()
        .context("the listening socket has no address")?;
    println!("tally view: your charts are at http://{local}/ (Ctrl-C to stop)");
    std::io::stdout().flush().ok();
    serve(&listener, &home, env)
}

/// The address to listen on, which must be loopback: these are the user's own counts, for the
/// user's own browser only.
fn parse_loopback(text: &str) -> anyhow::Result<SocketAddr> {
    let addr: SocketAddr = text.parse().with_context(|| {
        format!("--addr {text:?} is not HOST:PORT with an IP address, like 127.0.0.1:8737")
    })?;
    let loopback = match addr.ip() {
        IpAddr::V4(ip) => ip.is_loopback(),
        IpAddr::V6(ip) => ip.is_loopback(),
    };
    if !loopback {
        bail!("tally view serves only on a loopback address (127.0.0.1 or [::1]), not {addr}");
    }
    Ok(addr)
}

fn serve(listener: &TcpListener, home: &Home, env: &tally_home::Env) -> anyhow::Result<()> {
    let mut warn = warn_once();
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        // One request at a time is plenty for one user's browser; the timeouts keep a stuck
        // client from blocking the next one.
        if let Err(e) = answer(stream, home, env, &mut warn) {
            eprintln!(
                "tally view: a request failed: {}",
                crate::escape::escape_control(&format!("{e:#}"))
            );
        }
    }
    Ok(())
}

fn answer(
    stream: TcpStream,
    home: &Home,
    env: &tally_home::Env,
    warn: &mut impl FnMut(String),
) -> anyhow::Result<()> {
    stream.set_read_timeout(Some(REQUEST_TIMEOUT))?;
    stream.set_write_timeout(Some(REQUEST_TIMEOUT))?;
    let mut reader = BufReader::new((&stream).take(MAX_REQUEST_HEAD_BYTES));
    let mut request_line = String::new();
    reader.read_line(&mut request_line)?;
    // Read (and ignore) the headers up to the blank line.
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line)? == 0 || line == "\r\n" || line == "\n" {
            break;
        }
    }
    let mut parts = request_line.split_whitespace();
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = target.split('?').next().unwrap_or("");
    let (status, body) = match (method, path) {
        ("GET" | "HEAD", "/") => ("200 OK", tally_charts::user_view(&collect(home, env, warn))),
        ("GET" | "HEAD", _) => (
            "404 Not Found",
            "not found: tally view serves only /\n".to_owned(),
        ),
        _ => (
            "405 Method Not Allowed",
            "tally view answers only GET\n".to_owned(),
        ),
    };
    let content_type = if status.starts_with("200") {
        "text/html; charset=utf-8"
    } else {
        "text/plain; charset=utf-8"
    };
    let mut out = &stream;
    write!(
        out,
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Content-Security-Policy: {}\r\nCache-Control: no-store\r\nConnection: close\r\n\r\n",
        body.len(),
        tally_charts::CONTENT_SECURITY_POLICY,
    )?;
    if method != "HEAD" {
        out.write_all(body.as_bytes())?;
    }
    out.flush()?;
    Ok(())
}

/// Prints each distinct warning once per process.
fn warn_once() -> impl FnMut(String) {
    let mut seen = std::collections::BTreeSet::new();
    move |message: String| {
        if seen.insert(message.clone()) {
            eprintln!(
                "tally view: warning: {}",
                crate::escape::escape_control(&message)
            );
        }
    }
}

/// Everything tally holds about the user, as chart data: ended weeks from the local reports,
/// running weeks from the counter files, both read by [`tally_report::read_weeks`] (whose
/// policy applies: an invalid counter file is quarantined unless tally is off). Each skipped
/// file is passed to `warn`.
pub fn collect(home: &Home, env: &tally_home::Env, warn: &mut impl FnMut(String)) -> UserData {
    let today = env.today();
    let effective = tally_home::effective_mode(env, Some(home));
    let holdings = tally_report::read_weeks(home, effective != Mode::Off);
    for skipped in &holdings.skipped {
        warn(match &skipped.quarantined_to {
            Some(to) => format!(
                "skipped {}: {}; it was moved to {}",
                skipped.path.display(),
                skipped.reason,
                to.display()
            ),
            None => format!("skipped {}: {}", skipped.path.display(), skipped.reason),
        });
    }
    // One chart week per week: its local report's sections, then those of its counter files.
    let mut weeks: BTreeMap<Day, UserWeek> = BTreeMap::new();
    let (reported, counted): (Vec<WeekCounts>, Vec<WeekCounts>) = holdings
        .weeks
        .into_iter()
        .partition(|w| w.source == Source::LocalReport);
    for counts in reported.into_iter().chain(counted) {
        let week = weeks.entry(counts.week).or_insert_with(|| UserWeek {
            week: counts.week,
            in_progress: false,
            programs: Vec::new(),
        });
        week.in_progress |= counts.source == Source::Counters && today < counts.end;
        week.programs
            .extend(counts.programs.into_iter().map(|s| ProgramReport {
                program: s.program,
                version: s.version,
                os: s.os,
                arch: s.arch,
                counters: s.counters,
            }));
    }

    let mode = match home.stored_mode() {
        Ok(mode) => {
            if effective == mode {
                mode.to_string()
            } else {
                format!("{effective} (stored: {mode}; the environment overrides it)")
            }
        }
        Err(e) => format!("unreadable ({e})"),
    };
    UserData {
        data_dir: home.root().display().to_string(),
        mode,
        weeks: weeks.into_values().collect(),
    }
}

/// Writes `bytes` to `path` through a temp file in the same directory and a rename, so a reader
/// never sees half a page.
fn write_atomically(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    let mut temp = tempfile::NamedTempFile::new_in(dir).with_context(|| {
        format!(
            "could not create a file in {}; check that the directory exists and is writable",
            dir.display()
        )
    })?;
    temp.write_all(bytes)
        .and_then(|()| temp.as_file().sync_all())
        .with_context(|| format!("could not write {}", path.display()))?;
    temp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("could not write {}", path.display()))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn env_at(home: &Path, today: &str) -> tally_home::Env {
        tally_home::Env::from_pairs([
            (OsString::from("TALLY_DIR"), home.as_os_str().to_owned()),
            (OsString::from("TALLY_NOW"), OsString::from(today)),
        ])
    }

    /// A home with one ended week as a local report, one running week as a counter file, one
    /// corrupt counter file and one local report that is not a report (each skipped with a
    /// warning).
    fn seeded_home() -> (tempfile::TempDir, Home) {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::at(dir.path());
        tally_test_support::home::seed_user_weeks(&home);
        let local = home.reports_dir().join("local");
        std::fs::write(local.join("broken.json"), b"{not json").unwrap();
        (dir, home)
    }

    #[test]
    fn collects_ended_and_running_weeks_and_skips_bad_files() {
        let (dir, home) = seeded_home();
        let env = env_at(dir.path(), "2026-11-24");
        let mut warnings = Vec::new();
        let data = collect(&home, &env, &mut |w| warnings.push(w));
        assert_eq!(data.weeks.len(), 2, "{data:?}");
        let ended = &data.weeks[0];
        assert_eq!(
            (ended.week.to_string().as_str(), ended.in_progress),
            ("2026-11-09", false)
        );
        assert_eq!(ended.programs[0].counters["cargo/invocations"], 7);
        let running = &data.weeks[1];
        assert!(running.in_progress);
        assert_eq!(running.programs[0].counters["rustc/edition:2021"], 3);
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings.iter().any(|w| w.contains("broken.json")));
        assert!(warnings.iter().any(|w| w.contains("zz-corrupt")));
        // As `tally show` does: the corrupt counter file is quarantined (the warning says
        // where), the unreadable report left where it is.
        assert!(!home.counters_dir().join("zz-corrupt.v1.count").exists());
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("zz-corrupt") && w.contains("it was moved to")),
            "{warnings:?}"
        );
        assert!(home.reports_dir().join("local/broken.json").exists());
        assert_eq!(data.mode, "local");
    }

    #[test]
    fn with_tally_off_nothing_is_moved() {
        let (dir, home) = seeded_home();
        let env = tally_home::Env::from_pairs([
            (
                OsString::from("TALLY_DIR"),
                dir.path().as_os_str().to_owned(),
            ),
            (OsString::from("TALLY_NOW"), OsString::from("2026-11-24")),
            (OsString::from("TALLY"), OsString::from("off")),
        ]);
        let mut warnings = Vec::new();
        let data = collect(&home, &env, &mut |w| warnings.push(w));
        assert_eq!(data.weeks.len(), 2, "{data:?}");
        assert!(home.counters_dir().join("zz-corrupt.v1.count").exists());
        assert!(
            warnings
                .iter()
                .any(|w| w.contains("zz-corrupt") && !w.contains("moved")),
            "{warnings:?}"
        );
    }

    #[test]
    fn writes_one_page_with_out() {
        let (dir, _home) = seeded_home();
        let env = env_at(dir.path(), "2026-11-24");
        let out = dir.path().join("report.html");
        run(
            &ViewArgs {
                out: Some(out.clone()),
                addr: None,
            },
            &env,
        )
        .unwrap();
        let page = std::fs::read_to_string(&out).unwrap();
        assert!(page.starts_with("<!DOCTYPE html>"));
        assert!(page.contains("data-series=\"cargo/invocations\""));
        assert!(page.contains("data-series=\"rustc/edition:2021\""));
        let missing_dir = dir.path().join("no/such/dir/report.html");
        let err = run(
            &ViewArgs {
                out: Some(missing_dir),
                addr: None,
            },
            &env,
        )
        .unwrap_err();
        assert!(
            format!("{err:#}").contains("check that the directory exists"),
            "{err:#}"
        );
    }

    /// One request to `answer` over a real loopback connection; returns the raw response.
    fn request(home: &Home, env: &tally_home::Env, raw: &str) -> String {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let mut client = TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        client.write_all(raw.as_bytes()).unwrap();
        let (server_side, _) = listener.accept().unwrap();
        answer(server_side, home, env, &mut |_| {}).unwrap();
        let mut response = String::new();
        client.read_to_string(&mut response).unwrap();
        response
    }

    #[test]
    fn serves_the_page_and_nothing_else() {
        let (dir, home) = seeded_home();
        let env = env_at(dir.path(), "2026-11-24");
        let page = request(&home, &env, "GET / HTTP/1.1\r\nHost: x\r\n\r\n");
        assert!(page.starts_with("HTTP/1.1 200 OK\r\n"), "{page}");
        assert!(page.contains("Content-Security-Policy: default-src 'none'"));
        assert!(page.contains("data-series=\"cargo/invocations\""));
        let head = request(&home, &env, "HEAD / HTTP/1.1\r\n\r\n");
        assert!(
            head.starts_with("HTTP/1.1 200 OK\r\n") && head.ends_with("\r\n\r\n"),
            "{head}"
        );
        let other = request(&home, &env, "GET /../../etc/passwd HTTP/1.1\r\n\r\n");
        assert!(other.starts_with("HTTP/1.1 404"), "{other}");
        let post = request(&home, &env, "POST / HTTP/1.1\r\nContent-Length: 0\r\n\r\n");
        assert!(post.starts_with("HTTP/1.1 405"), "{post}");
    }

    #[test]
    fn only_loopback_addresses_are_served() {
        assert!(parse_loopback("127.0.0.1:0").is_ok());
        assert!(parse_loopback("[::1]:8080").is_ok());
        let err = parse_loopback("0.0.0.0:8080").unwrap_err().to_string();
        assert!(err.contains("loopback"), "{err}");
        assert!(parse_loopback("localhost:80").is_err());
    }
}
