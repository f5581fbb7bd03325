//! The process's environment as the client reads it: [`ProcessEnv`] (the whole environment,
//! copied once, in order, as `execve` takes it) and [`Env`] (tally's own variables out of it).
//!
//! Every variable is declared in the registry crate `tally_env` (re-exported here); code reads
//! variables only through [`Env`], which is filled once per process, so one process sees one
//! consistent environment.

use std::collections::BTreeMap;
use std::ffi::{OsStr, OsString};

use tally_protocol::Day;

pub use tally_env::*;

/// How many names [`Env`] reads: the registry and the CI vendor markers.
const READ_NAMES: usize = VARS.len() + CI_VENDOR_VARS.len();

/// Those names in `str` order, for a binary search; sorted by the compiler.
static READ_NAMES_SORTED: [&str; READ_NAMES] = sorted_read_names();

/// For each first byte, the lengths of the read names that start with it (bit `n`: length
/// `n`): one lookup rules out most of an environment before any string comparison.
static READ_NAME_SHAPES: [u64; 256] = read_name_shapes();

const fn read_name_shapes() -> [u64; 256] {
    let names = sorted_read_names();
    let mut shapes = [0u64; 256];
    let mut i = 0;
    while i < READ_NAMES {
        let name = names[i].as_bytes();
        assert!(
            !name.is_empty() && name.len() < 64,
            "a read name is 1 to 63 bytes"
        );
        shapes[name[0] as usize] |= 1 << name.len();
        i += 1;
    }
    shapes
}

/// Whether `name` could be one of the read names (no false negatives).
fn may_be_read(name: &[u8]) -> bool {
    match (name.first(), name.len()) {
        (Some(&first), len @ ..64) => READ_NAME_SHAPES[usize::from(first)] & (1 << len) != 0,
        _ => false,
    }
}

const fn sorted_read_names() -> [&'static str; READ_NAMES] {
    /// `a < b` as `str`'s `Ord` has it (bytewise), in a form `const fn` can run.
    const fn less(a: &[u8], b: &[u8]) -> bool {
        let mut i = 0;
        while i < a.len() && i < b.len() {
            if a[i] != b[i] {
                return a[i] < b[i];
            }
            i += 1;
        }
        a.len() < b.len()
    }
    let mut names = [""; READ_NAMES];
    let mut i = 0;
    while i < VARS.len() {
        names[i] = VARS[i].name;
        i += 1;
    }
    while i < READ_NAMES {
        names[i] = CI_VENDOR_VARS[i - VARS.len()];
        i += 1;
    }
    // Insertion sort: some sixty names, once, at compile time.
    let mut j = 1;
    while j < READ_NAMES {
        let mut k = j;
        while k > 0 && less(names[k].as_bytes(), names[k - 1].as_bytes()) {
            let swap = names[k];
            names[k] = names[k - 1];
            names[k - 1] = swap;
            k -= 1;
        }
        j += 1;
    }
    names
}

/// The whole process environment, copied once and in order, as `execve` takes it: every entry
/// is `KEY=VALUE` followed by a NUL, back to back in one buffer. The hot path reads every
/// variable from here and hands the same bytes to the tool it `exec`s.
///
/// Why not `std::env::var_os`: each call takes a lock, allocates the name and scans the whole
/// environment, and `std::env::vars_os` allocates two strings per variable; on a path that
/// runs on every compile those allocations (and their page faults) were a measurable part of
/// tally's cost (bench/README.md, "Shims"). On Linux the copy is made from the C library's
/// `environ` without a system call ([`tally_sys::startup`]), every entry as it is, even
/// one without a `=`. Elsewhere it is built from `std::env::vars_os`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ProcessEnv {
    block: CStringBlock,
}

impl ProcessEnv {
    /// Copies the process's environment.
    pub fn capture() -> ProcessEnv {
        #[cfg(target_os = "linux")]
        return ProcessEnv::from_environ();
        #[cfg(not(target_os = "linux"))]
        ProcessEnv::from_vars(tally_env::vars_os())
    }

