//! The counter store against corrupt files, unwritable and full disks: every failure is an
//! error returned to the caller, never a panic, and never a half-written file that breaks a
//! later reader.

use std::ffi::OsString;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Command;

use tally_home::{CounterFile, Day, Env, Home, Store, count_invocation, counter_file_name};

fn today() -> Day {
    "2026-11-24".parse().unwrap()
}

/// The path `open_current` uses for rustc 1.91.0 today, with its directory created.
fn current_path(home: &Home) -> PathBuf {
    let week = home.week_of(today()).unwrap();
    let meta = Store::meta_for("rustc", "1.91.0", week);
    std::fs::create_dir_all(home.counters_dir()).unwrap();
    home.counters_dir().join(counter_file_name(&meta))
}

fn valid_bytes(home: &Home) -> Vec<u8> {
    let path = current_path(home);
    let (file, _) = CounterFile::open_or_create(
        &path,
        &Store::meta_for("rustc", "1.91.0", home.week_of(today()).unwrap()),
    )
    .unwrap();
    file.add("rustc/edition:2021", 4).unwrap();
    file.add("rustc/crate-type:lib", 1).unwrap();
    drop(file);
    let bytes = std::fs::read(&path).unwrap();
    std::fs::remove_file(&path).unwrap();
    bytes
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

fn first_head(b: &[u8]) -> usize {
    let table = u32_at(b, 12) as usize;
    (0..512)
        .map(|i| table + 4 * i)
        .find(|&at| u32_at(b, at) != 0)
        .unwrap()
}

/// Every kind of bad file, with a word its quarantine reason must contain.
fn corruptions(valid: &[u8]) -> Vec<(&'static str, Vec<u8>, &'static str)> {
    let mut cases = vec![
        ("zero-length", Vec::new(), "zero length"),
        ("truncated", valid[..200].to_vec(), "truncated"),
    ];
    let mut b = valid.to_vec();
    b[..8].copy_from_slice(b"NOTTALLY");
    cases.push(("wrong magic", b, "wrong magic"));
    let mut b = valid.to_vec();
    put_u32(&mut b, 32, 0x7fff_ffff);
    cases.push(("huge header length", b, "metadata length"));
    let mut b = valid.to_vec();
    let rec = u32_at(&b, first_head(&b));
    put_u32(&mut b, rec as usize + 12, rec);
    cases.push(("chain cycle", b, "cycle"));
    let mut b = valid.to_vec();
    let head = first_head(&b);
    put_u32(&mut b, head, 0x000f_ffe0);
    cases.push(("pointer past end", b, "past the end"));
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let random: Vec<u8> = (0..16384)
        .map(|_| {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state as u8
        })
        .collect();
    cases.push(("random bytes", random, "wrong magic"));
    let mut b = valid.to_vec();
    put_u32(&mut b, 8, 7);
    cases.push(("future version", b, "version 7"));
    cases
}

#[test]
fn each_corrupt_file_is_quarantined_with_a_reason_and_a_fresh_file_started() {
    let kinds = 8;
    for kind in 0..kinds {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::at(tmp.path());
        let mut cases = corruptions(&valid_bytes(&home));
        assert_eq!(cases.len(), kinds);
        let (what, bytes, expect) = cases.swap_remove(kind);
        let path = current_path(&home);
        std::fs::write(&path, &bytes).unwrap();

        // Readers skip it with a clear message, and move nothing.
        let listed = home.counter_store().list();
        assert_eq!(listed.len(), 1, "{what}");
        let err = listed[0].1.as_ref().unwrap_err();
        assert!(err.is_invalid_file(), "{what}: {err}");
        assert!(err.to_string().contains(expect), "{what}: {err}");
        assert!(path.exists());

        // The hot path moves it aside and starts afresh.
        // Enough names to walk every hash chain, so corruption deep in the file is met too.
        let names: Vec<String> = (0..3000).map(|i| format!("rustc/n{i}")).collect();
        let mut names: Vec<&str> = names.iter().map(String::as_str).collect();
        names.push("rustc/after");
        let created = home
            .counter_store()
            .count_names("rustc", "1.91.0", today(), &names)
            .unwrap()
            .created_file;
        assert!(created, "{what}");
        let quarantined = home.quarantine_dir().join(path.file_name().unwrap());
        // Kept: byte for byte when the damage showed at open; when it only showed while
        // walking a chain, counting had begun, and the file still shows the same damage.
        let kept = std::fs::read(&quarantined).unwrap();
        let same_damage = tally_home::parse_counter_file(&kept)
            .err()
            .is_some_and(|e| e.to_string().contains(expect));
        assert!(
            kept == bytes || same_damage,
            "{what}: quarantined file not kept"
        );
        let reason = std::fs::read_to_string(format!("{}.reason", quarantined.display())).unwrap();
        assert!(reason.contains(expect), "{what}: {reason}");
        assert!(
            !reason.contains(tmp.path().to_str().unwrap()),
            "no paths in reasons"
        );
        let listed = home.counter_store().list();
        assert_eq!(listed.len(), 1);
        assert_eq!(
            listed[0].1.as_ref().unwrap().counters["rustc/after"],
            1,
            "{what}"
        );
    }
}

#[test]
fn quarantine_never_overwrites_an_earlier_one() {
    let tmp = tempfile::tempdir().unwrap();
    let home = Home::at(tmp.path());
    let store = home.counter_store();
    let path = current_path(&home);
    for i in 0..3u8 {
        std::fs::write(&path, [i; 10]).unwrap();
        store.quarantine(&path, "test").unwrap();
    }
    let mut names: Vec<_> = std::fs::read_dir(home.quarantine_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .filter(|n| !n.ends_with(".reason"))
        .collect();
    names.sort();
    assert_eq!(names.len(), 3);
    assert!(!path.exists());
}

#[test]
fn a_file_for_something_else_is_not_counted_into() {
    let tmp = tempfile::tempdir().unwrap();
    let home = Home::at(tmp.path());
    let week = home.week_of(today()).unwrap();
    // "a-b" and "a_b" share a file name; the header tells them apart.
    let path = home.counters_dir();
    std::fs::create_dir_all(&path).unwrap();
    let store = home.counter_store();
    store.open_current("a-b", "1", today()).unwrap();
    let err = store.open_current("a_b", "1", today()).unwrap_err();
    assert!(err.to_string().contains("not the expected"), "{err}");
    let _ = week;
}

/// A counter file whose header names another program, version or week than its file name
/// (another program's file copied or renamed to this one's name): never counted into, never
/// read under either name. Listing calls it invalid; counting moves it, untouched, into
/// quarantine with a reason naming the field, and counts in a fresh file; so does retention.
#[test]
fn a_file_whose_header_disagrees_with_its_name_is_never_counted_into_or_shown() {
    for field in ["program", "version", "week"] {
        let tmp = tempfile::tempdir().unwrap();
        let home = Home::at(tmp.path());
        let store = home.counter_store();
        let week = home.week_of(today()).unwrap();
        let meta = match field {
            "program" => Store::meta_for("tally-example-greet", "1.91.0", week),
            "version" => Store::meta_for("rustc", "1.90.0", week),
            _ => Store::meta_for(
                "rustc",
                "1.91.0",
                home.week_of(today().plus_days(7).unwrap()).unwrap(),
            ),
        };
        std::fs::create_dir_all(home.counters_dir()).unwrap();
        let elsewhere = home.counters_dir().join("elsewhere.tmp");
        let (file, _) = CounterFile::open_or_create(&elsewhere, &meta).unwrap();
        file.add("tally-example-greet/invocations", 5).unwrap();
        drop(file);
        let rustc = current_path(&home);
        std::fs::rename(&elsewhere, &rustc).unwrap();
        let planted_bytes = std::fs::read(&rustc).unwrap();

        let listed = store.list();
        assert_eq!(listed.len(), 1);
        let err = listed[0].1.as_ref().unwrap_err();
        assert!(err.is_invalid_file(), "{field}: {err}");
        assert!(
            err.to_string()
                .contains(&format!("header names another {field} than its file name")),
            "{field}: {err}"
        );

        count_one_invocation(&store);
        let moved = home.quarantine_dir().join(rustc.file_name().unwrap());
        assert_eq!(
            std::fs::read(&moved).unwrap(),
            planted_bytes,
            "{field}: untouched"
        );
        let reason = std::fs::read_to_string(moved.with_extension("count.reason")).unwrap();
        assert!(
            reason.contains(&format!("another {field}")),
            "{field}: {reason}"
        );
        let listed = store.list();
        assert_eq!(listed.len(), 1);
        let fresh = listed[0].1.as_ref().unwrap();
        assert_eq!(
            (fresh.meta.program.as_str(), fresh.meta.version.as_str()),
            ("rustc", "1.91.0")
        );
        assert_eq!(counts_in(&rustc), [("rustc/invocations".to_string(), 1)]);

        // Retention moves one aside too, rather than reading it under its header's name.
        std::fs::rename(
            &moved,
            home.counters_dir()
                .join("zz@1-linux-x86_64-2026-11-24.v1.count"),
        )
        .unwrap();
        let swept = tally_home::retention::sweep(&home, today()).unwrap();
        assert_eq!(swept.quarantined.len(), 1, "{field}");
    }
}

/// A program name outside the shared rule (free text, a path, capitals) never becomes a
/// counter file, nor a directory: the error comes before anything is made.
#[test]
fn a_program_name_outside_the_rule_makes_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let root = tmp.path().join("data");
    let home = Home::at(&root);
    let store = home.counter_store();
    for bad in ["a b", "../etc", "/home/alice", "Cargo", "", "x\n"] {
        let err = store.open_current(bad, "1.0.0", today()).unwrap_err();
        assert!(
            matches!(err, tally_home::Error::BadProgramName(_)),
            "{bad:?}: {err}"
        );
    }
    assert!(!root.exists(), "nothing may be created for a refused name");
    store
        .open_current("cargo-nextest", "0.9.0", today())
        .unwrap();
    assert_eq!(store.list().len(), 1);
}

const ROLE: &str = "TALLY_HOME_STORE_ROLE";

fn rlimited_child(test: &str, role: &str, root: &Path, blocks: u32) -> std::process::Output {
    // The shell ignores SIGXFSZ (inherited across exec) and caps the file size, so writes past
    // the cap fail with EFBIG like a full disk instead of killing the process.
    Command::new("sh")
        .arg("-c")
        .arg(format!(
            "trap '' XFSZ; ulimit -f {blocks} && exec \"$0\" \"$@\""
        ))
        .arg(std::env::current_exe().unwrap())
        .arg("--exact")
        .arg(crate::test_name(module_path!(), test))
        .args(["--nocapture", "--test-threads=1"])
        .env(ROLE, role)
        .env("TALLY_DIR", root)
        .env("TALLY_NOW", "2026-11-24")
        .output()
        .unwrap()
}

/// Child side of the full-disk tests.
#[test]
fn full_disk_worker() {
    let Ok(role) = std::env::var(ROLE) else {
        return;
    };
    let env = Env::from_process();
    match role.as_str() {
        "grow" => {
            let home = Home::locate(&env).unwrap();
            let (file, _) = home
                .counter_store()
                .open_current("rustc", "1.91.0", env.today())
                .unwrap();
            let mut added = 0u32;
            let err = loop {
                // Long names so the cap is reached after a few pages.
                match file.add(&format!("rustc/n{added}-{}", "y".repeat(150)), 1) {
                    Ok(()) => added += 1,
                    Err(e) => break e,
                }
                assert!(added < 100_000, "the size limit was never hit");
            };
            println!("\nadded={added}\nerror={err}");
        }
        "create" => {
            let err = count_invocation(&env, "rustc", "1.91.0", &["rustc/x"]).unwrap_err();
            println!("\nerror={err}");
        }
        other => panic!("unknown role {other}"),
    }
}

fn stdout_value(out: &std::process::Output, key: &str) -> String {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .find_map(|l| l.strip_prefix(&format!("{key}=")).map(str::to_string))
        .unwrap_or_else(|| panic!("no {key} in {out:?}"))
}

#[test]
fn full_disk_while_growing_returns_an_error_and_keeps_the_file_readable() {
    let tmp = tempfile::tempdir().unwrap();
    // 64 blocks: 32 KiB (dash) or 64 KiB (bash), more than a fresh file's 16 KiB.
    let out = rlimited_child("full_disk_worker", "grow", tmp.path(), 64);
    assert!(out.status.success(), "{out:?}");
    let added: usize = stdout_value(&out, "added").parse().unwrap();
    let error = stdout_value(&out, "error");
    assert!(error.contains("cannot extend"), "{error}");
    assert!(added > 10);
    let listed = Home::at(tmp.path()).counter_store().list();
    assert_eq!(listed.len(), 1);
    let snap = listed[0].1.as_ref().unwrap();
    assert_eq!(
        snap.counters.len(),
        added,
        "every name that was added is there"
    );
    assert!(snap.counters.values().all(|&c| c == 1));
}

#[test]
fn full_disk_at_creation_leaves_no_file_behind() {
    let tmp = tempfile::tempdir().unwrap();
    // 8 blocks: 4 or 8 KiB, less than a fresh file.
    let out = rlimited_child("full_disk_worker", "create", tmp.path(), 8);
    assert!(out.status.success(), "{out:?}");
    let error = stdout_value(&out, "error");
    assert!(
        error.contains("File too large") || error.contains("too large"),
        "{error}"
    );
    let home = Home::at(tmp.path());
    assert!(home.counter_store().list().is_empty());
    let leftovers: Vec<_> = std::fs::read_dir(home.counters_dir())
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(leftovers.is_empty(), "{leftovers:?}");
}

/// Runs `count_invocation` in a child process as an unprivileged user when the tests run as
/// root (root ignores permission bits), and returns its output.
fn count_as_unprivileged(root: &Path) -> Option<std::process::Output> {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = if nix_is_root() {
        if which("setpriv").is_none() {
            eprintln!("skipping: running as root and setpriv is missing");
            return None;
        }
        let mut c = Command::new("setpriv");
        c.args(["--reuid=65534", "--regid=65534", "--clear-groups"])
            .arg(exe);
        c
    } else {
        Command::new(exe)
    };
    Some(
        cmd.arg("--exact")
            .arg(crate::test_name(module_path!(), "readonly_worker"))
            .args(["--nocapture", "--test-threads=1"])
            .env(ROLE, "readonly")
            .env("TALLY_DIR", root)
            .env("TALLY_NOW", "2026-11-24")
            .output()
            .unwrap(),
    )
}

fn nix_is_root() -> bool {
    // The owner of a file we just created is our effective user.
    use std::os::unix::fs::MetadataExt;
    let f = tempfile::NamedTempFile::new().unwrap();
    f.as_file().metadata().unwrap().uid() == 0
}

fn which(name: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(name))
            .find(|c| c.is_file())
    })
}

