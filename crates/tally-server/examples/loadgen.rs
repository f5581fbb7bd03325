//! Load generator for `tally-server` (loopback only, bounded in count and time).
//!
//! `run`: sends `--valid` valid and `--invalid` invalid uploads over `--concurrency` keep-alive
//! connections (spread over every `--addr` given: several replicas), prints reports/s and
//! latency percentiles, and writes every report answered 2xx to `--accepted`. With `--kill-pid P
//! --kill-after-ms T` it sends SIGKILL to the server after T milliseconds (the crash test) and
//! stops at the first failed request.
//!
//! `verify`: after a restart, checks that every report in `--accepted` is in the store (in any
//! generation), and that the server counts every report answered 2xx and none twice
//! (`/api/weeks`: at least the accepted ones, at most the distinct ones stored).
//!
//! `visibility`: `--samples` times, uploads one new report to the first `--addr` and measures
//! how long until the second publishes it (the time for a replica to see another's report).
//!
//! `fill`: writes `--reports` valid reports of `--week` straight into a local store's open
//! generation (as a replica would, without the server), for restart measurements.
//!
//! `stall`: opens `--clients` connections that pipeline `GET /config.json` and never read an
//! answer (with `--reconnect`, each opens a new one whenever the server cuts it off), and for
//! `--seconds` probes `GET /healthz` on a new connection every `--probe-ms`, printing how long
//! the probes waited and how often the stalled clients were cut off. It fails if a probe went
//! unanswered.

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use http_body_util::{BodyExt, Full};
use hyper::body::Bytes;
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tally_protocol::{Day, Report};

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// The week and config version of the valid reports a command makes (a plain comment: a doc
// comment here would become the help text of every subcommand that flattens it).
#[derive(clap::Args, Clone, Copy)]
struct Batch {
    /// Week of every report (must be ended and recent for the server's clock).
    #[arg(long)]
    week: Day,
    #[arg(long, default_value_t = 1)]
    config_version: u64,
}

#[derive(Subcommand)]
enum Command {
    Run {
        /// A server; give it several times to spread connections over replicas.
        #[arg(long, required = true)]
        addr: Vec<SocketAddr>,
        #[command(flatten)]
        batch: Batch,
        #[arg(long, default_value_t = 20_000)]
        valid: usize,
        #[arg(long, default_value_t = 2_000)]
        invalid: usize,
        #[arg(long, default_value_t = 64)]
        concurrency: usize,
        /// Stop sending after this many seconds whatever is left.
        #[arg(long, default_value_t = 60)]
        time_limit: u64,
        #[arg(long)]
        accepted: Option<PathBuf>,
        #[arg(long)]
        kill_pid: Option<i32>,
        #[arg(long, default_value_t = 1000)]
        kill_after_ms: u64,
    },
    Verify {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long)]
        store: PathBuf,
        #[arg(long)]
        accepted: PathBuf,
    },
    Visibility {
        /// The replica written to, then (given again) the replica read from.
        #[arg(long, required = true)]
        addr: Vec<SocketAddr>,
        #[command(flatten)]
        batch: Batch,
        #[arg(long, default_value_t = 10)]
        samples: usize,
    },
    Fill {
        /// A local store directory.
        #[arg(long)]
        store: PathBuf,
        #[command(flatten)]
        batch: Batch,
        #[arg(long)]
        reports: usize,
        /// The generation to write into.
        #[arg(long, default_value = "0")]
        generation: Option<u64>,
        /// Seed of the reports' `x`s (fills with different seeds do not collide).
        #[arg(long, default_value_t = 1)]
        seed: u64,
        /// Write the layout from before generations (`reports/<monday>/<week>_<x>.json`), for a
        /// server built before them.
        #[arg(long)]
        flat: bool,
    },
    Stall {
        #[arg(long)]
        addr: SocketAddr,
        #[arg(long, default_value_t = 60)]
        clients: usize,
        #[arg(long, default_value_t = 10)]
        seconds: u64,
        #[arg(long, default_value_t = 250)]
        probe_ms: u64,
        #[arg(long)]
        reconnect: bool,
    },
}

