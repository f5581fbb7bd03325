//! Where the collector keeps everything: one `object_store`, on the local disk or S3.
//!
//! Layout (relative to `--store DIR` or `s3://bucket/prefix`):
//!
//! | key | contents |
//! | --- | --- |
//! | `configs/<version>.json`, `configs/<version>.json.minisig` | every config version ever served |
//! | `reports/<monday>/<generation>/<week>_<x>.json` | one accepted report, in canonical form ([`report_key`]) |
//! | `reports/<monday>/<generation>/sealed` | the generation is closed to writes: a checkpoint of it is being made ([`seal_key`]) |
//! | `reports/<monday>/<week>_<x>.json` | a report stored before generations existed: read as part of generation 0 |
//! | `merged/<monday>/<n>.json` | checkpoint `n`: the merge of every report of generations below `n`, and their `x`s ([`checkpoint_key`]) |
//! | `merged/<monday>/latest` | the number of a recent checkpoint, where readers start looking ([`latest_key`]) |
//! | `merged/<monday>.json` | a copy of a recent checkpoint's merged aggregate (the final one once retention ran), for tools that read the store ([`merged_key`]); `checkpoint::find_newer(store, configs, monday, 0)` gives the newest |
//!
//! `crate::checkpoint` says how generations, seals and checkpoints work together; retention
//! deletes `reports/<monday>/` and keeps `merged/`.
//!
//! The store itself, on the local disk or S3, with its promises (nothing in it followed or
//! waited on, every read bounded by its kind, writes durable and dated to their day, nothing
//! recording who sent what or when), is `tally_service::store`, shared with the DAP aggregators;
//! this module names the collector's keys and the size each kind of object can have.

use object_store::path::Path;
use tally_protocol::Day;

pub use tally_service::store::{Created, Durability, Read, Store, note_skipped};

/// Largest stored report read back. A report is stored in its canonical, pretty-printed form
/// (`Report::to_canonical_json`), which is larger than the compact upload it came from: each
/// counter gains its line's indentation and a newline, at most twice the smallest compact entry
/// (`"p/c":1,`), so four times what an upload may be ([`tally_protocol::MAX_REPORT_BYTES`])
/// holds every report an upload was answered 2xx for (`checkpoint::tests`).
pub const MAX_STORED_REPORT_BYTES: usize = 4 * tally_protocol::MAX_REPORT_BYTES;

/// Largest checkpoint read: its merge and 12 bytes a report (about 40 million reports a week).
pub const MAX_CHECKPOINT_BYTES: usize = 512 << 20;

/// Largest merged copy (`merged/<monday>.json`) read: a week's merge without report ids.
pub const MAX_MERGED_BYTES: usize = 64 << 20;

/// Largest `latest` hint read: a checkpoint number.
pub const MAX_HINT_BYTES: usize = 32;

/// Largest served config read: what a client accepts ([`tally_protocol::MAX_CONFIG_BYTES`]).
pub const MAX_CONFIG_BYTES: usize = tally_protocol::MAX_CONFIG_BYTES;

/// Largest note read (`SIMULATED.txt`).
pub const MAX_NOTE_BYTES: usize = 64 << 10;

/// Key of a stored report: its calendar week, the generation it was written in
/// (`crate::checkpoint`), then its own week day and `x` ([`x_in_key`]). At most
/// [`MAX_REPORT_KEY_LEN`] bytes for any `x` in `(0, 1)` and any generation.
pub fn report_key(week: Day, x: f64, generation: u64) -> Path {
    let monday = tally_protocol::aggregate::bucket_week(week);
    Path::from(format!(
        "reports/{monday}/{generation}/{week}_{}.json",
        x_in_key(x)
    ))
}

/// The `x` a report's key names (any generation, or the flat layout from before generations),
/// bit for bit; `None` for a key that is not a report's.
pub fn x_of_key(key: &Path) -> Option<f64> {
    let name = key.filename()?.strip_suffix(".json")?;
    let (_, x) = name.split_once('_')?;
    x.parse().ok()
}

/// Key of the mark that closes generation `generation` of the week of `monday` to writes.
pub fn seal_key(monday: Day, generation: u64) -> Path {
    Path::from(format!("reports/{monday}/{generation}/sealed"))
}

/// Key of checkpoint `n` of the week of `monday`: the merge of generations below `n`.
pub fn checkpoint_key(monday: Day, n: u64) -> Path {
    Path::from(format!("merged/{monday}/{n}.json"))
}

