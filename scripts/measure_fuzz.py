"""Detection of injected faults by ``gradparity fuzz``: for every fault of the self-test
and every corner fault, search a backend with that fault (the reference's copy) with the
default budget and several seeds; print the detection rate, the median number of cases and
seconds until the first counterexample, and the largest shrunk case.

    OMP_NUM_THREADS=1 python scripts/measure_fuzz.py [--seeds 3] [--budget 300] [--faults a,b]
"""

from __future__ import annotations

import argparse
import statistics

from gradparity.cli.fuzz import DEFAULT_BUDGET
from gradparity.fuzz.faulty import FaultyBackend
from gradparity.fuzz.report import hidden_units
from gradparity.fuzz.search import search
from gradparity.judge.tolerances import resolve_tolerances
from gradparity.selftest.faults import ALL_FAULTS


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--budget", type=int, default=DEFAULT_BUDGET)
    p.add_argument("--faults", default=",".join(ALL_FAULTS))
    args = p.parse_args()
    tol = resolve_tolerances()
    print("| fault | found | median cases to find | median s to find | "
          "largest shrunk case (hidden units, batch) |")
    print("|---|---|---|---|---|")
    for fault in args.faults.split(","):
        found, cases, secs, hidden, batch = 0, [], [], 0, 0
        for seed in range(args.seeds):
            r = search([FaultyBackend(fault)], budget=args.budget, seed=seed, tolerances=tol)
            fails = [c for c in r.counterexamples if c.status == "fail"]
            if fails:
                found += 1
                c = min(fails, key=lambda c: c.found_at_example)
                cases.append(c.found_at_example)
                secs.append(c.found_after_s)
                hidden = max(hidden, max(hidden_units(f.spec) for f in fails))
                batch = max(batch, max(f.spec.batch for f in fails))
        med = (f"{statistics.median(cases):g}", f"{statistics.median(secs):.1f}") if cases \
            else ("", "")
        print(f"| {fault} | {found}/{args.seeds} | {med[0]} | {med[1]} | "
              f"{hidden}, {batch} |", flush=True)


if __name__ == "__main__":
    main()
