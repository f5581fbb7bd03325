//! The `tally-server` binary: keygen, sign, plan, and serve, including interop with Debian's
//! `minisign` CLI, a SIGKILL crash in the middle of concurrent uploads, and two servers sharing
//! one store.

use std::io::{BufReader, Read};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use crate::support::*;
use tally_test_support::command::{assert_success, run, spawn_listening};
use tally_test_support::signing::Minisign;

fn tally_server(args: &[&str]) -> std::process::Output {
    tally_server_with_password(None, args)
}

/// `tally-server` with the key password in its environment, or none.
fn tally_server_with_password(password: Option<&str>, args: &[&str]) -> std::process::Output {
    let mut command = Command::new(BIN);
    command.args(args);
    match password {
        Some(password) => command.env(tally_server::signing::PASSWORD_ENV, password),
        None => command.env_remove(tally_server::signing::PASSWORD_ENV),
    };
    command.output().unwrap()
}

/// `tally-server keygen` of a key pair at `public` and `secret`, with these flags first.
fn keygen(flags: &[&str], public: &Path, secret: &Path) -> std::process::Output {
    keygen_with_password(None, flags, public, secret)
}

/// [`keygen`] with the key password in the environment, or none.
fn keygen_with_password(
    password: Option<&str>,
    flags: &[&str],
    public: &Path,
    secret: &Path,
) -> std::process::Output {
    let (public, secret) = (public.to_str().unwrap(), secret.to_str().unwrap());
    let args = [&["keygen"], flags, &["-p", public, "-s", secret]].concat();
    tally_server_with_password(password, &args)
}

/// `tally-server sign` of `config` with the unencrypted key `secret`.
fn sign(config: &Path, secret: &Path) -> std::process::Output {
    sign_with_password(None, config, secret)
}

/// [`sign`] with the key password in the environment, or none.
fn sign_with_password(
    password: Option<&str>,
    config: &Path,
    secret: &Path,
) -> std::process::Output {
    let (config, secret) = (config.to_str().unwrap(), secret.to_str().unwrap());
    tally_server_with_password(password, &["sign", config, "-s", secret])
}

#[test]
fn keygen_refuses_to_guess_about_passwords_and_overwrites() {
    let dir = tempfile::tempdir().unwrap();
    let (p, s) = (dir.path().join("k.pub"), dir.path().join("k.key"));
    let out = keygen(&[], &p, &s);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--no-password"));
    let out = keygen(&["--no-password"], &p, &s);
    assert!(out.status.success(), "{out:?}");
    let out = keygen(&["--no-password"], &p, &s);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--force"));
}

/// The client (tally-config) verifies `signature` of the example config by the key in the
/// public key file `public`.
fn assert_the_client_verifies(public: &Path, signature: &str) {
    let pinned =
        tally_config::keys::PinnedKey::parse(&std::fs::read_to_string(public).unwrap()).unwrap();
    tally_config::verify::verify_config(
        EXAMPLE_CONFIG.as_bytes(),
        signature.as_bytes(),
        &[pinned],
        today(),
    )
    .unwrap();
}

