//! A counter file that another process keeps mapped for its whole life (a tool counting through
//! `tally-counter`, a wrapper through a long compile): nothing tally does in `counters/`
//! truncates it (a mapping does not shrink with its file, and touching a page past the new end
//! raises `SIGBUS`), and what a truncation by another program does, as the library's docs say.
//!
//! The holder is this test binary again ([`holder`]): it maps the file through the same store
//! code as the library, grows it over several pages, waits while the parent works, then
//! touches every one of its counters again.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::process::ExitStatusExt;
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};

use crate::support::{TALLY, World, ok, within_deadline};

/// The variable that makes [`holder`] map a file: its path.
const HOLD: &str = "TALLY_IT_HOLD_MAPPED";

/// Counters the holder adds: about 32 KiB of records, so that the file spans several pages.
const NAMES: usize = 1000;

/// SIGBUS on Linux.
const SIGBUS: i32 = 7;

fn names() -> Vec<String> {
    (0..NAMES).map(|i| format!("rustc/held/{i:04}")).collect()
}

/// The child side: maps the counter file named by [`HOLD`], adds [`NAMES`] counters, says
/// `mapped`, waits for a line on stdin, adds 1 to every counter again and says `alive`.
#[test]
fn holder() {
    let Some(path) = std::env::var_os(HOLD) else {
        return;
    };
    let file = tally_home::CounterFile::open_existing(Path::new(&path)).unwrap();
    let names = names();
    for name in &names {
        file.add(name, 1).unwrap();
    }
    println!("mapped");
    std::io::stdout().flush().unwrap();
    let mut line = String::new();
    std::io::stdin().read_line(&mut line).unwrap();
    for name in &names {
        file.add(name, 1).unwrap();
    }
    println!("alive");
}

/// A holder of `path`, once it has mapped and grown the file.
fn hold(path: &Path) -> (Child, BufReader<ChildStdout>) {
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "mapped::holder",
            "--nocapture",
            "--test-threads=1",
            "--quiet",
        ])
        .env(HOLD, path)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    while !line.trim_end().ends_with("mapped") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "the holder ended before mapping: {:?}",
            child.wait()
        );
    }
    (child, out)
}

/// Lets the holder touch its counters again; returns how it ended and what it said.
fn touch_again(
    mut child: Child,
    mut out: BufReader<ChildStdout>,
) -> (std::process::ExitStatus, String) {
    child.stdin.take().unwrap().write_all(b"go\n").unwrap();
    let mut said = String::new();
    let _ = std::io::Read::read_to_string(&mut out, &mut said);
    (child.wait().unwrap(), said)
}

/// The holder touches its counters again and lives on: nothing truncated the file it maps.
fn assert_still_counting(child: Child, out: BufReader<ChildStdout>) {
    let (status, said) = touch_again(child, out);
    assert!(
        status.success() && said.contains("alive"),
        "{status:?} {said}"
    );
}

/// Everything tally does in `counters/` while another process has a file of it mapped: other
/// processes count into the file and grow it, `tally show` reads it, `tally upload` (weeks
/// later) turns its week into a report and deletes it, retention deletes what is old, `tally
/// clean` deletes everything, and the store moves a file to `quarantine/`. Each of those
/// creates, grows, renames or unlinks; none truncates, so the holder counts on afterwards.
#[test]
fn nothing_tally_does_in_counters_truncates_a_mapped_file() {
    // The week's report and the deletions of a file that stays mapped.
    let w = World::new();
    let held = w.first_counter_file();
    let (child, out) = hold(&held);
    for args in [
        &["-V"][..],
        &["-vV"],
        &["--print", "sysroot"],
        &["--version"],
    ] {
        ok(w.cmd("rustc").args(args));
    }
    ok(w.direct(TALLY).arg("show"));
    ok(w.direct(TALLY).arg("upload").env("TALLY_NOW", "2099-01-05"));
    assert!(
        std::fs::symlink_metadata(&held).is_err(),
        "the week's file was reported and deleted"
    );
    ok(w.cmd("rustc").arg("-V"));
    ok(w.direct(TALLY).args(["clean", "--yes"]));
    assert_still_counting(child, out);

    // Quarantine of the mapped file itself (what show, reports and retention do to an invalid
    // one), then its deletion from `quarantine/` by retention.
    let w = World::new();
    let held = w.first_counter_file();
    let (child, out) = hold(&held);
    let moved = tally_home::Home::at(&w.data)
        .counter_store()
        .quarantine(&held, "a test")
        .unwrap();
    ok(w.cmd("rustc").arg("-V"));
    ok(w.direct(TALLY).arg("upload").env("TALLY_NOW", "2099-01-05"));
    assert!(!moved.exists(), "retention deleted the quarantined file");
    assert_still_counting(child, out);
}

/// What the library's docs say a truncation by another program does: the next touch of the
/// mapping past the new end kills the process that holds it with `SIGBUS`; the next run of
/// tally finds the file shorter than its header says and moves it to `quarantine/`.
#[test]
fn a_truncation_by_another_program_kills_the_holder_with_sigbus() {
    let w = World::new();
    let held = w.first_counter_file();
    let (child, out) = hold(&held);
    std::fs::File::options()
        .write(true)
        .open(&held)
        .unwrap()
        .set_len(0)
        .unwrap();
    let (status, said) = touch_again(child, out);
    assert_eq!(status.signal(), Some(SIGBUS), "{status:?} {said}");
    let out = within_deadline(w.cmd("rustc").arg("-V"));
    assert!(out.status.success(), "{out:?}");
    assert_eq!(w.program("rustc").get("rustc/invocations"), Some(&1));
    assert!(
        w.data
            .join("quarantine")
            .read_dir()
            .unwrap()
            .next()
            .is_some()
    );
}