    /// The C library's `environ`, copied in two passes (sizes, then bytes) so that the block
    /// takes two allocations of exactly the room it needs: an oversized buffer would spread
    /// the allocations after it over more fresh heap pages, a page fault each.
    #[cfg(target_os = "linux")]
    fn from_environ() -> ProcessEnv {
        let (mut bytes, mut strings) = (0, 0);
        tally_sys::startup::for_each_env_entry(|entry| {
            bytes += entry.len() + 1;
            strings += 1;
        });
        let mut block = CStringBlock::with_capacity(bytes, strings);
        tally_sys::startup::for_each_env_entry(|entry| block.push(&[entry]));
        ProcessEnv { block }
    }

    /// An environment of exactly these entries, in this order.
    pub fn from_vars(vars: impl IntoIterator<Item = (OsString, OsString)>) -> ProcessEnv {
        use std::os::unix::ffi::OsStrExt;
        let mut block = CStringBlock::default();
        for (key, value) in vars {
            block.push(&[key.as_bytes(), b"=", value.as_bytes()]);
        }
        ProcessEnv { block }
    }

    /// Every entry as the tool is given it: `KEY=VALUE`, or whatever the parent put there.
    pub fn block(&self) -> &CStringBlock {
        &self.block
    }

    /// Every entry's bytes, without its NUL, in order.
    pub fn raw_entries(&self) -> impl Iterator<Item = &[u8]> {
        self.block.entries()
    }

    /// Every `KEY=VALUE` entry as a name and a value, in order. As in std, the name is what
    /// comes before the first `=` after the first byte; an entry without one has no name.
    pub fn vars(&self) -> impl Iterator<Item = (&OsStr, &OsStr)> {
        self.raw_entries().filter_map(split_entry)
    }

    /// The value of `name`: the first entry of that name, as `getenv` finds it.
    pub fn get(&self, name: &str) -> Option<&OsStr> {
        use std::os::unix::ffi::OsStrExt;
        let name = name.as_bytes();
        // `NAME=` at the start of the entry, without splitting every entry at its `=`.
        self.raw_entries().find_map(|entry| {
            entry_has_name(entry, name).then(|| OsStr::from_bytes(&entry[name.len() + 1..]))
        })
    }

    /// The value of `name` as an owned string, when set and not empty.
    pub fn non_empty(&self, name: &str) -> Option<OsString> {
        self.get(name)
            .filter(|v| !v.is_empty())
            .map(OsStr::to_os_string)
    }
}

/// Whether `entry` (`KEY=VALUE`) is a variable named `name`: the same answer as comparing
/// `name` with [`split_entry`]'s name, without looking past the name. A name that
/// [`split_entry`] can never produce (empty, or with an `=` past its first byte) names nothing.
pub fn entry_has_name(entry: &[u8], name: &[u8]) -> bool {
    // The `=` first: it rules out most entries without comparing the name.
    entry.get(name.len()) == Some(&b'=')
        && !name.is_empty()
        && entry.starts_with(name)
        && !name[1..].contains(&b'=')
}

/// Splits `KEY=VALUE` as std does: at the first `=` after the first byte.
pub fn split_entry(entry: &[u8]) -> Option<(&OsStr, &OsStr)> {
    use std::os::unix::ffi::OsStrExt;
    let eq = entry.iter().skip(1).position(|&b| b == b'=')? + 1;
    Some((
        OsStr::from_bytes(&entry[..eq]),
        OsStr::from_bytes(&entry[eq + 1..]),
    ))
}

/// NUL-terminated strings packed in one buffer, the shape `execve` takes its arguments and
/// environment in. Two allocations however many strings: the environment has dozens of
/// entries, and an allocation (and later a free) for each one measurably slowed every
/// compile (bench/README.md, "Shims").
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CStringBlock {
    bytes: Vec<u8>,
    /// Where each string ends (one past its NUL) in `bytes`.
    ends: Vec<usize>,
}

impl CStringBlock {
    /// An empty block with room for `bytes` bytes (NULs included) in `strings` strings.
    pub fn with_capacity(bytes: usize, strings: usize) -> CStringBlock {
        CStringBlock {
            bytes: Vec::with_capacity(bytes),
            ends: Vec::with_capacity(strings),
        }
    }

