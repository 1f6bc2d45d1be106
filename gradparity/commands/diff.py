"""``gradparity diff A B``: how two results differ, tensor by tensor, in oracle eps.

A and B are result folders (``gradparity run --out``) or baseline files, e.g. the same suite
on two machines, two torch versions, or before and after a change. Exit 0 when every
tensor is the same or within the rounding budget, 1 when a tensor changed beyond it, a
status changed or a row is on one side only, 2 on a usage or file problem.
"""

from __future__ import annotations

import argparse
import math
from collections import Counter

from gradparity.commands.common import EXIT_FAIL, EXIT_OK
from gradparity.errors import UsageError


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "diff", help="compare two result folders or baselines, tensor by tensor",
        description="Compare two results (result folders of 'gradparity run', or baseline "
        "files): which tensors changed, by how much against each side's oracle (in eps), "
        "which changes stay within the rounding budget (max(FACTOR x the other side's "
        "error, 4 x own reference error + 16 eps), both ways) and which do not, and what "
        "differs between the two environments. Exit 0 when nothing changed beyond the "
        "budget, 1 otherwise.")
    p.add_argument("a", metavar="A", help="result folder or baseline file (before)")
    p.add_argument("b", metavar="B", help="result folder or baseline file (after)")
    p.add_argument("--factor", type=float, metavar="F",
                   help="allowed ratio between the two errors beyond the budget (default: 4)")
    p.add_argument("--csv", metavar="FILE", help="also write every tensor's row to FILE")
    p.add_argument("--limit", type=int, default=40, metavar="N",
                   help="changed tensors to print (default: 40)")
    p.set_defaults(handler=cmd_diff)


def cmd_diff(args: argparse.Namespace) -> int:
    from gradparity.baseline import (
        DEFAULT_FACTOR,
        diff_results,
        environment_differences,
        format_diff,
        load_comparable,
    )

    factor = DEFAULT_FACTOR if args.factor is None else args.factor
    if not (math.isfinite(factor) and factor >= 1.0):
        raise UsageError(f"--factor={args.factor!r}: expected a finite number >= 1")
    if args.limit < 0:
        raise UsageError(f"--limit={args.limit!r}: expected an integer >= 0")
    if args.csv is not None:
        from gradparity.io import check_output_file

        check_output_file(args.csv, option="--csv")
    a = load_comparable(args.a, option="A")
    b = load_comparable(args.b, option="B")
    diff = diff_results(a.rows, b.rows, factor=factor)
    for line in environment_differences(a.environment, b.environment,
                                        labels=("in A", "in B")):
        print(f"environment differs: {line}")
    counts = Counter(diff["change"])
    print(format_diff(diff, limit=args.limit), end="")
    if args.csv is not None:
        from gradparity.io import text_writer, write_file_atomically

        write_file_atomically(args.csv, text_writer(diff.to_csv(index=False)))
    parts = [f"{counts[c]} {c.replace('_', ' ')}" for c in
             ("same", "within_budget", "beyond_budget", "status", "only_a", "only_b")
             if counts[c]]
    print(f"diff: {len(diff)} tensors: {', '.join(parts) or 'none'} "
          f"(A: {a.label}, B: {b.label}; errors against each side's oracle, in eps; "
          f"factor {factor:g})")
    bad = sum(counts[c] for c in ("beyond_budget", "status", "only_a", "only_b"))
    return EXIT_FAIL if bad else EXIT_OK