fn main() -> anyhow::Result<()> {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match Cli::parse().command {
        Command::Run {
            addr,
            batch,
            valid,
            invalid,
            concurrency,
            time_limit,
            accepted,
            kill_pid,
            kill_after_ms,
        } => runtime.block_on(run(RunArgs {
            addr,
            batch,
            valid,
            invalid,
            concurrency: concurrency.max(1),
            time_limit: Duration::from_secs(time_limit),
            accepted,
            kill: kill_pid.map(|pid| (pid, Duration::from_millis(kill_after_ms))),
        })),
        Command::Verify {
            addr,
            store,
            accepted,
        } => runtime.block_on(verify(addr, store, accepted)),
        Command::Visibility {
            addr,
            batch,
            samples,
        } => {
            let [writer, reader, ..] = addr[..] else {
                bail!("give --addr twice: the replica written to, then the one read from");
            };
            runtime.block_on(visibility(writer, reader, batch, samples))
        }
        Command::Fill {
            store,
            batch,
            reports,
            generation,
            seed,
            flat,
        } => fill(&store, batch, reports, generation.filter(|_| !flat), seed),
        Command::Stall {
            addr,
            clients,
            seconds,
            probe_ms,
            reconnect,
        } => runtime.block_on(stall(
            addr,
            clients,
            Duration::from_secs(seconds),
            Duration::from_millis(probe_ms.max(10)),
            reconnect,
        )),
    }
}

struct RunArgs {
    addr: Vec<SocketAddr>,
    batch: Batch,
    valid: usize,
    invalid: usize,
    concurrency: usize,
    time_limit: Duration,
    accepted: Option<PathBuf>,
    kill: Option<(i32, Duration)>,
}

/// One request to send, and whether it should be accepted.
struct Job {
    body: Bytes,
    valid: bool,
    key: String,
}

impl Batch {
    /// A valid report of this batch, whose content follows from `x`.
    fn report(self, x: f64) -> Report {
        let n = (x * 1000.0) as u64;
        let mut counters = vec![("cargo/invocations", 1 + n % 50)];
        // Upload copies leave zero counts out, and the server refuses them.
        if !n.is_multiple_of(7) {
            counters.push(("cargo/subcommand:build", n % 7));
        }
        if n.is_multiple_of(3) {
            counters.push(("cargo/subcommand:test", 1 + n % 5));
        }
        let version = if n.is_multiple_of(2) {
            "1.95.0"
        } else {
            "1.96.0"
        };
        let mut cargo = tally_test_support::reports::section("cargo", version, &counters);
        if n.is_multiple_of(4) {
            cargo.arch = "aarch64".into();
        }
        Report {
            week: self.week,
            x,
            config_version: Some(self.config_version),
            programs: vec![cargo],
        }
    }
}

fn jobs(args: &RunArgs) -> Vec<Job> {
    let mut rng = fastrand::Rng::new();
    let mut seen = BTreeSet::new();
    let mut jobs = Vec::with_capacity(args.valid + args.invalid);
    while seen.len() < args.valid {
        let x = rng.f64();
        if x <= 0.0 || !seen.insert(x.to_bits()) {
            continue;
        }
        let body = args.batch.report(x).to_canonical_json();
        jobs.push(Job {
            body: body.into(),
            valid: true,
            key: format!("{} {}", args.batch.week, tally_server::store::x_in_key(x)),
        });
    }
    for i in 0..args.invalid {
        let x = rng.f64().max(1e-9);
        let mut report = args.batch.report(x);
        let body: Vec<u8> = match i % 5 {
            0 => {
                report.programs[0]
                    .counters
                    .insert("cargo/not-in-config".into(), 1);
                report.to_canonical_json()
            }
            1 => b"{\"week\": \"2026-11-16\", \"x\": ".to_vec(),
            2 => {
                report.x = 1.5;
                report.to_canonical_json()
            }
            3 => {
                report.programs[0].os = "plan9".into();
                report.to_canonical_json()
            }
            _ => vec![b' '; 101 * 1024],
        };
        jobs.push(Job {
            body: body.into(),
            valid: false,
            key: String::new(),
        });
    }
    rng.shuffle(&mut jobs);
    jobs
}

#[derive(Default)]
struct WorkerResult {
    latencies: Vec<Duration>,
    accepted: Vec<String>,
    valid_ok: usize,
    invalid_refused: usize,
    wrong: Vec<String>,
    failed: usize,
}

