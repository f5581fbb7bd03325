#!/usr/bin/env python3
"""How much of a build's CPU time tally's own processes take, by sampling (`perf record`).

The whole-build comparison (bench.py) compares builds with and without tally; on a shared VM
it resolves a few percent on a build of seconds. This one attributes CPU time inside builds
run with `RUSTC_WRAPPER=tally` (or the exec-only C wrapper, for comparison): `perf record`
samples every process of the builds every 0.1 ms of CPU time, and the samples taken while a
process was still named `tally` (before a probe's `exec`, the forked child before its `exec`,
and the process supervising a compile) are tally's own cost. The share is not changed by the
machine running faster or slower between builds. It leaves out what tally changes in the
others' work (cargo reading fewer, larger chunks of stderr): bench.py measures that.

Usage: own_cpu.py TALLY_BINARY ROUNDS [PROJECT[:SCENARIO] ...]   (needs perf; bench/wrapper/)
       (default: chain:scratch chain:edit warnings:scratch warnings:edit)
"""

import os
import shutil
import subprocess
import sys

import bench


def loop(project, scenario, source, rounds, env):
    for _ in range(rounds):
        bench.prepare(scenario, env["CARGO_TARGET_DIR"], source)
        bench.build(project, env)


def shares(data):
    """Samples per process name in a perf.data file."""
    out = subprocess.run(["perf", "report", "-i", data, "--sort", "comm", "--stdio", "-q",
                          "-F", "sample,comm"], check=True, capture_output=True, text=True).stdout
    counts = {}
    for line in out.splitlines():
        parts = line.split(None, 1)
        if len(parts) == 2 and parts[0].isdigit():
            counts[parts[1].strip()] = counts.get(parts[1].strip(), 0) + int(parts[0])
    return counts


def main():
    if sys.argv[1] == "--loop":
        project, scenario, source, rounds = sys.argv[2:6]
        env = dict(os.environ)
        loop(project, scenario, source, int(rounds), env)
        return
    tally, rounds = os.path.abspath(sys.argv[1]), int(sys.argv[2])
    cases = sys.argv[3:] or ["chain:scratch", "chain:edit", "warnings:scratch", "warnings:edit"]
    tmp = bench.scratch_dir("tally-bench-own-")
    try:
        floor, sources, base = bench.set_up(tmp)
        for case in cases:
            project, _, scenario = case.partition(":")
            scenario = scenario or "scratch"
            for name, wrapper in (("tally", tally), ("exec_wrapper", floor)):
                env = dict(base, RUSTC_WRAPPER=wrapper,
                           CARGO_TARGET_DIR=f"{tmp}/target-{project}-{name}")
                # Unmeasured: the page cache, cargo's caches, tally's version cache.
                loop(f"{tmp}/{project}", scenario, sources[project], 1, env)
                data = f"{tmp}/perf.data"
                subprocess.run(["perf", "record", "-q", "-e", "task-clock", "-c", "100000",
                                "-o", data, "--", sys.executable, os.path.abspath(__file__),
                                "--loop", f"{tmp}/{project}", scenario, sources[project],
                                str(rounds)], env=env, check=True,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                counts = shares(data)
                # The benchmark's own Python is not part of any build.
                build = sum(n for comm, n in counts.items() if not comm.startswith("python"))
                # A process's name is its binary's (`tally-shim`), cut to 15 bytes by the kernel.
                comm = os.path.basename(wrapper)[:15] if name == "tally" else name
                own = counts.get(comm, 0)
                # Sampling this often slows every process (by about half on a VM), so only
                # the share is printed, not the milliseconds the samples would add up to.
                print(f"{project}, {scenario}, {name}: {own} of {build} samples of the builds' "
                      f"CPU = {100 * own / build:.2f} % ({rounds} builds)", flush=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
