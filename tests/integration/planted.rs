//! Things planted in the data directory (FIFOs, links), descriptors passed by the caller, and
//! a custom build's version text, through the real binary: the tool runs at once with its own
//! output and status, tally's commands finish, nothing is followed, nothing held, nothing of
//! the raw version kept.
//!
//! Every run has a deadline, so a regression fails the test instead of hanging it.

use std::io::Read;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use crate::support::{
    DEADLINE, TALLY, World, files_in, mkfifo, ok, within_deadline, within_deadline_to,
};

/// `rustc --version` through the shim: exactly the real tool's output and status.
fn version_through_shim(w: &World) {
    let direct = ok(w.direct("rustc").arg("--version"));
    let via = within_deadline(w.cmd("rustc").arg("--version"));
    assert_eq!(via.status.code(), Some(0), "{via:?}");
    assert_eq!(via.stdout, direct.stdout);
    assert!(
        via.stderr.is_empty(),
        "{}",
        String::from_utf8_lossy(&via.stderr)
    );
}

/// tally's own commands finish (whatever they conclude about the planted file).
fn commands_finish(w: &World) {
    for args in [&["status"][..], &["show"], &["preview"], &["upload"]] {
        within_deadline(w.direct(TALLY).args(args));
    }
}

/// A FIFO at `name` in the data directory: the tool and tally's commands run as ever.
fn a_fifo_at_never_blocks(w: &World, name: &str) {
    mkfifo(&w.data.join(name));
    version_through_shim(w);
    commands_finish(w);
}

#[test]
fn a_fifo_anywhere_in_the_data_directory_never_blocks() {
    // The mode file.
    let w = World::new();
    std::fs::create_dir_all(&w.data).unwrap();
    a_fifo_at_never_blocks(&w, "mode");

    // The weekday file.
    let w = World::new();
    w.first_counter_file();
    a_fifo_at_never_blocks(&w, "weekday");

    // Every entry of the version cache, and its lock files: replaced by real ones.
    let w = World::new();
    ok(w.cmd("rustc").arg("-V"));
    w.settle();
    let entries = files_in(&w.data.join("versions"));
    assert_eq!(entries.len(), 3, "{entries:?}");
    for entry in &entries {
        mkfifo(entry);
    }
    version_through_shim(&w);
    // The shim replaced the pending lock before going on; the helper replaces the rest.
    w.settle();
    for entry in &entries {
        assert!(std::fs::symlink_metadata(entry).unwrap().is_file());
    }
    commands_finish(&w);

    // The current counter file: moved aside, counting goes on in a fresh file.
    let w = World::new();
    ok(w.cmd("rustc").arg("-V"));
    w.settle();
    let counter = files_in(&w.data.join("counters")).remove(0);
    mkfifo(&counter);
    version_through_shim(&w);
    assert!(std::fs::symlink_metadata(&counter).unwrap().is_file());
    assert_eq!(w.program("rustc").get("rustc/invocations"), Some(&1));
    assert!(!files_in(&w.data.join("quarantine")).is_empty());
    commands_finish(&w);

    // The upload lock, in mode on (the background run and `tally upload` open it).
    let w = World::new();
    std::fs::create_dir_all(&w.data).unwrap();
    std::fs::write(w.data.join("mode"), "on 2026-01-05\n").unwrap();
    mkfifo(&w.data.join("upload.lock"));
    version_through_shim(&w);
    let upload = within_deadline(w.direct(TALLY).arg("upload"));
    assert!(
        String::from_utf8_lossy(&upload.stderr).contains("FIFO"),
        "{upload:?}"
    );
    commands_finish(&w);
}