    /// Strings laid out as the kernel lays out an environment: each ends with a NUL (a last
    /// one without is given its NUL).
    pub fn from_nul_terminated(mut bytes: Vec<u8>) -> CStringBlock {
        if bytes.last().is_some_and(|&b| b != 0) {
            bytes.push(0);
        }
        // Found with `CStr`'s own NUL search (word at a time, the code `as_cstrs` runs too, so
        // the shim does not bring in another), counted first so that the list is allocated
        // once at its size.
        fn ends_of(bytes: &[u8]) -> impl Iterator<Item = usize> + '_ {
            let mut start = 0;
            std::iter::from_fn(move || {
                let s = std::ffi::CStr::from_bytes_until_nul(&bytes[start..]).ok()?;
                start += s.to_bytes_with_nul().len();
                Some(start)
            })
        }
        let mut ends = Vec::with_capacity(ends_of(&bytes).count());
        ends.extend(ends_of(&bytes));
        CStringBlock { bytes, ends }
    }

    /// Appends one string made of `parts` in order, and its NUL.
    pub fn push(&mut self, parts: &[&[u8]]) {
        for part in parts {
            self.bytes.extend_from_slice(part);
        }
        self.bytes.push(0);
        self.ends.push(self.bytes.len());
    }

    /// How many strings.
    pub fn len(&self) -> usize {
        self.ends.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.ends.is_empty()
    }

    /// The strings, each with its NUL.
    fn with_nuls(&self) -> impl Iterator<Item = &[u8]> {
        let starts = std::iter::once(0).chain(self.ends.iter().copied());
        starts
            .zip(self.ends.iter().copied())
            .map(|(start, end)| &self.bytes[start..end])
    }

    /// The strings, without their NULs.
    pub fn entries(&self) -> impl Iterator<Item = &[u8]> {
        self.with_nuls().map(|s| &s[..s.len() - 1])
    }

    /// The strings as C strings, one by one; an interior NUL (which no C string can hold) is
    /// `InvalidInput`.
    pub fn as_cstrs_iter(&self) -> impl Iterator<Item = std::io::Result<&std::ffi::CStr>> {
        self.with_nuls().map(|s| {
            std::ffi::CStr::from_bytes_with_nul(s)
                .map_err(|_| std::io::Error::from(std::io::ErrorKind::InvalidInput))
        })
    }

    /// The strings as C strings; an interior NUL (which no C string can hold) is
    /// `InvalidInput`.
    pub fn as_cstrs(&self) -> std::io::Result<Vec<&std::ffi::CStr>> {
        // Sized up front: `collect` into a `Result` cannot know the length and grows the
        // vector five times for an ordinary environment, each into fresh heap of the shim.
        let mut cstrs = Vec::with_capacity(self.len());
        for s in self.as_cstrs_iter() {
            cstrs.push(s?);
        }
        Ok(cstrs)
    }
}

/// A snapshot of the environment variables tally reads, taken once per process.
#[derive(Debug, Clone, Default)]
pub struct Env {
    vars: BTreeMap<OsString, OsString>,
}

impl Env {
    /// Reads every registered variable (and the CI vendor markers) from the process environment.
    pub fn from_process() -> Env {
        Env::from_lookup(tally_env::var_os)
    }

    /// The registered variables (and the CI vendor markers) out of an environment already
    /// copied; the same as [`Env::from_process`] for that environment.
    pub fn from_snapshot(process: &ProcessEnv) -> Env {
        // One pass over the environment against the registered names (sorted at compile time),
        // instead of one scan of the whole environment per registered name: the shim does this
        // on every run, and the scans were a third of its instructions.
        let mut vars = BTreeMap::new();
        for (name, value) in process.vars() {
            use std::os::unix::ffi::OsStrExt;
            if !may_be_read(name.as_bytes()) {
                continue;
            }
            let Some(name) = name.to_str() else { continue };
            if let Ok(i) = READ_NAMES_SORTED.binary_search(&name) {
                // The first entry of a name wins, as getenv (and `ProcessEnv::get`) finds it.
                vars.entry(OsString::from(READ_NAMES_SORTED[i]))
                    .or_insert_with(|| value.to_os_string());
            }
        }
        Env { vars }
    }

