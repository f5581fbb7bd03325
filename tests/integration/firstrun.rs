//! The first-run notice (once, only on a terminal, never in CI) and the daily background
//! upload trigger (mode `on` only, once a day, never in CI).

use std::process::Command;

use crate::support::{World, ok};

/// Runs `rustc -V` through the shim with stderr on a pseudo-terminal (util-linux `script`),
/// returning what the terminal showed.
fn on_a_terminal(w: &World, extra_env: &[(&str, &str)]) -> Option<String> {
    if Command::new("script").arg("--version").output().is_err() {
        eprintln!("skipping: util-linux `script` is not installed (needed for a pseudo-terminal)");
        return None;
    }
    let rustc = w.shims.join("rustc");
    let mut cmd = w.cmd("script");
    cmd.args(["-qec", &format!("{} -V", rustc.display()), "/dev/null"]);
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    Some(String::from_utf8_lossy(&ok(&mut cmd).stdout).into_owned())
}

#[test]
fn the_notice_is_shown_once_on_a_terminal() {
    let w = World::new();
    let Some(first) = on_a_terminal(&w, &[]) else {
        return;
    };
    assert!(
        first.contains("tally show") && first.contains("tally off"),
        "{first}"
    );
    assert!(first.contains(&w.data.display().to_string()), "{first}");
    assert!(first.contains("rustc "), "the tool still ran: {first}");
    let second = on_a_terminal(&w, &[]).unwrap();
    assert!(!second.contains("tally show"), "shown twice: {second}");
    assert!(w.data.join("notice-shown").exists());
}

#[test]
fn no_notice_in_ci_or_off_a_terminal() {
    let w = World::new();
    let Some(shown) = on_a_terminal(&w, &[("CI", "true")]) else {
        return;
    };
    assert!(!shown.contains("tally show"), "{shown}");
    // Not a terminal: the tool's stderr is untouched, and the notice is kept for later.
    let w = World::new();
    let out = ok(w.cmd("rustc").arg("-V"));
    assert!(out.stderr.is_empty());
    assert!(!w.data.join("notice-shown").exists());
}

#[test]
fn background_upload_starts_once_a_day_in_mode_on_only() {
    // local (the default): no token, nothing started.
    let w = World::new();
    ok(w.cmd("rustc").arg("-V"));
    assert!(!w.data.join("upload.token").exists());

    // on: the first run touches the token (and starts `tally upload --background`).
    let w = World::new();
    std::fs::create_dir_all(&w.data).unwrap();
    std::fs::write(w.data.join("mode"), "on 2026-01-05\n").unwrap();
    ok(w.cmd("rustc").arg("-V"));
    let token = w.data.join("upload.token");
    let first = std::fs::metadata(&token)
        .expect("token touched")
        .modified()
        .unwrap();
    ok(w.cmd("rustc").arg("-V"));
    assert_eq!(
        std::fs::metadata(&token).unwrap().modified().unwrap(),
        first,
        "not twice a day"
    );

    // on, but in CI or debugging uploads: nothing.
    for (k, v) in [("CI", "true"), ("TALLY_DEBUG_UPLOAD", "1")] {
        let w = World::new();
        std::fs::create_dir_all(&w.data).unwrap();
        std::fs::write(w.data.join("mode"), "on 2026-01-05\n").unwrap();
        ok(w.cmd("rustc").arg("-V").env(k, v));
        assert!(!w.data.join("upload.token").exists(), "{k}={v}");
    }
}
