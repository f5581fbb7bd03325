//! Privacy through the real binary: random values, paths and secret-looking strings passed to
//! the tools never appear in any file tally writes.

use proptest::prelude::*;

use crate::support::{World, run};

fn secret() -> impl Strategy<Value = String> {
    prop_oneof![
        "qz[A-Za-z0-9]{8,16}",
        "/home/qz[a-z]{4}/secret/[a-z]{3}\\.rs",
        "ghp_qz[A-Za-z0-9]{20}",
        "AKIAQZ[A-Z0-9]{14}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn secrets_in_arguments_never_reach_the_data_directory(s in secret(), t in secret()) {
        let w = World::new();
        let argfile = w.tmp.path().join("args");
        std::fs::write(&argfile, format!("--cfg\n{s}\n--crate-name\n{t}\n")).unwrap();
        let runs: Vec<(&str, Vec<String>)> = vec![
            ("rustc", vec!["--cfg".into(), s.clone(), "--crate-name".into(), t.clone(), format!("-C{s}={t}"), format!("-Z{t}"), format!("--print={s}"), "-".into()]),
            ("rustc", vec![format!("@{}", argfile.display()), format!("--{s}"), t.clone()]),
            ("cargo", vec![format!("+{s}"), "build".into(), "--manifest-path".into(), t.clone()]),
            ("cargo", vec![s.clone(), format!("--{t}={s}")]),
            ("rustfmt", vec!["--config-path".into(), s.clone(), format!("--edition={t}"), t.clone()]),
        ];
        for (tool, args) in &runs {
            let _ = run(w.cmd(tool).args(args).stdin(std::process::Stdio::null()));
        }
        let files = w.data_files();
        prop_assert!(!files.is_empty(), "nothing was counted at all");
        for (path, bytes) in files {
            for needle in [&s, &t] {
                let hit = bytes.windows(needle.len()).any(|win| win == needle.as_bytes());
                prop_assert!(!hit, "{} holds {needle:?}", path.display());
                prop_assert!(!path.to_string_lossy().contains(needle.as_str()));
            }
        }
    }
}