/// Child side of the read-only tests.
#[test]
fn readonly_worker() {
    if std::env::var(ROLE).as_deref() != Ok("readonly") {
        return;
    }
    let env = Env::from_process();
    match count_invocation(&env, "rustc", "1.91.0", &["rustc/x"]) {
        Ok(outcome) => println!("\noutcome={outcome:?}"),
        Err(e) => println!("\nerror={e}"),
    }
}

fn make_readonly_tree(tmp: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    // The unprivileged child must be able to reach the directory, not write in it.
    std::fs::set_permissions(tmp, std::fs::Permissions::from_mode(0o755)).unwrap();
    tmp.join("home")
}

#[test]
fn read_only_data_directory_returns_an_error() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = make_readonly_tree(tmp.path());
    std::fs::create_dir(&root).unwrap();
    std::fs::set_permissions(&root, std::fs::Permissions::from_mode(0o555)).unwrap();
    let Some(out) = count_as_unprivileged(&root) else {
        return;
    };
    assert!(out.status.success(), "{out:?}");
    let error = stdout_value(&out, "error");
    assert!(error.contains("Permission denied"), "{error}");
    assert_eq!(
        std::fs::read_dir(&root).unwrap().count(),
        0,
        "nothing written"
    );
}

#[test]
fn read_only_counter_file_returns_an_error_and_stays_intact() {
    use std::os::unix::fs::PermissionsExt;
    let tmp = tempfile::tempdir().unwrap();
    let root = make_readonly_tree(tmp.path());
    let home = Home::at(&root);
    let (file, _) = home
        .counter_store()
        .open_current("rustc", "1.91.0", today())
        .unwrap();
    file.add("rustc/x", 5).unwrap();
    let path = file.path().to_path_buf();
    drop(file);
    for dir in [root.clone(), home.counters_dir()] {
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o555)).unwrap();
    }
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o444)).unwrap();
    let before = std::fs::read(&path).unwrap();
    let Some(out) = count_as_unprivileged(&root) else {
        return;
    };
    assert!(out.status.success(), "{out:?}");
    let error = stdout_value(&out, "error");
    assert!(error.contains("Permission denied"), "{error}");
    assert_eq!(std::fs::read(&path).unwrap(), before);
    let _ = std::io::stdout().flush();
}

