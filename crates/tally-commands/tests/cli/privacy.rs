//! Privacy, tested like correctness: whatever ends up in the counter files (here: counter
//! names made of random secrets, as if a grammar had leaked an argument), only names the
//! collector's config asks for leave the machine, and no secret reaches any file the upload
//! run writes (`reports/pending`, `reports/sent`, `upload.last.json`) or the wire.

use crate::support::{Collector, Fixture};
use proptest::prelude::*;
use tally_test_support::collector::FakeCollector;

fn secret() -> impl Strategy<Value = String> {
    // Secret-looking values, paths and tokens; long enough never to occur by chance.
    prop_oneof![
        "[A-Za-z0-9]{12,24}".prop_map(|s| format!("ghp_{s}")),
        "[a-z]{6,12}".prop_map(|s| format!("/home/{s}/projects/{s}-secret")),
        "[A-Za-z0-9+/]{16,32}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, ..ProptestConfig::default() })]

    #[test]
    fn secrets_in_counter_names_never_leave_the_machine(
        secrets in proptest::collection::vec(secret(), 1..4),
        counts in proptest::collection::vec(1u64..1000, 4),
    ) {
        let server = FakeCollector::start();
        let collector = Collector::new();
        let config = collector.config(1, "2027-01-01", 1.0, &[("cargo/invocations", 1.0), ("cargo/build/flag:{--release,other}", 1.0)]);
        collector.publish(&server, &config);
        let fx = Fixture::new();
        let on = fx.on("2026-11-04", &[], &server.url, &collector);
        prop_assert!(on.ok());
        let mut counters: Vec<(String, u64)> = vec![
            ("cargo/invocations".into(), counts[0]),
            ("cargo/build/flag:--release".into(), counts[1]),
        ];
        for (i, secret) in secrets.iter().enumerate() {
            counters.push((format!("cargo/build/flag:--token={secret}"), counts[(i + 2) % 4]));
            counters.push((secret.clone(), counts[(i + 3) % 4]));
        }
        let refs: Vec<(&str, u64)> = counters.iter().map(|(n, c)| (n.as_str(), *c)).collect();
        fx.count("2026-11-10", "cargo", "1.95.0", &refs);

        let out = fx.run("2026-11-17", &[], &["upload"]);
        prop_assert!(out.ok(), "{:?}", out);
        let uploads = server.uploads();
        prop_assert_eq!(uploads.len(), 1);
        let body = String::from_utf8(uploads[0].body.clone()).unwrap();
        prop_assert!(body.contains("cargo/build/flag:--release"));

        let mut written = vec![body];
        for file in fx.all_files() {
            if file.starts_with("reports/sent") || file.starts_with("reports/pending") || file == "upload.last.json" {
                written.push(std::fs::read_to_string(fx.root().join(&file)).unwrap());
            }
        }
        written.push(out.stdout.clone());
        for text in &written {
            for secret in &secrets {
                prop_assert!(!text.contains(secret.as_str()), "secret {:?} in {}", secret, text);
            }
            prop_assert!(!text.contains("--token"), "{}", text);
        }
    }
}
