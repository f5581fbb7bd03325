//! A small WebDriver client for headless Chromium through chromedriver's HTTP protocol (W3C
//! WebDriver plus chromedriver's `se/log` for console entries), with ureq and serde_json.
//!
//! The browser tests of tally-charts, tally-server and tally-commands use it. [`Browser::start`] returns `None`
//! (after printing why) when Chromium or chromedriver is missing, unless
//! `TALLY_REQUIRE_CHROMIUM=1`, in which case it panics. Every wait is bounded; chromedriver (and
//! with it Chromium) is killed when the [`Browser`] is dropped.

// Where Chromium and chromedriver are may be given by the test harness's environment
// (`TALLY_CHROMIUM`, `TALLY_CHROMEDRIVER`), which tally itself never reads.
#![allow(clippy::disallowed_methods)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";

/// A running chromedriver with one headless Chromium session.
pub struct Browser {
    driver: Child,
    base: String,
    session: String,
    agent: ureq::Agent,
    _profile: tempfile::TempDir,
}

fn find(env_var: &str, default: &str, names: &[&str]) -> Option<PathBuf> {
    if let Some(path) = std::env::var_os(env_var) {
        return Some(PathBuf::from(path));
    }
    if Path::new(default).exists() {
        return Some(PathBuf::from(default));
    }
    names.iter().find_map(|name| crate::on_path(name))
}

impl Browser {
    /// Starts chromedriver and a headless Chromium session (window `width` x `height`).
    pub fn start(width: u32, height: u32) -> Option<Browser> {
        let required = crate::required(tally_env::TALLY_REQUIRE_CHROMIUM);
        let chromium = find(
            "TALLY_CHROMIUM",
            CHROMIUM,
            &["chromium", "chromium-browser", "google-chrome"],
        );
        let driver = find("TALLY_CHROMEDRIVER", CHROMEDRIVER, &["chromedriver"]);
        let (Some(chromium), Some(driver)) = (chromium, driver) else {
            assert!(
                !required,
                "TALLY_REQUIRE_CHROMIUM=1 but chromium or chromedriver is not installed"
            );
            eprintln!(
                "skipping browser test: chromium or chromedriver not found (set TALLY_REQUIRE_CHROMIUM=1 to fail instead)"
            );
            return None;
        };
        let port = crate::free_port();
        let driver = Command::new(&driver)
            .arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("could not start {}: {e}", driver.display()));
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(60)))
            .http_status_as_error(false)
            .build()
            .into();
        let base = format!("http://127.0.0.1:{port}");
        let mut browser_driver = PartialDriver {
            driver: Some(driver),
        };
        crate::wait_for(Duration::from_secs(20), Duration::from_millis(50), || {
            agent
                .get(format!("{base}/status"))
                .call()
                .ok()
                .and_then(|mut r| r.body_mut().read_json::<Value>().ok())
                .filter(|v| v["value"]["ready"] == json!(true))
                .map(|_| ())
                .ok_or_else(|| "chromedriver did not become ready".to_owned())
        });
        let profile = tempfile::tempdir().expect("temp profile dir");
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--disable-dev-shm-usage".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!("--user-data-dir={}", profile.path().display()),
            format!("--window-size={width},{height}"),
        ];
        let capabilities = json!({
            "capabilities": { "alwaysMatch": {
                "browserName": "chrome",
                "goog:chromeOptions": { "binary": chromium.to_string_lossy(), "args": args },
                "goog:loggingPrefs": { "browser": "ALL" },
            }}
        });
        let response = post(&agent, &format!("{base}/session"), &capabilities);
        let session = response["value"]["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("chromedriver refused the session: {response}"))
            .to_owned();
        Some(Browser {
            driver: browser_driver.driver.take().expect("driver"),
            base,
            session,
            agent,
            _profile: profile,
        })
    }

    fn url(&self, tail: &str) -> String {
        format!("{}/session/{}/{tail}", self.base, self.session)
    }

    /// Navigates to `url` and waits for the load to finish (WebDriver's default page load
    /// strategy).
    pub fn goto(&self, url: &str) {
        let response = post(&self.agent, &self.url("url"), &json!({ "url": url }));
        assert!(
            response["value"].is_null(),
            "navigation to {url} failed: {response}"
        );
    }

    /// Navigates to `url` (see [`Browser::goto`]) and asserts that loading it put no problem in
    /// the console (see [`Browser::console_problems`]).
    pub fn goto_cleanly(&self, url: &str) {
        self.goto(url);
        let problems = self.console_problems();
        assert!(
            problems.is_empty(),
            "console problems on {url}: {problems:?}"
        );
    }

    /// Runs `script` (a function body; `arguments` holds `args`) and returns its value.
    pub fn eval(&self, script: &str, args: Value) -> Value {
        let response = post(
            &self.agent,
            &self.url("execute/sync"),
            &json!({ "script": script, "args": args }),
        );
        if response["value"].get("error").is_some() {
            panic!("script failed: {response}\n{script}");
        }
        response["value"].clone()
    }

    /// Resizes the window.
    pub fn resize(&self, width: u32, height: u32) {
        post(
            &self.agent,
            &self.url("window/rect"),
            &json!({ "width": width, "height": height }),
        );
    }

    /// The browser console entries since the last call (chromedriver's `browser` log).
    pub fn console(&self) -> Vec<Value> {
        let response = post(
            &self.agent,
            &self.url("se/log"),
            &json!({ "type": "browser" }),
        );
        response["value"].as_array().cloned().unwrap_or_default()
    }

    /// Console entries at level SEVERE or WARNING (errors, refused loads, CSP violations).
    pub fn console_problems(&self) -> Vec<String> {
        self.console()
            .into_iter()
            .filter(|entry| matches!(entry["level"].as_str(), Some("SEVERE" | "WARNING")))
            .map(|entry| entry["message"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    /// Loads `url` in a phone-sized window (390 x 844, which it keeps) and returns how many
    /// pixels the page is wider than the window: 0 when nothing scrolls sideways.
    pub fn overflow_on_a_phone(&self, url: &str) -> i64 {
        self.resize(390, 844);
        self.goto(url);
        let overflow = self.eval(
            "return document.documentElement.scrollWidth - document.documentElement.clientWidth;",
            json!([]),
        );
        overflow
            .as_i64()
            .unwrap_or_else(|| panic!("the overflow of {url} is a number: {overflow}"))
    }

    /// Saves a PNG of the whole page to `path`: the window is resized to the page's height
    /// (capped) first, so the screenshot is not cut at the fold.
    pub fn screenshot(&self, path: &Path, width: u32) {
        let height = self.eval("return document.documentElement.scrollHeight;", json!([]));
        let height = height.as_u64().unwrap_or(900).clamp(400, 6000) as u32;
        self.resize(width, height + 120);
        let response = get(&self.agent, &self.url("screenshot"));
        let data = response["value"].as_str().expect("screenshot data");
        let png = base64::engine::general_purpose::STANDARD
            .decode(data)
            .expect("base64 screenshot");
        assert!(png.starts_with(b"\x89PNG"), "the screenshot is a PNG");
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).expect("screenshot dir");
        }
        std::fs::write(path, png).expect("write screenshot");
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let _ = self
            .agent
            .delete(format!("{}/session/{}", self.base, self.session))
            .call();
        let _ = self.driver.kill();
        let _ = self.driver.wait();
    }
}

