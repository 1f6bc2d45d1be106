"""Runs on a Dask cluster: the cases of a run go to Dask workers, their rows come back
in the order of the suite, so the table is the serial run's, byte for byte.

``open_client(address=...)`` connects to a running scheduler (``dask scheduler`` /
``dask worker ADDRESS`` on other machines); ``open_client(workers=N)`` starts a
`LocalCluster` of N single-threaded worker processes on this machine. Every worker sets
its own thread counts (`ThreadLimits`). A task whose worker dies is run again on another
worker by the scheduler (Dask's ``allowed-failures``); a task that raises is retried
(``retries``): no case is lost. dask is imported only here, inside the functions.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import pandas as pd

from gradparity.adapters import base
from gradparity.adapters.base import Backend
from gradparity.core.errors import UsageError
from gradparity.core.spec import Spec
from gradparity.experiments.environment import environment
from gradparity.experiments.runner import Progress, evaluate_case
from gradparity.experiments.tables import make_table
from gradparity.judge.policy import DEFAULT_RULE, CalibratedRule, check_policy
from gradparity.judge.tolerances import Tolerance, resolve_tolerances
from gradparity.reference.case import Case

#: The install hint of the ``distributed`` extra.
MISSING = ("--dask/--workers need dask[distributed]: pip install 'gradparity[distributed]'")
#: Threads per worker process for BLAS, OpenMP and torch (one task at a time per worker).
WORKER_THREADS = 1
#: Retries of a task that raised (a worker that dies is handled by the scheduler).
RETRIES = 3
_THREAD_VARIABLES = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def check_available() -> None:
    """Raise a one-line `UsageError` naming the extra when dask.distributed is missing."""
    if not base.modules_found("dask", "distributed"):
        raise UsageError(MISSING)


def set_thread_limits(threads: int = WORKER_THREADS) -> None:
    """This process's thread counts: the BLAS/OpenMP variables, and torch's if loaded;
    and its allocator (`gradparity.core.memory.keep_freed_memory`)."""
    from gradparity.core.memory import keep_freed_memory

    keep_freed_memory()
    for name in _THREAD_VARIABLES:
        os.environ[name] = str(threads)
    import sys

    torch = sys.modules.get("torch")
    if torch is not None:
        torch.set_num_threads(threads)


def _thread_plugin(threads: int):
    from distributed.diagnostics.plugin import WorkerPlugin

    class ThreadLimits(WorkerPlugin):
        """Sets a worker's thread counts when it starts (and when it restarts)."""

        name = "gradparity-thread-limits"

        def setup(self, worker: Any) -> None:
            set_thread_limits(threads)

    return ThreadLimits()


@contextlib.contextmanager
def open_client(*, address: str | None = None, workers: int | None = None,
                threads: int = WORKER_THREADS) -> Iterator[Any]:
    """A Dask client on the scheduler at ``address``, or on a new `LocalCluster` of
    ``workers`` processes (closed on exit); every worker's threads are limited."""
    check_available()
    from distributed import Client, LocalCluster

    cluster = None
    try:
        if address is not None:
            try:
                client = Client(address, timeout="10s")
            except OSError as e:
                raise UsageError(f"--dask={address!r}: no Dask scheduler answered ({e})"
                                 ) from None
        else:
            from gradparity.adapters.jax_cache import cache_environment

            # the workers start with this environment: --cache-dir passed on
            saved = {k: os.environ.get(k) for k in cache_environment()}
            os.environ.update(cache_environment())
            try:
                cluster = LocalCluster(n_workers=workers, threads_per_worker=1,
                                       processes=True, dashboard_address=":0",
                                       silence_logs=40)
            finally:
                for k, v in saved.items():
                    if v is None:
                        os.environ.pop(k, None)
                    else:
                        os.environ[k] = v
            client = Client(cluster)
        with client:
            client.register_plugin(_thread_plugin(threads))
            yield client
    finally:
        if cluster is not None:
            cluster.close()


def _evaluate_chunk(items: Sequence[Spec | Case], backends: Sequence[str | Backend],
                    tolerances: Mapping[str, Tolerance], policy: str, rule: CalibratedRule,
                    layer_own: bool) -> list[tuple[list[dict[str, object]], dict[str, str]]]:
    """On a worker: the rows and statuses of each case of a chunk (`evaluate_case`)."""
    from gradparity.adapters.registry import get_backend

    adapters = [get_backend(b) if isinstance(b, str) else b for b in backends]
    out = []
    for item in items:
        r = evaluate_case(item, adapters, tolerances=tolerances, policy=policy, rule=rule,
                          layer_own=layer_own)
        out.append((r.rows, r.statuses))
    return out


def run_specs_distributed(
    specs: Sequence[Spec | Case],
    client: Any,
    *,
    backends: Sequence[str | Backend],
    tolerances: dict[str, Tolerance] | None = None,
    progress: Progress | None = None,
    policy: str = "allclose",
    rule: CalibratedRule = DEFAULT_RULE,
    layer_own: bool = False,
    chunk: int = 1,
) -> pd.DataFrame:
    """`run_specs` on the workers of ``client``: the same table, rows in suite order.

    ``chunk`` cases go to a worker per task (fewer tasks: less scheduler overhead per
    case, coarser progress and retries). ``progress`` is called as cases complete, with
    the number done so far.
    """
    from distributed import as_completed

    check_policy(policy)
    tol = tolerances or resolve_tolerances()
    items = list(specs)
    chunks = [items[i:i + chunk] for i in range(0, len(items), max(1, chunk))]
    shared = client.scatter([list(backends), dict(tol)], broadcast=True)
    futures = [client.submit(_evaluate_chunk, c, shared[0], shared[1], policy, rule,
                             layer_own, retries=RETRIES, pure=False) for c in chunks]
    where = {f.key: i for i, f in enumerate(futures)}
    results: list[Any] = [None] * len(futures)
    done = 0
    for fut in as_completed(futures):
        i = where[fut.key]
        results[i] = fut.result()
        for j, (_, statuses) in enumerate(results[i]):
            done += 1
            if progress:
                item = chunks[i][j]
                progress(done, len(items), item if isinstance(item, Spec) else item.spec,
                         statuses)
        fut.release()
    rows = [row for part in results for rows, _ in part for row in rows]
    return make_table(rows, environment())
