//! The process's one counting session: which program it counts for, whether it counts at all,
//! and the week's counter file it counts into.
//!
//! Nothing happens until the first increment after [`open`](crate::open): then, once, the
//! environment is read (`TALLY`, `DO_NOT_TRACK`, the data directory's variables, `TALLY_NOW`),
//! the data directory is looked for (never created), the mode is read, and the week's counter
//! file is opened and mapped through `tally_home`'s store, exactly as the shims do it. If any
//! of that says no, or fails, the session is off for the rest of the process and every
//! increment is one atomic load and a return.
//!
//! Weeks: a long-running process (a language server, a daemon) outlives its week. Every
//! [`TICKS`] increments a thread looks at the clock; once the week has ended, the session opens
//! the new week's file under a new generation (reading the mode again, so `tally off` takes
//! effect then), and each counter resolves itself again on its next increment. The old mapping
//! is kept (never unmapped while a counter might still hold it), one per week the process
//! lives through.

use std::cell::Cell;
use std::ffi::OsString;
use std::sync::atomic::{AtomicI64, AtomicU32, Ordering};
use std::sync::{Mutex, OnceLock};

use tally_home::env::{self as vars, Env};
use tally_home::{Day, Home, Mode};
use tally_sys::CounterFile;

use crate::Program;

/// How many increments a thread makes between two looks at the clock.
pub(crate) const TICKS: u32 = 256;

/// [`Session::current`] when nothing is counted in this process.
pub(crate) const OFF: u32 = u32::MAX;

/// The variables the session reads, all declared in `tally_env`.
const READ: [&str; 6] = [
    vars::TALLY,
    vars::DO_NOT_TRACK,
    vars::TALLY_DIR,
    vars::XDG_STATE_HOME,
    vars::HOME,
    vars::TALLY_NOW,
];

thread_local! {
    static TICK: Cell<u32> = const { Cell::new(0) };
}

/// True on one increment in [`TICKS`] of this thread: time to look at the clock.
#[inline]
pub(crate) fn tick_due() -> bool {
    TICK.with(|t| {
        let n = t.get().wrapping_add(1);
        t.set(n);
        n % TICKS == 0
    })
}

/// The week's counter file, mapped for the life of the process.
pub(crate) struct WeekFile {
    pub(crate) file: CounterFile,
    pub(crate) generation: u32,
    /// `<program>/other`: what a name that breaks the rule counts as.
    pub(crate) other: String,
    pub(crate) program: &'static str,
}

/// Where a session reads its environment and the day from.
pub(crate) enum Source {
    /// The process's environment and the system clock.
    Process,
    /// Given ones (the crate's own tests: no process-wide state to set).
    #[cfg_attr(not(test), allow(dead_code))]
    Given { env: Env, days: fn() -> i64 },
    /// The process's environment with some of the variables replaced (the benchmarks: the
    /// same reads as [`Source::Process`], pointed at a temporary data directory).
    Overlay { env: Env, days: fn() -> i64 },
}

/// A week's counter file just opened, and the Unix day it ends.
pub(crate) struct Opened {
    pub(crate) file: CounterFile,
    pub(crate) ends: i64,
}

/// Today as a Unix day from the system clock.
pub(crate) fn system_days() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| (d.as_secs() / 86_400) as i64)
}

pub(crate) struct Session {
    program: OnceLock<Program>,
    /// 0 before the first increment after `open`; [`OFF`]; else the generation of the week's
    /// file.
    current: AtomicU32,
    /// Unix day on which the current week's file ends (`i64::MAX`: never, under `TALLY_NOW`).
    ends: AtomicI64,
    state: Mutex<State>,
    source: Source,
}

#[derive(Default)]
struct State {
    generation: u32,
    week: Option<&'static WeekFile>,
}

impl Session {
    pub(crate) const fn new(source: Source) -> Session {
        Session {
            program: OnceLock::new(),
            current: AtomicU32::new(0),
            ends: AtomicI64::new(i64::MAX),
            state: Mutex::new(State {
                generation: 0,
                week: None,
            }),
            source,
        }
    }

    /// Names the program (once; false if another program was named before).
    pub(crate) fn open(&self, program: Program) -> bool {
        self.program.get_or_init(|| program) == &program
    }

    pub(crate) fn program(&self) -> Option<Program> {
        self.program.get().copied()
    }

    /// The generation counters must match to count through their cached cell.
    #[inline]
    pub(crate) fn current(&self) -> u32 {
        self.current.load(Ordering::Acquire)
    }

