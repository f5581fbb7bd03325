//! [`Counter`]: a name made once, incremented cheaply. The cell a counter adds to is found once
//! per week of the process (name checked, then looked up or inserted in the mapped file) and
//! cached in the counter; after that an increment is one atomic add on the shared mapping,
//! guarded by one load of the session's generation.

use std::sync::OnceLock;

use crate::name::is_counter_name_of;
use crate::session::{OFF, SESSION, Session, tick_due};

/// A counter's cell in one week's file.
struct Node {
    generation: u32,
    cell: tally_sys::Counter<'static>,
    /// The next week's cell, once there is one.
    next: OnceLock<Box<Node>>,
}

/// The cached cells of one counter name, one per week the process has counted in, newest last.
pub(crate) struct Slot {
    head: OnceLock<Node>,
}

impl Slot {
    pub(crate) const fn new() -> Slot {
        Slot {
            head: OnceLock::new(),
        }
    }

    /// Adds `n` to `name` in `session`'s current week.
    #[inline]
    pub(crate) fn add(&self, session: &Session, name: &str, n: u64) {
        let due = tick_due();
        if !due
            && let Some(node) = self.head.get()
            && node.generation == session.current()
        {
            node.cell.add(n);
            return;
        }
        self.add_slow(session, name, n, due);
    }

    #[cold]
    #[inline(never)]
    fn add_slow(&self, session: &Session, name: &str, n: u64, due: bool) {
        let generation = session.refresh(due);
        if generation == 0 || generation == OFF {
            return;
        }
        let mut node = match self.head.get() {
            Some(node) => node,
            None => match resolve(session, generation, name) {
                Some(fresh) => self.head.get_or_init(|| fresh),
                None => return,
            },
        };
        loop {
            if node.generation == generation {
                node.cell.add(n);
                return;
            }
            node = match node.next.get() {
                Some(next) => next,
                None => match resolve(session, generation, name) {
                    Some(fresh) => node.next.get_or_init(|| Box::new(fresh)),
                    None => return,
                },
            };
        }
    }
}

/// The cell of `name` (or of `<program>/other` when `name` breaks the rule) in the file of
/// `generation`; `None` if that is no longer the current week or the file refuses.
fn resolve(session: &Session, generation: u32, name: &str) -> Option<Node> {
    let week = session.week(generation)?;
    let name = if is_counter_name_of(week.program, name) {
        name
    } else {
        &week.other
    };
    let Ok(cell) = week.file.counter(name) else {
        session.give_up();
        return None;
    };
    Some(Node {
        generation,
        cell,
        next: OnceLock::new(),
    })
}

/// Adds `n` to a name known only at run time (a flag's, a bucket's), once: checked like any
/// name, looked up in the file by hash, not cached.
#[cfg(feature = "clap")]
pub(crate) fn add_by_name(session: &Session, name: &str, n: u64) {
    let generation = session.refresh(tick_due());
    if generation == 0 || generation == OFF {
        return;
    }
    let Some(week) = session.week(generation) else {
        return;
    };
    let name = if is_counter_name_of(week.program, name) {
        name
    } else {
        &week.other
    };
    if week.file.add(name, n).is_err() {
        session.give_up();
    }
}

/// A counter: a name from the tool's source, made once (usually a `static`), incremented
/// cheaply from any thread.
///
/// Make it with [`counter!`](crate::counter!), which checks the name when the tool compiles;
/// [`Counter::new`] checks it only at run time. Either way, a name that breaks the rule
/// ([`check_counter_name`](crate::check_counter_name)) or that does not start with the opened
/// program's name counts as `<program>/other`.
///
/// ```no_run
/// use tally_counter::{Counter, counter};
///
/// static GREETINGS: Counter = counter!("greet/hello");
///
/// fn main() {
///     tally_counter::open!();
///     GREETINGS.inc();
/// }
/// ```
pub struct Counter {
    name: &'static str,
    slot: Slot,
}

impl Counter {
    /// A counter named `name`. Does nothing until its first increment. Never panics: a name
    /// that breaks the rule counts as `<program>/other`.
    pub const fn new(name: &'static str) -> Counter {
        Counter {
            name,
            slot: Slot::new(),
        }
    }

    /// The counter's name as given.
    pub const fn name(&self) -> &'static str {
        self.name
    }

    /// Adds 1.
    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Adds `n`.
    #[inline]
    pub fn add(&self, n: u64) {
        self.slot.add(&SESSION, self.name, n);
    }

    /// Adds `n` counting into `session` (the crate's tests and benchmarks).
    pub(crate) fn add_in(&self, session: &Session, n: u64) {
        self.slot.add(session, self.name, n);
    }
}

impl std::fmt::Debug for Counter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Counter").field("name", &self.name).finish()
    }
}