/// Kills chromedriver if starting the session fails part-way.
struct PartialDriver {
    driver: Option<Child>,
}

impl Drop for PartialDriver {
    fn drop(&mut self) {
        if let Some(mut driver) = self.driver.take() {
            let _ = driver.kill();
            let _ = driver.wait();
        }
    }
}

fn post(agent: &ureq::Agent, url: &str, body: &Value) -> Value {
    let response = agent.post(url).send_json(body);
    json_answer(response, &format!("POST {url}"))
}

fn get(agent: &ureq::Agent, url: &str) -> Value {
    json_answer(agent.get(url).call(), &format!("GET {url}"))
}

/// The JSON body of chromedriver's answer to `request` (screenshots make it large).
fn json_answer(
    response: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    request: &str,
) -> Value {
    response
        .unwrap_or_else(|e| panic!("{request}: {e}"))
        .body_mut()
        .with_config()
        .limit(64 * 1024 * 1024)
        .read_json()
        .unwrap_or_else(|e| panic!("{request}: bad JSON answer: {e}"))
}

/// The chart among `charts` (objects with a `title`, as a test's script lists the page's
/// `svg.chart`s) whose title starts with `title_start`.
pub fn chart_titled<'a>(charts: &'a [Value], title_start: &str) -> &'a Value {
    charts
        .iter()
        .find(|c| {
            c["title"]
                .as_str()
                .is_some_and(|t| t.starts_with(title_start))
        })
        .unwrap_or_else(|| panic!("no chart titled {title_start}…: {charts:?}"))
}

/// The `name` of each of `chart`'s `series`, in order.
pub fn series_names(chart: &Value) -> Vec<&str> {
    chart["series"]
        .as_array()
        .unwrap_or_else(|| panic!("a chart with series: {chart}"))
        .iter()
        .map(|s| s["name"].as_str().expect("a series name"))
        .collect()
}

/// The variable that lets a browser test rewrite the committed `docs/screenshots/`.
pub const BLESS_SCREENSHOTS: &str = tally_env::TALLY_BLESS_SCREENSHOTS;

/// Whether this run rewrites the committed screenshots: only with `TALLY_BLESS_SCREENSHOTS=1`.
pub fn blessing_screenshots() -> bool {
    tally_env::var_os(BLESS_SCREENSHOTS).is_some_and(|v| v == "1")
}

/// The committed screenshots shown by the README and docs, under the repository root.
pub fn committed_screenshot_dir() -> PathBuf {
    repo_root(env!("CARGO_MANIFEST_DIR")).join("docs/screenshots")
}

/// Where a browser test writes its screenshots: the committed `docs/screenshots/` when
/// [`blessing_screenshots`], else `screenshots/` under `target_tmpdir` (the test's
/// `env!("CARGO_TARGET_TMPDIR")`, which cargo sets for test binaries only), so that a test run
/// leaves the work tree as it found it. Prints which (shown with `--nocapture` or on failure),
/// so the images can be looked at.
pub fn screenshot_dir(target_tmpdir: &str) -> PathBuf {
    let dir = if blessing_screenshots() {
        committed_screenshot_dir()
    } else {
        Path::new(target_tmpdir).join("screenshots")
    };
    println!("screenshots: {}", dir.display());
    dir
}

/// The repository root (for `docs/screenshots/`), from a crate's `CARGO_MANIFEST_DIR`.
pub fn repo_root(manifest_dir: &str) -> PathBuf {
    Path::new(manifest_dir)
        .ancestors()
        .find(|dir| dir.join("ARCHITECTURE.md").exists())
        .expect("the repository root holds ARCHITECTURE.md")
        .to_path_buf()
}