#[test]
fn links_in_the_data_directory_are_never_followed() {
    let w = World::new();
    let counter = w.first_counter_file();
    let counters = w.data.join("counters");
    // A copy of the counter file outside, linked in under the current file's name: counting
    // must not go through the link.
    let outside_counter = w.tmp.path().join("outside.count");
    std::fs::copy(&counter, &outside_counter).unwrap();
    std::fs::remove_file(&counter).unwrap();
    std::os::unix::fs::symlink(&outside_counter, &counter).unwrap();
    // And a link to a file outside that is no counter file at all.
    let outside = w.tmp.path().join("passwd");
    let old = tally_test_support::home::write_old_foreign_file(&outside);
    std::os::unix::fs::symlink(
        &outside,
        counters.join("rustc@1.0.0-linux-x86_64-2026-01-05.v1.count"),
    )
    .unwrap();
    let outside_bytes = std::fs::read(&outside_counter).unwrap();
    let outside_time = std::fs::metadata(&outside_counter)
        .unwrap()
        .modified()
        .unwrap();

    version_through_shim(&w);
    commands_finish(&w);

    assert_eq!(std::fs::read(&outside_counter).unwrap(), outside_bytes);
    assert_eq!(
        std::fs::metadata(&outside_counter)
            .unwrap()
            .modified()
            .unwrap(),
        outside_time
    );
    assert_eq!(
        std::fs::read_to_string(&outside).unwrap(),
        "root:x:0:0::/root:/bin/sh\n"
    );
    assert_eq!(
        std::fs::metadata(&outside).unwrap().modified().unwrap(),
        old
    );
    // The links themselves were moved aside, as links.
    let quarantined = files_in(&w.data.join("quarantine"));
    let links = quarantined
        .iter()
        .filter(|p| std::fs::symlink_metadata(p).unwrap().is_symlink())
        .count();
    assert_eq!(links, 2, "{quarantined:?}");
    assert_eq!(w.program("rustc").get("rustc/invocations"), Some(&1));
}

/// A pipe the caller passes (fd 7, not close-on-exec) reaches EOF as soon as the tool is done,
/// though the daily upload the run started is still waiting on a collector that never answers.
#[test]
fn the_background_upload_holds_none_of_the_callers_descriptors() {
    let w = World::new();
    // A collector that accepts connections and never answers: the upload waits on it.
    let collector = TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", collector.local_addr().unwrap());
    std::fs::create_dir_all(w.data.join("config")).unwrap();
    std::fs::write(
        w.data.join("config/endpoint.json"),
        format!(
            r#"{{"url":"{url}","keys":["RWQf6LRCGA9i53mlYecO4IzT51TGPpvWucNSCh1CBM0QTaLn73Y7GFO3"]}}"#
        ),
    )
    .unwrap();
    std::fs::write(w.data.join("mode"), "on 2026-01-05\n").unwrap();

    let (mut reader, writer) = std::io::pipe().unwrap();
    let mut cmd = w.cmd("sh");
    // fd 7 = the pipe (a shell's redirection is inherited across exec), stderr back to null.
    cmd.args([
        "-c",
        "exec 7>&2 2>/dev/null; exec \"$0\" \"$@\"",
        "rustc",
        "--version",
    ]);
    let out = within_deadline_to(&mut cmd, writer.into());
    drop(cmd);
    assert!(out.status.success(), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stdout).starts_with("rustc "));

    // The uploader did start and is waiting on the collector…
    collector.set_nonblocking(true).unwrap();
    let started = Instant::now();
    let _connection = loop {
        match collector.accept() {
            Ok((stream, _)) => break stream,
            Err(_) if started.elapsed() < DEADLINE => std::thread::sleep(Duration::from_millis(20)),
            Err(e) => panic!("the background upload never reached the collector: {e}"),
        }
    };
    // …and yet the pipe is at EOF.
    let (done, eof) = mpsc::channel();
    std::thread::spawn(move || {
        let mut rest = Vec::new();
        let _ = done.send(reader.read_to_end(&mut rest).map(|_| rest));
    });
    let got = eof.recv_timeout(Duration::from_secs(5));
    assert!(
        matches!(got, Ok(Ok(ref rest)) if rest.is_empty()),
        "the caller's pipe is still held open by the background upload: {got:?}"
    );
}

