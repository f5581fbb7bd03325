#!/usr/bin/env python3
"""`RUSTC_WRAPPER=tally` against no wrapper on real `cargo build`s, side by side in one run.

Generates two offline workspaces in a temporary directory (on tmpfs where /dev/shm exists, so
that writing target directories does not wait on the disk):
- `chain`: 6 crates, each depending on the one before (so cargo pipelines them on rustc's
  `artifact` lines), each with a few hundred generic functions;
- `warnings`: one crate whose compile emits 1,000 `unused_variables` warnings.

Each is built in two scenarios:
- `scratch`: the target directory is deleted first, so cargo also runs its probes (`rustc -vV`,
  `--print`) through the wrapper;
- `edit`: the first crate's source is touched, as after an edit, and cargo rebuilds it and
  everything that depends on it (probes answered from cargo's cache).

Three variants, each with its own target directory, in a fresh random order every round:
`without` (no wrapper), `exec-wrapper` (exec_wrapper.c: a static C program that only execs the
compiler, the cost every wrapper pays) and `tally`. Wall time, and CPU time (user + system of
cargo and everything under it, from wait4). For each wrapper: the mean per-round difference
from `without` in milliseconds with a 95% confidence interval (Student's t over the rounds),
and the same as a share of the mean build without a wrapper. (A mean of per-round ratios is
not used: a few slow rounds skew it.)

Usage: bench.py TALLY_BINARY ROUNDS [--no-floor] [PROJECT[:SCENARIO] ...]
       (default: chain:scratch chain:edit warnings:scratch warnings:edit; --no-floor leaves
       the exec-only wrapper out, for more rounds in the same time)
"""

import os
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26,
       10: 2.23, 15: 2.13, 20: 2.09, 30: 2.04}


def t95(df):
    for k in sorted(T95):
        if df <= k:
            return T95[k]
    return 1.96 + 2.5 / df


