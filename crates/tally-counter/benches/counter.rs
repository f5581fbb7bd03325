//! tally-counter's speed, side by side in one run (PRODUCT.md's targets):
//! - `increment/open-counter`: `Counter::inc` on a counter already resolved in an open session
//!   (target: at most 10 ns): the thread's tick, one load of the generation, one atomic add;
//! - `increment/off`: the same when the session counts nothing (tally absent or off);
//! - `increment/length-checked`: one increment on a mapped file after checking the file's
//!   length with one `fstat` (`CounterFile::still_whole`): what guarding every increment
//!   against a truncation by another program would cost (the library does not; its docs say
//!   why);
//! - `first-increment/fresh-process`: what the first increment of a fresh process does, the
//!   week's file existing but not yet open in it: read the environment, find the data
//!   directory, read the mode and weekday files, open and map the counter file, find the name,
//!   add (target: at most 30 µs); each iteration unmaps and closes again;
//! - `first-increment/floor`: the part of that no counting can skip, side by side: open the
//!   same file, map it, add, unmap (`tally-sys` alone, as its own `fresh-process` benchmark);
//! - `startup/open`: what `tally_counter::open!()` costs a tool that then never counts (a
//!   fresh session given its program name: no system call, no allocation).
//!
//! Run: `cargo bench -p tally-counter --bench counter`. The data directory is a temporary one;
//! `TALLY`, `DO_NOT_TRACK` and `TALLY_NOW` from the environment apply as they would to a tool.

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tally_counter::__bench::Bench;
use tally_counter::{Counter, Program};

const PROGRAM: Program = Program::new("greet", "0.3.1");

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("tally");
    std::fs::create_dir(&data).unwrap();

    // A session that counts, kept for the whole run (sessions live as long as the process).
    let session: &'static Bench = Box::leak(Box::new(Bench::new(&data)));
    assert!(session.open(PROGRAM));
    static HELLO: Counter = Counter::new("greet/hello");
    session.add(&HELLO, 1);
    assert!(
        session.first_increment("greet/hello"),
        "the benchmark session does not count: is TALLY=off or DO_NOT_TRACK set?"
    );

    let mut group = c.benchmark_group("increment");
    group.bench_function("open-counter", |b| {
        b.iter(|| session.add(black_box(&HELLO), 1))
    });
    let off: &'static Bench = Box::leak(Box::new(Bench::new(&dir.path().join("absent"))));
    off.open(PROGRAM);
    static OFF: Counter = Counter::new("greet/hello");
    group.bench_function("off", |b| b.iter(|| off.add(black_box(&OFF), 1)));
    let (path, snapshot) = tally_home::Home::at(&data).counter_store().list().remove(0);
    let meta = snapshot.unwrap().meta;
    let (mapped, _) = tally_sys::CounterFile::open_or_create(&path, &meta).unwrap();
    let cell = mapped.counter("greet/hello").unwrap();
    group.bench_function("length-checked", |b| {
        b.iter(|| {
            if black_box(&mapped).still_whole() {
                cell.add(1);
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("first-increment");
    group.bench_function("floor", |b| {
        b.iter(|| {
            let (file, _) = tally_sys::CounterFile::open_or_create(&path, &meta).unwrap();
            file.add(black_box("greet/hello"), 1).unwrap();
        })
    });
    group.bench_function("fresh-process", |b| {
        b.iter_batched(
            || {
                let fresh = Bench::new(&data);
                fresh.open(PROGRAM);
                fresh
            },
            |fresh| assert!(fresh.first_increment(black_box("greet/hello"))),
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("startup");
    group.bench_function("open", |b| {
        b.iter(|| Bench::open_fresh_process_session(black_box(PROGRAM)))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
