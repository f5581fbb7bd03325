//! Counter file speed, side by side in one run:
//! - `increment/mapped`: one increment of an existing counter on an already-mapped file
//!   (target: at most 10 ns), through a resolved [`Counter`] handle as a long-lived process
//!   would hold it;
//! - `increment/by-name`: the same through `CounterFile::add` (hash, chain walk, add);
//! - `fresh-process/open-map-increment-unmap`: what a shim does once per run: open an existing
//!   file, map it, increment three counters, unmap and close (target: at most 30 us).
//!
//! Run: `cargo bench -p tally-sys --bench counter`.

use criterion::{Criterion, criterion_group, criterion_main};
use std::hint::black_box;
use tally_sys::{CounterFile, FileMeta};

fn meta() -> FileMeta {
    FileMeta {
        program: "rustc".into(),
        version: "1.91.0".into(),
        os: "linux".into(),
        arch: "x86_64".into(),
        week_start: "2026-11-24".into(),
        week_end: "2026-12-01".into(),
    }
}

fn bench(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bench.v1.count");
    let (file, _) = CounterFile::open_or_create(&path, &meta()).unwrap();
    // A realistic file: a few hundred counters already there.
    for i in 0..300 {
        file.add(&format!("rustc/flag-{i}"), 1).unwrap();
    }
    let counter = file.counter("rustc/edition:2021").unwrap();

    let mut group = c.benchmark_group("increment");
    group.bench_function("mapped", |b| b.iter(|| black_box(&counter).add(1)));
    group.bench_function("by-name", |b| {
        b.iter(|| file.add(black_box("rustc/edition:2021"), 1).unwrap())
    });
    group.finish();

    let mut group = c.benchmark_group("fresh-process");
    group.bench_function("open-map-increment-unmap", |b| {
        b.iter(|| {
            let (f, created) = CounterFile::open_or_create(&path, &meta()).unwrap();
            debug_assert!(!created);
            f.add("rustc", 1).unwrap();
            f.add("rustc/edition:2021", 1).unwrap();
            f.add("rustc/crate-type:lib", 1).unwrap();
            drop(black_box(f));
        })
    });
    // The floor on this machine: the system calls alone (open, map, touch one page, unmap,
    // close), for comparing the line above with.
    group.bench_function("baseline-open-map-touch-unmap", |b| {
        b.iter(|| {
            let f = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .open(&path)
                .unwrap();
            let map = memmap2::MmapOptions::new().len(16384).map_raw(&f).unwrap();
            // SAFETY: the mapping is 16 KiB of a file at least that long; one aligned byte.
            black_box(unsafe { map.as_ptr().read_volatile() });
        })
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
