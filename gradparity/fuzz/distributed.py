"""The search in shards on a Dask cluster: one hypothesis search per worker, each with its
own seed and a share of the budget; the shards' counterexamples are merged by kind,
keeping the smallest case of each.

hypothesis searches one case after another, so a search is split by seed, not by case.
The example database stays with the result folder on this machine: a copy goes to the
first shard, which replays it, and every shard's entries come back into it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gradparity.fuzz.search import Counterexample, Progress, SearchResult
from gradparity.judge.tolerances import Tolerance


def _shard(names: Sequence[str], budget: int, seed: int, tolerances: Mapping[str, Tolerance],
           policy: str, strict: bool, data: dict[bytes, set[bytes]] | None
           ) -> tuple[SearchResult, dict[bytes, set[bytes]]]:
    """On a worker: one search; returns its result and its example database."""
    from gradparity.adapters.registry import get_backend
    from gradparity.fuzz.faulty import FaultyBackend, is_faulty_name
    from gradparity.fuzz.search import FileExampleDatabase, search

    backends = [FaultyBackend(n.split("+", 1)[1]) if is_faulty_name(n) else get_backend(n)
                for n in names]
    db = FileExampleDatabase()
    db.data.update({k: set(v) for k, v in (data or {}).items()})
    result = search(backends, budget=budget, seed=seed, tolerances=tolerances,
                    policy=policy, strict=strict, database=db)
    return result, db.data


def size_key(c: Counterexample) -> tuple[int, int, int, int]:
    """Smaller is simpler: total units, batch, depth, the number of special elements."""
    return sum(c.spec.sizes), c.spec.batch, c.spec.depth, len(c.recipe.specials)


def merge(results: Sequence[SearchResult]) -> SearchResult:
    """One result: the smallest counterexample of each kind; the earliest find."""
    best: dict[tuple[str, str, str], Counterexample] = {}
    first: dict[tuple[str, str, str], tuple[int, float]] = {}
    for r in results:
        for c in r.counterexamples:
            if c.kind not in best or size_key(c) < size_key(best[c.kind]):
                best[c.kind] = c
            f = (c.found_at_example, c.found_after_s)
            first[c.kind] = min(first.get(c.kind, f), f)
    for kind, c in best.items():
        c.found_at_example, c.found_after_s = first[kind]
    return SearchResult([best[k] for k in sorted(best)],
                        sum(r.examples for r in results),
                        max((r.seconds for r in results), default=0.0))


def search_distributed(client: Any, names: Sequence[str], *, budget: int, seed: int,
                       tolerances: Mapping[str, Tolerance], policy: str = "allclose",
                       strict: bool = False, database: Any = None,
                       progress: Progress | None = None) -> SearchResult:
    """The search in one shard per worker thread of ``client`` (seeds ``seed``,
    ``seed + 1``, ...; the budget split evenly). ``progress`` is called per finished
    shard with the cases run so far."""
    from distributed import as_completed

    shards = max(1, min(budget, sum(client.nthreads().values())))
    shares = [budget // shards + (1 if i < budget % shards else 0) for i in range(shards)]
    data = dict(database.data) if database is not None else None
    futures = [client.submit(_shard, list(names), share, seed + i, dict(tolerances), policy,
                             strict, data if i == 0 else None, pure=False, retries=3)
               for i, share in enumerate(shares)]
    results: list[SearchResult] = []
    run = 0
    for fut in as_completed(futures):
        result, db_data = fut.result()
        results.append(result)
        run += result.examples
        if database is not None:
            for k, values in db_data.items():
                database.data.setdefault(k, set()).update(values)
        if progress is not None:
            progress(run, budget, None, {f"shard {len(results)}/{shards}":
                                         f"{len(result.counterexamples)} found"})
    return merge(results)
