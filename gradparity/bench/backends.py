"""Time per backend per case, compilation apart: ``python -m gradparity.bench.backends``.

Every backend computes the gradients of every case twice in a row: the first call pays
for tracing and compiling a new graph (jax's jit per input shapes, torch.compile's
inductor per structure, and whatever a transform builds), the second is the warm run
time a user sees once the graph exists. ``compile`` is first minus warm. Kink conventions
are measured (and compiled) before the clock starts. Threads are pinned to one as in
`gradparity.bench.run`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

import pandas as pd

#: The columns of `time_backends`' table.
COLUMNS = ("case_id", "backend", "first_s", "warm_s", "compile_s")


def time_backends(specs: Sequence, backends: Sequence[str]) -> pd.DataFrame:
    """One row per case x available backend: first call, warm call and their
    difference (the one-off cost of building the backend's graph), in seconds."""
    from gradparity.adapters.base import CaseNotSupported
    from gradparity.adapters.registry import get_backend
    from gradparity.reference.case import make_case

    adapters = [get_backend(b) for b in backends]
    adapters = [b for b in adapters if b.available()]
    rows = []
    for spec in specs:
        case = make_case(spec)
        for b in adapters:
            b.kink_conventions(spec.dtype)
            t0 = time.perf_counter()
            try:
                b.gradients(case)
            except CaseNotSupported:  # e.g. forward mode on a large network: not timed
                continue
            t1 = time.perf_counter()
            b.gradients(case)
            t2 = time.perf_counter()
            first, warm = t1 - t0, t2 - t1
            rows.append({"case_id": spec.case_id, "backend": b.name, "first_s": first,
                         "warm_s": warm, "compile_s": max(first - warm, 0.0)})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def summary(times: pd.DataFrame) -> pd.DataFrame:
    """Per backend: cases, median warm time per case, median and total compile time."""
    g = times.groupby("backend", sort=False)
    return pd.DataFrame({
        "cases": g.size(),
        "warm_ms_median": 1e3 * g["warm_s"].median(),
        "warm_ms_max": 1e3 * g["warm_s"].max(),
        "compile_s_median": g["compile_s"].median(),
        "compile_s_total": g["compile_s"].sum(),
    }).reset_index()


def main(argv: list[str] | None = None) -> int:
    from gradparity.bench.run import _load, _pin_and_reexec

    args_list = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m gradparity.bench.backends",
                                description=__doc__)
    p.add_argument("suite", nargs="?", default="quick",
                   help="built-in suite (default: quick)")
    p.add_argument("--backends", default="torch,jax,torch.func,torch.fwd,torch.vmap,"
                   "torch.compile,jax.eager,jax.fwd,jax.checkpoint,jax.vmap",
                   help="comma-separated backends (default: all but the reference)")
    p.add_argument("--csv", metavar="FILE", help="also write the per-case times")
    args = p.parse_args(args_list)
    from gradparity.adapters.registry import BACKENDS
    from gradparity.experiments.suites import SUITES

    if args.suite not in SUITES:
        print(f"gradparity bench: suite={args.suite!r}: expected one of {', '.join(SUITES)}",
              file=sys.stderr)
        return 2
    names = [b for b in args.backends.split(",") if b]
    for b in names:
        if b not in BACKENDS:
            print(f"gradparity bench: --backends={b!r}: expected one of "
                  f"{', '.join(BACKENDS)}", file=sys.stderr)
            return 2
    _pin_and_reexec(args_list, "gradparity.bench.backends")
    from gradparity.experiments.tables import markdown_table

    print(f"# time per backend per case, suite {args.suite} ({_load()} at start; "
          "threads pinned to 1)\n")
    times = time_backends(SUITES[args.suite][0](), names)
    print(markdown_table(summary(times), index=False))
    if args.csv:
        times.to_csv(args.csv, index=False)
    print(f"({_load()} at the end)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
