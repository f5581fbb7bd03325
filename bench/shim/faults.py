#!/usr/bin/env python3
"""Page faults a shim adds, counted rather than timed: the shim's start-up is bound by the pages
of code and data it touches in a fresh process (bench/README.md, "Shims"), and the kernel counts
them exactly, whatever else the machine runs.

Each binary is copied and linked as `rustc` in a directory of its own, in front of a static
no-op `rustc` (gcc -static), and run ROUNDS times; so are the no-op itself and the static C
execv (bench/shim/execv.c). For each, the minor and major faults of the whole process (the shim
and the tool it execs: the kernel's rusage of that one child) are reported as medians, and what
each adds to the no-op run alone. Counting goes to a scratch data directory, mode local.

Usage: faults.py [--rounds N] [LABEL=]BINARY...
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))


def faults(argv, env):
    """(minor, major) faults of one run of argv, waited for."""
    pid = os.posix_spawn(argv[0], argv, env)
    _, status, usage = os.wait4(pid, 0)
    if os.waitstatus_to_exitcode(status) != 0:
        raise SystemExit(f"{argv} failed: {status}")
    return usage.ru_minflt, usage.ru_majflt


def main():
    args = sys.argv[1:]
    rounds = 200
    if args[:1] == ["--rounds"]:
        rounds, args = int(args[1]), args[2:]
    tmp = tempfile.mkdtemp(prefix="tally-faults-")
    try:
        noop_c = os.path.join(tmp, "noop.c")
        with open(noop_c, "w") as f:
            f.write("int main(void) { return 0; }\n")
        os.makedirs(f"{tmp}/noop")
        os.makedirs(f"{tmp}/c")
        subprocess.run(["gcc", "-O2", "-static", "-o", f"{tmp}/noop/rustc", noop_c], check=True)
        subprocess.run(["gcc", "-O2", "-static", f'-DREAL_TOOL="{tmp}/noop/rustc"', "-o",
                        f"{tmp}/c/rustc", os.path.join(HERE, "execv.c")], check=True)
        variants = {"noop": f"{tmp}/noop/rustc", "c-execv": f"{tmp}/c/rustc"}
        for i, arg in enumerate(args):
            label, _, path = arg.rpartition("=")
            label = label or f"b{i + 1}"
            os.makedirs(f"{tmp}/{label}")
            copy = f"{tmp}/{label}/{os.path.basename(path)}"
            shutil.copy2(path, copy)
            os.symlink(copy, f"{tmp}/{label}/rustc")
            variants[label] = f"{tmp}/{label}/rustc"
        results = {}
        for label, program in variants.items():
            env = dict(os.environ, TALLY_DIR=f"{tmp}/data-{label}",
                       PATH=f"{os.path.dirname(program)}:{tmp}/noop:{os.environ['PATH']}")
            env.pop("TALLY", None)
            env.pop("DO_NOT_TRACK", None)
            faults([program, "--version"], env)  # the counter file and version cache exist
            runs = [faults([program, "--version"], env) for _ in range(rounds)]
            results[label] = (statistics.median(r[0] for r in runs),
                              statistics.median(r[1] for r in runs))
        base = results["noop"][0]
        print(f"minor faults, median of {rounds} runs (a run = the shim and the no-op it execs):")
        for label, (minor, major) in results.items():
            added = "" if label == "noop" else f", adds {minor - base:.0f}"
            print(f"  {label:16s} {minor:6.0f}{added}   (major: {major:.0f})")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
