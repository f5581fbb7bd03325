#!/usr/bin/env python3
"""Writes the link order of the shim's hot path (shims/hot-path.order) from traces of real runs.

A fresh process pays a page fault for every 4 KiB page of the binary it touches (the kernel maps
up to 64 KiB around a fault in the page cache), and the shim runs as a fresh process on every
compile. Left to itself, the linker scatters the ~250 functions the shim runs over 3.5 MiB of
text, and the glibc and Rust variables it writes over a dozen data pages. Placed first and side
by side (lld's --symbol-ordering-file), they fit in a few fault-around windows.

Input:
- `--binary`: the tally binary the traces ran (with its symbol table);
- `--rips FILE...`: instruction addresses from bench/shim/trace-hot (one hex address a line),
  in the order they first ran; functions are listed in that order, so the order file also
  keeps code that runs together on the same pages;
- `--data FILE...`: valgrind lackey logs (`--trace-mem=yes`) of the same runs, for the
  variables: every named data object a load or store touched, in first-touch order.
Output: one symbol a line, functions first, then variables. Symbols the linker does not find
(another toolchain, another Cargo.lock) are skipped by lld (`--no-warn-symbol-ordering`): the
binary is then correct, only slower; `order.sh --check` tells.
"""

import argparse
import bisect
import subprocess
import sys


def symbols(binary):
    out = subprocess.run(["nm", "-n", "-S", binary], capture_output=True, text=True, check=True).stdout
    code, data = [], []
    lines = []
    for line in out.splitlines():
        parts = line.split(None, 3)
        if len(parts) == 3:
            # No size (hand-written assembly such as crtbegin's frame_dummy): up to the next
            # symbol, filled in below.
            parts = [parts[0], "0", parts[1], parts[2]]
        if len(parts) == 4:
            lines.append(parts)
    next_addr = {}
    addrs = sorted({int(p[0], 16) for p in lines})
    for a, b in zip(addrs, addrs[1:]):
        next_addr[a] = b
    for parts in lines:
        if int(parts[1], 16) == 0:
            a = int(parts[0], 16)
            parts[1] = format(next_addr.get(a, a + 1) - a, "x")
        addr, size, kind, name = int(parts[0], 16), int(parts[1], 16), parts[2], parts[3]
        if kind in "tTwWiI":
            code.append((addr, size, name))
        elif kind in "dDbBrRvV":
            data.append((addr, size, name))
    code.sort()
    data.sort()
    return code, data


def lookup(table, starts, addr):
    i = bisect.bisect_right(starts, addr) - 1
    if i >= 0 and addr < table[i][0] + table[i][1]:
        return table[i][2]
    return None


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary", required=True)
    ap.add_argument("--rips", nargs="*", default=[])
    ap.add_argument("--data", nargs="*", default=[])
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    code, data = symbols(args.binary)
    code_starts = [c[0] for c in code]
    data_starts = [d[0] for d in data]
    ordered, seen = [], set()
    code_bytes = {name: size for _, size, name in code}

    def add(name):
        if name is not None and name not in seen:
            seen.add(name)
            ordered.append(name)

    for path in args.rips:
        with open(path) as f:
            for line in f:
                add(lookup(code, code_starts, int(line, 16)))
    functions = len(ordered)
    for path in args.data:
        with open(path) as f:
            for line in f:
                # lackey: " L 1ffefffe08,8", " S ...", " M ..."; "I ..." lines are code.
                if line[:2] in (" L", " S", " M"):
                    addr = int(line[3:].split(",", 1)[0], 16)
                    add(lookup(data, data_starts, addr))
    with open(args.out, "w") as f:
        for name in ordered:
            f.write(name + "\n")
    size = sum(code_bytes.get(n, 0) for n in ordered[:functions])
    print(
        f"order.py: {functions} functions ({size / 1024:.0f} KiB) and {len(ordered) - functions} "
        f"variables -> {args.out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
