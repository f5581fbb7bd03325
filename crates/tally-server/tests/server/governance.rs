//! Governance through the built binary: `config generate` from the example chart config, signed
//! and served with `--charts`; the public `/config` page lists exactly the counters and rates of
//! the served config, under their charts; versions go one above the last one served; a config
//! that was not generated from the chart file is refused.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use crate::support::TODAY;
use tally_protocol::UploadConfig;
use tally_server::charts_config::ChartsFile;
use tally_test_support::command::{Reaped, spawn_listening};

const BIN: &str = env!("CARGO_BIN_EXE_tally-server");

fn example_charts() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config-schema/example-charts.toml")
}

fn run(args: &[&str]) -> std::process::Output {
    Command::new(BIN)
        .args(args)
        .env("TALLY_NOW", TODAY)
        .env_remove(tally_server::signing::PASSWORD_ENV)
        .output()
        .unwrap()
}

fn ok(output: &std::process::Output) -> String {
    assert!(
        output.status.success(),
        "{}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// `serve` with `extra` arguments, and its port; `Err(stderr)` if it does not start.
fn serve(store: &Path, config: &Path, key: &Path, extra: &[&str]) -> Result<(Reaped, u16), String> {
    let started = spawn_listening(
        Command::new(BIN)
            .arg("serve")
            .args(["--addr", "127.0.0.1:0", "--threshold", "5"])
            .arg("--store")
            .arg(store)
            .arg("--config")
            .arg(config)
            .arg("--key")
            .arg(key)
            .args(extra)
            .env("TALLY_NOW", TODAY)
            .stderr(Stdio::piped()),
    );
    match started.port {
        Some(port) => Ok((Reaped(started.child), port)),
        None => {
            let output = started.child.wait_with_output().unwrap();
            Err(String::from_utf8_lossy(&output.stderr).into_owned())
        }
    }
}

fn get(port: u16, path: &str) -> (u16, Vec<u8>) {
    let mut response = ureq::get(&format!("http://127.0.0.1:{port}{path}"))
        .config()
        .http_status_as_error(false)
        .build()
        .call()
        .unwrap();
    let status = response.status().as_u16();
    (status, response.body_mut().read_to_vec().unwrap())
}

fn unescape(text: &str) -> String {
    text.replace("&lt;", "<")
        .replace("&gt;", ">")
        .replace("&quot;", "\"")
        .replace("&#39;", "'")
        .replace("&amp;", "&")
}

/// The value of every `attribute="…"` in `html`, in order.
fn attributes(html: &str, attribute: &str) -> Vec<String> {
    let marker = format!("{attribute}=\"");
    html.split(&marker)
        .skip(1)
        .map(|rest| unescape(&rest[..rest.find('"').unwrap()]))
        .collect()
}

#[test]
fn the_config_page_and_the_served_config_come_from_one_chart_file() {
    let dir = tempfile::tempdir().unwrap();
    let (public, secret) = (dir.path().join("c.pub"), dir.path().join("c.key"));
    let (config, store) = (dir.path().join("config.json"), dir.path().join("store"));
    let charts_path = example_charts();
    let charts_arg = charts_path.to_str().unwrap();
    ok(&run(&[
        "keygen",
        "-p",
        public.to_str().unwrap(),
        "-s",
        secret.to_str().unwrap(),
        "--no-password",
    ]));

    // Without saying what is served now, generate refuses to guess a version.
    let guess = run(&[
        "config",
        "generate",
        charts_arg,
        "--expected-reports",
        "200000",
    ]);
    assert!(!guess.status.success());
    assert!(String::from_utf8_lossy(&guess.stderr).contains("--current"));

    let explained = ok(&run(&[
        "config",
        "generate",
        charts_arg,
        "--expected-reports",
        "200000",
        "--first",
        "-o",
        config.to_str().unwrap(),
    ]));
    assert!(
        explained.contains("rustc-outcomes: ±0.01 at 95% needs 9604 reports"),
        "{explained}"
    );
    let generated = UploadConfig::parse(&std::fs::read(&config).unwrap()).unwrap();
    assert_eq!(generated.version, 1);
    assert_eq!(
        generated.expires.to_string(),
        "2027-02-22",
        "90 days after {TODAY}"
    );
    assert!((generated.sample_rate - 9604.0 / 200000.0).abs() < 1e-12);
    ok(&run(&[
        "sign",
        config.to_str().unwrap(),
        "-s",
        secret.to_str().unwrap(),
    ]));

    let server = serve(&store, &config, &public, &["--charts", charts_arg]).unwrap();
    let (status, page) = get(server.1, "/config");
    assert_eq!(status, 200);
    let page = String::from_utf8(page).unwrap();
    // Every counter of the served config is on the page with its rate, and nothing else is.
    let mut listed: BTreeMap<String, f64> = BTreeMap::new();
    for (name, rate) in attributes(&page, "data-counter")
        .into_iter()
        .zip(attributes(&page, "data-rate"))
    {
        let rate: f64 = rate.parse().unwrap();
        assert!(
            listed.insert(name.clone(), rate).is_none(),
            "{name} listed twice"
        );
    }
    let mut served: BTreeMap<String, f64> = BTreeMap::new();
    for program in &generated.programs {
        served.extend(program.counter_rates());
    }
    assert_eq!(listed, served);
    // Grouped by chart, with each chart's title, question and proposal.
    let charts = ChartsFile::read(&charts_path).unwrap();
    let ids = attributes(&page, "data-chart-id");
    assert_eq!(
        ids,
        charts
            .charts
            .iter()
            .map(|c| c.id.clone())
            .collect::<Vec<_>>()
    );
    for chart in &charts.charts {
        for text in [&chart.title, &chart.proposal] {
            assert!(page.contains(text.as_str()), "{text}");
        }
    }
    assert_eq!(attributes(&page, "data-retention-weeks"), ["8"]);
    assert!(page.contains("href=\"config.json\""));
    assert_eq!(
        get(server.1, "/config.json").1,
        std::fs::read(&config).unwrap()
    );
    drop(server);
    // The retention the page states is the one the server applies.
    let server = serve(
        &store,
        &config,
        &public,
        &["--charts", charts_arg, "--retention-weeks", "3"],
    )
    .unwrap();
    let page = String::from_utf8(get(server.1, "/config").1).unwrap();
    assert_eq!(attributes(&page, "data-retention-weeks"), ["3"]);
    drop(server);

    // The next config goes one above the one served: from the file, or from the store.
    for source in [
        ["--current", config.to_str().unwrap()],
        ["--store", store.to_str().unwrap()],
    ] {
        let out = run(&[
            "config",
            "generate",
            charts_arg,
            "--expected-reports",
            "5000",
            source[0],
            source[1],
        ]);
        ok(&out);
        let next = UploadConfig::parse(&out.stdout).unwrap();
        assert_eq!(next.version, 2, "{source:?}");
        assert_eq!(next.sample_rate, 1.0, "5000 expected reports: collect all");
    }

    // A chart file the served config was not generated from: refused at start-up.
    let fewer = dir.path().join("fewer.toml");
    let text = std::fs::read_to_string(&charts_path).unwrap();
    let cut = text.rfind("[[chart]]").unwrap();
    std::fs::write(&fewer, &text[..cut]).unwrap();
    let refused = serve(
        &store,
        &config,
        &public,
        &["--charts", fewer.to_str().unwrap()],
    )
    .err()
    .expect("a config from another chart file must be refused");
    assert!(refused.contains("was not generated from"), "{refused}");
    assert!(refused.contains("go/subcommand"), "{refused}");
}