/// Key of the hint that names a recent checkpoint of the week of `monday`.
pub fn latest_key(monday: Day) -> Path {
    Path::from(format!("merged/{monday}/latest"))
}

/// Longest [`report_key`]: `reports/` + Monday + `/` + the longest generation (20 digits) +
/// `/` + week + `_` + the longest [`x_in_key`] (23 bytes) + `.json`.
pub const MAX_REPORT_KEY_LEN: usize = 8 + 10 + 1 + 20 + 1 + 10 + 1 + 23 + 5;

/// Longest file name of a stored report: week + `_` + the longest [`x_in_key`] + `.json`.
pub const MAX_REPORT_NAME_LEN: usize = 10 + 1 + 23 + 5;

/// `x` as it appears in a report's key: Rust's shortest decimal that parses back to the same
/// f64 (so equal keys exactly when the f64s are equal, and the key names the very `x` that was
/// sent), in plain notation (`0.4231`) from 0.0001 up, in scientific notation (`1e-300`) below,
/// where plain notation would run to hundreds of digits. At most 23 bytes for `x` in `(0, 1)`:
/// `0.000` and 17 significant digits, or 17 digits, a point and `e-324`.
pub fn x_in_key(x: f64) -> String {
    if x >= 1e-4 {
        format!("{x}")
    } else {
        format!("{x:e}")
    }
}

/// Key of the copy of a recent checkpoint's merged aggregate of a calendar week (without report
/// ids): for tools that read the store; the server itself never reads it back. Servers write it
/// after each checkpoint, so a slow one may put back an older merge while the week is open;
/// retention writes the final one before it deletes the raw reports.
pub fn merged_key(monday: Day) -> Path {
    Path::from(format!("merged/{monday}.json"))
}

/// Keys of a served config version and its signature.
pub fn config_keys(version: u64) -> (Path, Path) {
    (
        Path::from(format!("configs/{version}.json")),
        Path::from(format!("configs/{version}.json.minisig")),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The `x` a key names, read back from the key.
    fn x_of(key: &Path) -> f64 {
        let name = key.filename().unwrap();
        let x = name
            .split_once('_')
            .unwrap()
            .1
            .strip_suffix(".json")
            .unwrap();
        x.parse().unwrap()
    }

    #[test]
    fn keys_name_x_exactly_and_briefly() {
        let week: Day = "2026-11-18".parse().unwrap();
        for (x, text) in [
            (0.25, "0.25"),
            (0.9999999999999999, "0.9999999999999999"),
            (1e-4, "0.0001"),
            (9.999999999999999e-5, "9.999999999999999e-5"),
            (1e-300, "1e-300"),
            (5e-324, "5e-324"),
            (0.00012345678901234567, "0.00012345678901234567"),
            (1.2345678901234567e-300, "1.2345678901234568e-300"),
        ] {
            let key = report_key(week, x, u64::MAX);
            assert_eq!(
                key.as_ref(),
                format!("reports/2026-11-16/{}/2026-11-18_{text}.json", u64::MAX)
            );
            assert_eq!(x_of(&key).to_bits(), x.to_bits(), "{text}");
            assert_eq!(x_of_key(&key).unwrap().to_bits(), x.to_bits(), "{text}");
            assert!(key.as_ref().len() <= MAX_REPORT_KEY_LEN, "{key}");
            assert!(
                key.filename().unwrap().len() <= MAX_REPORT_NAME_LEN,
                "{key}"
            );
        }
    }

    proptest::proptest! {
        /// Any f64 in (0, 1): the key parses back to the same bits, within the length bound.
        #[test]
        fn every_x_has_one_bounded_key(bits in 1u64..0x3ff0_0000_0000_0000) {
            let x = f64::from_bits(bits);
            let key = report_key("2026-11-22".parse().unwrap(), x, u64::MAX);
            proptest::prop_assert_eq!(x_of(&key).to_bits(), bits);
            proptest::prop_assert!(key.as_ref().len() <= MAX_REPORT_KEY_LEN, "{}", key);
        }
    }

    /// Every variable the server reads is in the registry's server table, so that
    /// `docs/environment.md` lists it for collectors (`tally_env::var_os` checks only that a
    /// name is declared somewhere).
    #[test]
    fn every_variable_the_server_reads_is_declared_for_it() {
        for name in [crate::clock::NOW_ENV, crate::signing::PASSWORD_ENV] {
            assert!(
                tally_env::SERVER_VARS.iter().any(|var| var.name == name),
                "{name} is not in tally_env::SERVER_VARS"
            );
        }
    }
}
