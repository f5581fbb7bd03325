//! Count a Rust tool's own events into [tally](https://example.invalid/tally), under the
//! consent its user gave tally, in the style of Go's `golang.org/x/telemetry/counter`.
//!
//! ```no_run
//! use tally_counter::{Counter, Histogram, counter, histogram};
//!
//! static RUNS: Counter = counter!("greet/invocations");
//! static LOUD: Counter = counter!("greet/hello/loud");
//! static TIME: Histogram = histogram!("greet/time");
//!
//! fn main() {
//!     // The program's name and version, from the tool's own Cargo.toml. Nothing happens yet.
//!     tally_counter::open!();
//!     let start = std::time::Instant::now();
//!     RUNS.inc();
//!     LOUD.inc();
//!     TIME.observe(start.elapsed());
//! }
//! ```
//!
//! # What it does
//!
//! [`open!`] names the program (`CARGO_PKG_NAME`) and its version (`CARGO_PKG_VERSION`, kept
//! as `major.minor.patch` and a channel, like every version tally stores). The first increment
//! after it decides, once per process, whether anything is counted: only when tally is
//! installed (its data directory exists; this crate never creates it), its mode is `local` or
//! `on`, and neither `TALLY=off` nor `DO_NOT_TRACK` is set. Otherwise every increment is a
//! no-op that touches no file. When it counts, it opens the week's counter file of this program
//! through the same code as tally's own shims (`tally_home`'s store, `tally_sys`'s mapped
//! files): one file format, one writer, so `tally show`, `tally preview`, the weekly reports,
//! the uploads (mode `on` only, and only what a collector's signed config asks for) and the
//! collector treat the tool like any tool tally counts. Uploading is never this crate's job: it
//! has no network code at all.
//!
//! Cost: nothing at start-up, nothing before the first increment. The first increment reads
//! six environment variables, the mode file and the weekday file, and maps the counter file
//! (tens of microseconds); after that an increment is one atomic add on the mapping (a few
//! nanoseconds). `cargo bench -p tally-counter` measures both.
//!
//! Nothing here panics, and nothing a tool does with it can make the tool fail: any error
//! (an unwritable directory, a full disk, a corrupt file) turns counting off for the process.
//!
//! # Names
//!
//! A counter name is `<program>/<path>` or `<program>/<path>:<bucket>`, in lowercase ASCII
//! letters, digits, `-` and `_` (see [`check_counter_name`] for the whole rule), e.g.
//! `greet/invocations`, `greet/subcommand:hello`, `greet/hello/flag:--loud`,
//! `greet/time:<1s`. `<program>` is the tool's Cargo package name. Names that share a prefix up
//! to a `:` are a partition, charted together (`greet/color:{auto,always,never}` in a config).
//!
//! [`counter!`] and [`histogram!`] check a name when the tool compiles; [`Counter::new`] and the
//! helpers only at run time. At run time a name that breaks the rule, or that belongs to another
//! program, is counted as `<program>/other`: never stored as given, never a panic.
//!
//! # What a tool must and must not count
//!
//! tally's promise to its users is that no file it writes holds anything that identifies them
//! or their work. A tool that counts through this crate makes the same promise.
//!
//! Count:
//! - that something happened: a command run, a feature used, a flag given, an error of a known
//!   kind, a fallback taken, a crash;
//! - which of a fixed set of choices was made: `greet/color:always`, an output format, an
//!   edition;
//! - how long or how large, in fixed buckets ([`Histogram`]), never the number itself.
//!
//! Never count (never put into a name, in any form, hashed or cut short):
//! - argument values, file names or paths, crate, package, target or project names, URLs, host
//!   names, user names, e-mail addresses, environment values, tokens, secrets;
//! - free text: error messages, panic messages, the text of a diagnostic;
//! - anything a user typed, or anything that differs from one user to the next and is not from
//!   a list written in the tool's source;
//! - time finer than the bucket of a histogram, or the date.
//!
//! Hence the API: names are `&'static str` (literals in the source, checked at compile time by
//! the macros); the runtime helpers name only what the tool's source defines (a clap flag's
//! long name, a histogram's bounds); an unknown choice is counted as `other`, as tally counts an
//! unknown flag. The name rule refuses what values are made of (capitals, dots but one between
//! digits, `/` at the start or twice, spaces, `@`, `=`, `~`, anything over 32 bytes between
//! separators),
//! which catches most mistakes, but a short lowercase word passes whatever it came from: do not
//! build names from input at run time.
//!
//! The user stays in charge: `tally off`, `TALLY=off` or `DO_NOT_TRACK=1` stop this crate as
//! they stop tally (the mode is read when a process starts counting, and again when its week
//! ends); `tally show` and `tally preview` show every count; and nothing leaves the
//! machine unless the user ran `tally on` and a collector's signed config names the tool's
//! program and counters. A tool should say in its documentation which counters it has.
//!
//! # Features
//!
//! - `clap`: [`cli::count_flags`] and [`cli::count_command`], which count the flags and
//!   subcommands a clap command line set, by name.
//!
//! # Weeks
//!
//! Counter files are weekly. A process that lives past the end of its week (a language server)
//! moves to the new week's file within [`TICKS_PER_CLOCK_LOOK`] increments of any of its
//! threads; until then its counts go to the week before.
//!
//! # If another program truncates the counter file
//!
//! The week's counter file stays mapped for as long as the process counts into it, and a
//! mapping does not shrink with its file. If another program truncates the file while the
//! process has it mapped (`truncate`, `: > file`, a tool that rewrites files in place), the
//! next increment that touches a page past the new end raises `SIGBUS`, which kills the tool
//! unless it handles that signal itself. Only the user's own programs or root can do that (the
//! file is the user's, mode 0600), and tally itself never does: it creates counter files whole,
//! only ever grows them, and moves them aside (quarantine) or deletes them (`tally clean`, the
//! weekly report, retention) by `rename` and `unlink`, which leave a mapping whole. After such
//! a deletion the process counts into the deleted file until its week ends: those counts are
//! lost, nothing worse. The next tally run that finds a truncated file moves it to
//! `quarantine/` and starts a fresh one. (tally's `tests/integration/mapped.rs` holds all of
//! this.) So: to delete tally's data, use `tally clean` or delete the files; never truncate
//! them.
//!
//! Increments are not guarded against it. Checking the file's length before each one costs an
//! `fstat`, about 150 times the increment itself (`increment/length-checked` in
//! `cargo bench -p tally-counter`: 0.87 µs beside 5.7 ns in the same run), far over the 10 ns
//! an increment may cost; checking only now and then (with the clock, every
//! [`TICKS_PER_CLOCK_LOOK`] increments) would leave the increments in between unguarded; and
//! handling `SIGBUS` for the whole process is not a library's to do.