async fn run(args: RunArgs) -> anyhow::Result<()> {
    let jobs = Arc::new(jobs(&args));
    let next = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let start = Instant::now();
    let deadline = start + args.time_limit;
    if let Some((pid, after)) = args.kill {
        let stop = stop.clone();
        tokio::spawn(async move {
            tokio::time::sleep(after).await;
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(pid),
                nix::sys::signal::Signal::SIGKILL,
            );
            eprintln!("loadgen: sent SIGKILL to {pid}");
            stop.store(true, Ordering::SeqCst);
        });
    }
    let mut workers = Vec::new();
    for i in 0..args.concurrency {
        let (jobs, next, stop, addr, week) = (
            jobs.clone(),
            next.clone(),
            stop.clone(),
            args.addr[i % args.addr.len()],
            args.batch.week,
        );
        workers.push(tokio::spawn(async move {
            worker(addr, week, &jobs, &next, &stop, deadline).await
        }));
    }
    let mut total = WorkerResult::default();
    for worker in workers {
        let r = worker.await?;
        total.latencies.extend(r.latencies);
        total.accepted.extend(r.accepted);
        total.valid_ok += r.valid_ok;
        total.invalid_refused += r.invalid_refused;
        total.wrong.extend(r.wrong);
        total.failed += r.failed;
    }
    let elapsed = start.elapsed();
    total.latencies.sort();
    let pct = |p: f64| -> f64 {
        if total.latencies.is_empty() {
            return 0.0;
        }
        let i = ((total.latencies.len() as f64 * p).ceil() as usize)
            .clamp(1, total.latencies.len())
            - 1;
        total.latencies[i].as_secs_f64() * 1000.0
    };
    println!(
        "requests {} in {:.3}s: valid accepted {} ({:.0} reports/s), invalid refused {}, failed {}, wrong answers {}",
        total.latencies.len(),
        elapsed.as_secs_f64(),
        total.valid_ok,
        total.valid_ok as f64 / elapsed.as_secs_f64(),
        total.invalid_refused,
        total.failed,
        total.wrong.len()
    );
    println!(
        "latency ms: p50 {:.2} p90 {:.2} p99 {:.2} max {:.2}",
        pct(0.5),
        pct(0.9),
        pct(0.99),
        pct(1.0)
    );
    for wrong in total.wrong.iter().take(5) {
        println!("wrong: {wrong}");
    }
    if let Some(path) = &args.accepted {
        let mut text = total.accepted.join("\n");
        text.push('\n');
        std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))?;
    }
    if !total.wrong.is_empty() {
        bail!("{} requests got the wrong answer", total.wrong.len());
    }
    if args.kill.is_none() && total.failed > 0 {
        bail!("{} requests failed", total.failed);
    }
    Ok(())
}

async fn worker(
    addr: SocketAddr,
    week: Day,
    jobs: &[Job],
    next: &AtomicUsize,
    stop: &AtomicBool,
    deadline: Instant,
) -> WorkerResult {
    let mut result = WorkerResult::default();
    let mut sender = None;
    while !stop.load(Ordering::SeqCst) && Instant::now() < deadline {
        let i = next.fetch_add(1, Ordering::SeqCst);
        let Some(job) = jobs.get(i) else { break };
        if sender.is_none() {
            sender = connect(addr).await.ok();
        }
        let Some(conn) = sender.as_mut() else {
            result.failed += 1;
            if stop.load(Ordering::SeqCst) {
                break;
            }
            continue;
        };
        let request = Request::post(format!("/upload/{week}"))
            .header(hyper::header::HOST, "127.0.0.1")
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .body(Full::new(job.body.clone()))
            .expect("a valid request");
        let began = Instant::now();
        let answer = async {
            conn.ready().await?;
            let response = conn.send_request(request).await?;
            let status = response.status();
            let body = response.into_body().collect().await?.to_bytes();
            anyhow::Ok((status, body))
        }
        .await;
        match answer {
            Ok((status, body)) => {
                result.latencies.push(began.elapsed());
                match (job.valid, status) {
                    (true, StatusCode::OK) => {
                        result.valid_ok += 1;
                        result.accepted.push(job.key.clone());
                    }
                    (false, StatusCode::BAD_REQUEST) => result.invalid_refused += 1,
                    (_, status) => result.wrong.push(format!(
                        "valid={} got {status}: {}",
                        job.valid,
                        String::from_utf8_lossy(&body).trim()
                    )),
                }
                // The oversized body makes the server close the connection.
                if !job.valid {
                    sender = None;
                }
            }
            Err(_) => {
                result.failed += 1;
                sender = None;
            }
        }
    }
    result
}

async fn connect(
    addr: SocketAddr,
) -> anyhow::Result<hyper::client::conn::http1::SendRequest<Full<Bytes>>> {
    let stream = tokio::net::TcpStream::connect(addr).await?;
    stream.set_nodelay(true)?;
    let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    Ok(sender)
}

