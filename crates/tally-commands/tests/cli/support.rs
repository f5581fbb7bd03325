//! What this binary's tests share: a temporary data directory with counter files, a
//! collector's key and the configs it signs, and ways to run the CLI (in-process with an
//! explicit environment, or as a real process). The fake collector they talk to is
//! `tally_test_support::collector`.

use std::ffi::OsString;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use tally_home::{Day, Env, Home};
use tally_test_support::collector::FakeCollector;
use tally_test_support::signing::KeyPair;

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

    /// Asserts that standard output says `text`, showing all of it otherwise.
    pub fn assert_stdout_has(&self, text: &str) {
        assert!(self.stdout.contains(text), "{}", self.stdout);
    }

    /// Asserts that standard error says `text`, showing all of it otherwise.
    pub fn assert_stderr_has(&self, text: &str) {
        assert!(self.stderr.contains(text), "{}", self.stderr);
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

    /// Runs the CLI in this process and asserts that it succeeded.
    pub fn run_ok(&self, today: &str, args: &[&str]) -> Output {
        let out = self.run(today, &[], args);
        assert!(out.ok(), "tally {args:?}: {out:?}");
        out
    }

    /// Counts a week of cargo 1.95.0 in the week of `day`: five runs, four of them builds.
    pub fn count_cargo_builds(&self, day: &str) {
        let counters = [("cargo/invocations", 5), ("cargo/subcommand:build", 4)];
        self.count(day, "cargo", "1.95.0", &counters);
    }

    /// `tally on --endpoint <endpoint> --key <collector's public key>` on `today`, with the
    /// extra environment pairs; whether it succeeded is for the test to judge.
    pub fn on(
        &self,
        today: &str,
        extra: &[(&str, &str)],
        endpoint: &str,
        collector: &Collector,
    ) -> Output {
        let args = ["on", "--endpoint", endpoint, "--key"];
        let key = collector.key.public_base64.as_str();
        self.run(today, extra, &[&args[..], &[key]].concat())
    }

    /// [`Fixture::on`] that must succeed: consent on `today` to uploads to `endpoint`.
    pub fn turn_on(&self, today: &str, endpoint: &str, collector: &Collector) -> Output {
        let on = self.on(today, &[], endpoint, collector);
        assert!(on.ok(), "{on:?}");
        on
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

    /// The text of `reports/<folder>/<name>` (a report, or the reason one was refused).
    pub fn report_text(&self, folder: &str, name: &str) -> String {
        let path = self.home.reports_dir().join(folder).join(name);
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
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
    pub key: KeyPair,
}

impl Collector {
    pub fn new() -> Collector {
        Collector {
            key: KeyPair::generate(),
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

    /// Signs `config` and has `server` serve it.
    pub fn publish(&self, server: &FakeCollector, config: &str) {
        server.publish(config, self.sign(config));
    }
}
