//! Property tests of the upload parser and validator: no panic on any bytes, nothing outside
//! the config is ever accepted, and a refused report leaves no trace in the store.

use crate::support::*;
use axum::http::StatusCode;
use proptest::prelude::*;
use proptest::test_runner::FileFailurePersistence;
use tally_protocol::UploadConfig;
use tally_server::validate::{check_against_config, parse_upload};

/// The proptest settings of this file with `cases` cases. Failures are kept in
/// `fuzz.proptest-regressions` beside this file and replayed first: proptest's default would put
/// them under `tests/proptest-regressions/`, beside the test binary's `main.rs`.
fn proptest_config(cases: u32) -> ProptestConfig {
    ProptestConfig {
        cases,
        failure_persistence: Some(Box::new(FileFailurePersistence::WithSource(
            "proptest-regressions",
        ))),
        ..ProptestConfig::default()
    }
}

fn config() -> UploadConfig {
    UploadConfig::parse(EXAMPLE_CONFIG.as_bytes()).unwrap()
}

/// Bytes that are often almost a report: the example with random splices.
fn near_report() -> impl Strategy<Value = Vec<u8>> {
    let base = body(&report(0.5, "1.95.0", &[("cargo/invocations", 3)]));
    (
        0..base.len(),
        0..base.len(),
        proptest::collection::vec(any::<u8>(), 0..16),
    )
        .prop_map(move |(a, b, insert)| {
            let (lo, hi) = (a.min(b), a.max(b));
            let mut out = base[..lo].to_vec();
            out.extend(insert);
            out.extend(&base[hi..]);
            out
        })
}

proptest! {
    #![proptest_config(proptest_config(2000))]

    #[test]
    fn never_panics_on_any_bytes(week in ".{0,16}", bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
        if let Ok(report) = parse_upload(&week, &bytes, today()) {
            let _ = check_against_config(&report, &config());
        }
    }

    #[test]
    fn never_panics_on_spliced_reports(bytes in near_report()) {
        if let Ok(report) = parse_upload(WEEK, &bytes, today()) {
            let _ = check_against_config(&report, &config());
        }
    }

    #[test]
    fn accepts_only_what_the_config_names(
        program in prop_oneof![Just("cargo".to_string()), Just("rustc".to_string()), "[a-z]{1,8}"],
        version in prop_oneof![Just("1.95.0".to_string()), "[0-9.a-z-]{0,10}"],
        os in prop_oneof![Just("linux".to_string()), "[a-z0-9]{0,8}"],
        arch in prop_oneof![Just("x86_64".to_string()), "[a-z0-9_]{0,8}"],
        counter in prop_oneof![Just("cargo/invocations".to_string()), Just("rustc/edition:2021".to_string()), "[a-z/:{},-]{0,24}"],
        count in any::<u64>(),
        x in 0.0f64..1.0,
    ) {
        let mut r = report(x.max(f64::MIN_POSITIVE), &version, &[(&counter, count)]);
        r.programs[0].program = program.clone();
        r.programs[0].os = os.clone();
        r.programs[0].arch = arch.clone();
        let config = config();
        let bytes = body(&r);
        if let Ok(parsed) = parse_upload(WEEK, &bytes, today())
            && check_against_config(&parsed, &config).is_ok()
        {
            prop_assert!(config.allows(&program, &version, &os, &arch));
            prop_assert!(tally_protocol::version::is_canonical(&version));
            let rates = config.program(&program).unwrap().counter_rates();
            prop_assert!(rates.get(&counter).is_some_and(|rate| parsed.x <= *rate));
        }
    }
}

proptest! {
    #![proptest_config(proptest_config(48))]

    /// A secret smuggled into any field of a report makes it refused, and appears in no file
    /// the server writes.
    #[test]
    fn refused_secrets_leave_no_trace(secret in "[A-Za-z0-9]{12,24}", field in 0usize..5) {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let collector = Collector::new();
        let store = tempfile::tempdir().unwrap();
        runtime.block_on(async {
            let state = collector.state(store.path(), 1).await.unwrap();
            let good = report(0.3, "1.95.0", &[("cargo/invocations", 1)]);
            assert_eq!(upload(&state, &good).await.0, StatusCode::OK);
            let mut r = report(0.6, "1.95.0", &[("cargo/invocations", 1)]);
            let tagged = format!("secret-{secret}");
            match field {
                0 => { r.programs[0].counters.insert(tagged.clone(), 1); }
                1 => r.programs[0].version = format!("1.95.0-{tagged}"),
                2 => r.programs[0].os = tagged.clone(),
                3 => r.programs[0].arch = tagged.clone(),
                _ => r.programs[0].program = tagged.clone(),
            }
            let (status, _) = upload(&state, &r).await;
            assert_eq!(status, StatusCode::BAD_REQUEST);
            state.flush().await.unwrap();
            for file in files_under(store.path()) {
                let text = String::from_utf8_lossy(&std::fs::read(&file).unwrap()).into_owned();
                assert!(!text.contains(&secret), "{} holds the refused secret", file.display());
            }
            for path in ["/api/weeks".to_string(), format!("/api/weeks/{WEEK}/cargo"), "/".to_string()] {
                let (_, bytes) = call(&state, "GET", &path, vec![]).await;
                assert!(!String::from_utf8_lossy(&bytes).contains(&secret));
            }
        });
    }
}
