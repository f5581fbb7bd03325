//! Many processes, each with many threads, counting the same names at once: the totals are
//! exact (the shims' lock-free file, shared through the mapping).

use std::io::Write;
use std::process::Stdio;

use tally_counter::Counter;

use crate::{PROGRAM, World};

const PROCESSES: u64 = 6;
const THREADS: u64 = 4;
const INCREMENTS: u64 = 50_000;

static SHARED: Counter = tally_counter::counter!("counter-probe/shared");

/// Waits for the parent's go (a byte on stdin), then counts from [`THREADS`] threads.
pub fn threads_worker() {
    assert!(tally_counter::open(PROGRAM));
    // Decided and mapped before the go, so that the processes race on the counting itself.
    assert!(tally_counter::counting());
    crate::stdin_bytes();
    std::thread::scope(|s| {
        for t in 0..THREADS {
            s.spawn(move || {
                // Each thread also makes a name of its own, inserted while the others count.
                let own: &'static str = [
                    "counter-probe/t0",
                    "counter-probe/t1",
                    "counter-probe/t2",
                    "counter-probe/t3",
                ][t as usize];
                let own = Counter::new(own);
                for _ in 0..INCREMENTS {
                    SHARED.inc();
                    own.inc();
                }
            });
        }
    });
}

#[test]
fn processes_and_threads_lose_no_increment() {
    let world = World::installed();
    let children: Vec<_> = (0..PROCESSES)
        .map(|_| {
            world
                .worker("threads", &[])
                .stdin(Stdio::piped())
                .stdout(Stdio::piped())
                .spawn()
                .unwrap()
        })
        .collect();
    let children: Vec<_> = children
        .into_iter()
        .map(|mut c| {
            c.stdin.take().unwrap().write_all(b"go").unwrap();
            c
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{out:?}");
    }
    let counters = &world.counters()["counter-probe"];
    assert_eq!(
        counters["counter-probe/shared"],
        PROCESSES * THREADS * INCREMENTS
    );
    for t in 0..THREADS {
        assert_eq!(
            counters[&format!("counter-probe/t{t}")],
            PROCESSES * INCREMENTS
        );
    }
}
