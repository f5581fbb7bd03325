//! The parser on valid, corrupt, mutated and random bytes: it never panics or loops, rejects
//! each kind of corruption with a message that says what is wrong, and reads back exactly what
//! was counted.

use std::collections::BTreeMap;

use proptest::prelude::*;
use tally_sys::{CounterFile, FileMeta, ParseError, parse};

fn meta() -> FileMeta {
    FileMeta {
        program: "go".into(),
        version: "go1.19.8".into(),
        os: "linux".into(),
        arch: "amd64".into(),
        week_start: "2026-11-24".into(),
        week_end: "2026-12-01".into(),
    }
}

/// A valid file holding `counts`, as bytes.
fn valid_file(counts: &BTreeMap<String, u64>) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("f.count");
    let (file, _) = CounterFile::open_or_create(&path, &meta()).unwrap();
    for (name, &n) in counts {
        file.add(name, n).unwrap();
    }
    drop(file);
    std::fs::read(&path).unwrap()
}

fn sample() -> Vec<u8> {
    let counts: BTreeMap<String, u64> = [("go/build", 3u64), ("go/test", 1), ("go/flag:-race", 2)]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
    valid_file(&counts)
}

fn u32_at(b: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(b[off..off + 4].try_into().unwrap())
}

fn put_u32(b: &mut [u8], off: usize, v: u32) {
    b[off..off + 4].copy_from_slice(&v.to_le_bytes());
}

/// Offset of the hash table and of the first non-empty chain head.
fn first_chain(b: &[u8]) -> (usize, usize) {
    let table = u32_at(b, 12) as usize;
    let head = (0..512)
        .map(|i| table + 4 * i)
        .find(|&at| u32_at(b, at) != 0)
        .expect("a non-empty chain");
    (table, head)
}

fn corrupt_message(bytes: &[u8]) -> String {
    match parse(bytes) {
        Err(ParseError::Corrupt(msg)) => msg,
        other => panic!("expected a corrupt file, got {other:?}"),
    }
}

#[test]
fn reads_back_what_was_counted() {
    let snap = parse(&sample()).unwrap();
    assert_eq!(snap.meta, meta());
    assert_eq!(snap.counters["go/build"], 3);
    assert_eq!(snap.counters["go/flag:-race"], 2);
    assert_eq!(snap.counters.len(), 3);
}

#[test]
fn zero_length() {
    assert!(corrupt_message(&[]).contains("zero length"));
}

#[test]
fn truncated() {
    let bytes = sample();
    for len in [3, 47, 100, 1000] {
        assert!(
            corrupt_message(&bytes[..len]).contains("truncated"),
            "{len}"
        );
    }
}

#[test]
fn wrong_magic() {
    let mut bytes = sample();
    bytes[0] = b'X';
    assert!(corrupt_message(&bytes).contains("wrong magic"));
    assert!(corrupt_message(b"# telemetry/counter file v1\n").contains("wrong magic"));
}

#[test]
fn huge_header_length() {
    let mut bytes = sample();
    put_u32(&mut bytes, 32, u32::MAX); // meta_len
    assert!(corrupt_message(&bytes).contains("metadata length"));
    let mut bytes = sample();
    put_u32(&mut bytes, 12, u32::MAX); // header_len
    assert!(corrupt_message(&bytes).contains("header length"));
}

#[test]
fn future_version() {
    let mut bytes = sample();
    put_u32(&mut bytes, 8, 2);
    assert_eq!(
        parse(&bytes),
        Err(ParseError::FutureVersion {
            found: 2,
            supported: 1
        })
    );
}

#[test]
fn chain_cycle() {
    let mut bytes = sample();
    let (_, head) = first_chain(&bytes);
    let record = u32_at(&bytes, head);
    put_u32(&mut bytes, record as usize + 12, record); // next points to itself
    assert!(corrupt_message(&bytes).contains("cycle"));
}

#[test]
fn pointer_past_end() {
    let mut bytes = sample();
    let (_, head) = first_chain(&bytes);
    let past = (bytes.len() as u32 + 64) & !31;
    put_u32(&mut bytes, head, past);
    assert!(corrupt_message(&bytes).contains("past the end"));
}

