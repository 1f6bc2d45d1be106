"""The search: hypothesis draws recipes, the verdict is the property, and every distinct
kind of counterexample (backend, status, reason code) is shrunk on its own.

A case is a counterexample when a backend has a ``fail`` row, or with ``strict`` any row
that is not ``pass`` (``rounding``, ``kink``, ``saturation``, ``error``; ``skipped`` never
counts). The case runs through the runner's `evaluate_case`, exactly as ``gradparity
run`` would run the written ``[[case]]``.
"""

from __future__ import annotations

import base64
import json
import time
import warnings
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from hypothesis import HealthCheck, Verbosity, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis.database import InMemoryExampleDatabase

from gradparity.adapters.base import Backend
from gradparity.core.spec import Spec
from gradparity.experiments.runner import evaluate_case
from gradparity.fuzz.recipe import Recipe, build_spec
from gradparity.fuzz.strategies import recipes
from gradparity.judge.tolerances import Tolerance

#: Called after each example: (examples run, budget, spec, statuses by backend); the
#: shards of a distributed search report with spec None.
Progress = Callable[[int, int, Spec | None, dict[str, str]], None]

#: Statuses a strict search does not count: agreement, and a framework not installed.
_NEVER = frozenset({"pass", "skipped"})


@dataclass
class Counterexample:
    """One shrunk counterexample: the spec (every array explicit), the recipe it came
    from, the first offending row, and when its kind was first met."""

    spec: Spec
    recipe: Recipe
    backend: str
    status: str
    reason_code: str
    tensor: str
    reason: str
    rows: list[dict[str, object]] = field(repr=False, default_factory=list)
    found_at_example: int = 0
    found_after_s: float = 0.0

    @property
    def kind(self) -> tuple[str, str, str]:
        return self.backend, self.status, self.reason_code


@dataclass
class SearchResult:
    counterexamples: list[Counterexample]
    examples: int
    seconds: float


class Found(Exception):  # noqa: N818 - the property's failure, not an error
    """Raised by the property; one subclass per kind, so that hypothesis shrinks each
    kind of counterexample separately."""

    counterexample: Counterexample


_KINDS: dict[tuple[str, str, str], type[Found]] = {}


def _found_class(kind: tuple[str, str, str]) -> type[Found]:
    if kind not in _KINDS:
        _KINDS[kind] = type("Found_" + "_".join(kind), (Found,), {})
    return _KINDS[kind]


def offending_row(rows: Sequence[Mapping[str, object]], *, strict: bool
                  ) -> Mapping[str, object] | None:
    """The first row that makes the case a counterexample, or None."""
    for r in rows:
        status = r["status"]
        if status == "fail" or (strict and status not in _NEVER):
            return r
    return None


class FileExampleDatabase(InMemoryExampleDatabase):
    """hypothesis's example database kept as one JSON file (base64 keys and values), so
    that it travels in a result folder written atomically."""

    @classmethod
    def load(cls, path: str | Path | None) -> FileExampleDatabase:
        db = cls()
        if path is not None and Path(path).is_file():
            try:
                data = json.loads(Path(path).read_text())
                for k, values in data.items():
                    db.data[base64.b64decode(k)] = {base64.b64decode(v) for v in values}
            except (ValueError, AttributeError, TypeError):
                db.data.clear()  # an unreadable database only loses the replays
        return db

    def dumps(self) -> str:
        enc = {base64.b64encode(k).decode(): sorted(base64.b64encode(v).decode()
                                                    for v in values)
               for k, values in sorted(self.data.items()) if values}
        return json.dumps(enc, indent=1, sort_keys=True) + "\n"


def _flatten(exc: BaseException) -> list[BaseException]:
    if isinstance(exc, BaseExceptionGroup):
        return [e for sub in exc.exceptions for e in _flatten(sub)]
    return [exc]


def search(
    backends: Sequence[Backend],
    *,
    budget: int,
    seed: int = 0,
    tolerances: Mapping[str, Tolerance],
    policy: str = "allclose",
    strict: bool = False,
    database: InMemoryExampleDatabase | None = None,
    progress: Progress | None = None,
) -> SearchResult:
    """Search ``budget`` generated cases (plus the replays of ``database`` and the
    shrinking steps) for counterexamples on ``backends``; each kind comes back shrunk."""
    first_seen: dict[tuple[str, str, str], tuple[int, float]] = {}
    count = 0
    start = time.perf_counter()

    def prop(recipe: Recipe) -> None:
        nonlocal count
        count += 1
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore", RuntimeWarning)  # overflow in extreme data
            spec = build_spec(recipe)
            result = evaluate_case(spec, backends, tolerances=tolerances, policy=policy)
        if progress is not None:
            progress(count, budget, spec, result.statuses)
        row = offending_row(result.rows, strict=strict)
        if row is None:
            return
        kind = (str(row["backend"]), str(row["status"]), str(row.get("reason_code") or ""))
        first_seen.setdefault(kind, (count, time.perf_counter() - start))
        where = "" if row["quantity"] == "*" else f"{row['quantity']}{row['layer']}"
        exc = _found_class(kind)(f"{kind}: {spec.case_id}")
        exc.counterexample = Counterexample(
            spec=spec, recipe=recipe, backend=kind[0], status=kind[1], reason_code=kind[2],
            tensor=where, reason=str(row.get("reason") or ""), rows=result.rows)
        raise exc

    # the seed first: hypothesis's seed() turns the database off, settings() on again
    test = hypothesis_seed(seed)(given(recipes())(prop))
    test = settings(max_examples=budget, deadline=None, database=database,
                    report_multiple_bugs=True, verbosity=Verbosity.quiet,
                    print_blob=False, suppress_health_check=list(HealthCheck))(test)
    found: list[Counterexample] = []
    try:
        test()
    except Exception as exc:  # noqa: BLE001 - hypothesis reports one or a group
        parts = _flatten(exc)
        others = [e for e in parts if not isinstance(e, Found)]
        if others:
            raise others[0] from exc
        for e in parts:
            assert isinstance(e, Found)
            ce = e.counterexample
            ce.found_at_example, ce.found_after_s = first_seen.get(ce.kind, (count, 0.0))
            found.append(ce)
    found.sort(key=lambda c: c.kind)
    return SearchResult(found, count, time.perf_counter() - start)
