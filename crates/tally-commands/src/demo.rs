//! `tally demo`: a whole collector and client on this machine, in temporary directories.
//!
//! The loop, end to end, with real programs: a freshly generated minisign key
//! (`tally-server keygen`), a chart config naming every counter tally knows and the upload
//! config generated from it (`tally-server config generate`), signed (`tally-server sign`), a
//! temporary local store filled with [`SIMULATED_WEEKS`] weeks of simulated installations
//! (`simulate.rs`, stored with `tally-server import --simulated`, so every page says they are
//! simulated), `tally-server serve` on 127.0.0.1 with the default publication threshold, a
//! temporary tally home (`TALLY_DIR`, never the user's own) turned `on` against that server,
//! a sample cargo project (and a Go one when `go` is installed) built through the shims and the
//! wrapper, the clock override (`TALLY_NOW`) moved past the week, and `tally upload`. Then it
//! prints where the dashboard is and what to look at.
//!
//! Timeline (days relative to today): consent at -21, builds at -10 (in a week that began after
//! the consent day and has ended by today), upload today. The server runs with `TALLY_NOW` set
//! to today as well, so it accepts the ended week.
//!
//! With `--private-aggregation` (`private.rs`) the collector never sees a report: a DAP leader
//! and helper run beside it, the simulated weeks (those inside the aggregators' replay horizon)
//! and the real client's week go to the leader as DAP reports, and the collector, restarted
//! with its credential once the real week is sent (so that no batch is spent before it
//! arrives), collects each ended week and publishes the aggregate.
//!
//! Promises: nothing outside one temporary directory is written by tally (the user's real
//! data directory is never touched; the sample builds use their own target dir, `GOCACHE` and
//! `GOPATH` in it too); the server listens on loopback only; on exit (`--exit`, Ctrl-C, or
//! stdin closed) the server is stopped and the directory removed unless `--keep`.