/// A custom build whose version line carries a secret-looking suffix and a path: counted
/// under the normalised version, and nothing of the rest is in any file tally writes.
#[test]
fn a_custom_builds_version_text_is_kept_nowhere() {
    let w = World::new();
    let fake = w.tmp.path().join("fake");
    let secret = "qzSECRETqz";
    crate::support::write_script(
        &fake.join("rustc"),
        &format!(
            "echo 'rustc 1.96.0-{secret}_build (/home/qzalice/{secret}/rust abc123 2026-01-01)'"
        ),
    );
    let path = std::env::join_paths([w.shims.clone(), fake.clone()]).unwrap();
    for _ in 0..2 {
        let out = within_deadline(w.cmd("rustc").arg("--version").env("PATH", &path));
        assert!(String::from_utf8_lossy(&out.stdout).contains(secret));
    }
    assert_eq!(w.versions("rustc"), ["1.96.0"]);
    // The week ends: a local report is built from the counter file.
    within_deadline(w.direct(TALLY).arg("upload").env("TALLY_NOW", "2099-01-01"));
    within_deadline(w.direct(TALLY).arg("show").env("TALLY_NOW", "2099-01-01"));
    let files = w.data_files();
    assert!(!files.is_empty());
    for (path, bytes) in files {
        let name = path.to_string_lossy();
        for needle in [secret, "qzalice", "abc123", "_build"] {
            assert!(!name.contains(needle), "{name}");
            assert!(
                !bytes
                    .windows(needle.len())
                    .any(|win| win == needle.as_bytes()),
                "{name} holds {needle:?}"
            );
        }
    }
}

/// Another program's counter file put at the name of rustc's (copied, renamed, planted): the
/// shim never counts into it and `tally show` never lists it under its header's program. The
/// shim moves it to `quarantine/` as it was, with a reason, and counts in a fresh file.
#[test]
fn a_counter_file_under_another_programs_name_is_moved_aside_not_counted_into() {
    let w = World::new();
    ok(w.cmd("rustc").arg("-V"));
    w.settle();
    let rustc = files_in(&w.data.join("counters")).remove(0);
    let mut meta = tally_sys_meta(&rustc);
    meta.program = "gofmt".to_string();
    let elsewhere = w.tmp.path().join("gofmt.count");
    let (file, _) = tally_home::CounterFile::open_or_create(&elsewhere, &meta).unwrap();
    file.add("gofmt/invocations", 7).unwrap();
    drop(file);
    std::fs::rename(&elsewhere, &rustc).unwrap();
    let planted = std::fs::read(&rustc).unwrap();

    version_through_shim(&w);
    let show = within_deadline(w.direct(TALLY).arg("show"));
    assert!(
        !String::from_utf8_lossy(&show.stdout).contains("gofmt"),
        "listed under the header's program: {show:?}"
    );
    assert_eq!(w.program("rustc").get("rustc/invocations"), Some(&1));
    assert!(w.program("gofmt").is_empty(), "{:?}", w.counters());
    let moved: Vec<PathBuf> = files_in(&w.data.join("quarantine"));
    let copy = moved
        .iter()
        .find(|p| std::fs::read(p).is_ok_and(|b| b == planted))
        .unwrap_or_else(|| panic!("the planted file, untouched, in quarantine: {moved:?}"));
    let reason = std::fs::read_to_string(format!("{}.reason", copy.display())).unwrap();
    assert!(reason.contains("another program"), "{reason}");
}

/// The header of the counter file at `path`.
fn tally_sys_meta(path: &Path) -> tally_home::FileMeta {
    tally_home::parse_counter_file(&std::fs::read(path).unwrap())
        .unwrap()
        .meta
}