async fn verify(addr: SocketAddr, store: PathBuf, accepted: PathBuf) -> anyhow::Result<()> {
    let text = std::fs::read_to_string(&accepted)
        .with_context(|| format!("reading {}", accepted.display()))?;
    // Every report name in the store, in any generation (a report may be stored in two).
    let mut names = BTreeSet::new();
    let mut dirs = vec![store.join("reports")];
    while let Some(dir) = dirs.pop() {
        for entry in
            std::fs::read_dir(&dir).with_context(|| format!("reading {}", dir.display()))?
        {
            let entry = entry?;
            if entry.file_type()?.is_dir() {
                dirs.push(entry.path());
            } else if let Some(name) = entry.file_name().to_str().filter(|n| n.ends_with(".json")) {
                names.insert(name.to_string());
            }
        }
    }
    let mut missing = 0;
    let mut count = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let (week, x) = line.split_once(' ').context("malformed accepted line")?;
        count += 1;
        if !names.contains(&format!("{week}_{x}.json")) {
            missing += 1;
            eprintln!("missing: {week}_{x}.json");
        }
    }
    let stored = names.len();
    let index = weeks_index(addr).await?;
    let counted: u64 = index.weeks.iter().map(|w| w.reports).sum();
    println!(
        "accepted (2xx) {count}, missing from store {missing}, stored {stored}, counted by the server {counted}"
    );
    if missing > 0 || counted > stored as u64 || counted < count as u64 {
        bail!("crash check failed");
    }
    println!("crash check passed: every 2xx report stored and counted, none twice");
    Ok(())
}

/// `GET /api/weeks` of `addr`: every week it publishes.
async fn weeks_index(addr: SocketAddr) -> anyhow::Result<tally_protocol::aggregate::WeeksIndex> {
    let mut conn = connect(addr).await?;
    let request = Request::get("/api/weeks")
        .header(hyper::header::HOST, "127.0.0.1")
        .body(Full::new(Bytes::new()))?;
    let response = conn.send_request(request).await?;
    let body = response.into_body().collect().await?.to_bytes();
    Ok(serde_json::from_slice(&body)?)
}

/// How many reports `addr` publishes for the week of `week`.
async fn published(addr: SocketAddr, week: Day) -> anyhow::Result<u64> {
    let index = weeks_index(addr).await?;
    let monday = tally_protocol::aggregate::bucket_week(week);
    Ok(index
        .weeks
        .iter()
        .filter(|w| w.week == monday)
        .map(|w| w.reports)
        .sum())
}

async fn visibility(
    writer: SocketAddr,
    reader: SocketAddr,
    batch: Batch,
    samples: usize,
) -> anyhow::Result<()> {
    let week = batch.week;
    const LIMIT: Duration = Duration::from_secs(120);
    let mut rng = fastrand::Rng::new();
    let mut waits = Vec::new();
    for _ in 0..samples {
        let before = published(reader, week).await?;
        let x = rng.f64().max(1e-9);
        let body = batch.report(x).to_canonical_json();
        let mut conn = connect(writer).await?;
        let request = Request::post(format!("/upload/{week}"))
            .header(hyper::header::HOST, "127.0.0.1")
            .body(Full::new(Bytes::from(body)))?;
        let response = conn.send_request(request).await?;
        if response.status() != StatusCode::OK {
            bail!("the writer answered {}", response.status());
        }
        let answered = Instant::now();
        loop {
            if published(reader, week).await? > before {
                break;
            }
            if answered.elapsed() > LIMIT {
                bail!("the reader did not publish the report within {LIMIT:?}");
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        waits.push(answered.elapsed());
        // Start the next sample at a random point of the reader's re-read interval.
        tokio::time::sleep(Duration::from_millis(rng.u64(0..1000))).await;
    }
    waits.sort();
    let ms = |d: &Duration| d.as_secs_f64() * 1000.0;
    println!(
        "a report answered by one replica is published by another after: min {:.0} ms, p50 {:.0} ms, max {:.0} ms ({samples} samples)",
        ms(&waits[0]),
        ms(&waits[waits.len() / 2]),
        ms(&waits[waits.len() - 1])
    );
    Ok(())
}

fn fill(
    store: &std::path::Path,
    batch: Batch,
    reports: usize,
    generation: Option<u64>,
    seed: u64,
) -> anyhow::Result<()> {
    let week = batch.week;
    let began = Instant::now();
    let threads = 4;
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let store = store.to_path_buf();
            std::thread::spawn(move || -> anyhow::Result<()> {
                let mut rng = fastrand::Rng::with_seed(seed * 1000 + t as u64);
                let mut created_dirs = BTreeSet::new();
                for _ in (t..reports).step_by(threads) {
                    let x = rng.f64().max(1e-9);
                    let report = batch.report(x);
                    let key = tally_server::store::report_key(week, x, generation.unwrap_or(0));
                    let path = match generation {
                        Some(_) => store.join(key.as_ref()),
                        None => store
                            .join("reports")
                            .join(tally_protocol::aggregate::bucket_week(week).to_string())
                            .join(key.filename().context("a key has a name")?),
                    };
                    let dir = path.parent().context("a key has a folder")?.to_path_buf();
                    if created_dirs.insert(dir.clone()) {
                        std::fs::create_dir_all(&dir)?;
                    }
                    std::fs::write(&path, report.to_canonical_json())
                        .with_context(|| format!("writing {}", path.display()))?;
                }
                Ok(())
            })
        })
        .collect();
    for handle in handles {
        handle
            .join()
            .map_err(|_| anyhow::anyhow!("a fill thread panicked"))??;
    }
    let place = match generation {
        Some(generation) => format!("generation {generation}"),
        None => "the layout from before generations".to_string(),
    };
    println!(
        "wrote {reports} reports of the week of {week} into {place} in {:.1}s",
        began.elapsed().as_secs_f64()
    );
    Ok(())
}