    /// The generation to count under now, deciding or moving to a new week as needed; [`OFF`]
    /// when nothing is counted, and 0 while no program has been named (nothing is counted
    /// either, and nothing decided: `open` may come later). `look_at_clock`: whether this
    /// increment is the thread's one in [`TICKS`].
    pub(crate) fn refresh(&self, look_at_clock: bool) -> u32 {
        let current = self.current();
        if current == OFF || self.program.get().is_none() {
            return current;
        }
        if current != 0 && !(look_at_clock && self.today() >= self.ends.load(Ordering::Acquire)) {
            return current;
        }
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        // Another thread may have done it meanwhile.
        let again = self.current();
        if again != current {
            return again;
        }
        let next = self.open_week(&mut state);
        self.current.store(next, Ordering::Release);
        next
    }

    /// Stops counting for the rest of the process (the week's file refused a name: it is
    /// corrupt, which the next tally command finds and moves aside).
    pub(crate) fn give_up(&self) {
        self.current.store(OFF, Ordering::Release);
    }

    /// The week's file for generation `generation`, if it is still the current one.
    pub(crate) fn week(&self, generation: u32) -> Option<&'static WeekFile> {
        let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.week.filter(|w| w.generation == generation)
    }

    /// Decides whether this process counts and opens the week's file: the new generation, or
    /// [`OFF`] (also for any failure, which is swallowed: a tool never fails because of tally).
    fn open_week(&self, state: &mut State) -> u32 {
        let Some(program) = self.program.get().copied() else {
            return 0;
        };
        let Some(opened) = self.decide(program) else {
            return OFF;
        };
        state.generation += 1;
        if state.generation == OFF {
            return OFF;
        }
        // Kept for the life of the process: counters hold cells of this mapping.
        let week: &'static WeekFile = Box::leak(Box::new(WeekFile {
            file: opened.file,
            generation: state.generation,
            other: format!("{}/other", program.name),
            program: program.name,
        }));
        state.week = Some(week);
        self.ends.store(opened.ends, Ordering::Release);
        state.generation
    }

    /// Whether `program` counts in this process now, and if so its week's file, opened and
    /// mapped: `None` when tally is absent (no data directory, which is never created here),
    /// off (`TALLY=off`, `DO_NOT_TRACK`, mode `off`), or anything fails.
    pub(crate) fn decide(&self, program: Program) -> Option<Opened> {
        if !program.is_valid() {
            return None;
        }
        let env = self.env();
        if env.forces_off() {
            return None;
        }
        let home = Home::locate(&env)?;
        if !home.root().is_dir() {
            return None;
        }
        if tally_home::effective_mode(&env, Some(&home)) == Mode::Off {
            return None;
        }
        let fixed = matches!(env.clock_override(), Some(Ok(_)));
        let today = match env.clock_override() {
            Some(Ok(day)) => day,
            _ => day_of(self.today()),
        };
        let version = tally_home::normalize_version(program.version);
        let (file, created) = home
            .counter_store()
            .open_current(program.name, &version, today)
            .ok()?;
        if created {
            // As the shims do: a new file is the one moment retention runs on this path.
            let _ = tally_home::retention::sweep(&home, today);
        }
        let ends = if fixed {
            // A fixed day never ends.
            i64::MAX
        } else {
            file.meta().week_end.parse::<Day>().ok()?.to_unix_days()
        };
        Some(Opened { file, ends })
    }

    fn env(&self) -> Env {
        match &self.source {
            Source::Process => Env::from_pairs(
                READ.iter()
                    .filter_map(|name| vars::var_os(name).map(|v| (OsString::from(*name), v))),
            ),
            Source::Given { env, .. } => env.clone(),
            Source::Overlay { env: given, .. } => {
                let mut pairs: Vec<(OsString, OsString)> = READ
                    .iter()
                    .filter_map(|name| vars::var_os(name).map(|v| (OsString::from(*name), v)))
                    .collect();
                for name in READ {
                    if let Some(v) = given.get(name) {
                        pairs.retain(|(n, _)| n != name);
                        pairs.push((OsString::from(name), v.to_os_string()));
                    }
                }
                Env::from_pairs(pairs)
            }
        }
    }

    /// Today as a Unix day, from the system clock (or the given one).
    fn today(&self) -> i64 {
        match &self.source {
            Source::Process => system_days(),
            Source::Given { days, .. } | Source::Overlay { days, .. } => days(),
        }
    }
}

fn day_of(unix_days: i64) -> Day {
    Day::from_unix_days(unix_days)
        .or_else(|| Day::from_unix_days(0))
        .expect("1970-01-01 is a day")
}

/// The session of this process.
pub(crate) static SESSION: Session = Session::new(Source::Process);
