"""``gradparity selftest``: inject known faults and measure the harness's detection."""

from __future__ import annotations

import argparse
import sys

from gradparity.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    check_backends_option,
    check_policy_option,
    csv_list,
)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "selftest", help="inject known backprop faults; print detection and false-alarm rates",
        description="Inject known faults (missing 1/m, transposed W in dA, wrong activation "
        "derivative, derivative at A, sign flip, off-by-one layer, dropped bias gradient, "
        "perturbed element, transposed dW) into a copy of the reference on every case of a "
        "suite, judge them like a backend, and judge the unmodified backends too. Exit 0 "
        "when every applicable fault is detected and nothing unmodified is flagged.")
    p.add_argument("suite", nargs="?", default="default", metavar="SUITE_OR_FILE",
                   help="built-in suite name or .toml file (default: default)")
    p.add_argument("--backends", type=csv_list, action="extend", metavar="NAMES",
                   help="unmodified backends to check for false alarms (default: torch,jax; "
                   "the per-example torch.vmap and jax.vmap also get faults injected into "
                   "their per-example-to-batch step)")
    p.add_argument("--policy", default="calibrated",
                   help="calibrated (default) or allclose")
    p.add_argument("--out", metavar="DIR",
                   help="also write selftest.csv, faults.csv, false_alarms.csv and "
                   "summary.md to DIR (atomically)")
    p.add_argument("-q", "--quiet", action="store_true", help="no per-case progress")
    p.set_defaults(handler=cmd_selftest)


def cmd_selftest(args: argparse.Namespace) -> int:
    from gradparity.adapters.registry import DEFAULT_BACKENDS
    from gradparity.cli.run import resolve_suites

    check_policy_option(args.policy)
    backends = list(DEFAULT_BACKENDS) if args.backends is None else args.backends
    check_backends_option(backends)
    specs, labels, _, _ = resolve_suites([args.suite])
    if args.out is not None:
        from gradparity.experiments.io import check_output_folder

        check_output_folder(args.out)

    from gradparity.experiments.io import csv_writer, text_writer, write_folder_atomically
    from gradparity.selftest.run import run_selftest, selftest_markdown

    def progress(i, total, spec):
        if not args.quiet:
            print(f"[{i:>{len(str(total))}}/{total}] {spec.case_id}", file=sys.stderr,
                  flush=True)

    report = run_selftest(specs, backends=backends, policy=args.policy, progress=progress)
    text = selftest_markdown(report, suite=labels[0], policy=args.policy)
    print(text)
    if args.out:
        write_folder_atomically(args.out, {
            "selftest.csv": csv_writer(report.detail),
            "faults.csv": csv_writer(report.faults),
            "false_alarms.csv": csv_writer(report.false_alarms),
            "summary.md": text_writer(text),
        })
    return EXIT_OK if report.ok else EXIT_FAIL