#[test]
fn minisign_cli_verifies_what_tally_server_signs_and_the_other_way_round() {
    let Some(minisign) = Minisign::find() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("config.json");
    std::fs::write(&config, EXAMPLE_CONFIG).unwrap();

    for password in [None, Some("correct horse")] {
        let (p, s) = (dir.path().join("ts.pub"), dir.path().join("ts.key"));
        let flags: &[&str] = match password {
            Some(_) => &["--force"],
            None => &["--force", "--no-password"],
        };
        assert!(
            keygen_with_password(password, flags, &p, &s)
                .status
                .success()
        );
        let signed = sign_with_password(password, &config, &s);
        assert!(signed.status.success(), "{signed:?}");
        // Debian's minisign verifies tally-server's prehashed signature.
        assert_success("minisign -V", &minisign.verify(&p, &config));
        // And the CLI can sign with tally-server's key (unencrypted, or with the password).
        let cli_sig = dir.path().join("cli.minisig");
        let mut cli = Command::new(&minisign.binary)
            .args([
                "-S",
                "-s",
                s.to_str().unwrap(),
                "-m",
                config.to_str().unwrap(),
                "-x",
                cli_sig.to_str().unwrap(),
            ])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        if let Some(pw) = password {
            use std::io::Write;
            writeln!(cli.stdin.take().unwrap(), "{pw}").unwrap();
        } else {
            drop(cli.stdin.take());
        }
        let out = cli.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "minisign -S with a tally-server key: {out:?}"
        );
        // What the CLI signed verifies in the server and in the client (tally-config).
        let sig_text = std::fs::read_to_string(&cli_sig).unwrap();
        let pk =
            tally_server::signing::parse_public_key(&std::fs::read_to_string(&p).unwrap()).unwrap();
        tally_server::signing::verify_config(EXAMPLE_CONFIG.as_bytes(), &sig_text, &pk).unwrap();
        assert_the_client_verifies(&p, &sig_text);
    }

    // A key made by the CLI (`-W`: no password) signs a config the client verifies.
    let (p, s) = (dir.path().join("cli.pub"), dir.path().join("cli.key"));
    minisign.generate(&p, &s);
    minisign.sign(&s, &config, &[]);
    let sig_text = std::fs::read_to_string(dir.path().join("config.json.minisig")).unwrap();
    assert_the_client_verifies(&p, &sig_text);
    // tally-server signs with the CLI's key too.
    assert_success("tally-server sign", &sign(&config, &s));
    assert_success("minisign -V", &minisign.verify(&p, &config));
}

#[test]
fn sign_refuses_an_invalid_config_and_a_locked_key_without_password() {
    let dir = tempfile::tempdir().unwrap();
    let (p, s) = (dir.path().join("k.pub"), dir.path().join("k.key"));
    let out = keygen_with_password(Some("pw"), &[], &p, &s);
    assert!(out.status.success());
    let config = dir.path().join("config.json");
    std::fs::write(&config, EXAMPLE_CONFIG).unwrap();
    let out = sign(&config, &s);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains(tally_server::signing::PASSWORD_ENV),
        "{out:?}"
    );
    std::fs::write(&config, b"{\"version\": 1}").unwrap();
    let out = sign_with_password(Some("pw"), &config, &s);
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("not a valid upload config"),
        "{out:?}"
    );
    assert!(!dir.path().join("config.json.minisig").exists());
}