#[test]
fn unusable_tally_dir_is_an_error_not_a_panic() {
    let tmp = tempfile::tempdir().unwrap();
    let not_a_dir = tmp.path().join("file");
    std::fs::write(&not_a_dir, "x").unwrap();
    let env = Env::from_pairs([
        (
            OsString::from("TALLY_DIR"),
            not_a_dir.join("tally").into_os_string(),
        ),
        (OsString::from("TALLY_NOW"), OsString::from("2026-11-24")),
    ]);
    let err = count_invocation(&env, "go", "go1.19", &["go/build"]).unwrap_err();
    assert!(err.to_string().contains("Not a directory"), "{err}");
}

/// `Home::count` hands the file back still mapped (the shim keeps it until its `exec`): the
/// counts are already in the file for every reader, and dropping it loses nothing.
#[test]
fn count_hands_back_the_file_still_mapped() {
    let dir = tempfile::tempdir().unwrap();
    let home = Home::at(dir.path());
    let first = home
        .count(today(), "rustc", "1.91.0", &["rustc/x", "rustc/y"])
        .unwrap();
    assert!(first.created_file);
    assert_eq!(first.file().path(), current_path(&home));
    let second = home
        .count(today(), "rustc", "1.91.0", &["rustc/x"])
        .unwrap();
    assert!(!second.created_file);
    let read = || counts_in(&current_path(&home));
    assert_eq!(
        read(),
        [("rustc/x".to_string(), 2), ("rustc/y".to_string(), 1)]
    );
    drop((first, second));
    assert_eq!(
        read(),
        [("rustc/x".to_string(), 2), ("rustc/y".to_string(), 1)]
    );
}

