#!/usr/bin/env python3
"""Where a shim run's time goes, system call by system call, and which pages it faults in.

Input: `perf script --ns -F comm,pid,time,event,trace` of a recording with the tracepoints
`raw_syscalls:sys_enter`, `raw_syscalls:sys_exit` and `exceptions:page_fault_user`, of many runs
of one command that execs once more (the shim, or a C program that execs the tool):

    perf record -q -o rec -e raw_syscalls:sys_enter,raw_syscalls:sys_exit,exceptions:page_fault_user \\
        -- sh -c 'for i in $(seq 300); do rustc --version >/dev/null; done'
    perf script --ns -i rec -F comm,pid,time,event,trace > rec.txt
    python3 bench/shim/phases.py rec.txt

For each process, the phase measured is from the end of its first `execve` (the shim starting)
to the start of its second (the hand-over to the tool). Printed: the medians over runs (the
first 20 skipped) of each system call's duration and of the time before it (user code and page
faults), then the page faults per run by region and kind. Tracing adds about a microsecond to
every event, so compare recordings of the same kind, not these times with interleave.py's.

Fault kinds (x86 error code): 0x4 read of an unmapped page, 0x6 write to one, 0x7 write to a
page mapped read-only (copy on write, or a shared file page made writable), 0x14 instruction
fetch. Regions: `img:<page>` the binary's own pages (4 KiB page number), `heap`, `stack`,
`mmap/vdso` (the counter file, the vDSO and its data page).
"""

import collections
import re
import statistics
import sys

NAMES = {
    0: "read", 3: "close", 9: "mmap", 10: "mprotect", 11: "munmap", 12: "brk", 21: "access",
    39: "getpid", 59: "execve", 79: "getcwd", 89: "readlink", 157: "prctl", 158: "arch_prctl",
    218: "set_tid_address", 257: "openat", 262: "newfstatat", 273: "set_robust_list",
    302: "prlimit64", 318: "getrandom", 332: "statx", 334: "rseq",
}
EVENT = re.compile(r"^\s*(.+?)\s+(\d+)\s+([\d.]+):\s+(\S+):\s+(.*)$")
FAULT = re.compile(r"address=(0x[0-9a-f]+) ip=0x[0-9a-f]+ error_code=(0x[0-9a-f]+)")
SKIP = 20


def phases(path):
    """Per process: the list of (kind, detail, duration, gap-before) of its shim phase."""
    state, done = {}, []
    for line in open(path):
        m = EVENT.match(line)
        if not m:
            continue
        _, pid, t, event, rest = m.groups()
        t = float(t) * 1e6
        s = state.setdefault(pid, {"execs": 0, "events": None, "last": None, "enter": None})
        nr = re.search(r"NR (-?\d+)", rest)
        nr = int(nr.group(1)) if nr else None
        if event == "raw_syscalls:sys_enter":
            if s["events"] is not None and nr == 59:
                s["events"].append(("exec", "", 0.0, t - s["last"]))
                done.append(s["events"])
                s["events"] = None
            elif s["events"] is not None:
                s["enter"] = (nr, t, t - s["last"])
        elif event == "raw_syscalls:sys_exit":
            if nr == 59:
                s["execs"] += 1
                if s["execs"] == 1:
                    s["events"] = []
            elif s["events"] is not None and s["enter"] and s["enter"][0] == nr:
                enr, et, gap = s["enter"]
                s["events"].append(("sys", NAMES.get(enr, str(enr)), t - et, gap))
                s["enter"] = None
            s["last"] = t
        elif event.startswith("exceptions:page_fault") and s["events"] is not None:
            f = FAULT.search(rest)
            if f:
                s["events"].append(("fault", (int(f.group(1), 16), f.group(2)), 0.0, 0.0))
    return done[SKIP:]


def region(address):
    if address >= 0x7F0000000000:
        return "stack" if address >= 0x7FF000000000 else "mmap/vdso"
    if address >= 0x1000000:
        return "heap"
    return f"img:{address >> 12:x}"


def main():
    runs = phases(sys.argv[1])
    if not runs:
        sys.exit("phases.py: no complete shim phase in the recording")
    calls = [[e for e in r if e[0] != "fault"] for r in runs]
    shapes = collections.Counter(tuple(e[1] for e in c) for c in calls)
    shape, count = shapes.most_common(1)[0]
    same = [c for c in calls if tuple(e[1] for e in c) == shape]
    totals = [sum(e[2] + e[3] for e in c) for c in same]
    print(f"{len(runs)} runs ({count} with the most common sequence of system calls); "
          f"phase median {statistics.median(totals):.1f} us")
    for i, name in enumerate(shape):
        duration = statistics.median(c[i][2] for c in same)
        gap = statistics.median(c[i][3] for c in same)
        label = name or "(to the exec)"
        print(f"  {i:2} {label:<18} {duration:6.2f} us   before it {gap:6.2f} us")
    faults = collections.Counter()
    for r in runs:
        for e in r:
            if e[0] == "fault":
                faults[(region(e[1][0]), e[1][1])] += 1
    per_run = sum(faults.values()) / len(runs)
    print(f"page faults per run: {per_run:.1f}")
    for (where, kind), n in sorted(faults.items()):
        if n / len(runs) >= 0.1:
            print(f"  {where:<12} {kind:<5} {n / len(runs):.2f}")


if __name__ == "__main__":
    main()
