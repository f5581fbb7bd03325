#!/usr/bin/env bash
# Gives each benchmarked binary a fresh copy of itself (a new file, new page-cache pages), for
# interleave.py's --refresh. Usage: refresh.sh WRITTEN... [-- READ_BACK...]
#
# Why: two byte-identical copies of the same static C program, timed in the same interleaved
# run in front of rustc, differed by 0.03 ms (bench/README.md, "Shims"): where a binary's pages
# land in memory (and in which folio sizes) gives each copy its own constant offset, as large as
# the differences the shim benchmark measures. Copying every few hundred rounds turns that
# offset into noise that averages out over the run, instead of a bias fixed for the whole run.
# The files after `--` are then written to disk and evicted from the page cache, so that their
# next `exec` reads them back from disk (the "read back" state).
set -euo pipefail
written=() read_back=() into=written
for f in "$@"; do
    if [[ $f == -- ]]; then into=read_back; continue; fi
    if [[ $into == written ]]; then written+=("$f"); else read_back+=("$f"); fi
done
for f in "${written[@]}" "${read_back[@]}"; do
    # A new inode under the same name: `cp` onto the old file would reuse its pages' slots.
    cp -p "$f" "$f.fresh"
    mv -f "$f.fresh" "$f"
done
if ((${#read_back[@]})); then
    sync
    python3 -c 'import os, sys
for f in sys.argv[1:]:
    fd = os.open(f, os.O_RDONLY)
    os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    os.close(fd)' "${read_back[@]}"
fi