#![forbid(unsafe_code)]

#[cfg(feature = "clap")]
pub mod cli;
mod counter;
mod histogram;
mod name;
mod session;

pub use counter::Counter;
pub use histogram::{Histogram, TIME_BUCKETS};
pub use name::{
    MAX_NAME_LEN, MAX_PART_LEN, NameError, check_counter_name, is_bucket, is_counter_name,
    is_counter_name_of,
};
pub use tally_protocol::{MAX_PROGRAM_NAME_LEN, is_program_name};

#[doc(hidden)]
pub use name::{__assert_counter_name, __assert_histogram_name};

/// How many increments a thread makes between two looks at the clock (for the end of the week).
pub const TICKS_PER_CLOCK_LOOK: u32 = session::TICKS;

/// The programs tally's shims count themselves. A tool cannot count as one of them: its counts
/// would mix with the shims' in the same files.
pub const SHIMMED_PROGRAMS: [&str; 6] = ["cargo", "rustc", "rustfmt", "cargo-fmt", "go", "gofmt"];

/// The program a process counts for: its name and version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Program {
    /// The program name (the Cargo package name).
    pub name: &'static str,
    /// Its version as the tool states it (`0.3.1`); stored normalised.
    pub version: &'static str,
}

impl Program {
    /// A program. Checked only when counting starts (see [`Program::is_valid`]); [`program!`]
    /// checks it when the tool compiles.
    pub const fn new(name: &'static str, version: &'static str) -> Program {
        Program { name, version }
    }

    /// Whether counting for this program is possible: its name follows
    /// [`is_program_name`] and is none of [`SHIMMED_PROGRAMS`].
    pub const fn is_valid(&self) -> bool {
        if !is_program_name(self.name) {
            return false;
        }
        let mut i = 0;
        while i < SHIMMED_PROGRAMS.len() {
            if same(SHIMMED_PROGRAMS[i], self.name) {
                return false;
            }
            i += 1;
        }
        true
    }

    /// [`Program::new`], refusing an invalid program with a panic: in a `const`, a compile
    /// error ([`program!`]).
    #[doc(hidden)]
    pub const fn __checked(name: &'static str, version: &'static str) -> Program {
        let program = Program::new(name, version);
        if !program.is_valid() {
            panic!(
                "tally-counter: the package name is not a program name tally can count for \
                 (1 to 64 lowercase ASCII letters, digits, `-`, `_`; not one of tally's own tools)"
            );
        }
        program
    }
}