#[test]
fn record_in_the_wrong_bucket() {
    let mut bytes = sample();
    let (table, head) = first_chain(&bytes);
    let record = u32_at(&bytes, head);
    put_u32(&mut bytes, head, 0);
    let other = if head == table { table + 4 } else { table };
    put_u32(&mut bytes, other, record);
    assert!(corrupt_message(&bytes).contains("bucket"));
}

#[test]
fn random_bytes() {
    let mut rng = fastrand_like(0x5eed);
    for len in [1usize, 48, 2048, 16384, 65536] {
        let bytes: Vec<u8> = (0..len).map(|_| rng() as u8).collect();
        assert!(parse(&bytes).is_err());
    }
}

/// A small deterministic generator (no extra dependency for one test).
fn fastrand_like(mut state: u64) -> impl FnMut() -> u64 {
    move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    }
}

fn counter_name() -> impl Strategy<Value = String> {
    "[a-z][a-z0-9/:._-]{0,60}"
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn round_trips_any_counts(counts in prop::collection::btree_map(counter_name(), 1u64..1_000_000, 0..200)) {
        let snap = parse(&valid_file(&counts)).unwrap();
        prop_assert_eq!(snap.counters, counts);
        prop_assert_eq!(snap.dropped, 0);
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

    #[test]
    fn never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..20_000)) {
        let _ = parse(&bytes);
    }

    #[test]
    fn never_panics_on_mutated_valid_files(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..16),
        truncate in prop::option::of(any::<prop::sample::Index>()),
    ) {
        let mut bytes = SAMPLE.with(|s| s.clone());
        // Mutations aimed at the interesting part: header, table and first records.
        let hot = bytes.len().min(4096);
        for (at, value) in edits {
            bytes[at.index(hot)] = value;
        }
        if let Some(cut) = truncate {
            bytes.truncate(cut.index(bytes.len() + 1));
        }
        if let Ok(snap) = parse(&bytes) {
            // Whatever parses satisfies the format's invariants.
            prop_assert!(snap.counters.len() <= tally_sys::MAX_COUNTERS);
            prop_assert!(snap.counters.keys().all(|k| !k.is_empty() && k.len() <= tally_sys::MAX_NAME_LEN));
        }
    }
}

thread_local! {
    static SAMPLE: Vec<u8> = sample();
}

/// Files written by an independent writer (`fuzz/make_seeds.py`, Python, from the spec in
/// `docs/counter-file-format.md` alone) read back exactly: the spec is precise enough for a
/// second implementation.
#[test]
fn reads_files_written_by_an_independent_implementation() {
    let fixtures = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sys/fixtures");
    let small = tally_sys::read_file(&fixtures.join("small.count")).unwrap();
    assert_eq!(small.meta.program, "rustc");
    assert_eq!(small.meta.week_end, "2026-12-01");
    assert_eq!(small.counters["rustc/edition:2021"], 3);
    assert_eq!(small.counters["rustc/crate-type:lib"], 1);
    assert_eq!(small.dropped, 2);
    let many = tally_sys::read_file(&fixtures.join("many.count")).unwrap();
    assert_eq!(many.counters.len(), 600);
    for i in 0..600u64 {
        assert_eq!(many.counters[&format!("rustc/flag-{i}")], i);
    }
    // And our writer keeps counting into them.
    let dir = tempfile::tempdir().unwrap();
    let copy = dir.path().join("many.count");
    std::fs::copy(fixtures.join("many.count"), &copy).unwrap();
    let file = CounterFile::open_existing(&copy).unwrap();
    file.add("rustc/flag-7", 1).unwrap();
    file.add("rustc/new", 1).unwrap();
    let after = tally_sys::read_file(&copy).unwrap();
    assert_eq!(after.counters["rustc/flag-7"], 8);
    assert_eq!(after.counters["rustc/new"], 1);
    assert_eq!(after.counters.len(), 601);
}
