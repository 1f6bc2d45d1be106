"""``gradparity fuzz``: search specs and data for disagreements, shrink them, write them
as a suite file."""

from __future__ import annotations

import argparse
from pathlib import Path

from gradparity.cli.common import (
    EXIT_FAIL,
    EXIT_OK,
    add_cache_option,
    add_cluster_options,
    apply_cache_option,
    check_cluster_options,
    check_policy_option,
    csv_list,
)
from gradparity.core.errors import UsageError

DEFAULT_BUDGET = 300
FUZZ_MISSING = "gradparity fuzz needs hypothesis: pip install 'gradparity[fuzz]'"


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "fuzz", help="search specs and data for disagreements; shrink and save them",
        description="Property-based search over network sizes, activations, heads, dtypes, "
        "init scales and data that stress the numerics (zeros at kinks, ties, huge, tiny "
        "and subnormal values, saturated outputs, rank-deficient W, soft targets). A case "
        "where a backend has a 'fail' row (with --strict: any row that is not 'pass') is a "
        "counterexample; each kind (backend, status, reason code) is shrunk to a minimal "
        "case and written to DIR/counterexamples.toml. Exit 1 when one was found.")
    p.add_argument("--budget", type=int, default=DEFAULT_BUDGET, metavar="N",
                   help=f"number of generated cases (default {DEFAULT_BUDGET}); replays of "
                   "past counterexamples and shrinking steps come on top")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="search seed (default 0)")
    p.add_argument("--backends", type=csv_list, action="extend", metavar="NAMES",
                   help="backends to compare with the reference (default: torch,jax); "
                   "reference+<fault> is the reference with a self-test fault")
    p.add_argument("--policy", default="allclose", metavar="POLICY",
                   help="verdict policy: allclose (default) or calibrated")
    p.add_argument("--strict", action="store_true",
                   help="count every status but pass (and skipped) as a counterexample")
    p.add_argument("--out", metavar="DIR", help="result folder (default: results/runs/fuzz)")
    add_cluster_options(p, "run the search in shards (one per worker)")
    add_cache_option(p)
    p.add_argument("-q", "--quiet", action="store_true", help="no per-case progress")
    p.set_defaults(handler=cmd_fuzz)


def check_backends(backends: list[str]) -> None:
    """Registered backend names, or ``reference+<fault>``."""
    from gradparity.adapters.registry import BACKENDS
    from gradparity.fuzz.faulty import is_faulty_name
    from gradparity.selftest.faults import ALL_FAULTS

    if not backends:
        raise UsageError(f"--backends='': expected at least one of {', '.join(BACKENDS)}")
    for b in backends:
        if b not in BACKENDS and not is_faulty_name(b):
            raise UsageError(f"--backends={b!r}: expected one of {', '.join(BACKENDS)}, or "
                             f"reference+<fault> with a fault of {', '.join(ALL_FAULTS)}")


def make_backends(names: list[str]):
    from gradparity.adapters.registry import get_backend
    from gradparity.fuzz.faulty import FaultyBackend, is_faulty_name

    return [FaultyBackend(n.split("+", 1)[1]) if is_faulty_name(n) else get_backend(n)
            for n in names]


def cmd_fuzz(args: argparse.Namespace) -> int:
    from gradparity.adapters.base import modules_found

    if not modules_found("hypothesis"):
        raise UsageError(FUZZ_MISSING)
    if args.budget < 1:
        raise UsageError(f"--budget={args.budget}: expected a number of cases >= 1")
    if not 0 <= args.seed < 2**32:
        raise UsageError(f"--seed={args.seed}: expected an integer from 0 to 2**32 - 1")
    from gradparity.adapters.registry import DEFAULT_BACKENDS

    names = list(dict.fromkeys(args.backends if args.backends is not None
                               else DEFAULT_BACKENDS))
    check_backends(names)
    check_policy_option(args.policy)
    distributed = check_cluster_options(args)
    apply_cache_option(args)
    from gradparity.experiments.io import check_output_folder

    out = check_output_folder(Path("results") / "runs" / "fuzz" if args.out is None
                              else args.out)

    from gradparity.cli.run import case_progress
    from gradparity.fuzz.report import DATABASE, by_reason, explain, write_search
    from gradparity.fuzz.search import FileExampleDatabase
    from gradparity.judge.tolerances import resolve_tolerances

    database = FileExampleDatabase.load(out / DATABASE)
    options = dict(budget=args.budget, seed=args.seed, tolerances=resolve_tolerances(),
                   policy=args.policy, strict=args.strict)
    progress = case_progress(args.quiet)
    if distributed:
        from gradparity.experiments.distributed import open_client
        from gradparity.fuzz.distributed import search_distributed

        with open_client(address=args.dask, workers=args.workers) as client:
            result = search_distributed(client, names, database=database,
                                        progress=progress, **options)
    else:
        from gradparity.fuzz.search import search

        result = search(make_backends(names), database=database, progress=progress,
                        **options)
    write_search(out, result, budget=args.budget, seed=args.seed, backends=names,
                 strict=args.strict, database=database.dumps())
    found = result.counterexamples
    print(f"{result.examples} cases run, {len(found)} counterexample(s)")
    if found:
        from gradparity.experiments.tables import markdown_table

        print(markdown_table(by_reason(found), index=False))
        for c in found:
            print(explain(c))
        print(f"rerun: gradparity run {out / 'counterexamples.toml'}")
    print(f"results: {out}/")
    return EXIT_FAIL if found else EXIT_OK
