"""Shared pieces of the command modules: exit codes, small argument parsers and checks."""

from __future__ import annotations

from collections.abc import Sequence

from gradparity.core.errors import EXIT_FAIL, EXIT_OK, EXIT_USAGE, UsageError

__all__ = ["EXIT_FAIL", "EXIT_OK", "EXIT_USAGE", "add_cache_option", "add_cluster_options",
           "apply_cache_option", "check_backends_option", "check_cluster_options",
           "check_policy_option", "check_tolerance_options", "csv_list"]


def add_cache_option(parser) -> None:
    """``--cache-dir``: where JAX's compiled functions are kept between runs."""
    parser.add_argument("--cache-dir", metavar="DIR",
                        help="folder for JAX's compiled functions, reused by later runs, or "
                        "'off' (default: $GRADPARITY_CACHE, else ~/.cache/gradparity/jax)")


def apply_cache_option(args) -> None:
    """Use ``--cache-dir`` for this process's JAX calls (no-op when not given)."""
    value = getattr(args, "cache_dir", None)
    if value is None:
        return
    if not value.strip():
        raise UsageError("--cache-dir='': expected a folder or 'off'")
    from gradparity.adapters.jax_cache import set_cache_dir

    set_cache_dir(value)


def add_cluster_options(parser, what: str) -> None:
    """``--dask ADDRESS`` / ``--workers N``: a running Dask cluster, or a local one."""
    parser.add_argument("--dask", metavar="ADDRESS",
                        help=f"{what} on the Dask scheduler at ADDRESS (tcp://host:8786)")
    parser.add_argument("--workers", type=int, metavar="N",
                        help=f"{what} on a local Dask cluster of N worker processes")


def check_cluster_options(args) -> bool:
    """``--dask`` / ``--workers`` checked (not both, N >= 1, an address), and the
    ``distributed`` extra installed when either is given; True when one is."""
    if args.dask is not None and args.workers is not None:
        raise UsageError(f"--dask={args.dask!r} with --workers={args.workers}: expected "
                         "one of them (a running cluster, or a local one)")
    if args.workers is not None and args.workers < 1:
        raise UsageError(f"--workers={args.workers}: expected a number of workers >= 1")
    if args.dask is not None and not args.dask.strip():
        raise UsageError("--dask='': expected a scheduler address (tcp://host:8786)")
    if args.dask is None and args.workers is None:
        return False
    from gradparity.experiments.distributed import check_available

    check_available()
    return True


def csv_list(value: str) -> list[str]:
    """``"a,b, c"`` -> ``["a", "b", "c"]`` (for options that take comma-separated names)."""
    return [v.strip() for v in value.split(",") if v.strip()]


def check_backends_option(backends: Sequence[str]) -> None:
    """``--backends``: every name is a registered backend (and there is at least one)."""
    from gradparity.adapters.registry import BACKENDS

    if not backends:
        raise UsageError("--backends='': expected at least one of "
                         f"{', '.join(BACKENDS)}")
    for b in backends:
        if b not in BACKENDS:
            raise UsageError(f"--backends={b!r}: expected one of {', '.join(BACKENDS)}")


def check_policy_option(policy: str) -> None:
    """``--policy``: one of the verdict policies."""
    from gradparity.judge.policy import POLICIES

    if policy not in POLICIES:
        raise UsageError(f"--policy={policy!r}: expected one of {', '.join(POLICIES)}")


def check_tolerance_options(args) -> None:
    """``--rtol`` / ``--atol``: finite and non-negative when given."""
    from gradparity.core.errors import check_finite_nonnegative

    for flag in ("rtol", "atol"):
        v = getattr(args, flag)
        if v is not None:
            check_finite_nonnegative(f"--{flag}", v)


def factor_option(value: float | None) -> float:
    """``--factor``: the allowed growth of an error (default `DEFAULT_FACTOR`), finite and
    >= 1."""
    from gradparity.ci.baseline import DEFAULT_FACTOR, check_factor

    return check_factor(DEFAULT_FACTOR if value is None else value, name="--factor")