def write(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def chain_workspace(root, crates=6, functions=300):
    members = [f"c{i}" for i in range(crates)]
    write(f"{root}/Cargo.toml", "[workspace]\nresolver = \"2\"\nmembers = [%s]\n"
          % ", ".join(f'"{m}"' for m in members))
    for i, name in enumerate(members):
        deps = f'c{i-1} = {{ path = "../c{i-1}" }}\n' if i else ""
        write(f"{root}/{name}/Cargo.toml",
              f'[package]\nname = "{name}"\nversion = "0.1.0"\nedition = "2021"\n\n'
              f"[dependencies]\n{deps}")
        body = []
        if i:
            body.append(f"pub use c{i-1};")
        for f in range(functions):
            body.append(
                f"pub fn f{f}<T: Clone + std::fmt::Debug>(x: T, n: usize) -> Vec<String> {{\n"
                f"    (0..n).map(|i| format!(\"{{:?}}-{{}}-{f}\", x.clone(), i)).collect()\n}}")
        body.append("pub fn use_all() -> usize { let mut s = 0;")
        for f in range(0, functions, 7):
            body.append(f"    s += f{f}({f}u32, 3).len() + f{f}(\"s\", 2).len();")
        body.append("    s }")
        write(f"{root}/{name}/src/lib.rs", "\n".join(body) + "\n")
    return f"{root}/c0/src/lib.rs"


def warnings_workspace(root, warnings=1000):
    write(f"{root}/Cargo.toml",
          '[package]\nname = "warnings"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n')
    lines = ["pub fn noisy() {"]
    lines += [f"    let unused_{i} = {i};" for i in range(warnings)]
    lines.append("}")
    write(f"{root}/src/lib.rs", "\n".join(lines) + "\n")
    return f"{root}/src/lib.rs"


def build(project, env):
    start = time.monotonic()
    proc = subprocess.Popen(["cargo", "build", "--offline", "-q"], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    if status != 0:
        sys.exit(f"cargo build failed in {project} (status {status})")
    return wall, usage.ru_utime + usage.ru_stime


def scratch_dir(prefix):
    """A temporary directory, on tmpfs where /dev/shm exists."""
    return tempfile.mkdtemp(prefix=prefix,
                            dir="/dev/shm" if os.path.isdir("/dev/shm") else None)


def set_up(tmp):
    """In `tmp`: the exec-only wrapper, both workspaces and the environment every build starts
    from (no wrapper, tally's data in `tmp`). Returns (floor, {project: source to touch}, env)."""
    floor = f"{tmp}/exec_wrapper"
    subprocess.run(["cc", "-O2", "-static", "-o", floor, f"{HERE}/exec_wrapper.c"], check=True)
    sources = {"chain": chain_workspace(f"{tmp}/chain"),
               "warnings": warnings_workspace(f"{tmp}/warnings")}
    base = {k: v for k, v in os.environ.items()
            if k not in ("RUSTC_WRAPPER", "CARGO_BUILD_RUSTC_WRAPPER", "TALLY",
                         "RUSTC_WORKSPACE_WRAPPER")}
    base["CARGO_INCREMENTAL"] = "0"
    base["TALLY_DIR"] = f"{tmp}/data"
    return floor, sources, base


def prepare(scenario, target, source):
    """Before a build: `scratch` deletes the target directory, `edit` touches the source."""
    if scenario == "scratch":
        shutil.rmtree(target, ignore_errors=True)
    else:
        os.utime(source)


def interval(values, scale=1.0, fmt="{:+.1f}"):
    mean = statistics.mean(values) * scale
    if len(values) < 2:
        return fmt.format(mean)
    half = t95(len(values) - 1) * statistics.stdev(values) * scale / len(values) ** 0.5
    return f"{fmt.format(mean)} [{fmt.format(mean - half)}, {fmt.format(mean + half)}]"


def main():
    tally, rounds = os.path.abspath(sys.argv[1]), int(sys.argv[2])
    cases = [a for a in sys.argv[3:] if a != "--no-floor"]
    cases = cases or ["chain:scratch", "chain:edit", "warnings:scratch", "warnings:edit"]
    with_floor = "--no-floor" not in sys.argv[3:]
    tmp = scratch_dir("tally-bench-wrapper-")
    try:
        floor, sources, base = set_up(tmp)
        variants = {"without": dict(base), "exec-wrapper": dict(base, RUSTC_WRAPPER=floor),
                    "tally": dict(base, RUSTC_WRAPPER=tally)}
        if not with_floor:
            del variants["exec-wrapper"]
        for case in cases:
            project, _, scenario = case.partition(":")
            scenario = scenario or "scratch"
            source = sources[project]
            envs = {name: dict(env, CARGO_TARGET_DIR=f"{tmp}/target-{project}-{name}")
                    for name, env in variants.items()}

            def measured(name):
                prepare(scenario, envs[name]["CARGO_TARGET_DIR"], source)
                return build(f"{tmp}/{project}", envs[name])

            # One unmeasured build each: the page cache, cargo's caches, tally's version cache.
            for name in variants:
                measured(name)
            results = {name: [] for name in variants}
            for _ in range(rounds):
                order = list(variants)
                random.shuffle(order)
                for name in order:
                    results[name].append(measured(name))
            med = {name: (statistics.median(w for w, _ in r), statistics.median(c for _, c in r))
                   for name, r in results.items()}
            print(f"{project}, {scenario}: {rounds} rounds; median wall / CPU: "
                  + "; ".join(f"{n} {w:.3f} / {c:.3f} s" for n, (w, c) in med.items()))
            comparisons = [("exec-wrapper", "without"), ("tally", "without"),
                           ("tally", "exec-wrapper")]
            for name, against in comparisons:
                if name not in results or against not in results:
                    continue
                for i, what in ((0, "wall"), (1, "CPU ")):
                    pairs = list(zip(results[name], results[against]))
                    diff = [a[i] - b[i] for a, b in pairs]
                    mean_without = statistics.mean(r[i] for r in results["without"])
                    print(f"  {name + ' - ' + against:22} {what}: {interval(diff, 1000)} ms = "
                          f"{interval(diff, 100 / mean_without, '{:+.2f}')} %")
            sys.stdout.flush()
        # The counts are shown by the CLI: the `tally` beside `tally-shim`, or the binary itself.
        cli = os.path.join(os.path.dirname(tally), "tally")
        subprocess.run([cli if os.path.exists(cli) else tally, "show"], env=dict(base), check=False,
                       stdout=open(f"{tmp}/show.txt", "w"), stderr=subprocess.DEVNULL)
        counted = [line.strip() for line in open(f"{tmp}/show.txt")
                   if "outcome:" in line or "unused_variables" in line]
        print("counted (all rounds):", "; ".join(" ".join(line.split()) for line in counted))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
