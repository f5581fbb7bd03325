#!/usr/bin/env python3
"""Times whole commands side by side, interleaved: round after round, every variant runs once
(in a shuffled order), so that drift in this shared machine's load falls on all variants alike.
hyperfine runs all of one command, then all of the next, and on this 2-vCPU VM the drift between
its blocks is larger than the 0.1 ms differences the shim benchmark is about.

Each run is `posix_spawn` + `wait4`: the wall time from spawn to reap, and the child's own CPU
time (user + system, from the kernel's rusage of that one child, so whatever else the machine
runs does not count). Python's own overhead is the same for every variant and cancels in the
differences that matter ("added" = variant minus the baseline).

Usage: interleave.py --runs N --warmup W --json OUT [--refresh-every R --refresh CMD]
                      name=command [name=command ...]
The first variant is the baseline. Each command is split on spaces (no shell, no quoting).
The environment is inherited; `name=ENV=VAL,ENV2=VAL2::command` sets variables for one variant.
`--refresh CMD` (a shell command, e.g. bench/shim/refresh.sh with the binaries) runs before the
first timed round and then every R rounds, untimed, followed by one untimed round.
"""

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import time


def parse_variant(spec):
    name, _, rest = spec.partition("=")
    env = dict(os.environ)
    if "::" in rest:
        assignments, _, rest = rest.partition("::")
        for pair in assignments.split(","):
            key, _, value = pair.partition("=")
            env[key] = value
    argv = rest.split()
    return name, argv, env


def run_once(argv, env):
    t0 = time.perf_counter_ns()
    pid = os.posix_spawn(argv[0], argv, env, file_actions=[(os.POSIX_SPAWN_OPEN, 1, os.devnull, os.O_WRONLY, 0)])
    _, status, rusage = os.wait4(pid, 0)
    wall = time.perf_counter_ns() - t0
    if os.waitstatus_to_exitcode(status) != 0:
        sys.exit(f"{argv} failed: {status}")
    return wall / 1e6, (rusage.ru_utime + rusage.ru_stime) * 1e3


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=500)
    ap.add_argument("--warmup", type=int, default=20)
    ap.add_argument("--json")
    ap.add_argument("--refresh-every", type=int, default=0)
    ap.add_argument("--refresh")
    ap.add_argument("variants", nargs="+")
    args = ap.parse_args()
    variants = [parse_variant(v) for v in args.variants]
    times = {name: {"wall_ms": [], "cpu_ms": []} for name, _, _ in variants}
    order = list(range(len(variants)))
    for round_no in range(args.warmup + args.runs):
        timed = round_no - args.warmup
        every = args.refresh_every or args.warmup + args.runs  # 0: once, before round 0
        if args.refresh and timed >= 0 and timed % every == 0:
            subprocess.run(args.refresh, shell=True, check=True)
            for i in order:
                run_once(variants[i][1], variants[i][2])
        random.shuffle(order)
        for i in order:
            name, argv, env = variants[i]
            wall, cpu = run_once(argv, env)
            if round_no >= args.warmup:
                times[name]["wall_ms"].append(wall)
                times[name]["cpu_ms"].append(cpu)
    base = variants[0][0]
    base_wall = statistics.median(times[base]["wall_ms"])
    base_cpu = statistics.mean(times[base]["cpu_ms"])
    summary = {}
    print(f"  {'variant':18s} {'wall median':>12s} {'added':>9s} {'cpu mean':>10s} {'added':>9s}")
    for name, _, _ in variants:
        wall = statistics.median(times[name]["wall_ms"])
        cpu = statistics.mean(times[name]["cpu_ms"])
        summary[name] = {"wall_median_ms": wall, "wall_added_ms": wall - base_wall,
                         "cpu_mean_ms": cpu, "cpu_added_ms": cpu - base_cpu}
        print(f"  {name:18s} {wall:9.3f} ms {wall - base_wall:+7.3f}  {cpu:7.3f} ms {cpu - base_cpu:+7.3f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump({"runs": args.runs, "summary": summary, "times": times}, out, indent=1)


if __name__ == "__main__":
    main()
