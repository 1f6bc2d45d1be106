"""``gradparity report``: the HTML report of a result folder; ``gradparity tolerances``:
the tolerances a run supports."""

from __future__ import annotations

import argparse
from pathlib import Path

from gradparity.cli.common import EXIT_OK


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "report", help="write the HTML report of a result folder (figures embedded)",
        description="Write one self-contained HTML file: statuses, tolerances, a heatmap of "
        "every gradient's error per backend, error growth, backend vs reference error with "
        "the calibrated rule, the worst cases, a debug session's table, the environment. "
        "Given two folders A B, the report is B's with the diff of A and B (as 'gradparity "
        "diff A B'). Needs the report extra (matplotlib).")
    p.add_argument("folders", nargs="+", metavar="RESULT_DIR",
                   help="result folder (of 'gradparity run' or 'gradparity debug --out'); "
                   "with two, A B: B's report with the diff against A")
    p.add_argument("--out", metavar="FILE",
                   help="the HTML file to write (default: RESULT_DIR/report.html)")
    p.set_defaults(handler=cmd_report)

    t = sub.add_parser(
        "tolerances", help="tolerances under which every row of a result passes",
        description="Per dtype x head x loss form x quantity x backend: the errors in eps "
        "against the oracle and the reference (median / p99 / max) and the smallest rtol "
        "(atol = 0) and atol (rtol = 0) under which every row passes; then one rtol/atol "
        "pair per dtype as [tolerances.<dtype>] TOML and assert_grads_match arguments.")
    t.add_argument("folder", metavar="RESULT_DIR", help="result folder of 'gradparity run'")
    t.add_argument("--quantile", type=float, default=1.0, metavar="Q",
                   help="derive tolerances from this share of the rows (default 1: every "
                   "row passes)")
    t.add_argument("--by-depth", action="store_true", help="also split groups by depth")
    t.set_defaults(handler=cmd_tolerances)


def cmd_report(args: argparse.Namespace) -> int:
    from gradparity.core.errors import UsageError
    from gradparity.experiments.figures import require_matplotlib
    from gradparity.experiments.io import check_output_file, text_writer, write_file_atomically

    if len(args.folders) > 2:
        raise UsageError(f"RESULT_DIR={args.folders[2]!r}: expected one folder, or two (A B)")
    require_matplotlib()
    folder = Path(args.folders[-1])
    out = Path(args.out) if args.out is not None else folder / "report.html"
    check_output_file(out, option="--out")
    from gradparity.report.page import folder_report

    before = args.folders[0] if len(args.folders) == 2 else None
    text = folder_report(folder, before=before)
    write_file_atomically(out, text_writer(text))
    print(f"report: {out}")
    return EXIT_OK


def cmd_tolerances(args: argparse.Namespace) -> int:
    import pandas as pd

    from gradparity.experiments.io import read_result
    from gradparity.experiments.tolerance_report import (
        check_quantile,
        suggest_tolerances,
        tolerance_table,
    )

    q = check_quantile(args.quantile)
    df = read_result(args.folder)
    table = tolerance_table(df, quantile=q, by_depth=args.by_depth)
    tol = suggest_tolerances(df, quantile=q)
    with pd.option_context("display.max_rows", None, "display.width", 200,
                           "display.float_format", "{:.3g}".format):
        print(table.to_string(index=False) if not table.empty else "(no compared row)")
    print()
    share = "every row" if q == 1 else f"the {q:g} quantile of the rows"
    print(f"# tolerances under which {share} of {args.folder} passes allclose "
          "(kink and saturation rows left out)")
    print(tol.toml().rstrip())
    print()
    for line in tol.assert_arguments().splitlines():
        print(f"# {line}")
    for dtype, n in tol.left_out.items():
        if n:
            print(f"# {dtype}: {n} rows left out as real disagreements (mismatch, "
                  "convention, nonfinite)")
    return EXIT_OK