#[test]
fn plan_prints_the_rate_and_its_reasoning() {
    let out = tally_server(&[
        "plan",
        "--margin",
        "0.02",
        "--confidence",
        "0.95",
        "--expected-reports",
        "100000",
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    // n = 1.96² × 0.25 / 0.02² = 2400.9 → 2401; rate = 2401 / 100000.
    assert!(text.contains("2401 reports"), "{text}");
    assert!(text.contains("0.024010"), "{text}");
    assert!(text.contains("z = 1.9600"), "{text}");
    let out = tally_server(&["plan", "--margin", "2", "--expected-reports", "10"]);
    assert!(!out.status.success());
}

/// A running `tally-server serve`, its captured output, and its port.
struct Server {
    child: Child,
    port: u16,
    output: Arc<Mutex<String>>,
}

fn spawn_server(collector: &Collector, store: &Path, key: &Path) -> Server {
    spawn_server_with(collector, store, key, &[])
}

/// [`spawn_server`] with more `serve` arguments.
fn spawn_server_with(collector: &Collector, store: &Path, key: &Path, extra: &[&str]) -> Server {
    let mut started = spawn_listening(
        serve_command(collector, store.to_str().unwrap(), key)
            .args(["--threshold", "1", "--flush-ms", "50"])
            .args(extra)
            .stderr(Stdio::piped()),
    );
    let port = started.port();
    let (mut child, stdout) = (started.child, started.stdout);
    let output = Arc::new(Mutex::new(started.first_line));
    for (stream, sink) in [
        (Box::new(stdout) as Box<dyn Read + Send>, output.clone()),
        (Box::new(child.stderr.take().unwrap()), output.clone()),
    ] {
        std::thread::spawn(move || {
            let mut text = String::new();
            let _ = BufReader::new(stream).read_to_string(&mut text);
            sink.lock().unwrap().push_str(&text);
        });
    }
    Server {
        child,
        port,
        output,
    }
}

#[test]
fn serve_refuses_a_mis_signed_config_with_a_clear_error() {
    let collector = Collector::new();
    let other = Collector::new();
    let store = tempfile::tempdir().unwrap();
    let out = run(serve_command(
        &collector,
        store.path().to_str().unwrap(),
        &other.public_key,
    )
    .env_remove(tally_server::signing::PASSWORD_ENV));
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("does not verify") && err.contains("re-sign"),
        "{err}"
    );
}

#[test]
fn every_2xx_report_survives_sigkill_and_is_counted_once() {
    let collector = Collector::new();
    let store = tempfile::tempdir().unwrap();
    let mut server = spawn_server(&collector, store.path(), &collector.public_key);
    let base = format!("http://127.0.0.1:{}", server.port);
    let accepted = Arc::new(Mutex::new(Vec::<String>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(5)))
        .build()
        .into();
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let (agent, base, accepted, stop) =
                (agent.clone(), base.clone(), accepted.clone(), stop.clone());
            std::thread::spawn(move || {
                let mut rng = fastrand::Rng::with_seed(t);
                // Bounded: at most 400 uploads per thread, stopping at the first failure.
                for i in 0..400 {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let x = rng.f64().max(1e-6);
                    let mut r = report(x, "1.95.0", &[("cargo/invocations", 1 + i % 3)]);
                    let invalid = i % 4 == 3;
                    if invalid {
                        r.programs[0].os = "plan9".into();
                    }
                    match agent
                        .post(&format!("{base}/upload/{WEEK}"))
                        .send(&body(&r)[..])
                    {
                        Ok(response) if response.status() == 200 => {
                            assert!(!invalid);
                            // Stored under exactly the x that was sent.
                            let key = tally_server::store::report_key(r.week, r.x, 0);
                            accepted
                                .lock()
                                .unwrap()
                                .push(key.filename().unwrap().to_string());
                        }
                        Ok(response) => {
                            assert!(invalid && response.status() == 400, "{}", response.status())
                        }
                        Err(_) => break,
                    }
                }
            })
        })
        .collect();
    // Kill once a good number of reports are in, while uploads are still flowing.
    let began = Instant::now();
    while accepted.lock().unwrap().len() < 300 && began.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(5));
    }
    server.child.kill().unwrap(); // SIGKILL
    server.child.wait().unwrap();
    stop.store(true, Ordering::SeqCst);
    for thread in threads {
        thread.join().unwrap();
    }
    let accepted = accepted.lock().unwrap().clone();
    assert!(
        accepted.len() >= 300,
        "only {} uploads were accepted",
        accepted.len()
    );
    let mut logs = server.output.lock().unwrap().clone();

    // A report may be stored twice (written again into the next generation when its first
    // one was sealed meanwhile); it is one report.
    let stored: std::collections::BTreeSet<String> = stored_reports(store.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for name in &accepted {
        assert!(
            stored.contains(name),
            "report {name} was answered 200 but is not stored"
        );
    }
    // Restart: every report answered 2xx is counted, none twice (at most every distinct report
    // stored: one written just before the kill and never answered may be left out).
    let restarted = spawn_server(&collector, store.path(), &collector.public_key);
    let index = weeks_index(&agent, restarted.port);
    assert_eq!(index.weeks.len(), 1);
    let counted = index.weeks[0].reports;
    assert!(
        accepted.len() as u64 <= counted && counted <= stored.len() as u64,
        "{} answered 200, {} distinct reports stored, {counted} counted",
        accepted.len(),
        stored.len()
    );
    eprintln!(
        "SIGKILL under load: {} reports answered 200, {} stored, {} counted after the restart",
        accepted.len(),
        stored.len(),
        counted
    );
    let mut restarted = restarted;
    restarted.child.kill().unwrap();
    restarted.child.wait().unwrap();
    std::thread::sleep(Duration::from_millis(100));
    logs.push_str(&restarted.output.lock().unwrap());
    // No client address anywhere: not in the logs, not in the store.
    assert!(
        !logs.contains("127.0.0.1"),
        "the server logged an address: {logs}"
    );
    assert_no_client_address_stored(store.path());
}

