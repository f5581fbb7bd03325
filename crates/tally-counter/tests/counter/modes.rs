//! When the library counts and when it touches nothing: tally absent, off in every way, and
//! the names a tool run leaves.

use std::collections::BTreeMap;

use tally_home::{Home, Mode};

use crate::{World, ok};

fn map(pairs: &[(&str, u64)]) -> BTreeMap<String, u64> {
    pairs.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

#[test]
fn a_tool_run_counts_its_names_in_the_programs_own_file() {
    let world = World::installed();
    let out = ok(&mut world.worker("tool", &[("TALLY_NOW", "2026-11-24")]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("counting=true"));
    ok(&mut world.worker("tool", &[("TALLY_NOW", "2026-11-24")]));
    let counters = world.counters();
    assert_eq!(counters.keys().collect::<Vec<_>>(), ["counter-probe"]);
    assert_eq!(
        counters["counter-probe"],
        map(&[
            ("counter-probe/flag:--fast", 2),
            ("counter-probe/invocations", 2),
            ("counter-probe/run/flag:-j", 2),
            ("counter-probe/size:<100", 2),
            ("counter-probe/subcommand:run", 2),
            ("counter-probe/time:<10s", 2),
        ])
    );
    let store = Home::at(&world.data).counter_store();
    let files = store.list();
    assert_eq!(files.len(), 1);
    let meta = &files[0].1.as_ref().unwrap().meta;
    assert_eq!(meta.version, "2.4.0");
}

/// Absent, `TALLY=off`, `DO_NOT_TRACK=1`, mode `off`, a relative `TALLY_DIR`: the run succeeds,
/// and the data directory is exactly as it was (not even made).
#[test]
fn nothing_is_written_when_tally_is_absent_or_off() {
    let absent = World::absent();
    ok(&mut absent.worker("tool", &[]));
    assert!(
        !absent.data.exists(),
        "the library never makes the data directory"
    );

    let world = World::installed();
    for extra in [
        vec![("TALLY", "off")],
        vec![("TALLY", "OFF")],
        vec![("DO_NOT_TRACK", "1")],
        vec![("DO_NOT_TRACK", "true")],
    ] {
        let out = ok(&mut world.worker("tool", &extra));
        assert!(
            String::from_utf8_lossy(&out.stdout).contains("counting=false"),
            "{extra:?}"
        );
        assert!(world.files().is_empty(), "{extra:?}: {:?}", world.files());
    }
    let mut relative = world.worker("tool", &[]);
    relative.env("TALLY_DIR", "relative/tally");
    ok(&mut relative);
    assert!(world.files().is_empty());

    Home::at(&world.data).set_mode(Mode::Off).unwrap();
    let before = world.files();
    ok(&mut world.worker("tool", &[]));
    assert_eq!(world.files(), before, "mode off writes nothing");
}

/// `TALLY=local` lowers mode `on` and still counts, as the shims do; counts made before the
/// program is named are not kept.
#[test]
fn local_counts_and_unopened_counts_nothing() {
    let world = World::installed();
    Home::at(&world.data)
        .set_mode(Mode::On {
            since: "2026-11-01".parse().unwrap(),
        })
        .unwrap();
    ok(&mut world.worker("tool", &[("TALLY", "local")]));
    assert_eq!(
        world.counters()["counter-probe"]["counter-probe/invocations"],
        1
    );

    let fresh = World::installed();
    let out = ok(&mut fresh.worker("unopened", &[]));
    assert!(String::from_utf8_lossy(&out.stdout).contains("counting=false"));
    assert!(fresh.files().is_empty());
}

/// A tool that opens but never counts pays nothing: no system call touches the data directory
/// (or reads tally's environment) until the first increment. Watched with strace.
#[test]
fn opening_without_counting_touches_nothing() {
    let Some(strace) = which("strace") else {
        assert!(
            std::env::var_os("TALLY_REQUIRE_STRACE").is_none_or(|v| v != "1"),
            "TALLY_REQUIRE_STRACE=1 but strace is not installed"
        );
        eprintln!("skipping: strace is not installed");
        return;
    };
    let world = World::installed();
    let traced = |role: &str| {
        let worker = world.worker(role, &[]);
        let mut cmd = std::process::Command::new(&strace);
        cmd.args(["-f", "-qq", "-e", "trace=%file,%desc", "--"])
            .arg(worker.get_program())
            .args(worker.get_args())
            .env_clear()
            .envs(worker.get_envs().filter_map(|(k, v)| Some((k, v?))));
        let out = ok(&mut cmd);
        String::from_utf8_lossy(&out.stderr).into_owned()
    };
    let data = world.data.to_string_lossy().into_owned();
    let idle = traced("idle");
    assert!(
        !idle.contains(&data),
        "opening touched the data directory:\n{idle}"
    );
    // The check can fail: a run that counts is seen.
    let counting = traced("tool");
    assert!(counting.contains(&data), "{counting}");
}

fn which(name: &str) -> Option<std::path::PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|d| d.join(name))
        .find(|p| p.is_file())
}
