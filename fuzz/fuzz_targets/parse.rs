//! Fuzzes the counter file parser: it must never panic, loop or allocate without bound, and
//! whatever it accepts must satisfy the format's caps.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(snapshot) = tally_sys::parse(data) {
        assert!(snapshot.counters.len() <= tally_sys::MAX_COUNTERS);
        assert!(
            snapshot
                .counters
                .keys()
                .all(|name| !name.is_empty() && name.len() <= tally_sys::MAX_NAME_LEN)
        );
    }
});
