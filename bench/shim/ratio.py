#!/usr/bin/env python3
"""What each variant of an interleave.py run adds, and its ratio to a reference, with a 95%
confidence interval.

interleave.py runs every variant once per round; this pairs them by round: "added" is the
median over rounds of (variant - baseline) in the same round, which cancels this VM's slow
drifts between fast and slow states (they move every variant of a round alike). The ratio is
added(variant) / added(reference); its interval comes from resampling the rounds (bootstrap,
400 resamples). In front of the real rustc, whose own run time varies by milliseconds, the
interval is wide, and says how far the ratio can be trusted.

Usage: ratio.py RUN.json BASELINE REFERENCE
"""

import json
import random
import statistics
import sys


def main():
    path, base, ref = sys.argv[1:4]
    times = json.load(open(path))["times"]
    baseline = times[base]["wall_ms"]
    rounds = range(len(baseline))

    def added(name):
        return [v - b for v, b in zip(times[name]["wall_ms"], baseline)]

    reference = added(ref)
    random.seed(1)
    resamples = [random.choices(rounds, k=len(baseline)) for _ in range(400)]
    print(f"  paired over {len(baseline)} rounds (added = variant - {base}, same round):")
    for name in times:
        if name in (base, ref):
            continue
        a = added(name)
        ratios = sorted(
            statistics.median(a[i] for i in s) / statistics.median(reference[i] for i in s)
            for s in resamples
        )
        print(
            f"  {name:18s} adds {statistics.median(a):.3f} ms, {ref} {statistics.median(reference):.3f} ms: "
            f"{statistics.median(a) / statistics.median(reference):.2f}x "
            f"(95% CI {ratios[10]:.2f}x to {ratios[389]:.2f}x)"
        )


if __name__ == "__main__":
    main()
