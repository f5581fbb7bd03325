#!/usr/bin/env python3
"""`RUSTC_WRAPPER=tally` against no wrapper on real `cargo build`s, side by side in one run.

Generates two offline workspaces in a temporary directory:
- `chain`: 6 crates, each depending on the one before (so cargo pipelines them on rustc's
  `artifact` lines), each with a few hundred generic functions;
- `warnings`: one crate whose compile emits 1,000 `unused_variables` warnings.
Each round builds each workspace from scratch twice, without and with tally as the wrapper
(the order alternates by round), and measures the wall time and the CPU time (user + system of
cargo and everything under it, from wait4). Reports the ratio with/without per round: its mean
with a 95% confidence interval (Student's t over the rounds).

Usage: bench.py TALLY_BINARY ROUNDS
"""

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26,
       10: 2.23, 15: 2.13, 20: 2.09, 30: 2.04}


def t95(df):
    best = 1.96
    for k in sorted(T95):
        if df <= k:
            return T95[k]
    return best


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


def warnings_workspace(root, warnings=1000):
    write(f"{root}/Cargo.toml",
          '[package]\nname = "warnings"\nversion = "0.1.0"\nedition = "2021"\n\n[dependencies]\n')
    lines = ["pub fn noisy() {"]
    lines += [f"    let unused_{i} = {i};" for i in range(warnings)]
    lines.append("}")
    write(f"{root}/src/lib.rs", "\n".join(lines) + "\n")


def build(project, target, env):
    shutil.rmtree(target, ignore_errors=True)
    start = time.monotonic()
    proc = subprocess.Popen(["cargo", "build", "--offline", "-q"], cwd=project, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.monotonic() - start
    if status != 0:
        sys.exit(f"cargo build failed in {project} (status {status})")
    return wall, usage.ru_utime + usage.ru_stime


def summary(ratios):
    mean = statistics.mean(ratios)
    if len(ratios) < 2:
        return f"{mean:.4f}"
    half = t95(len(ratios) - 1) * statistics.stdev(ratios) / len(ratios) ** 0.5
    return f"{mean:.4f} [{mean - half:.4f}, {mean + half:.4f}]"


def main():
    tally, rounds = os.path.abspath(sys.argv[1]), int(sys.argv[2])
    tmp = tempfile.mkdtemp(prefix="tally-bench-wrapper-")
    try:
        chain_workspace(f"{tmp}/chain")
        warnings_workspace(f"{tmp}/warnings")
        base = {k: v for k, v in os.environ.items()
                if k not in ("RUSTC_WRAPPER", "CARGO_BUILD_RUSTC_WRAPPER", "TALLY")}
        base["CARGO_INCREMENTAL"] = "0"
        base["TALLY_DIR"] = f"{tmp}/data"
        variants = {"without": dict(base), "with": dict(base, RUSTC_WRAPPER=tally)}
        for project in ("chain", "warnings"):
            # One unmeasured build each, for the page cache and tally's version cache.
            for name, env in variants.items():
                build(f"{tmp}/{project}", f"{tmp}/target-{name}", dict(env, CARGO_TARGET_DIR=f"{tmp}/target-{name}"))
            results = {name: [] for name in variants}
            for r in range(rounds):
                order = list(variants) if r % 2 == 0 else list(reversed(variants))
                for name in order:
                    env = dict(variants[name], CARGO_TARGET_DIR=f"{tmp}/target-{name}")
                    results[name].append(build(f"{tmp}/{project}", f"{tmp}/target-{name}", env))
            wall = [w / o for (w, _), (o, _) in zip(results["with"], results["without"])]
            cpu = [w / o for (_, w), (_, o) in zip(results["with"], results["without"])]
            med = lambda name, i: statistics.median(x[i] for x in results[name])
            print(f"{project}: {rounds} rounds; median without {med('without', 0):.3f} s wall, "
                  f"{med('without', 1):.3f} s CPU; with {med('with', 0):.3f} s wall, "
                  f"{med('with', 1):.3f} s CPU")
            print(f"  wall ratio with/without: {summary(wall)}")
            print(f"  CPU ratio with/without:  {summary(cpu)}")
        subprocess.run([tally, "show"], env=dict(base), check=False,
                       stdout=open(f"{tmp}/show.txt", "w"), stderr=subprocess.DEVNULL)
        counted = [l.strip() for l in open(f"{tmp}/show.txt")
                   if "outcome:" in l or "unused_variables" in l]
        print("counted (all rounds):", "; ".join(" ".join(l.split()) for l in counted))
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
