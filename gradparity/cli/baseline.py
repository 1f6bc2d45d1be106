"""``gradparity baseline save`` and ``gradparity check``: gate CI on gradient agreement.

``baseline save`` runs suites and writes a baseline file (`gradparity.ci.baseline`): every
spec, the backends and tolerances, and per tensor the status and error metrics.
``check`` runs the baseline's cases again and exits 1 on a regression: a new ``fail`` or
``error``, a new reason code, a missing or new row, or a tensor that got less accurate
against the oracle than both ``factor`` times its baseline error and this machine's
rounding budget. Both exit 2 with a one-line message on a usage or file problem.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from gradparity.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    EXIT_USAGE,
    add_cache_option,
    apply_cache_option,
    csv_list,
    factor_option,
)
from gradparity.cli.run import case_progress, select_run, status_counts_text
from gradparity.core.errors import UsageError
from gradparity.core.processes import concurrent_default

#: Shown in --help; the value lives in gradparity.ci.baseline.DEFAULT_FACTOR (a test checks).
_FACTOR_HELP = "4"


def register(sub: argparse._SubParsersAction) -> None:
    base = sub.add_parser(
        "baseline", help="save a baseline of per-tensor metrics to check later runs against",
        description="Baselines of gradient agreement. 'gradparity baseline save' runs suites "
        "and writes the file that 'gradparity check --baseline FILE' compares with.")
    actions = base.add_subparsers(dest="baseline_command", parser_class=type(base),
                                  metavar="{save}")
    save = actions.add_parser(
        "save", help="run suites and write a baseline file",
        description="Run suites (built-in names or TOML files) and write a baseline: every "
        "spec (with explicit data), the backends, the tolerances, the environment and, per "
        "tensor, the status, the reason code and the errors against the oracle of the "
        "backend and of the reference. JSON text, "
        "one case or row per line, written atomically.")
    save.add_argument("suites", nargs="*", default=["default"], metavar="SUITE_OR_FILE",
                      help="built-in suite name or .toml file (default: default)")
    save.add_argument("--out", required=True, metavar="FILE", help="the baseline file")
    save.add_argument("--force", action="store_true", help="replace an existing FILE")
    save.add_argument("--results", metavar="DIR",
                      help="also write the run's result folder, as 'gradparity run --out DIR' "
                      "would (same run, same files)")
    save.add_argument("--backends", type=csv_list, action="extend", metavar="NAMES",
                      help="comma-separated backends (default: the suite file's, or "
                      "torch,jax)")
    save.add_argument("--dtypes", type=csv_list, action="extend", metavar="DTYPES",
                      help="keep only cases of these dtypes (float32,float64)")
    save.add_argument("--rtol", type=float, help="override rtol for every dtype")
    save.add_argument("--atol", type=float, help="override atol for every dtype")
    save.add_argument("--policy", default="allclose", metavar="POLICY",
                      help="verdict policy: allclose (default) or calibrated (see "
                      "'gradparity run --help'); 'check' uses the baseline's")
    save.add_argument("--kernels", default="auto", metavar="auto|none|NAMES",
                      help="also run the cases under other kernel configurations of this "
                      "CPU and keep, per tensor, the largest error and the worst status, so "
                      "that checks hold on CPUs that run those kernels: 'auto' (default) "
                      "runs this CPU's others among stock, avx2 (with AVX-512) and legacy "
                      "(no FMA: torch without vector kernels, XLA limited to SSE4.2, "
                      "OpenBLAS Nehalem, one thread); 'none' keeps this run only; or "
                      "comma-separated names of 'gradparity list'")
    add_cache_option(save)
    save.add_argument("-q", "--quiet", action="store_true", help="no per-case progress")
    save.set_defaults(handler=cmd_save)

    def bare(args: argparse.Namespace) -> int:
        print("gradparity baseline: error: expected a sub-command: save (see gradparity "
              "baseline --help)", file=sys.stderr)
        return EXIT_USAGE

    base.set_defaults(handler=bare)

    check = sub.add_parser(
        "check", help="run a baseline's cases again; exit 1 if agreement got worse",
        description="Run the cases of a baseline file again (its specs, backends and "
        "tolerances) and compare: exit 1 on a new fail/error, a new reason code, a missing "
        "or new row, or an error against the oracle (err_oracle_eps, worst_oracle_eps) "
        "above max(FACTOR x baseline error, 4 x reference error now + 16 eps): less "
        "accurate than before and than this machine's rounding budget. Says first what "
        "differs between the baseline's environment and this one (versions, BLAS, CPU, "
        "SIMD features, kernel variables, threads).")
    check.add_argument("--baseline", metavar="FILE", help="the baseline file")
    check.add_argument("--factor", type=float, metavar="F",
                       help=f"allowed growth of an error metric (default: {_FACTOR_HELP})")
    check.add_argument("--out", metavar="DIR",
                       help="also write this run's result folder (table.csv, summary.md...)")
    add_cache_option(check)
    check.add_argument("-q", "--quiet", action="store_true", help="no per-case progress")
    from gradparity.cli.model_check import add_arguments

    add_arguments(check)
    check.set_defaults(handler=cmd_check)


def _source(args: argparse.Namespace) -> str:
    """The command that made the baseline, without the output path (deterministic)."""
    parts = ["gradparity", "baseline", "save", *args.suites]
    for flag in ("backends", "dtypes"):
        if getattr(args, flag):
            parts += [f"--{flag}", ",".join(getattr(args, flag))]
    for flag in ("rtol", "atol"):
        if getattr(args, flag) is not None:
            parts += [f"--{flag}", repr(getattr(args, flag))]
    if args.policy != "allclose":
        parts += ["--policy", args.policy]
    return " ".join(parts)


def kernels_option(value: str) -> dict[str, dict[str, str]]:
    """``--kernels``: ``{name: variables}`` of the other configurations to run under."""
    from gradparity.ci.kernels import other_configurations
    from gradparity.experiments.environment import kernel_configurations

    if value.strip() == "auto":
        return other_configurations()
    if value.strip() == "none":
        return {}
    known = kernel_configurations()
    names = csv_list(value)
    for name in names:
        if name not in known:
            raise UsageError(f"--kernels={value!r}: {name!r} is not a kernel configuration "
                             f"of this CPU; expected auto, none or names among "
                             f"{', '.join(known)}")
    if not names:
        raise UsageError(f"--kernels={value!r}: expected auto, none or configuration names")
    return {n: known[n] for n in names}


def cmd_save(args: argparse.Namespace) -> int:
    from gradparity.experiments.io import check_output_file, check_output_folder

    out = check_output_file(args.out)
    if out.exists() and not args.force:
        raise UsageError(f"--out={args.out!r}: the file exists; use --force to replace it")
    if args.results is not None:
        check_output_folder(args.results, option="--results")
    kernels = kernels_option(args.kernels)
    specs, labels, backends, tolerances = select_run(args)
    backends = list(dict.fromkeys(backends))
    apply_cache_option(args)

    from gradparity.ci.baseline import save_baseline
    from gradparity.ci.kernels import make_baseline
    from gradparity.judge.status import FAILING

    def said(line: str) -> None:
        if not args.quiet:
            print(line, file=sys.stderr, flush=True)

    baseline, table, others = make_baseline(
        specs, backends=backends, tolerances=tolerances, policy=args.policy,
        source=_source(args), progress=case_progress(args.quiet), kernels=kernels,
        kernel_progress=said, concurrent=concurrent_default())
    save_baseline(baseline, out, force=args.force)
    if args.results:
        from gradparity.experiments.report import write_results

        write_results(table, args.results, name="+".join(labels), kernels=others)
    print(f"baseline: {len(baseline.cases)} cases, {len(baseline.rows)} rows "
          f"({status_counts_text(table)}) -> {out}")
    if others:
        print(f"baseline: errors and statuses are the worst over this run and the runs "
              f"under kernels {', '.join(others)}")
    if args.results:
        print(f"results: {args.results}/")
    failing = int(table["status"].isin(FAILING).sum())
    if failing:
        print(f"gradparity baseline: note: the baseline records {failing} failing rows; "
              "'check' flags only new ones", file=sys.stderr)
    return EXIT_OK


def cmd_check(args: argparse.Namespace) -> int:
    if args.torch is not None or args.jax is not None:
        from gradparity.cli.model_check import cmd_model_check

        return cmd_model_check(args)
    if args.baseline is None:
        raise UsageError("check: give --baseline FILE, or your model with --torch MODULE:ATTR "
                         "or --jax MODULE:FN")
    for flag in ("loss", "params", "head", "dtype", "batch", "backends", "rtol", "atol"):
        if getattr(args, flag) is not None:
            raise UsageError(f"--{flag}: used with --torch or --jax only")
    from gradparity.ci.baseline import (
        COMPARED_METRICS,
        compare_with_baseline,
        differing_keys,
        environment_differences,
        format_regressions,
        load_baseline,
        regression_counts,
        rerun_baseline,
        rerunnable,
    )
    from gradparity.experiments.environment import environment

    factor = factor_option(args.factor)
    if args.out is not None:
        from gradparity.experiments.io import check_output_folder

        check_output_folder(args.out)
    apply_cache_option(args)
    baseline = load_baseline(args.baseline)
    runnable, notes = rerunnable(baseline)
    for note in notes:
        print(f"gradparity check: note: {note}", file=sys.stderr)
    if not runnable.cases:
        raise UsageError(f"--baseline={args.baseline!r}: no case can be run again")

    table = rerun_baseline(runnable, progress=case_progress(args.quiet),
                           concurrent=concurrent_default())
    if args.out:
        from gradparity.experiments.report import write_results

        write_results(table, args.out, name=Path(args.out).name)
    now = table.attrs.get("environment") or environment()
    for line in environment_differences(baseline.environment, now):
        print(f"environment differs from the baseline: {line}")
    machine = differing_keys(baseline.environment, now)
    reg = compare_with_baseline(runnable, table, factor=factor, machine=machine)
    what = (f"{len(runnable.cases)} cases, {len(runnable.rows)} baseline rows, factor "
            f"{factor:g} on {', '.join(COMPARED_METRICS)}")
    if baseline.kernels:
        what += f"; baseline errors over its run and kernels {', '.join(baseline.kernels)}"
    if reg.empty:
        print(f"check: no regression against {args.baseline} ({what})")
        return EXIT_OK
    print(f"regressions against {args.baseline} (before: the baseline, after: this run; "
          "errors in eps against the oracle; limit: max(factor x before, rounding budget "
          "now)):")
    print(format_regressions(reg), end="")
    print(f"check: {regression_counts(reg)} ({what})")
    return EXIT_FAIL