fn counts_in(path: &Path) -> Vec<(String, u64)> {
    let snapshot = tally_home::parse_counter_file(&std::fs::read(path).unwrap()).unwrap();
    snapshot.counters.into_iter().collect()
}

fn mkfifo(path: &Path) {
    nix::unistd::mkfifo(path, nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
}

fn modified(path: &Path) -> std::time::SystemTime {
    std::fs::metadata(path).unwrap().modified().unwrap()
}

/// A FIFO at the current counter file's path, the mode or the weekday never blocks counting:
/// each is refused at once; the FIFO in `counters/` is moved aside like a corrupt file and a
/// fresh file counted.
#[test]
fn fifos_in_the_data_directory_never_block() {
    let started = std::time::Instant::now();
    let tmp = tempfile::tempdir().unwrap();
    let home = Home::at(tmp.path().join("data"));
    let path = current_path(&home);
    mkfifo(&path);
    let store = home.counter_store();
    assert!(count_one_invocation(&store), "a fresh file was started");
    let snapshot = tally_sys::read_file(&path).unwrap();
    assert_eq!(snapshot.counters["rustc/invocations"], 1);
    let quarantined: Vec<String> = std::fs::read_dir(home.quarantine_dir())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(quarantined.len(), 2, "{quarantined:?}");
    let reason_file = home.quarantine_dir().join(format!(
        "{}.reason",
        path.file_name().unwrap().to_string_lossy()
    ));
    let reason = std::fs::read_to_string(reason_file).unwrap();
    assert!(reason.contains("FIFO"), "{reason}");

    for file in [home.mode_path(), home.weekday_path()] {
        let other = Home::at(
            tmp.path()
                .join(format!("other-{}", file.display().to_string().len())),
        );
        std::fs::create_dir_all(other.root()).unwrap();
        mkfifo(&other.root().join(file.file_name().unwrap()));
        let env = Env::from_pairs([(OsString::from("TALLY_DIR"), other.root().into())]);
        let e = count_invocation(&env, "rustc", "1.91.0", &["rustc/invocations"]).unwrap_err();
        assert!(e.to_string().contains("FIFO"), "{e}");
    }
    assert!(started.elapsed() < std::time::Duration::from_secs(10));
}

/// A link in `counters/` is never counted through, read or quarantined through: the link
/// itself is moved aside, the file it points to keeps its bytes and its times.
#[test]
fn links_in_counters_are_moved_aside_never_followed() {
    let tmp = tempfile::tempdir().unwrap();
    let home = Home::at(tmp.path().join("data"));
    let store = home.counter_store();
    let path = current_path(&home);
    // A valid counter file for the same program, the week before, in `counters/`.
    let week = home.week_of(today().plus_days(-7).unwrap()).unwrap();
    let meta = Store::meta_for("rustc", "1.91.0", week);
    let other = home.counters_dir().join(counter_file_name(&meta));
    let (file, _) = CounterFile::open_or_create(&other, &meta).unwrap();
    file.add("rustc/invocations", 5).unwrap();
    drop(file);
    // And a file outside the data directory, with an old time.
    let outside = tmp.path().join("passwd");
    let old = tally_test_support::home::write_old_foreign_file(&outside);
    let other_bytes = std::fs::read(&other).unwrap();
    let other_time = modified(&other);

    std::os::unix::fs::symlink(&other, &path).unwrap();
    let outside_link = home
        .counters_dir()
        .join("rustc@0-linux-x86_64-2026-01-01.v1.count");
    std::os::unix::fs::symlink(&outside, &outside_link).unwrap();

    assert!(count_one_invocation(&store), "a fresh file was started");
    assert_eq!(
        std::fs::read(&other).unwrap(),
        other_bytes,
        "counted through a link"
    );
    assert_eq!(modified(&other), other_time);
    assert!(!std::fs::symlink_metadata(&path).unwrap().is_symlink());
    assert_eq!(
        tally_sys::read_file(&path).unwrap().counters["rustc/invocations"],
        1
    );

    // Readers and the sweep move the other link aside, as a link.
    let listed = store.list();
    let (_, read) = listed.iter().find(|(p, _)| p == &outside_link).unwrap();
    assert!(read.as_ref().unwrap_err().is_invalid_file());
    let swept = tally_home::retention::sweep(&home, today()).unwrap();
    assert_eq!(swept.quarantined.len(), 1, "{swept:?}");
    assert!(
        std::fs::symlink_metadata(&swept.quarantined[0])
            .unwrap()
            .is_symlink()
    );
    assert!(std::fs::symlink_metadata(&outside_link).is_err());
    assert_eq!(
        std::fs::read_to_string(&outside).unwrap(),
        "root:x:0:0::/root:/bin/sh\n"
    );
    assert_eq!(
        modified(&outside),
        old,
        "the link's target had its time changed"
    );
}

/// A `counters/` that is a link to another directory is moved aside, never written through.
#[test]
fn a_linked_counters_directory_is_moved_aside() {
    let tmp = tempfile::tempdir().unwrap();
    let home = Home::at(tmp.path().join("data"));
    std::fs::create_dir_all(home.root()).unwrap();
    let elsewhere = tmp.path().join("elsewhere");
    std::fs::create_dir(&elsewhere).unwrap();
    std::os::unix::fs::symlink(&elsewhere, home.counters_dir()).unwrap();
    let store = home.counter_store();
    assert!(count_one_invocation(&store), "a fresh file was started");
    assert_eq!(std::fs::read_dir(&elsewhere).unwrap().count(), 0);
    assert!(
        std::fs::symlink_metadata(home.counters_dir())
            .unwrap()
            .is_dir()
    );
    assert_eq!(store.list().len(), 1);
    assert!(
        std::fs::symlink_metadata(home.quarantine_dir().join("counters"))
            .unwrap()
            .is_symlink()
    );
}

/// Counts one `rustc/invocations` in the current 1.91.0 file; whether that created the file.
fn count_one_invocation(store: &Store) -> bool {
    store
        .count_names("rustc", "1.91.0", today(), &["rustc/invocations"])
        .unwrap()
        .created_file
}