    fn from_lookup(lookup: impl Fn(&str) -> Option<OsString>) -> Env {
        let mut vars = BTreeMap::new();
        let names = VARS
            .iter()
            .map(|v| v.name)
            .chain(CI_VENDOR_VARS.iter().copied());
        for name in names {
            if let Some(value) = lookup(name) {
                vars.insert(OsString::from(name), value);
            }
        }
        Env { vars }
    }

    /// An environment made of exactly these pairs (tests, and callers that build one).
    pub fn from_pairs<I: IntoIterator<Item = (OsString, OsString)>>(pairs: I) -> Env {
        Env {
            vars: pairs.into_iter().collect(),
        }
    }

    /// [`Env::from_pairs`] from string pairs (`[("HOME", "/home/a")]`).
    pub fn from_strs(pairs: &[(&str, &str)]) -> Env {
        Env::from_pairs(
            pairs
                .iter()
                .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        )
    }

    /// The value of `name`, if set.
    pub fn get(&self, name: &str) -> Option<&OsStr> {
        self.vars.get(OsStr::new(name)).map(OsString::as_os_str)
    }

    /// The value of `name` when set and not empty.
    fn non_empty(&self, name: &str) -> Option<&OsStr> {
        self.get(name).filter(|v| !v.is_empty())
    }

    fn tally_is(&self, word: &str) -> bool {
        self.get(TALLY)
            .is_some_and(|v| v.to_string_lossy().trim().eq_ignore_ascii_case(word))
    }

    /// `TALLY=off`, or `DO_NOT_TRACK` set to anything but empty, `0` or `false`.
    pub fn forces_off(&self) -> bool {
        self.tally_is("off") || self.get(DO_NOT_TRACK).is_some_and(is_truthy)
    }

    /// `TALLY=local`: count, but never upload, whatever the stored mode.
    pub fn lowers_to_local(&self) -> bool {
        self.tally_is("local")
    }

    /// Today (UTC): from `TALLY_NOW` when it is set and valid, else from the system clock.
    pub fn today(&self) -> Day {
        match self.clock_override() {
            Some(Ok(day)) => day,
            _ => system_today(),
        }
    }

    /// The `TALLY_NOW` override: `None` when unset or empty, `Some(Err)` with a message saying
    /// how to fix it when it is not a day or an RFC 3339 time.
    pub fn clock_override(&self) -> Option<Result<Day, String>> {
        let raw = self.non_empty(TALLY_NOW)?;
        let text = raw.to_string_lossy();
        let text = text.trim();
        if let Ok(day) = text.parse::<Day>() {
            return Some(Ok(day));
        }
        let parsed =
            time::OffsetDateTime::parse(text, &time::format_description::well_known::Rfc3339);
        Some(match parsed {
            Ok(t) => Ok(Day(t.to_offset(time::UtcOffset::UTC).date())),
            Err(_) => Err(format!(
                "TALLY_NOW={text:?} is neither YYYY-MM-DD nor an RFC 3339 time (like 2026-11-24T10:00:00Z); the system clock is used instead"
            )),
        })
    }

    /// True on a CI machine: `CI` is truthy or a CI vendor's marker is set.
    pub fn is_ci(&self) -> bool {
        self.get(CI).is_some_and(is_truthy)
            || CI_VENDOR_VARS
                .iter()
                .any(|name| self.non_empty(name).is_some())
    }
}

/// Today in UTC from the system clock ([`now`]).
pub fn system_today() -> Day {
    let secs = now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    Day::from_unix_days((secs / 86_400) as i64)
        .unwrap_or_else(|| Day::from_unix_days(0).expect("1970-01-01 is a valid day"))
}