/// Two servers on one store, uploads to both at once (some reports to both): every report is
/// stored once, each server comes to count every report the other stored, and a restart after
/// SIGKILL of both agrees.
#[test]
fn two_servers_on_one_store_count_every_report_once() {
    let collector = Collector::new();
    let store = tempfile::tempdir().unwrap();
    let fast = ["--reconcile-secs", "1"];
    let mut servers = [
        spawn_server_with(&collector, store.path(), &collector.public_key, &fast),
        spawn_server_with(&collector, store.path(), &collector.public_key, &fast),
    ];
    let bases: Vec<String> = servers
        .iter()
        .map(|s| format!("http://127.0.0.1:{}", s.port))
        .collect();
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(Duration::from_secs(10)))
        .build()
        .into();
    // 60 reports: 20 to each server alone, 20 to both at once.
    let replies = Arc::new(Mutex::new(Vec::<String>::new()));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (agent, bases, replies) = (agent.clone(), bases.clone(), replies.clone());
            std::thread::spawn(move || {
                for i in 0..20 {
                    // Threads 0 and 1 send distinct reports to their own server; threads 2 and
                    // 3 send the same 20 reports, one to each server.
                    let n = if t < 2 { t * 20 + i } else { 40 + i };
                    let r = report(
                        (n + 1) as f64 / 100.0,
                        "1.95.0",
                        &[("cargo/invocations", 1)],
                    );
                    let mut response = agent
                        .post(&format!("{}/upload/{WEEK}", bases[t % 2]))
                        .send(&body(&r)[..])
                        .unwrap();
                    assert_eq!(response.status(), 200);
                    replies
                        .lock()
                        .unwrap()
                        .push(response.body_mut().read_to_string().unwrap());
                }
            })
        })
        .collect();
    for thread in threads {
        thread.join().unwrap();
    }
    // The 20 reports sent to both: each server answers "stored" when it wrote the report
    // (into its open generation) and "already stored" when it found it there.
    let replies = replies.lock().unwrap().clone();
    assert_eq!(replies.len(), 80);
    assert!(
        replies
            .iter()
            .all(|r| *r == "stored\n" || *r == "already stored\n"),
        "{replies:?}"
    );
    assert!(replies.iter().filter(|r| *r == "stored\n").count() >= 60);
    let distinct: std::collections::BTreeSet<_> = stored_reports(store.path())
        .iter()
        .map(|p| p.file_name().unwrap().to_owned())
        .collect();
    assert_eq!(distinct.len(), 60);
    let reports_seen_by = |base: &str| -> u64 {
        let index: tally_protocol::aggregate::WeeksIndex = agent
            .get(&format!("{base}/api/weeks"))
            .call()
            .unwrap()
            .body_mut()
            .read_json()
            .unwrap();
        index.weeks.first().map_or(0, |w| w.reports)
    };
    // Each server picks up the other's reports at its next reconcile (every second here).
    let began = Instant::now();
    loop {
        let seen: Vec<u64> = bases.iter().map(|b| reports_seen_by(b)).collect();
        if seen == [60, 60] {
            break;
        }
        assert!(
            began.elapsed() < Duration::from_secs(10),
            "the servers count {seen:?} of 60 reports"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for server in &mut servers {
        server.child.kill().unwrap();
        server.child.wait().unwrap();
    }
    let mut restarted = spawn_server(&collector, store.path(), &collector.public_key);
    assert_eq!(
        reports_seen_by(&format!("http://127.0.0.1:{}", restarted.port)),
        60
    );
    restarted.child.kill().unwrap();
    restarted.child.wait().unwrap();
}

/// A config signed in minisign's legacy (not prehashed) format, by the right key, is refused by
/// `tally-server serve` as the client would refuse it; a tampered byte or another key too.
#[test]
fn serve_refuses_legacy_tampered_and_foreign_signatures() {
    let collector = Collector::new();
    let store = tempfile::tempdir().unwrap();
    let serve = |config: &Path, key: &Path| {
        run(
            serve_config_command(config, store.path().to_str().unwrap(), key)
                .env_remove(tally_server::signing::PASSWORD_ENV),
        )
    };
    let refused = |out: std::process::Output, why: &str| {
        assert!(!out.status.success(), "{why}: served");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains("does not verify"), "{why}: {err}");
    };
    // Tampered: one byte of the signed config changed.
    let tampered = collector.dir.path().join("tampered.json");
    std::fs::write(
        &tampered,
        std::fs::read_to_string(&collector.config)
            .unwrap()
            .replacen("\"sample_rate\": 1.0", "\"sample_rate\": 0.9", 1),
    )
    .unwrap();
    std::fs::copy(
        tally_server::signing::signature_path(&collector.config),
        tally_server::signing::signature_path(&tampered),
    )
    .unwrap();
    refused(serve(&tampered, &collector.public_key), "tampered");
    // Signed by another collector's key.
    let other = Collector::new();
    refused(serve(&other.config, &collector.public_key), "another key");
    // Legacy format, from Debian's minisign with tally-server's own (unencrypted) key.
    let Some(minisign) = Minisign::find() else {
        return;
    };
    let legacy = collector.dir.path().join("legacy.json");
    std::fs::copy(&collector.config, &legacy).unwrap();
    minisign.sign(&collector.secret_key, &legacy, &["-l"]);
    refused(serve(&legacy, &collector.public_key), "legacy signature");
}

