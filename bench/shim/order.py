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

With `--map` (lld's link map of the same binary) and `--script`, also a linker script for the
read-only data the runs read. Most of it cannot be named in the order file: string and table
constants are anonymous (`.rodata..Lanon.<hash>.<n>`, `.Lswitch.table.*`), merged constant
pools (`.rodata.str1.1`, `.rodata.cst16`) belong to no symbol, and glibc's start-up tables sit
in its objects' plain `.rodata`. The script names their input sections instead and gathers them
in one output section, `.rodata.hot`, inserted (followed by the rest of `.rodata`) before
`.gcc_except_table`, so that it shares
the ELF headers' fault-around window instead of spreading over a dozen. Sections the linker
does not find match nothing, like missing symbols.

A trace sees the constants of the runs it traced; other arguments, another weekday file or
another tool touch their neighbours (other grammar entries, other names). So the script also
takes, after the hot ones, every other anonymous constant of each module (`<hash>`) that
had a hot one, when that module's constants are small in total (MODULE_BUDGET): the grammar
tables and the shim's own modules, not std's 80 KiB.
"""

import argparse
import bisect
import re
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


# A line of lld's map: VMA, LMA, size, alignment, then the name indented by its level
# (8 spaces for an input section, 16 for a symbol).
MAP_LINE = re.compile(r"^\s*([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+)\s+([0-9a-f]+) (\s*)(.*)$")
# Output sections whose inputs the script may gather: read-only data only.
READ_ONLY_DATA = (".rodata", ".rodata.hot")
# The most bytes of a module's anonymous constants gathered whole (see above).
MODULE_BUDGET = 40 * 1024
ANON = re.compile(r"^\.rodata\.\.Lanon\.([0-9a-f]+)\.\d+$")
# Input section names a linker script can quote as they are.
PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.$-]+$")


def read_only_sections(map_path):
    """(address, size, pattern, merged) for every input section of the read-only data, where
    pattern is how a linker script names it and merged says it is a pool lld merges."""
    out, current = [], None
    with open(map_path) as f:
        for line in f:
            m = MAP_LINE.match(line)
            if not m:
                continue
            addr, size, indent, name = int(m[1], 16), int(m[3], 16), len(m[5]), m[6]
            if indent == 0:
                current = name
            elif indent == 8 and current in READ_ONLY_DATA and size:
                file, _, section = name.rpartition(":(")
                section = section[:-1]
                if not PLAIN_NAME.match(section):
                    continue
                merged = file == "<internal>"
                if merged or re.match(r"^\.rodata\..+", section) and not re.match(
                    r"^\.rodata\.(str|cst)\d", section
                ):
                    # Named after its symbol (or a merged pool): unique enough on its own.
                    pattern = f"*({section})"
                else:
                    # A plain `.rodata` (glibc): name the archive member, `*libc.a:sysconf.o`.
                    m2 = re.match(r"^.*/([^/]+\.a)\(([^)]+)\)$", file)
                    if not m2 or not PLAIN_NAME.match(m2[2]):
                        continue
                    pattern = f"*{m2[1]}:{m2[2]}({section})"
                out.append((addr, size, pattern, merged))
    out.sort()
    return out


def write_script(path, patterns):
    with open(path, "w") as f:
        f.write(
            "/* Generated by bench/shim/order.sh (order.py): the read-only data the shim's hot\n"
            "   path reads, gathered after the ELF headers (see build.rs). Do not edit. */\n"
            "SECTIONS\n{\n  .rodata.hot : {\n"
        )
        for p in patterns:
            f.write(f"    {p}\n")
        # `.rodata` named right after it: left to lld as an orphan, it was sometimes placed in
        # front of `.rodata.hot`, 600 KiB away from the headers, which cost two more faults.
        # `.eh_frame` right behind it: the C start-up code registers it (libgcc's
        # `__register_frame_info` reads its first word), one more fault where lld puts it.
        f.write(
            "  }\n"
            "  .eh_frame : { KEEP(*(.eh_frame)) }\n"
            "  .rodata : { *(.rodata .rodata.*) }\n"
            "}\nINSERT BEFORE .gcc_except_table;\n"
        )


def extend_script(script, map_path, fault_files, dry_run=False):
    """Adds to an existing script the read-only sections that still fault (addresses in the
    binary linked with it, named by its map), first. perf reports only the first touch of each
    fault-around window, so a section hidden behind another in the old layout shows up only
    once the layout has changed; one round of this catches those."""
    rodata = read_only_sections(map_path)
    starts = [r[0] for r in rodata]
    with open(script) as f:
        existing = [l.strip() for l in f if l.startswith("    ")]
    added = []
    for path in fault_files:
        with open(path) as f:
            for line in f:
                try:
                    addr = int(line.split()[0], 16)
                except (IndexError, ValueError):
                    continue
                i = bisect.bisect_right(starts, addr) - 1
                if i >= 0 and addr < rodata[i][0] + rodata[i][1]:
                    pattern = rodata[i][2]
                    if pattern not in existing and pattern not in added:
                        added.append(pattern)
    if added and not dry_run:
        write_script(script, added + existing)
    print(f"order.py: {len(added)} more read-only sections for {script}", file=sys.stderr)
    return len(added)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--binary")
    ap.add_argument("--rips", nargs="*", default=[])
    ap.add_argument("--data", nargs="*", default=[])
    ap.add_argument("--out")
    ap.add_argument(
        "--extend-script",
        metavar="SCRIPT",
        help="only add the sections --faults still hits to SCRIPT (with the --map of the "
        "binary linked with it); exits 0 if it added any, 1 if none",
    )
    ap.add_argument("--dry-run", action="store_true", help="with --extend-script: only tell")
    ap.add_argument("--map", help="lld's link map of --binary (TALLY_LINK_MAP)")
    ap.add_argument("--script", help="where to write the linker script (needs --map)")
    ap.add_argument(
        "--faults",
        nargs="*",
        default=[],
        help="page-fault addresses of the same runs (perf script -F addr), for the read-only "
        "data the kernel reads on the process's behalf (system call arguments), which lackey "
        "does not see",
    )
    args = ap.parse_args()
    if args.extend_script:
        added = extend_script(args.extend_script, args.map, args.faults, args.dry_run)
        sys.exit(0 if added else 1)
    if not args.binary or not args.out:
        ap.error("--binary and --out are needed")
    rodata = read_only_sections(args.map) if args.map and args.script else []
    rodata_starts = [r[0] for r in rodata]
    hot, merged_pools, seen_sections = [], [], set()
    code, data = symbols(args.binary)
    code_starts = [c[0] for c in code]
    data_starts = [d[0] for d in data]
    ordered, seen = [], set()
    code_bytes = {name: size for _, size, name in code}

    def add(name):
        if name is not None and name not in seen:
            seen.add(name)
            ordered.append(name)

    def add_read_only(addr):
        i = bisect.bisect_right(rodata_starts, addr) - 1
        if i >= 0 and addr < rodata[i][0] + rodata[i][1]:
            _, _, pattern, merged = rodata[i]
            if pattern not in seen_sections:
                seen_sections.add(pattern)
                (merged_pools if merged else hot).append(pattern)

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
                    add_read_only(addr)
    for path in args.faults:
        with open(path) as f:
            for line in f:
                try:
                    add_read_only(int(line.split()[0], 16))
                except (IndexError, ValueError):
                    pass
    with open(args.out, "w") as f:
        for name in ordered:
            f.write(name + "\n")
    if args.script:
        # The cold rest of the modules that had hot constants, where small enough.
        module_bytes, module_sections = {}, {}
        for _, size, pattern, _ in rodata:
            m = ANON.match(pattern[2:-1])
            if m:
                module_bytes[m[1]] = module_bytes.get(m[1], 0) + size
                module_sections.setdefault(m[1], []).append(pattern)
        hot_modules = []
        for pattern in hot:
            m = ANON.match(pattern[2:-1])
            if m and m[1] not in hot_modules and module_bytes[m[1]] <= MODULE_BUDGET:
                hot_modules.append(m[1])
        neighbours = [
            p for h in hot_modules for p in module_sections[h] if p not in seen_sections
        ]
        # The hot named sections first, then the merged pools (all strings of the binary),
        # then the neighbours, so the first window holds as much of the hot data as it can.
        write_script(args.script, hot + merged_pools + neighbours)
        sizes = {p: s for _, s, p, _ in rodata}
        print(
            f"order.py: {len(hot)} read-only sections, {len(merged_pools)} merged pools and "
            f"{len(neighbours)} neighbours from {len(hot_modules)} modules "
            f"({sum(sizes[p] for p in hot + merged_pools + neighbours) / 1024:.0f} KiB) "
            f"-> {args.script}",
            file=sys.stderr,
        )
    size = sum(code_bytes.get(n, 0) for n in ordered[:functions])
    print(
        f"order.py: {functions} functions ({size / 1024:.0f} KiB) and {len(ordered) - functions} "
        f"variables -> {args.out}",
        file=sys.stderr,
    )


if __name__ == "__main__":
    main()
