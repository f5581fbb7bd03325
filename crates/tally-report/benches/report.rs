//! Building the weekly report from 1,000 counter files (target: under 50 ms).
//!
//! Each iteration starts from a fresh copy of a data directory holding 1,000 counter files of
//! one ended week (6 programs x 167 versions, 24 counters each) and a signed config (which wants
//! 10 counters of 3 programs' newest 17 versions: an upload copy well under 100 KiB), and runs
//! the whole weekly step: read and parse every file, merge, verify the cached config, write the
//! local and the upload report (fsync), remove the counter files. Copying the directory is
//! setup, not measured.
//!
//! Run: `cargo bench -p tally-report --bench report`

use std::path::Path;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use tally_home::{Home, Mode, counter_file_name};
use tally_protocol::Day;
use tally_sys::{CounterFile, FileMeta};
use tally_test_support::home::copy_dir;

// The signed config set-up of this crate's tests.
#[path = "../tests/report/support.rs"]
mod support;
use support::install_config;

const FILES: usize = 1000;
const PROGRAMS: [&str; 6] = ["cargo", "rustc", "rustfmt", "cargo-fmt", "go", "gofmt"];

const CONFIG: &str = r#"{
  "version": 1, "expires": "2030-01-01", "sample_rate": 1.0,
  "os": ["linux", "macos"], "arch": ["x86_64", "aarch64"],
  "programs": [
    { "name": "cargo", "versions": ">=1.150.0", "counters": [ { "name": "cargo/n:{0,1,2,3,4,5,6,7,8,9}", "rate": 1.0 } ] },
    { "name": "rustc", "versions": ">=1.150.0", "counters": [ { "name": "rustc/n:{0,1,2,3,4,5,6,7,8,9}", "rate": 1.0 } ] },
    { "name": "go", "versions": ">=1.150.0", "counters": [ { "name": "go/n:{0,1,2,3,4,5,6,7,8,9}", "rate": 1.0 } ] }
  ]
}"#;

fn populate(root: &Path) {
    let home = Home::at(root);
    std::fs::create_dir_all(home.counters_dir()).unwrap();
    for i in 0..FILES {
        let program = PROGRAMS[i % PROGRAMS.len()];
        let meta = FileMeta {
            program: program.into(),
            version: format!("1.{}.0", i / PROGRAMS.len()),
            os: "linux".into(),
            arch: "x86_64".into(),
            week_start: "2026-11-09".into(),
            week_end: "2026-11-16".into(),
        };
        let path = home.counters_dir().join(counter_file_name(&meta));
        let (file, _) = CounterFile::open_or_create(&path, &meta).unwrap();
        for n in 0..24 {
            file.add(&format!("{program}/n:{n}"), (i * 31 + n) as u64 % 97 + 1)
                .unwrap();
        }
    }
    install_config(&home, CONFIG, "2026-11-17".parse().unwrap());
}

fn bench(c: &mut Criterion) {
    let today: Day = "2026-11-17".parse().unwrap();
    let on = Mode::On {
        since: "2026-11-01".parse().unwrap(),
    };
    // On the disk (what users have: the fsyncs wait for the disk, which on this shared VM is
    // also flushing five other builds), and, where there is one, on tmpfs, where fsync is free
    // and what remains is tally's own work.
    let mut places = vec![("disk", std::env::temp_dir())];
    if Path::new("/dev/shm").is_dir() {
        places.push(("tmpfs", "/dev/shm".into()));
    }
    let mut group = c.benchmark_group("weekly report");
    group.sample_size(20);
    for (place, base) in places {
        let template = tempfile::tempdir_in(&base).unwrap();
        populate(template.path());
        print_cpu_time(place, &base, template.path(), on, today);
        for (mode_name, mode) in [("on", on), ("local", Mode::Local)] {
            group.bench_function(format!("1000 files, mode {mode_name}, {place}"), |b| {
                b.iter_batched(
                    || {
                        let dir = tempfile::tempdir_in(&base).unwrap();
                        copy_dir(template.path(), dir.path());
                        dir
                    },
                    |dir| {
                        let home = Home::at(dir.path());
                        let summary = tally_report::build_due_reports(&home, mode, today).unwrap();
                        assert_eq!(summary.built[0].files, FILES);
                        assert_eq!(
                            summary.pending_written.len(),
                            usize::from(mode != Mode::Local)
                        );
                        assert!(summary.problems.is_empty(), "{:?}", summary.problems);
                        dir // dropped (deleted) outside the measurement
                    },
                    BatchSize::PerIteration,
                )
            });
        }
        // The read-and-parse part alone (non-destructive, no setup needed).
        group.bench_function(format!("1000 files, read and parse only, {place}"), |b| {
            let home = Home::at(template.path());
            b.iter(|| assert_eq!(home.counter_store().list().len(), FILES))
        });
    }
    group.finish();
}

/// CPU time (user + system) of one weekly build, averaged over a few runs. On a machine shared
/// with other work, wall time mostly measures the wait for a core; CPU time does not.
fn print_cpu_time(place: &str, base: &Path, template: &Path, mode: Mode, today: Day) {
    use nix::sys::resource::{UsageWho, getrusage};
    let cpu = || {
        let u = getrusage(UsageWho::RUSAGE_SELF).unwrap();
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 * 1e3 + tv.tv_usec() as f64 / 1e3;
        t(u.user_time()) + t(u.system_time())
    };
    const RUNS: u32 = 10;
    let mut total_ms = 0.0;
    for _ in 0..RUNS {
        let dir = tempfile::tempdir_in(base).unwrap();
        copy_dir(template, dir.path());
        let home = Home::at(dir.path());
        let before = cpu();
        tally_report::build_due_reports(&home, mode, today).unwrap();
        total_ms += cpu() - before;
    }
    println!(
        "weekly report/1000 files, mode on, {place}: CPU time {:.1} ms per build (mean of {RUNS})",
        total_ms / f64::from(RUNS)
    );
}

criterion_group!(benches, bench);
criterion_main!(benches);