/// The aggregators' commands are `tally-server`'s: in its help, its man pages (one per
/// command, rendered by groff without a warning where it is installed) and its completions
/// (bash completes `dap le` to `leader`).
#[test]
fn dap_commands_have_help_man_pages_and_completions() {
    let help = tally_server(&["dap", "--help"]);
    assert!(help.status.success());
    let help = String::from_utf8(help.stdout).unwrap();
    for command in [
        "leader",
        "helper",
        "collector-keygen",
        "provision",
        "import-task",
        "rotate-key",
    ] {
        assert!(help.contains(command), "{command} is not in: {help}");
    }
    let leader = String::from_utf8(tally_server(&["dap", "leader", "--help"]).stdout).unwrap();
    for flag in [
        "--store",
        "--max-connections",
        "--header-timeout",
        "--body-timeout",
        "--lease-secs",
        "--job-size",
    ] {
        assert!(leader.contains(flag), "{flag} is not in: {leader}");
    }
    // A provision without its inputs says what is missing.
    let refused = tally_server(&["dap", "provision", "--leader-store", "x"]);
    assert!(!refused.status.success());
    assert!(String::from_utf8_lossy(&refused.stderr).contains("--collector-public"));

    let dir = tempfile::tempdir().unwrap();
    let out = tally_server(&["man", "--dir", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{out:?}");
    let mut pages: Vec<String> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter_map(|name| Some(name.strip_suffix(".1")?.to_owned()))
        .filter(|name| name.starts_with("tally-server-dap"))
        .collect();
    pages.sort();
    for page in [
        "tally-server-dap",
        "tally-server-dap-leader",
        "tally-server-dap-provision",
    ] {
        assert!(pages.iter().any(|p| p == page), "no {page}.1 in {pages:?}");
    }
    for page in &pages {
        let path = dir.path().join(format!("{page}.1"));
        let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{page}: {e}"));
        if Command::new("groff").arg("-v").output().is_ok() {
            let out = tally_test_support::command::run_with_input(
                Command::new("groff").args(["-man", "-Tutf8", "-ww", "-z"]),
                text.as_bytes(),
            );
            assert!(
                out.status.success() && out.stderr.is_empty(),
                "{page}: {out:?}"
            );
        }
    }
    let top = std::fs::read_to_string(dir.path().join("tally-server.1")).unwrap();
    assert!(
        top.replace("\\-", "-").contains("tally-server-dap(1)"),
        "{top}"
    );

    let script = tally_server(&["completions", "bash"]);
    let script_path = dir.path().join("tally-server.bash");
    std::fs::write(&script_path, &script.stdout).unwrap();
    let program = "source \"$0\"; COMP_WORDS=(tally-server dap le); COMP_CWORD=2; COMP_LINE=\"tally-server dap le\"; COMP_POINT=${#COMP_LINE}; \
                   $(complete -p tally-server | sed -E 's/.* -F ([^ ]+) .*/\\1/') tally-server le dap; printf '%s\\n' \"${COMPREPLY[@]}\"";
    let out = Command::new("bash")
        .args(["-c", program, script_path.to_str().unwrap()])
        .output()
        .unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(said.lines().any(|l| l.trim() == "leader"), "{said} {out:?}");
}