use std::ffi::OsString;
use std::fmt::Write as _;
use std::io::{BufRead, BufReader, IsTerminal, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use nix::sys::signal::Signal;
use tally_home::Day;
use tally_protocol::aggregate::{ProgramWeek, WeeksIndex, bucket_week};

mod private;
mod simulate;

/// Options of `tally demo`.
#[derive(Debug, Clone, clap::Args)]
pub struct DemoArgs {
    /// Keep the temporary directories after the demo ends.
    #[arg(long)]
    pub keep: bool,
    /// Do not try to open a browser.
    #[arg(long)]
    pub no_browser: bool,
    /// Stop the server as soon as the demo has run, instead of waiting for Ctrl-C.
    #[arg(long)]
    pub exit: bool,
    /// Private aggregation: a DAP leader and helper beside the collector, every report sent to
    /// them as secret shares, and the charts published from the aggregate the collector
    /// collects, never from a report.
    #[arg(long)]
    pub private_aggregation: bool,
}

/// The cargo commands the demo runs on its sample project, in order (arguments after `cargo`).
pub const CARGO_STEPS: &[&[&str]] = &[&["build"], &["build", "--release"], &["check"], &["test"]];

/// The Go commands the demo runs on its sample module when `go` is installed.
pub const GO_STEPS: &[&[&str]] = &[&["build", "./..."], &["vet", "./..."], &["test", "./..."]];

/// The gofmt commands the demo runs when `go` is installed.
pub const GOFMT_STEPS: &[&[&str]] = &[&["-l", "."]];

/// Days before today: when `tally on` is recorded, and when the sample builds run.
const CONSENT_DAYS_AGO: i64 = 21;
const BUILD_DAYS_AGO: i64 = 10;
/// The sample config stays valid this long.
const CONFIG_VALID_DAYS: i64 = 90;
/// Longest wait for the collector to collect the week of the real report.
const COLLECT_TIMEOUT: Duration = Duration::from_secs(120);
/// Longest wait for the server to start answering.
const SERVER_START_TIMEOUT: Duration = Duration::from_secs(30);

/// The line the demo prints with the dashboard's address; tests look for it.
pub const DASHBOARD_LINE_PREFIX: &str = "dashboard: ";
/// The line the demo prints with the temporary tally home; tests look for it.
pub const HOME_LINE_PREFIX: &str = "demo tally home: ";

/// Weeks of simulated installations in the demo's store, the last being the calendar week of
/// the sample builds (the real report lands in it or, by the installation's weekday, in the one
/// before), so the pages look like a collector's after a few months.
pub const SIMULATED_WEEKS: usize = 12;
/// The demo's publication threshold: the default, as a real collector's.
pub const DEMO_THRESHOLD: u64 = 5;
/// Platforms the demo's config asks for (and the simulation draws from), with this machine's
/// own added when it is not among them.
const DEMO_OS: [&str; 3] = ["linux", "macos", "windows"];
const DEMO_ARCH: [&str; 2] = ["x86_64", "aarch64"];

/// Runs `tally demo`.
pub fn run(args: &DemoArgs) -> anyhow::Result<()> {
    let stop = stop_flag()?;
    let env = tally_home::Env::from_process();
    let today = env.today();
    let day = |offset: i64| {
        today
            .plus_days(offset)
            .context("the demo's dates are out of range; check TALLY_NOW")
    };
    let consent = day(-CONSENT_DAYS_AGO)?;
    let build_day = day(-BUILD_DAYS_AGO)?;
    let expires = day(CONFIG_VALID_DAYS)?;

    let tally = std::env::current_exe().context("cannot find the running tally executable")?;
    let server_bin = find_server(&tally)?;
    let root = tempfile::Builder::new()
        .prefix("tally-demo-")
        .tempdir()
        .context("cannot create a temporary directory for the demo; check TMPDIR")?;
    let dirs = Dirs::new(root.path())?;
    let mut demo = Demo {
        dirs,
        tally: tally.clone(),
        server_bin,
        server: None,
        aggregators: None,
        private_aggregation: args.private_aggregation,
        simulated_weeks_sent: Vec::new(),
        served: None,
        stop: Arc::clone(&stop),
        home_outlives_summary: !args.exit || args.keep,
    };
    say(&format!("tally demo: working in {}", root.path().display()));
    if tally_home::env::var_os("DO_NOT_TRACK").is_some()
        || tally_home::env::var_os("TALLY").is_some()
    {
        say(
            "  (TALLY and DO_NOT_TRACK are ignored inside the demo: it uses its own temporary home and a collector on this machine, so nothing leaves it)",
        );
    }

    let result = demo.run_loop(today, consent, build_day, expires);
    let outcome = match result {
        Ok(url) => {
            if !args.exit {
                if !args.no_browser && std::io::stdout().is_terminal() {
                    open_browser(&url);
                }
                say("Press Ctrl-C (or close stdin) to stop the server and clean up.");
                wait_for_stop(&stop);
            }
            Ok(())
        }
        Err(e) => Err(e),
    };
    demo.stop_server();
    // The leader and the helper, if any, before their stores go.
    demo.aggregators = None;
    if args.keep {
        let kept = root.keep();
        say(&format!("tally demo: kept {}", kept.display()));
    } else {
        let path = root.path().to_path_buf();
        root.close()
            .with_context(|| format!("could not remove {}", path.display()))?;
        say("tally demo: stopped the server and removed its temporary directory");
    }
    outcome
}

fn say(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{}", crate::escape::escape_control(line));
    let _ = out.flush();
}

/// The temporary layout.
struct Dirs {
    root: PathBuf,
    keys: PathBuf,
    store: PathBuf,
    home: PathBuf,
    shims: PathBuf,
    rust_project: PathBuf,
    go_project: PathBuf,
    caches: PathBuf,
}

impl Dirs {
    fn new(root: &Path) -> anyhow::Result<Dirs> {
        let dirs = Dirs {
            root: root.to_path_buf(),
            keys: root.join("collector"),
            store: root.join("collector/store"),
            home: root.join("tally-home"),
            shims: root.join("shims"),
            rust_project: root.join("sample-rust"),
            go_project: root.join("sample-go"),
            caches: root.join("caches"),
        };
        for dir in [&dirs.keys, &dirs.store, &dirs.shims, &dirs.caches] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(dirs)
    }
}

struct Demo {
    dirs: Dirs,
    tally: PathBuf,
    server_bin: PathBuf,
    server: Option<Child>,
    /// With `--private-aggregation`: the DAP leader and helper.
    aggregators: Option<private::Aggregators>,
    private_aggregation: bool,
    /// With `--private-aggregation`: the Mondays of the simulated weeks sent to the leader.
    simulated_weeks_sent: Vec<Day>,
    /// What the server was started with: config, chart config, public key, port.
    served: Option<(PathBuf, PathBuf, PathBuf, u16)>,
    /// Set by Ctrl-C or SIGTERM.
    stop: Arc<AtomicBool>,
    /// The temporary home outlives the printed summary (no `--exit`, or `--keep`), so the
    /// `tally view` hint can be followed.
    home_outlives_summary: bool,
}

impl Demo {
    /// Everything up to the printed dashboard address; returns that address. Five phases, each
    /// announced to the user as it starts.
    fn run_loop(
        &mut self,
        today: Day,
        consent: Day,
        build_day: Day,
        expires: Day,
    ) -> anyhow::Result<String> {
        let (base, key_line) = self.start_collector(today, build_day, expires)?;
        self.turn_on(consent, &base, &key_line)?;
        self.build_samples(build_day)?;
        self.upload(today)?;
        if self.private_aggregation {
            self.collect_weeks(&base, today)?;
        }
        self.show_published(&base)?;
        Ok(format!("{base}/"))
    }

    /// Phase 1, the collector: key, config, signature, simulated history, server. Returns the
    /// server's base URL and the public key line clients are given.
    fn start_collector(
        &mut self,
        today: Day,
        build_day: Day,
        expires: Day,
    ) -> anyhow::Result<(String, String)> {
        say("\n1. A collector: a fresh minisign key, a signed config, tally-server on 127.0.0.1");
        let (os, arch) = platforms();
        let signed = self.sign_config(&os, &arch, expires)?;
        // Weeks of simulated installations, ending with the week of the sample builds.
        let last = bucket_week(build_day);
        let mut mondays: Vec<Day> = (0..SIMULATED_WEEKS)
            .rev()
            .filter_map(|back| last.plus_days(-7 * back as i64))
            .collect();
        if self.private_aggregation {
            mondays = private::within_horizon(&mondays, today);
        }
        let simulated = self.seed_history(&mondays, &os, &arch)?;
        if self.private_aggregation {
            self.simulated_weeks_sent = mondays.clone();
        }
        let key_line = read_public_key(&signed.public_key)?;

        let port = self.start_server(
            &signed.config,
            &signed.charts,
            &signed.public_key,
            today,
            None,
        )?;
        let base = format!("http://127.0.0.1:{port}");
        wait_healthy(&base)?;
        self.served = Some((signed.config, signed.charts, signed.public_key, port));
        let first = mondays.first().map_or(String::new(), Day::to_string);
        if self.private_aggregation {
            say(&format!(
                "   tally-server is serving on {base} with publication threshold {DEMO_THRESHOLD}; \
                 {simulated} SIMULATED installation-weeks ({first} to {last}) went to the leader \
                 as DAP reports, secret shares the collector cannot read; every page says the data \
                 is simulated"
            ));
        } else {
            say(&format!(
                "   tally-server is serving on {base} with publication threshold {DEMO_THRESHOLD}, \
                 its store holding {simulated} SIMULATED reports over {SIMULATED_WEEKS} weeks \
                 ({first} to {last}), so the pages look like a collector's after a few months; \
                 every page says the data is simulated"
            ));
        }
        Ok((base, key_line))
    }

    /// The collector's key pair and its config, generated from the demo's charts and signed;
    /// with private aggregation, the leader and helper provisioned and started first, since
    /// the config carries their task.
    fn sign_config(
        &mut self,
        os: &[&str],
        arch: &[&str],
        expires: Day,
    ) -> anyhow::Result<SignedConfig> {
        let public_key = self.dirs.keys.join("demo.pub");
        let secret_key = self.dirs.keys.join("demo.key");
        let mut keygen = Command::new(&self.server_bin);
        keygen
            .arg("keygen")
            .arg("--public-key")
            .arg(&public_key)
            .arg("--secret-key")
            .arg(&secret_key)
            .arg("--no-password")
            .env_remove("TALLY_SERVER_KEY_PASSWORD");
        run_quiet(&mut keygen, "tally-server keygen")?;
        let charts_path = self.dirs.keys.join("charts.toml");
        let mut charts = simulate::charts_toml(os, arch)?;
        let ports = if self.private_aggregation {
            let (leader, helper, table) = private::aggregation_table()?;
            charts.push_str(&table);
            Some((leader, helper))
        } else {
            None
        };
        std::fs::write(&charts_path, charts)
            .with_context(|| format!("cannot write {}", charts_path.display()))?;
        if let Some(ports) = ports {
            let aggregators = private::provision_and_start(
                &self.server_bin,
                &self.dirs.root,
                &charts_path,
                ports,
            )?;
            say(&format!(
                "   Private aggregation: a DAP leader on {} and a helper on {} (tally-server dap, \
                 each with its own store and key), a task provisioned for the charts' layout",
                aggregators.leader_url, aggregators.helper_url
            ));
            self.aggregators = Some(aggregators);
        }
        let config_path = self.dirs.keys.join("config.json");
        let mut generate = Command::new(&self.server_bin);
        generate
            .args(["config", "generate"])
            .arg(&charts_path)
            .args(["--expected-reports", "1", "--first", "--expires"])
            .arg(expires.to_string())
            .arg("--out")
            .arg(&config_path);
        run_quiet(&mut generate, "tally-server config generate")?;
        let mut sign = Command::new(&self.server_bin);
        sign.arg("sign")
            .arg(&config_path)
            .arg("--secret-key")
            .arg(&secret_key)
            .env_remove("TALLY_SERVER_KEY_PASSWORD");
        run_quiet(&mut sign, "tally-server sign")?;
        Ok(SignedConfig {
            public_key,
            charts: charts_path,
            config: config_path,
        })
    }

    /// Simulated installations' weeks of `mondays`: imported into the collector's store, or,
    /// with private aggregation, sent to the leader as clients send theirs (the store is then
    /// only marked as simulated). Returns how many.
    fn seed_history(&self, mondays: &[Day], os: &[&str], arch: &[&str]) -> anyhow::Result<usize> {
        let simulated_dir = self.dirs.keys.join("simulated");
        // Sent weeks are kept here only for the curious (`simulated-sent/`).
        let written_dir = if self.private_aggregation {
            self.dirs.keys.join("simulated-sent")
        } else {
            simulated_dir.clone()
        };
        for dir in [&simulated_dir, &written_dir] {
            std::fs::create_dir_all(dir)
                .with_context(|| format!("cannot create {}", dir.display()))?;
        }
        let simulated = simulate::reports(mondays, os, arch, 2026);
        for (i, report) in simulated.iter().enumerate() {
            let path = written_dir.join(format!("{i:06}.json"));
            std::fs::write(&path, report.to_canonical_json())
                .with_context(|| format!("cannot write {}", path.display()))?;
        }
        if self.private_aggregation {
            let section = private::read_section(&self.dirs.keys)?;
            private::upload_simulated(&section, &simulated)?;
        }
        let mut import = Command::new(&self.server_bin);
        import
            .arg("import")
            .arg("--store")
            .arg(&self.dirs.store)
            .arg("--simulated")
            .arg(simulate::NOTE)
            .arg(&simulated_dir);
        run_quiet(&mut import, "tally-server import")?;
        Ok(simulated.len())
    }

    /// Phase 2, the client: a temporary home, turned on against that collector.
    fn turn_on(&self, consent: Day, base: &str, key_line: &str) -> anyhow::Result<()> {
        say(&format!(
            "\n2. A temporary tally home, turned on {consent} (TALLY_NOW moves the clock)"
        ));
        say(&format!("{HOME_LINE_PREFIX}{}", self.dirs.home.display()));
        let mut on = self.command(&self.tally, consent);
        on.arg("on")
            .arg("--endpoint")
            .arg(base)
            .arg("--key")
            .arg(key_line);
        self.run_shown(&mut on, "tally on")?;
        Ok(())
    }

    /// Phase 3, builds of the sample projects through the shims and the wrapper.
    fn build_samples(&self, build_day: Day) -> anyhow::Result<()> {
        self.make_shims()?;
        say(&format!(
            "\n3. Building sample projects on {build_day} through the shims in {}",
            self.dirs.shims.display()
        ));
        let has_cargo = find_on_path("cargo", &original_path()).is_some();
        let has_go = find_on_path("go", &original_path()).is_some();
        if !has_cargo && !has_go {
            bail!(
                "neither cargo nor go is on PATH, so the demo has nothing to build; install Rust \
                 (https://rustup.rs) or Go and run `tally demo` again"
            );
        }
        if has_cargo {
            write_rust_project(&self.dirs.rust_project)?;
            for step in CARGO_STEPS {
                let mut cargo = self.command(&self.dirs.shims.join("cargo"), build_day);
                cargo.args(*step).current_dir(&self.dirs.rust_project);
                self.run_shown(&mut cargo, &format!("cargo {}", step.join(" ")))?;
            }
        } else {
            say("   (cargo is not installed: skipping the Rust sample)");
        }
        if has_go {
            write_go_project(&self.dirs.go_project)?;
            for (tool, steps) in [("go", GO_STEPS), ("gofmt", GOFMT_STEPS)] {
                for step in steps {
                    let mut command = self.command(&self.dirs.shims.join(tool), build_day);
                    command.args(*step).current_dir(&self.dirs.go_project);
                    self.run_shown(&mut command, &format!("{tool} {}", step.join(" ")))?;
                }
            }
        } else {
            say("   (go is not installed: skipping the Go sample)");
        }

        // A tool whose version was not cached yet is counted by a detached helper once the
        // version is known: let those counts land before the week's report is made.
        tally_process::version::wait_for_pending(
            &tally_home::Home::at(&self.dirs.home),
            tally_process::version::HELPER_LIFETIME,
        );
        Ok(())
    }

    /// Phase 4: the week ends; upload.
    fn upload(&self, today: Day) -> anyhow::Result<()> {
        say(&format!(
            "\n4. Moving the clock to {today}, past the end of that week, and uploading"
        ));
        let mut upload = self.command(&self.tally, today);
        upload.arg("upload");
        self.run_shown(&mut upload, "tally upload")?;
        Ok(())
    }

    /// Phase 4b, private aggregation: the collector restarted with its credential (on the same
    /// port), collecting each ended week from the leader; waits until the week of the real
    /// report is published. (The first server held no credential, so that no week's batch was
    /// spent before the real client's report reached the leader.)
    fn collect_weeks(&mut self, base: &str, today: Day) -> anyhow::Result<()> {
        let (config, charts, public_key, port) = self
            .served
            .clone()
            .context("the collector was not started")?;
        let credential = self
            .aggregators
            .as_ref()
            .context("the aggregators were not started")?
            .credential
            .clone();
        say(&format!(
            "\n4b. The collector collects each ended week from the leader (tally-server serve \
             --dap-credential): the aggregators release a week's sum only for at least \
             {} reports, sealed to the collector's key",
            private::MIN_BATCH_SIZE
        ));
        self.stop_server();
        self.start_server(
            &config,
            &charts,
            &public_key,
            today,
            Some((&credential, port)),
        )?;
        wait_healthy(base)?;
        let sent = tally_report::build::report_weeks(
            &tally_home::Home::at(&self.dirs.home),
            tally_report::build::SENT,
        );
        let Some(mine) = sent.last().map(|week| bucket_week(*week)) else {
            bail!("`tally upload` sent no week; see its output above");
        };
        // Every week sent to the leader is due: the dashboard is shown once all are published,
        // not while the collector is still on some of them.
        let mut due: Vec<Day> = self.simulated_weeks_sent.clone();
        due.push(mine);
        let deadline = Instant::now() + COLLECT_TIMEOUT;
        loop {
            let index: WeeksIndex = get_json(&format!("{base}/api/weeks"))?;
            let missing: Vec<String> = due
                .iter()
                .filter(|monday| !index.weeks.iter().any(|week| week.week == **monday))
                .map(Day::to_string)
                .collect();
            if missing.is_empty() {
                say(&format!(
                    "   collected {} weeks from the leader, the week of {mine} (yours) among them",
                    index.weeks.len()
                ));
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "the collector did not publish the weeks of {} within {COLLECT_TIMEOUT:?}; see {}",
                    missing.join(", "),
                    self.dirs.keys.join("server.log").display()
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Phase 5: what the collector now publishes, and where to look.
    fn show_published(&self, base: &str) -> anyhow::Result<()> {
        let index: WeeksIndex = get_json(&format!("{base}/api/weeks"))?;
        let Some(week) = index.weeks.first() else {
            bail!(
                "the upload finished but the collector publishes no week; see `tally upload` above and \
                 {}/collector/store for what arrived",
                self.dirs.root.display()
            );
        };
        let mut summary = String::new();
        for program in week.programs.keys() {
            let published: ProgramWeek =
                get_json(&format!("{base}/api/weeks/{}/{program}", week.week))?;
            if self.private_aggregation {
                // The layout counts invocations as presence only: reports, not events.
                let _ = writeln!(
                    summary,
                    "   {program}: {} reports, {} counters  →  {base}/programs/{program}",
                    published.reports,
                    published.counters.len()
                );
                continue;
            }
            let invocations = published
                .counters
                .iter()
                .find(|c| c.name == format!("{program}/invocations"))
                .and_then(|c| c.total)
                .unwrap_or(0);
            let _ = writeln!(
                summary,
                "   {program}: {invocations} invocations, {} counters  →  {base}/programs/{program}",
                published.counters.len()
            );
        }
        let from = if self.private_aggregation {
            ", from the aggregate: no report was ever stored by the collector"
        } else {
            ""
        };
        say(&format!(
            "\n5. The collector now publishes the week of {} ({}{from}):\n{summary}",
            week.week,
            reports_phrase(week.reports)
        ));
        let sent = tally_report::build::report_weeks(
            &tally_home::Home::at(&self.dirs.home),
            tally_report::build::SENT,
        );
        if let Some(mine) = sent.last() {
            say(&week_relation(*mine));
        }
        say(&format!("{DASHBOARD_LINE_PREFIX}{base}/"));
        say(&format!(
            "   Look at: the index (reports per week), each program's page (the latest week of each \
             partition as bars with their 95% intervals, shares over the weeks, compile-time \
             histograms, crashes per rustc version, the most frequent errors and lints; splits by \
             version, OS and arch), what is collected and why at {base}/config, and the open data \
             at {base}/data/."
        ));
        if self.home_outlives_summary {
            say(&format!(
                "   Your own view of the same data: TALLY_DIR={} {} view",
                self.dirs.home.display(),
                self.tally.display()
            ));
        }
        Ok(())
    }

    /// `program` (tally itself, or a shim) run against the demo home on `day`, with PATH
    /// starting at the shims and the builds' caches inside the demo directory.
    fn command(&self, program: &Path, day: Day) -> Command {
        let mut command = Command::new(program);
        for (name, _) in tally_home::env::vars_os() {
            let name_text = name.to_string_lossy();
            if name_text.starts_with("TALLY") || name_text == "DO_NOT_TRACK" {
                command.env_remove(&name);
            }
        }
        let mut path = vec![self.dirs.shims.clone()];
        path.extend(std::env::split_paths(&original_path()));
        command
            .env(
                "PATH",
                std::env::join_paths(path).unwrap_or_else(|_| original_path()),
            )
            .env("TALLY_DIR", &self.dirs.home)
            .env("TALLY_NOW", day.to_string())
            .env("CARGO_TARGET_DIR", self.dirs.caches.join("cargo-target"))
            .env("GOCACHE", self.dirs.caches.join("go-build"))
            .env("GOPATH", self.dirs.caches.join("gopath"))
            .env("GOFLAGS", "-mod=mod")
            .env("GOTOOLCHAIN", "local")
            .env_remove("RUSTC_WRAPPER")
            .env_remove("CARGO_BUILD_RUSTC_WRAPPER")
            .stdin(Stdio::null());
        command
    }

    /// Links the shims as `tally setup` does: to the `tally-shim` beside tally, else to tally.
    fn make_shims(&self) -> anyhow::Result<()> {
        let binary = tally_process::lookup::hot_binary_beside(&self.tally)
            .unwrap_or_else(|| self.tally.clone());
        for tool in tally_grammar::Tool::ALL {
            let link = self.dirs.shims.join(tool.name());
            std::os::unix::fs::symlink(&binary, &link).with_context(|| {
                format!(
                    "cannot create the shim {} -> {}",
                    link.display(),
                    binary.display()
                )
            })?;
        }
        Ok(())
    }

    /// Runs `command`, printing its name, indenting its output, failing with it on error.
    fn run_shown(&self, command: &mut Command, label: &str) -> anyhow::Result<()> {
        say(&format!("   $ {label}"));
        let output = command
            .output()
            .with_context(|| format!("could not run {label}"))?;
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
        for line in text.lines().filter(|l| !l.trim().is_empty()) {
            say(&format!("     {line}"));
        }
        if self.stop.load(Ordering::SeqCst) {
            bail!("the demo was interrupted during {label}");
        }
        check_status(output.status, label)
    }

    /// Starts `tally-server serve` on a free loopback port; returns the port.
    fn start_server(
        &mut self,
        config: &Path,
        charts: &Path,
        public_key: &Path,
        today: Day,
        collecting: Option<(&Path, u16)>,
    ) -> anyhow::Result<u16> {
        let log_path = self.dirs.keys.join("server.log");
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&log_path)
            .with_context(|| format!("cannot create {}", log_path.display()))?;
        let mut command = Command::new(&self.server_bin);
        command.arg("serve");
        if let Some((credential, _)) = collecting {
            command
                .arg("--dap-credential")
                .arg(credential)
                .arg("--collect-after-days")
                .arg(private::COLLECT_AFTER_DAYS.to_string())
                .args(["--collect-every-secs", "1"]);
        }
        let port = collecting.map_or(0, |(_, port)| port);
        let mut child = command
            .arg("--addr")
            .arg(format!("127.0.0.1:{port}"))
            .arg("--store")
            .arg(&self.dirs.store)
            .arg("--config")
            .arg(config)
            .arg("--key")
            .arg(public_key)
            .arg("--charts")
            .arg(charts)
            .arg("--threshold")
            .arg(DEMO_THRESHOLD.to_string())
            .arg("--flush-ms")
            .arg("50")
            .env("TALLY_NOW", today.to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .spawn()
            .with_context(|| format!("could not start {}", self.server_bin.display()))?;
        let stdout = child.stdout.take().context("the server's stdout")?;
        self.server = Some(child);
        let mut lines = BufReader::new(stdout);
        let mut first = String::new();
        lines
            .read_line(&mut first)
            .context("could not read the server's first line")?;
        let port = first
            .trim()
            .strip_prefix("tally-server: listening on port ")
            .and_then(|p| p.parse::<u16>().ok());
        let Some(port) = port else {
            let log = std::fs::read_to_string(&log_path).unwrap_or_default();
            bail!("tally-server did not start: {first:?}\n{log}");
        };
        // Keep draining the server's stdout so it never blocks on a full pipe.
        std::thread::spawn(move || {
            let mut sink = Vec::new();
            let _ = lines.read_to_end(&mut sink);
        });
        Ok(port)
    }

    /// Stops the server (SIGTERM, so it flushes; SIGKILL if it does not stop within 10 s).
    fn stop_server(&mut self) {
        let Some(mut child) = self.server.take() else {
            return;
        };
        if let Ok(pid) = i32::try_from(child.id()) {
            let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), Signal::SIGTERM);
        }
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

impl Drop for Demo {
    fn drop(&mut self) {
        self.stop_server();
    }
}

fn check_status(status: ExitStatus, label: &str) -> anyhow::Result<()> {
    if status.success() {
        Ok(())
    } else {
        bail!("{label} failed ({status}); its output is above")
    }
}

fn run_quiet(command: &mut Command, label: &str) -> anyhow::Result<()> {
    let output = command
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("could not run {label}"))?;
    if !output.status.success() {
        bail!(
            "{label} failed ({}): {}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        );
    }
    Ok(())
}

/// "1 report", "243 reports".
fn reports_phrase(reports: u64) -> String {
    format!("{reports} report{}", if reports == 1 { "" } else { "s" })
}

/// How the week the upload named relates to the week the collector publishes: an installation's
/// week starts on its own weekday (chosen at random once, so that uploads spread over the week),
/// and the collector files each report under the Monday of the week in which it began.
fn week_relation(installation_week: Day) -> String {
    let monday = bucket_week(installation_week);
    if monday == installation_week {
        format!(
            "   The report sent above covers this installation's week from {installation_week}, a \
             Monday: the collector publishes it in the week of {monday}."
        )
    } else {
        format!(
            "   The report sent above covers this installation's own week, from \
             {installation_week} (an installation's week starts on a weekday of its own, chosen \
             at random, so that uploads spread over the week); the collector publishes each \
             report in the Monday week it began in, here the week of {monday}."
        )
    }
}

/// `tally-server` next to the running `tally`, else on PATH.
fn find_server(tally: &Path) -> anyhow::Result<PathBuf> {
    if let Some(dir) = tally.parent() {
        let sibling = dir.join("tally-server");
        if sibling.is_file() {
            return Ok(sibling);
        }
    }
    find_on_path("tally-server", &original_path()).context(
        "tally demo needs the tally-server binary, next to tally or on PATH; build it with \
         `cargo build --release --bin tally-server` or run ./install.sh",
    )
}

fn original_path() -> OsString {
    tally_home::env::var_os("PATH").unwrap_or_default()
}

fn find_on_path(name: &str, path: &OsString) -> Option<PathBuf> {
    std::env::split_paths(path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// The public key's base64 line (the second line of a minisign `.pub` file).
fn read_public_key(path: &Path) -> anyhow::Result<String> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("cannot read {}", path.display()))?;
    text.lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with("untrusted comment:"))
        .map(str::to_owned)
        .with_context(|| format!("{} holds no public key", path.display()))
}

/// The platforms the demo's config asks for: [`DEMO_OS`] and [`DEMO_ARCH`], and this
/// machine's own.
/// The collector's public key, chart config and signed config, as the demo wrote them.
struct SignedConfig {
    public_key: PathBuf,
    charts: PathBuf,
    config: PathBuf,
}

fn platforms() -> (Vec<&'static str>, Vec<&'static str>) {
    let mut os = DEMO_OS.to_vec();
    if !os.contains(&std::env::consts::OS) {
        os.push(std::env::consts::OS);
    }
    let mut arch = DEMO_ARCH.to_vec();
    if !arch.contains(&std::env::consts::ARCH) {
        arch.push(std::env::consts::ARCH);
    }
    (os, arch)
}

fn write_rust_project(dir: &Path) -> anyhow::Result<()> {
    let files = [
        (
            "Cargo.toml",
            "[package]\nname = \"tally-demo-sample\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[dependencies]\n",
        ),
        (
            "src/lib.rs",
            "/// Adds two numbers.\npub fn add(a: u64, b: u64) -> u64 {\n    a + b\n}\n\n#[cfg(test)]\nmod tests {\n    #[test]\n    fn adds() {\n        assert_eq!(super::add(2, 2), 4);\n    }\n}\n",
        ),
        (
            "src/main.rs",
            "fn main() {\n    println!(\"2 + 2 = {}\", tally_demo_sample::add(2, 2));\n}\n",
        ),
    ];
    write_files(dir, &files)
}

fn write_go_project(dir: &Path) -> anyhow::Result<()> {
    let files = [
        ("go.mod", "module example.com/tallydemo\n\ngo 1.19\n"),
        (
            "main.go",
            "package main\n\nimport \"fmt\"\n\nfunc add(a, b int) int { return a + b }\n\nfunc main() {\n\tfmt.Println(\"2 + 2 =\", add(2, 2))\n}\n",
        ),
        (
            "main_test.go",
            "package main\n\nimport \"testing\"\n\nfunc TestAdd(t *testing.T) {\n\tif add(2, 2) != 4 {\n\t\tt.Fatal(\"add\")\n\t}\n}\n",
        ),
    ];
    write_files(dir, &files)
}

fn write_files(dir: &Path, files: &[(&str, &str)]) -> anyhow::Result<()> {
    for (name, content) in files {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent)
                .with_context(|| format!("cannot create {}", parent.display()))?;
        }
        std::fs::write(&path, content)
            .with_context(|| format!("cannot write {}", path.display()))?;
    }
    Ok(())
}

/// Waits until `GET {base}/healthz` answers, bounded by [`SERVER_START_TIMEOUT`].
fn wait_healthy(base: &str) -> anyhow::Result<()> {
    let agent = agent();
    let deadline = Instant::now() + SERVER_START_TIMEOUT;
    loop {
        if agent
            .get(format!("{base}/healthz"))
            .call()
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("tally-server did not answer {base}/healthz within {SERVER_START_TIMEOUT:?}");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into()
}

fn get_json<T: serde::de::DeserializeOwned>(url: &str) -> anyhow::Result<T> {
    agent()
        .get(url)
        .call()
        .with_context(|| format!("GET {url} failed"))?
        .body_mut()
        .read_json()
        .with_context(|| format!("GET {url}: not the expected JSON"))
}

fn open_browser(url: &str) {
    let opener = if cfg!(target_os = "macos") {
        "open"
    } else {
        "xdg-open"
    };
    let _ = Command::new(opener)
        .arg(url)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn();
}

/// A flag that Ctrl-C (SIGINT) and SIGTERM set instead of killing the demo, so it can stop
/// the server and remove its directory whatever it was doing. A second signal while the flag
/// is set ends the process at once (exit status 1), as an impatient user expects. The handlers
/// do not reach child processes (exec resets them), so Ctrl-C still stops a running cargo.
fn stop_flag() -> anyhow::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register_conditional_shutdown(signal, 1, Arc::clone(&flag))
            .and_then(|_| signal_hook::flag::register(signal, Arc::clone(&flag)))
            .context("cannot install the demo's Ctrl-C handler")?;
    }
    Ok(flag)
}

