#!/usr/bin/env python3
"""Writes seed counter files for the fuzzer, built from docs/counter-file-format.md alone
(a second, independent writer of the format). Usage: make_seeds.py OUTDIR"""
import struct, sys, os

def fnv1a32(b):
    h = 0x811C9DC5
    for c in b:
        h ^= c
        h = (h * 0x01000193) & 0xFFFFFFFF
    return h

def align32(n):
    return (n + 31) & ~31

def counter_file(counts, dropped=0):
    meta = ("program: rustc\nversion: 1.91.0\nos: linux\narch: x86_64\n"
            "week-start: 2026-11-24\nweek-end: 2026-12-01\n").encode()
    header_len = align32(48 + len(meta))
    records_start = header_len + 2048
    buf = bytearray(16384)
    heads = [0] * 512
    off = records_start
    for name, count in counts.items():
        nb = name.encode()
        size = align32(16 + len(nb))
        if off // 16384 != (off + size - 1) // 16384:
            off = (off // 16384 + 1) * 16384
        if off + size > len(buf):
            buf.extend(bytes(off + size - len(buf)))
        b = fnv1a32(nb) % 512
        struct.pack_into("<QII", buf, off, count, len(nb), heads[b])
        buf[off + 16: off + 16 + len(nb)] = nb
        heads[b] = off
        off += size
    struct.pack_into("<8sIIIIQIIII", buf, 0, b"TALLYCNT", 1, header_len, off,
                     len(counts), dropped, len(meta), 512, 16384, 0)
    buf[48:48 + len(meta)] = meta
    for i, h in enumerate(heads):
        struct.pack_into("<I", buf, header_len + 4 * i, h)
    return bytes(buf)

out = sys.argv[1]
os.makedirs(out, exist_ok=True)
seeds = {
    "empty": {},
    "small": {"rustc/edition:2021": 3, "rustc/crate-type:lib": 1},
    "many": {f"rustc/flag-{i}": i for i in range(600)},
}
for name, counts in seeds.items():
    with open(os.path.join(out, name + ".count"), "wb") as f:
        f.write(counter_file(counts, dropped=len(counts) % 3))
