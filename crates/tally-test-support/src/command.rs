//! Running a process in a test: its output, and assertions on how it ended that print what it
//! said when they fail.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdout, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// Runs `cmd` and returns its output; panics only when it could not start.
pub fn run(cmd: &mut Command) -> Output {
    cmd.output()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"))
}

/// Runs `cmd` with `input` written to its standard input (closed after it) and both output
/// streams captured; panics only when it could not start or take the input.
pub fn run_with_input(cmd: &mut Command, input: &[u8]) -> Output {
    let mut child = cmd
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(input)
        .unwrap_or_else(|e| panic!("cannot write the input of {cmd:?}: {e}"));
    child.wait_with_output().unwrap()
}

/// Runs `cmd` and asserts that it succeeded, printing its status and both streams otherwise.
pub fn ok(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert_success(&format!("{cmd:?}"), &out);
    out
}

/// Runs `cmd` and asserts that it failed, printing both streams otherwise.
pub fn fails(cmd: &mut Command) -> Output {
    let out = run(cmd);
    assert!(
        !out.status.success(),
        "{cmd:?} succeeded but should have failed\n{}",
        streams(&out)
    );
    out
}

/// Asserts that `out` (of `what`) is a success, printing its status and both streams otherwise.
pub fn assert_success(what: &str, out: &Output) {
    assert!(
        out.status.success(),
        "{what} failed: {:?}\n{}",
        out.status,
        streams(out)
    );
}

/// Both streams of `out`, labelled, for a failure message.
pub fn streams(out: &Output) -> String {
    format!(
        "stdout: {}\nstderr: {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    )
}

/// Runs `cmd` (stdin closed, stdout piped, stderr to `stderr`) and returns its output, failing
/// the test if it is not done within `deadline`: the process is killed then, so a regression
/// cannot hang the suite.
pub fn within(deadline: Duration, cmd: &mut Command, stderr: Stdio) -> Output {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let pid = child.id();
    let (done, wait) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done.send(child.wait_with_output());
    });
    match wait.recv_timeout(deadline) {
        Ok(output) => output.expect("waiting for the child"),
        Err(_) => {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
            panic!("{cmd:?} was still running after {deadline:?}: blocked");
        }
    }
}

/// Kills a child process when dropped, so no test leaves a server behind.
pub struct Reaped(pub Child);

impl Drop for Reaped {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What `tally-server serve` and `tally-server dap leader|helper` print first, once they
/// listen, followed by the port.
pub const LISTENING_ON_PORT: &str = "tally-server: listening on port ";

/// A `tally-server` started by [`spawn_listening`].
pub struct Started {
    pub child: Child,
    /// The rest of its stdout, after the first line.
    pub stdout: BufReader<ChildStdout>,
    /// Its first line, as printed.
    pub first_line: String,
    /// The port its first line names; `None` when it did not start listening.
    pub port: Option<u16>,
}

impl Started {
    /// The port, or a failure of the test that shows what the server said instead.
    pub fn port(&mut self) -> u16 {
        match self.port {
            Some(port) => port,
            None => {
                let mut err = String::new();
                if let Some(stderr) = self.child.stderr.as_mut() {
                    let _ = stderr.read_to_string(&mut err);
                }
                panic!("tally-server did not start: {:?} {err}", self.first_line)
            }
        }
    }

    /// Reads the rest of stdout in a thread, so that the server never writes to a closed pipe.
    pub fn drain_stdout(self) -> Child {
        let mut stdout = self.stdout;
        std::thread::spawn(move || {
            let mut rest = String::new();
            let _ = stdout.read_to_string(&mut rest);
        });
        self.child
    }
}

/// Spawns `cmd`, a `tally-server` command that listens, with stdout piped (stderr as the
/// caller set it), and reads its first line: [`LISTENING_ON_PORT`] and the port when it
/// started.
pub fn spawn_listening(cmd: &mut Command) -> Started {
    let mut child = cmd
        .stdout(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {cmd:?}: {e}"));
    let mut stdout = BufReader::new(child.stdout.take().expect("piped stdout"));
    let mut first_line = String::new();
    let _ = stdout.read_line(&mut first_line);
    let port = first_line
        .trim()
        .strip_prefix(LISTENING_ON_PORT)
        .and_then(|port| port.parse().ok());
    Started {
        child,
        stdout,
        first_line,
        port,
    }
}

/// The names of the packages in `cargo tree --locked --prefix none --format {p}` with these
/// arguments (`-e`, `-p`, features…), run in `dir` with the `cargo` that runs the tests.
pub fn cargo_tree_packages(
    args: &[&str],
    dir: &std::path::Path,
) -> std::collections::BTreeSet<String> {
    let cargo = tally_env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let out = ok(Command::new(cargo)
        .args(["tree", "--locked", "--prefix", "none", "--format", "{p}"])
        .args(args)
        .current_dir(dir));
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|line| line.split_whitespace().next())
        .map(str::to_string)
        .collect()
}