/// The current time. On Linux read with a system call (see [`tally_sys::clock`]): cheaper
/// than `SystemTime::now` for a process that asks once, as the shim does.
pub fn now() -> std::time::SystemTime {
    #[cfg(target_os = "linux")]
    return tally_sys::clock::now();
    #[cfg(not(target_os = "linux"))]
    std::time::SystemTime::now()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_reads_like_getenv_and_keeps_only_registered_variables() {
        let process = ProcessEnv::from_vars(
            [
                ("PATH", "/bin"),
                (TALLY, "off"),
                ("GITHUB_ACTIONS", "true"),
                ("SECRET_TOKEN", "hunter2"),
                (TALLY, "on"),
                (TALLY_DIR, ""),
            ]
            .map(|(k, v)| (OsString::from(k), OsString::from(v))),
        );
        // The first entry of a name wins, as getenv finds it.
        assert_eq!(process.get(TALLY), Some(OsStr::new("off")));
        assert_eq!(process.get("PATH"), Some(OsStr::new("/bin")));
        assert_eq!(process.get("MISSING"), None);
        assert_eq!(process.non_empty(TALLY_DIR), None);
        assert_eq!(process.get(TALLY_DIR), Some(OsStr::new("")));
        let env = Env::from_snapshot(&process);
        assert!(env.forces_off());
        assert_eq!(env.get("GITHUB_ACTIONS"), Some(OsStr::new("true")));
        // Not registered: never in tally's view of the environment.
        assert_eq!(env.get("SECRET_TOKEN"), None);
        assert_eq!(env.get(TALLY_DIR), Some(OsStr::new("")));
        // The entries go on to the tool as they were, duplicates and order included.
        assert_eq!(process.raw_entries().count(), 6);
        assert_eq!(process.raw_entries().nth(4), Some(&b"TALLY=on"[..]));
    }

    #[test]
    fn snapshot_reads_the_same_as_one_lookup_per_name() {
        let block =
            b"TALLY=off\0=TALLY=on\0JUNK\0TALLY=on\0GITHUB_ACTIONS=\0HOME=/h\0TALLY_DIR=\xff\0\
            TALLY_DIRX=1\0XTALLY=1\0CI=true\0TALLY_DIR=/second\0";
        let process = ProcessEnv {
            block: CStringBlock::from_nul_terminated(block.to_vec()),
        };
        let one_pass = Env::from_snapshot(&process);
        let per_name = Env::from_lookup(|name| process.get(name).map(OsStr::to_os_string));
        assert_eq!(one_pass.vars, per_name.vars);
        assert_eq!(one_pass.get(TALLY), Some(OsStr::new("off")));
        assert_eq!(one_pass.get("GITHUB_ACTIONS"), Some(OsStr::new("")));
        assert_eq!(one_pass.get("XTALLY"), None);
        // Sorted as `str` sorts, and unique, or the binary search would miss or hide one.
        assert!(READ_NAMES_SORTED.is_sorted());
        let mut names: Vec<&str> = VARS
            .iter()
            .map(|v| v.name)
            .chain(CI_VENDOR_VARS.iter().copied())
            .collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names, READ_NAMES_SORTED);
        for name in names {
            assert!(may_be_read(name.as_bytes()), "{name}");
        }
        assert!(!may_be_read(b"SHELL") && !may_be_read(b"") && !may_be_read(&[b'T'; 80]));
    }

    proptest::proptest! {
        /// `entry_has_name` says what comparing with `split_entry`'s name says, for entries and
        /// names made of the bytes that matter (`=`, letters, NUL-free).
        #[test]
        fn entry_names_match_the_split(
            entry in proptest::collection::vec(proptest::sample::select(b"AB=x".to_vec()), 0..8),
            name in proptest::collection::vec(proptest::sample::select(b"AB=".to_vec()), 0..4),
        ) {
            let by_split = split_entry(&entry).is_some_and(|(k, _)| k.as_encoded_bytes() == name);
            proptest::prop_assert_eq!(entry_has_name(&entry, &name), by_split);
        }

        /// Splitting at NULs finds every string, the last one given its NUL if it had none.
        #[test]
        fn nul_terminated_blocks_split_at_every_nul(
            bytes in proptest::collection::vec(proptest::sample::select(b"a=\0".to_vec()), 0..40),
        ) {
            let block = CStringBlock::from_nul_terminated(bytes.clone());
            let mut expected: Vec<&[u8]> = bytes.split(|&b| b == 0).collect();
            if bytes.last().is_none_or(|&b| b == 0) {
                expected.pop();
            }
            proptest::prop_assert_eq!(block.entries().collect::<Vec<_>>(), expected);
        }
    }

    #[test]
    fn entries_split_like_std() {
        let split = |e: &[u8]| split_entry(e).map(|(k, v)| (k.to_owned(), v.to_owned()));
        assert_eq!(split(b"A=b=c"), Some(("A".into(), "b=c".into())));
        assert_eq!(split(b"A="), Some(("A".into(), "".into())));
        // A name may start with `=` (as on Windows-made environments); no `=` at all: no name.
        assert_eq!(split(b"=A=1"), Some(("=A".into(), "1".into())));
        assert_eq!(split(b"NOEQUALS"), None);
        assert_eq!(split(b""), None);
        // An entry without a name is not a variable, but still goes to the tool.
        let env = ProcessEnv {
            block: CStringBlock::from_nul_terminated(b"A=1\0JUNK\0B=2".to_vec()),
        };
        assert_eq!(
            env.raw_entries().collect::<Vec<_>>(),
            [&b"A=1"[..], b"JUNK", b"B=2"]
        );
        assert_eq!(env.vars().count(), 2);
        assert_eq!(env.get("B"), Some(OsStr::new("2")));
        // Names getenv could never be asked for find nothing, as in std.
        let env = ProcessEnv {
            block: CStringBlock::from_nul_terminated(b"=x\0A=B=1".to_vec()),
        };
        assert_eq!(env.get(""), None);
        assert_eq!(env.get("A=B"), None);
        assert_eq!(env.get("A"), Some(OsStr::new("B=1")));
    }

    #[test]
    fn snapshot_of_the_process_matches_std() {
        // This test process never changes its environment and has no entry without a `=`,
        // so what the C library holds is what std sees.
        let captured = ProcessEnv::capture();
        let from_std = ProcessEnv::from_vars(tally_env::vars_os());
        assert_eq!(
            captured.vars().collect::<Vec<_>>(),
            from_std.vars().collect::<Vec<_>>()
        );
        assert_eq!(Env::from_snapshot(&captured).vars, Env::from_process().vars);
    }

    #[test]
    fn do_not_track_values() {
        for v in ["1", "true", "yes", "anything"] {
            assert!(Env::from_strs(&[(DO_NOT_TRACK, v)]).forces_off(), "{v}");
        }
        for v in ["", "0", "false", "FALSE", " 0 "] {
            assert!(!Env::from_strs(&[(DO_NOT_TRACK, v)]).forces_off(), "{v:?}");
        }
        assert!(Env::from_strs(&[(TALLY, "off")]).forces_off());
        assert!(Env::from_strs(&[(TALLY, "OFF")]).forces_off());
        assert!(!Env::from_strs(&[(TALLY, "on")]).forces_off());
        assert!(Env::from_strs(&[(TALLY, "local")]).lowers_to_local());
    }

    #[test]
    fn clock_override_forms() {
        assert_eq!(
            Env::from_strs(&[(TALLY_NOW, "2026-11-24")])
                .today()
                .to_string(),
            "2026-11-24"
        );
        assert_eq!(
            Env::from_strs(&[(TALLY_NOW, "2026-11-24T23:30:00-02:00")])
                .today()
                .to_string(),
            "2026-11-25"
        );
        let bad = Env::from_strs(&[(TALLY_NOW, "yesterday")]);
        assert!(bad.clock_override().unwrap().is_err());
        assert_eq!(bad.today(), system_today());
    }

    #[test]
    fn ci_detection() {
        assert!(Env::from_strs(&[(CI, "true")]).is_ci());
        assert!(!Env::from_strs(&[(CI, "false")]).is_ci());
        assert!(Env::from_strs(&[("GITHUB_ACTIONS", "true")]).is_ci());
        assert!(!Env::from_strs(&[]).is_ci());
    }

    #[test]
    fn registry_names_are_unique() {
        let mut names: Vec<_> = VARS.iter().map(|v| v.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), VARS.len());
    }
}