/// Blocks until Ctrl-C, SIGTERM, or the end of stdin (how scripts and tests stop the demo).
fn wait_for_stop(stop: &AtomicBool) {
    let stdin_closed = Arc::new(AtomicBool::new(false));
    let closed = Arc::clone(&stdin_closed);
    std::thread::spawn(move || {
        let mut sink = [0u8; 4096];
        let mut stdin = std::io::stdin();
        while matches!(stdin.read(&mut sink), Ok(n) if n > 0) {}
        closed.store(true, Ordering::SeqCst);
    });
    while !stop.load(Ordering::SeqCst) && !stdin_closed.load(Ordering::SeqCst) {
        std::thread::sleep(Duration::from_millis(100));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_demo_asks_for_this_machine() {
        let (os, arch) = platforms();
        assert!(os.contains(&std::env::consts::OS));
        assert!(arch.contains(&std::env::consts::ARCH));
    }

    #[test]
    fn reads_the_key_line_of_a_pub_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k.pub");
        std::fs::write(
            &path,
            "untrusted comment: minisign public key ABC\nRWQfake\n",
        )
        .unwrap();
        assert_eq!(read_public_key(&path).unwrap(), "RWQfake");
        std::fs::write(&path, "untrusted comment: only\n").unwrap();
        assert!(read_public_key(&path).is_err());
    }
    #[test]
    fn counts_reports_in_words() {
        assert_eq!(reports_phrase(1), "1 report");
        assert_eq!(reports_phrase(0), "0 reports");
        assert_eq!(reports_phrase(243), "243 reports");
    }

    #[test]
    fn relates_the_installation_s_week_to_the_published_monday_week() {
        let wednesday: Day = "2026-11-25".parse().unwrap();
        let said = week_relation(wednesday);
        assert!(
            said.contains("from 2026-11-25") && said.contains("the week of 2026-11-23."),
            "{said}"
        );
        let monday: Day = "2026-11-23".parse().unwrap();
        let said = week_relation(monday);
        assert!(said.contains("a Monday"), "{said}");
    }
}
