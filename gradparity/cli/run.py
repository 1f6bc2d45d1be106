"""``gradparity run``: run suites on the backends and write a result folder."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

from gradparity.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    add_cache_option,
    add_cluster_options,
    apply_cache_option,
    check_backends_option,
    check_cluster_options,
    check_policy_option,
    check_tolerance_options,
    csv_list,
)
from gradparity.cli.progress import case_progress
from gradparity.core.errors import UsageError

__all__ = ["RUNS_DIR", "case_progress", "cmd_run", "register", "resolve_suites", "select_run",
           "status_counts_text"]

#: Where runs write by default: an ignored folder, never the committed results (see README).
RUNS_DIR = Path("results") / "runs"


def register(sub: argparse._SubParsersAction) -> None:
    run = sub.add_parser("run", help="run parity experiments and write a result table",
                         description="Run suites (built-in names or TOML files) on the "
                         "backends; write results/runs/<name>/{table.csv,table.parquet,"
                         "summary.md,environment.json}.")
    run.add_argument("suites", nargs="*", default=["default"], metavar="SUITE_OR_FILE",
                     help="built-in suite name (see 'gradparity list') or a .toml file; "
                     "default: default")
    run.add_argument("--backends", type=csv_list, action="extend", metavar="NAMES",
                     help="comma-separated backends to compare with the reference "
                     "(default: torch,jax; every gradient path: gradparity list)")
    run.add_argument("--dtypes", type=csv_list, action="extend", metavar="DTYPES",
                     help="keep only cases of these dtypes (float32,float64)")
    run.add_argument("--out", metavar="DIR", help="output folder (default: results/runs/<name>)")
    run.add_argument("--name", help="run name (default: the suite names joined by '+')")
    run.add_argument("--rtol", type=float, help="override rtol for every dtype")
    run.add_argument("--atol", type=float, help="override atol for every dtype")
    run.add_argument("--policy", default="allclose", metavar="POLICY",
                     help="verdict policy: allclose (default) or calibrated (error vs the "
                     "higher-precision oracle within k x the reference's own + floor)")
    run.add_argument("--layer-own", action="store_true",
                     help="also run each layer on the reference's upstream values, to "
                     "separate the error a layer introduces from the error it inherits")
    add_cluster_options(run, "run the cases")
    run.add_argument("--concurrent", action=argparse.BooleanOptionalAction, default=None,
                     help="run each framework in a worker process of its own, a case "
                     "ahead of the judging (default: on with two CPUs or more, unless "
                     "GRADPARITY_CONCURRENT=off; not with --dask, --workers or "
                     "--layer-own); the table is the same")
    add_cache_option(run)
    report = run.add_mutually_exclusive_group()
    report.add_argument("--report", action="store_true", default=None,
                        help="also write report.html (figures; needs the report extra); "
                        "default: written when matplotlib is installed, unless "
                        "GRADPARITY_REPORT=off")
    report.add_argument("--no-report", dest="report", action="store_false",
                        help="do not write report.html")
    run.add_argument("-q", "--quiet", action="store_true",
                     help="no progress (a bar on a terminal, one line per case otherwise)")

    run.set_defaults(handler=cmd_run)


def resolve_suites(names: Sequence[str]):
    from gradparity.experiments.suites import SUITES
    from gradparity.experiments.toml_suite import load_suite_file

    specs, labels, backends, tolerances = [], [], None, {}
    for name in names:
        if name.endswith(".toml") or Path(name).is_file():
            sf = load_suite_file(name)
            specs += sf.specs
            labels.append(sf.name)
            backends = backends or sf.backends
            tolerances.update(sf.tolerances)
        elif name in SUITES:
            specs += SUITES[name][0]()
            labels.append(name)
        else:
            raise UsageError(f"suite={name!r}: expected a built-in suite "
                             f"({', '.join(SUITES)}) or an existing .toml file")
    ids = set()
    unique = []
    for s in specs:
        if s.case_id not in ids:
            ids.add(s.case_id)
            unique.append(s)
    return unique, labels, backends, tolerances


def select_run(args: argparse.Namespace):
    """(specs, labels, backends, tolerances) of ``args.suites`` with ``--backends``,
    ``--dtypes``, ``--rtol``, ``--atol`` and ``--policy`` checked (``run``, ``baseline
    save``): a `UsageError` names the first bad option."""
    from gradparity.adapters.registry import DEFAULT_BACKENDS
    from gradparity.core.spec import DTYPES
    from gradparity.judge.tolerances import resolve_tolerances

    specs, labels, file_backends, file_tols = resolve_suites(args.suites)
    if args.backends is not None:
        backends = args.backends
    elif file_backends is not None:
        backends = file_backends
    else:
        backends = list(DEFAULT_BACKENDS)
    check_backends_option(backends)
    backends = list(dict.fromkeys(backends))  # each backend once, in the order given
    if args.dtypes:
        for d in args.dtypes:
            if d not in DTYPES:
                raise UsageError(f"--dtypes={d!r}: expected one of {', '.join(DTYPES)}")
        specs = [s for s in specs if s.dtype in args.dtypes]
        if not specs:
            raise UsageError(f"--dtypes={','.join(args.dtypes)}: no case of the suite has it")
    check_tolerance_options(args)
    tolerances = resolve_tolerances(file_tols, rtol=args.rtol, atol=args.atol)
    check_policy_option(args.policy)
    apply_cache_option(args)
    return specs, labels, backends, tolerances


def cmd_run(args: argparse.Namespace) -> int:
    specs, labels, backends, tolerances = select_run(args)
    name = args.name if args.name is not None else "+".join(labels)
    from gradparity.experiments.io import check_name, check_output_folder

    check_name(name, option="--name" if args.name is not None else "name")

    distributed = check_cluster_options(args)
    out = check_output_folder(RUNS_DIR / name if args.out is None else args.out)
    with_report = want_report(args.report)
    from gradparity.core.processes import concurrent_default

    concurrent = not (distributed or args.layer_own) and (
        concurrent_default() if args.concurrent is None else args.concurrent)
    if concurrent:  # the frameworks import while this process imports pandas
        from gradparity.adapters.worker import start_frameworks

        start_frameworks(backends, specs[0].dtype if specs else "float64")
    try:
        return _run_and_write(args, specs, backends, tolerances, name, out, distributed,
                              with_report, concurrent)
    finally:
        if concurrent:
            from gradparity.adapters.worker import stop

            stop()


def _run_and_write(args, specs, backends, tolerances, name, out, distributed,
                   with_report, concurrent) -> int:
    """Run the cases (on Dask when ``distributed``), write the results, print the
    outcome."""
    from gradparity.experiments.report import write_results

    options = dict(backends=backends, tolerances=tolerances,
                   progress=case_progress(args.quiet), policy=args.policy,
                   layer_own=args.layer_own)
    if distributed:
        from gradparity.experiments.distributed import open_client, run_specs_distributed

        with open_client(address=args.dask, workers=args.workers) as client:
            df = run_specs_distributed(specs, client, **options)
    else:
        from gradparity.experiments.runner import run_specs

        df = run_specs(specs, concurrent=concurrent, **options)
    extra = {}
    if with_report:
        from gradparity.experiments.io import text_writer
        from gradparity.report.page import report_html

        extra["report.html"] = text_writer(report_html(df, name=name))
    write_results(df, out, name=name, extra=extra)
    return _print_outcome(df, out)


def want_report(flag: bool | None) -> bool:
    """``--report`` (True: matplotlib must be there, else a one-line error naming the
    extra), ``--no-report`` (False), or neither: write it when matplotlib is installed,
    unless the environment variable ``GRADPARITY_REPORT`` is ``off``."""
    if flag is None:
        import importlib.util
        import os

        if os.environ.get("GRADPARITY_REPORT", "").strip().lower() == "off":
            return False
        return importlib.util.find_spec("matplotlib") is not None
    if flag:
        from gradparity.experiments.figures import require_matplotlib

        require_matplotlib()
    return flag


def status_counts_text(df) -> str:
    """``"12 pass, 1 fail"``: rows per status of a result table, in `STATUSES` order."""
    from gradparity.judge.status import STATUSES

    counts = df["status"].value_counts()
    return ", ".join(f"{counts[s]} {s}" for s in STATUSES if s in counts)


def _print_outcome(df, out: Path) -> int:
    from gradparity.judge.status import FAILING

    print(f"{df['case_id'].nunique()} cases, {len(df)} rows: {status_counts_text(df)}")
    skipped = df[df["status"] == "skipped"].drop_duplicates("backend")
    for _, r in skipped.iterrows():
        print(f"skipped {r['backend']}: {r['reason']}")
    bad = df[df["status"].isin(FAILING)]
    if not bad.empty:
        print("failures:")
        for _, r in bad.head(20).iterrows():
            where = "" if r["quantity"] == "*" else f" {r['quantity']}{r['layer']}"
            print(f"  {r['case_id']} {r['backend']}{where}: {r['status']}: {r['reason']}")
        if len(bad) > 20:
            print(f"  ... {len(bad) - 20} more rows in {out / 'table.csv'}")
    print(f"results: {out}/")
    if (df["status"] == "skipped").all():
        print("gradparity: nothing was compared: every backend was skipped (install "
              "torch/jax, or --backends reference)", file=sys.stderr)
        return EXIT_FAIL
    return EXIT_FAIL if not bad.empty else EXIT_OK