const fn same(a: &str, b: &str) -> bool {
    let (a, b) = (a.as_bytes(), b.as_bytes());
    if a.len() != b.len() {
        return false;
    }
    let mut i = 0;
    while i < a.len() {
        if a[i] != b[i] {
            return false;
        }
        i += 1;
    }
    true
}

/// Names the program this process counts for. Nothing is read or written here: that waits for
/// the first increment. Counts made before it are not kept. Returns false (and changes nothing)
/// when another program was named before.
pub fn open(program: Program) -> bool {
    session::SESSION.open(program)
}

/// The program [`open`](fn@open) named, if any.
pub fn program() -> Option<Program> {
    session::SESSION.program()
}

/// Whether this process counts: decides now if no increment has yet (reading the environment,
/// the data directory and the mode, and opening the week's file). False before [`open`](fn@open).
pub fn counting() -> bool {
    let generation = session::SESSION.refresh(false);
    generation != 0 && generation != session::OFF
}

/// The calling crate's [`Program`]: `CARGO_PKG_NAME` and `CARGO_PKG_VERSION` at its compile
/// time, checked then.
#[macro_export]
macro_rules! program {
    () => {{
        const PROGRAM: $crate::Program =
            $crate::Program::__checked(env!("CARGO_PKG_NAME"), env!("CARGO_PKG_VERSION"));
        PROGRAM
    }};
}

/// [`open`](fn@open)s the calling crate's program ([`program!`]). Call it first thing in `main`.
#[macro_export]
macro_rules! open {
    () => {
        $crate::open($crate::program!())
    };
}

/// A [`Counter`] whose name is checked when the tool compiles: a name that breaks the rule is a
/// compile error. The name must be a constant.
///
/// ```compile_fail
/// static BAD: tally_counter::Counter = tally_counter::counter!("greet/Notes.txt");
/// ```
#[macro_export]
macro_rules! counter {
    ($name:expr) => {{
        const _: () = $crate::__assert_counter_name($name);
        $crate::Counter::new($name)
    }};
}

/// A [`Histogram`] whose name is checked when the tool compiles: `histogram!(name)` buckets
/// durations by [`TIME_BUCKETS`]; `histogram!(name, durations = &[...])` and
/// `histogram!(name, values = &[...])` by the bounds given.
#[macro_export]
macro_rules! histogram {
    ($name:expr) => {
        $crate::histogram!($name, durations = $crate::TIME_BUCKETS)
    };
    ($name:expr, durations = $bounds:expr) => {{
        const _: () = $crate::__assert_histogram_name($name);
        $crate::Histogram::durations($name, $bounds)
    }};
    ($name:expr, values = $bounds:expr) => {{
        const _: () = $crate::__assert_histogram_name($name);
        $crate::Histogram::values($name, $bounds)
    }};
}

/// For this crate's benchmarks only: not part of the API, may change at any time.
#[doc(hidden)]
pub mod __bench {
    use std::ffi::OsString;
    use std::path::Path;

    use crate::session::{Session, Source, system_days};

    /// A session reading the process's environment as the real one does, with `TALLY_DIR`
    /// pointed at `data_dir`.
    pub struct Bench(Session);

    impl Bench {
        pub fn new(data_dir: &Path) -> Bench {
            let env = tally_home::Env::from_pairs([(
                OsString::from(tally_home::env::TALLY_DIR),
                data_dir.as_os_str().to_os_string(),
            )]);
            Bench(Session::new(Source::Overlay {
                env,
                days: system_days,
            }))
        }

        /// What [`crate::open`] does in a process whose session is still untouched: name the
        /// program, nothing else.
        pub fn open_fresh_process_session(program: crate::Program) -> bool {
            Session::new(Source::Process).open(program)
        }

        /// [`crate::open`] for this session.
        pub fn open(&self, program: crate::Program) -> bool {
            self.0.open(program)
        }

        /// What the first increment of a process does: decide (environment, data directory,
        /// mode), open and map the week's file, find or insert `name`, add 1. Everything is
        /// closed and unmapped again when it returns (the real session keeps it).
        pub fn first_increment(&self, name: &str) -> bool {
            let Some(program) = self.0.program() else {
                return false;
            };
            let Some(opened) = self.0.decide(program) else {
                return false;
            };
            opened.file.add(name, 1).is_ok()
        }

        /// [`crate::Counter::add`] in this session.
        pub fn add(&self, counter: &crate::Counter, n: u64) {
            counter.add_in(&self.0, n);
        }
    }
}

#[cfg(test)]
mod tests;
