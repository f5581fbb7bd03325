//! What tally's tests share, in one unpublished crate (as cargo's `cargo-test-support` and uv's
//! `uv-test`): every crate's tests and the root `tests/` take it as a dev-dependency, and no
//! production crate carries a feature or a module only for tests.
//!
//! - [`background`]: a server under test on a tokio runtime of its own, on a loopback port;
//! - [`collector`]: a fake collector, real HTTP/1.1 on loopback, that serves what a test puts
//!   in it (a config and its signature, statuses, redirects, a hang) and records every request;
//!   and addresses where nothing answers;
//! - [`signing`]: minisign key pairs made and used in memory (the `minisign` crate), and the
//!   reference `minisign` binary for interop tests;
//! - [`moto`]: a real S3-compatible server (moto) on a loopback port;
//! - [`raw_http`]: raw HTTP/1.1 on a socket, for requests no well-behaved client sends;
//! - [`reports`]: reports and their sections as an installation sends them;
//! - [`webdriver`]: headless Chromium through chromedriver, and where screenshots go;
//! - [`home`]: temporary homes and data directories;
//! - [`command`]: running a process and asserting how it ended, with its output in the message,
//!   and killing it when a test ends;
//! - [`dap`]: a DAP task provisioned and its aggregators started by the real `tally-server`.
//!
//! Everything here is real: real signatures, real sockets, real processes. What needs a tool
//! that may be missing (minisign, moto, Chromium) returns `None` after printing why, unless the
//! tool's `TALLY_REQUIRE_*` variable is `1` (CI), where a missing tool fails the test.

#![forbid(unsafe_code)]

pub mod background;
pub mod collector;
pub mod command;
pub mod dap;
pub mod home;
pub mod moto;
pub mod raw_http;
pub mod reports;
pub mod signing;
pub mod webdriver;

/// Whether `TALLY_REQUIRE_<tool>` (declared in `tally-env`) is `1`: a missing tool fails the
/// test instead of skipping it.
pub fn required(variable: &str) -> bool {
    tally_env::var_os(variable).is_some_and(|v| v == "1")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// The first file called `name` in a directory of `PATH`.
pub fn on_path(name: &str) -> Option<std::path::PathBuf> {
    let path = tally_env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Calls `check` every `every` until it returns `Ok` (its value is returned), failing the test
/// with the last `Err` (what is still missing) once `within` has passed: for what a test waits
/// on another process for (a port, a file, a count).
pub fn wait_for<T>(
    within: std::time::Duration,
    every: std::time::Duration,
    mut check: impl FnMut() -> Result<T, String>,
) -> T {
    let deadline = std::time::Instant::now() + within;
    loop {
        match check() {
            Ok(value) => return value,
            Err(missing) => assert!(
                std::time::Instant::now() < deadline,
                "after {within:?}: {missing}"
            ),
        }
        std::thread::sleep(every);
    }
}

/// Whether the process `pid` has exited: gone from `/proc`, or a zombie its parent has not
/// reaped yet.
pub fn has_exited(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).map_or(true, |stat| {
        // The state follows the command name, which is in parentheses and may hold anything.
        stat.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

/// Writes an executable shell script, `#!/bin/sh` and then `body`, at `path` (its directory
/// made if missing), and returns the path: a stand-in tool or wrapper that does what a test
/// needs at the moment it needs it.
pub fn write_script(path: &std::path::Path, body: &str) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o755)).unwrap();
    path.to_path_buf()
}

/// The process ID a script wrote to `path`.
pub fn pid_in(path: &std::path::Path) -> i32 {
    let text = std::fs::read_to_string(path).unwrap();
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{}: not a process ID: {text:?}", path.display()))
}
