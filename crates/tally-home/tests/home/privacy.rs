//! Privacy: nothing from the environment or the paths tally runs with ends up in the files it
//! writes (counter files, mode, weekday, quarantine reasons). Only the program, its version,
//! OS, arch, week days and the counter names given to it are written.

use std::ffi::OsString;
use std::path::Path;

use proptest::prelude::*;
use tally_home::{Env, Home, count_invocation};

fn all_file_bytes(root: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in std::fs::read_dir(&dir).unwrap().flatten() {
            if e.file_type().unwrap().is_dir() {
                stack.push(e.path());
            } else {
                out.push((
                    e.path().display().to_string(),
                    std::fs::read(e.path()).unwrap(),
                ));
            }
        }
    }
    out
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 48, ..ProptestConfig::default() })]

    #[test]
    fn secrets_in_paths_and_environment_never_reach_files(
        secret in "[A-Za-z0-9]{16,24}",
        corrupt_first in any::<bool>(),
    ) {
        let tmp = tempfile::tempdir().unwrap();
        // The secret is in the data directory's path, in HOME and in other variables.
        let root = tmp.path().join(format!("user-{secret}")).join("tally");
        let env = Env::from_pairs([
            (OsString::from("TALLY_DIR"), root.clone().into_os_string()),
            (OsString::from("HOME"), OsString::from(format!("/home/{secret}"))),
            (OsString::from("TALLY_NEXT_WRAPPER"), OsString::from(format!("/opt/{secret}/sccache"))),
            (OsString::from("CI"), OsString::from(secret.clone())),
            (OsString::from("TALLY_NOW"), OsString::from("2026-11-24")),
        ]);
        if corrupt_first {
            // A corrupt file gets quarantined with a reason file: that must not name paths.
            let home = Home::at(&root);
            let week = home.week_of("2026-11-24".parse().unwrap()).unwrap();
            let meta = tally_home::Store::meta_for("cargo", "1.91.0", week);
            std::fs::create_dir_all(home.counters_dir()).unwrap();
            std::fs::write(home.counters_dir().join(tally_home::counter_file_name(&meta)), b"junk").unwrap();
        }
        count_invocation(&env, "cargo", "1.91.0", &["cargo/build", "cargo/flag:--release"]).unwrap();
        let files = all_file_bytes(&root);
        prop_assert!(files.iter().any(|(p, _)| p.ends_with(".count")));
        for (path, bytes) in files {
            prop_assert!(!contains(&bytes, secret.as_bytes()), "secret found in {}", path);
            prop_assert!(!contains(&bytes, b"/tmp"), "a path found in {}", path);
        }
    }
}