async fn stall(
    addr: SocketAddr,
    clients: usize,
    duration: Duration,
    every: Duration,
    reconnect: bool,
) -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    const PROBE_TIMEOUT: Duration = Duration::from_secs(30);
    let deadline = tokio::time::Instant::now() + duration;
    // The stalled clients hold on until the last probe has its answer.
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let cut_off = Arc::new(AtomicUsize::new(0));
    let mut stallers = Vec::new();
    for _ in 0..clients {
        let (cut_off, mut stopped) = (cut_off.clone(), stopped.clone());
        stallers.push(tokio::spawn(async move {
            let chunk = b"GET /config.json HTTP/1.1\r\nHost: x\r\n\r\n".repeat(256);
            while !*stopped.borrow() {
                let Ok(mut stream) = tokio::net::TcpStream::connect(addr).await else {
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                };
                // Writes until the server stops reading, then waits there, never reading.
                let mut sent = 0usize;
                let ended = loop {
                    tokio::select! {
                        written = stream.write(&chunk[sent % chunk.len()..]) => match written {
                            Ok(n) if n > 0 => sent += n,
                            _ => break true,
                        },
                        _ = stopped.wait_for(|stop| *stop) => break false,
                    }
                };
                if ended {
                    cut_off.fetch_add(1, Ordering::SeqCst);
                }
                if !reconnect {
                    // Hold the (closed or open) socket until the end, as the audit's clients did.
                    let _ = stopped.wait_for(|stop| *stop).await;
                    break;
                }
            }
        }));
    }
    let mut waits = Vec::new();
    let mut unanswered = 0;
    let began = Instant::now();
    let mut tick = tokio::time::interval(every);
    loop {
        tick.tick().await;
        if tokio::time::Instant::now() >= deadline {
            break;
        }
        let started = Instant::now();
        let probe = async {
            let mut stream = tokio::net::TcpStream::connect(addr).await?;
            stream
                .write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                .await?;
            let mut answer = Vec::new();
            stream.read_to_end(&mut answer).await?;
            anyhow::Ok(answer.starts_with(b"HTTP/1.1 200"))
        };
        match tokio::time::timeout(PROBE_TIMEOUT, probe).await {
            Ok(Ok(true)) => waits.push(started.elapsed()),
            _ => unanswered += 1,
        }
    }
    let _ = stop.send(true);
    for staller in stallers {
        staller.await?;
    }
    waits.sort();
    let ms = |d: Option<&Duration>| d.map_or(f64::NAN, |d| d.as_secs_f64() * 1000.0);
    println!(
        "{clients} stalled clients{} for {:.1}s: {} probes answered, {unanswered} not (in {}s); wait ms p50 {:.1} p90 {:.1} max {:.1}; stalled connections cut off {}",
        if reconnect { " (reconnecting)" } else { "" },
        began.elapsed().as_secs_f64(),
        waits.len(),
        PROBE_TIMEOUT.as_secs(),
        ms(waits.get(waits.len() / 2)),
        ms(waits.get(waits.len() * 9 / 10)),
        ms(waits.last()),
        cut_off.load(Ordering::SeqCst),
    );
    if unanswered > 0 {
        bail!("{unanswered} health probes went unanswered");
    }
    Ok(())
}
