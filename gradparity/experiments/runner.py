"""Run specs through the reference and the backends; failures are isolated per case.

An exception in a backend (or in building a case) becomes a row with status ``error`` and
its message; an unavailable framework becomes a ``skipped`` row with the reason. The sweep
always goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import pandas as pd

from gradparity.adapters.base import Backend, CaseNotSupported
from gradparity.adapters.registry import DEFAULT_BACKENDS, get_backend
from gradparity.core.gradients import GradientSet
from gradparity.core.spec import Spec
from gradparity.experiments.environment import environment
from gradparity.experiments.notebook import result_table
from gradparity.experiments.tables import make_table, status_row, verdict_rows
from gradparity.judge.finite import INVALID_CASE, invalid_case_reason
from gradparity.judge.layer_own import backend_steps, judge_layer_own
from gradparity.judge.policy import DEFAULT_RULE, CalibratedRule, check_policy
from gradparity.judge.status import worst_status
from gradparity.judge.tolerances import Tolerance, resolve_tolerances
from gradparity.judge.verdict import TensorVerdict, judge
from gradparity.reference.case import Case, case_identity
from gradparity.reference.mlp import reference_gradients
from gradparity.reference.oracle import oracle_gradients, oracle_name

Progress = Callable[[int, int, Spec, dict[str, str]], None]


class CaseStatuses(dict):
    """Status by backend name, as `Progress` receives it; ``rows_not_pass`` counts the
    case's table rows that are not a plain pass (for a running count)."""

    rows_not_pass: int = 0


@dataclass
class BackendResult:
    """One backend on one case.

    ``status`` is the case status of its verdicts, or ``error``/``skipped`` (with
    ``reason``, and the ``exception`` of an error) when it was not judged: then
    ``verdicts`` is None.
    """

    backend: str
    status: str
    verdicts: list[TensorVerdict] | None = None
    reason: str = ""
    exception: BaseException | None = None


@dataclass
class CaseResult:
    """One case on every backend: its table rows and each backend's outcome.

    ``case`` and ``reference`` are None when the case or its reference could not be made
    (every backend then has an ``error`` whose reason starts with ``reference:``).
    ``case_id`` is the spec's, or ``<spec case_id>-arrays<digest>`` for a `Case` with
    arrays of its own, which ``rerun`` False says cannot be rebuilt from the spec.
    """

    spec: Spec
    case_id: str
    rows: list[dict[str, object]] = field(default_factory=list)
    backends: list[BackendResult] = field(default_factory=list)
    case: Case | None = None
    reference: GradientSet | None = None
    rerun: bool = True

    @property
    def statuses(self) -> CaseStatuses:
        """Status by backend name (as `run_specs` reports progress), with the count of the
        case's rows that are not a plain pass."""
        statuses = CaseStatuses({r.backend: r.status for r in self.backends})
        statuses.rows_not_pass = sum(r["status"] != "pass" for r in self.rows)
        return statuses

    def _status(self, backend: str, status: str, reason: str,
                exception: BaseException | None = None, code: str = "") -> None:
        row = status_row(self.spec, backend, status, reason)
        if code:
            row["reason_code"] = code
        self.rows.append(row)
        self.backends.append(BackendResult(backend, status, reason=reason,
                                           exception=exception))


def evaluate_case(
    item: Spec | Case,
    adapters: Sequence[Backend],
    *,
    tolerances: Mapping[str, Tolerance],
    policy: str = "allclose",
    rule: CalibratedRule = DEFAULT_RULE,
    layer_own: bool = False,
    identity: tuple[Case, str, bool] | None = None,
    prepared: tuple[GradientSet, GradientSet | None] | None = None,
) -> CaseResult:
    """Judge every backend on one case (a `Spec`, or a `Case` with its arrays).

    Exceptions never escape: one in building the case or its reference makes an ``error``
    for every backend, one in a backend an ``error`` for that backend; an unavailable
    backend is ``skipped``. ``tolerances`` is the per-dtype table; with ``layer_own``,
    every layer of every judged backend also runs on the reference's upstream values
    (rows with ``mode="layer_own"``, which leave the statuses alone). ``identity``:
    ``case_identity(item)`` when the caller has it already, ``prepared`` the reference's
    and the oracle's gradients of that case.
    """
    spec = item if isinstance(item, Spec) else item.spec
    result = CaseResult(spec, spec.case_id)
    try:
        case, case_id, rerun = identity or case_identity(item)
        ref, oracle = prepared or (reference_gradients(case), oracle_gradients(case))
    except Exception as exc:  # noqa: BLE001 - isolate the case, keep sweeping
        for b in adapters:
            result._status(b.name, "error", f"reference: {type(exc).__name__}: {exc}", exc)
        return result
    invalid = invalid_case_reason(case, ref)
    if invalid:  # NaN/inf inputs or reference: nothing can be judged, nothing passes
        for b in adapters:
            result._status(b.name, "error", invalid, code=INVALID_CASE)
        if case_id != spec.case_id:
            for r in result.rows:
                r["case_id"] = case_id
        result.case_id, result.rerun = case_id, rerun
        return result
    result.case_id, result.rerun, result.case, result.reference = case_id, rerun, case, ref
    for b in adapters:
        if not b.available():
            result._status(b.name, "skipped", b.unavailable_reason())
            continue
        try:
            got = b.gradients(case)
            verdicts = judge(case, got, ref, tolerance=tolerances[spec.dtype],
                             kink_conventions=b.kink_conventions(spec.dtype),
                             oracle=oracle, policy=policy, rule=rule)
        except CaseNotSupported as exc:  # e.g. forward mode on a large network
            result._status(b.name, "skipped", str(exc))
            continue
        except Exception as exc:  # noqa: BLE001 - isolate the backend, keep sweeping
            result._status(b.name, "error", f"{type(exc).__name__}: {exc}", exc)
            continue
        result.rows.extend(verdict_rows(spec, b.name, verdicts,
                                        oracle=oracle_name(spec.dtype), policy=policy,
                                        mode=getattr(b, "row_mode", "end_to_end")))
        result.backends.append(BackendResult(
            b.name, worst_status(v.status for v in verdicts), verdicts))
        if layer_own and getattr(b, "layer_gradients", None) is None:
            row = status_row(spec, b.name, "skipped",
                             f"layer-own: {b.name} runs whole networks only")
            result.rows.append(dict(row, mode="layer_own"))
        elif layer_own:
            try:
                own = judge_layer_own(case, backend_steps(b, case, ref), ref,
                                      tolerance=tolerances[spec.dtype], backend=b.name,
                                      kink_conventions=b.kink_conventions(spec.dtype),
                                      policy=policy, rule=rule)
            except Exception as exc:  # noqa: BLE001 - isolate, keep sweeping
                row = status_row(spec, b.name, "error",
                                 f"layer-own: {type(exc).__name__}: {exc}")
                result.rows.append(dict(row, mode="layer_own"))
                continue
            result.rows.extend(verdict_rows(spec, b.name, own, policy=policy,
                                            oracle=oracle_name(spec.dtype),
                                            mode="layer_own"))
    if case_id != spec.case_id:
        for r in result.rows:
            r["case_id"] = case_id
    return result


def run_specs(
    specs: Sequence[Spec | Case],
    *,
    backends: Sequence[str | Backend] = DEFAULT_BACKENDS,
    tolerances: dict[str, Tolerance] | None = None,
    progress: Progress | None = None,
    policy: str = "allclose",
    rule: CalibratedRule = DEFAULT_RULE,
    layer_own: bool = False,
    concurrent: bool = False,
) -> pd.DataFrame:
    """Run every spec on every backend and return the tidy table (see `tables.COLUMNS`),
    a `ResultTable` (a DataFrame that renders with a summary in Jupyter).

    Args:
        specs: the cases, in table order: Specs, or Cases with arrays of their own (see
            `evaluate_case`).
        backends: backend names compared with the reference (``"reference"`` compares the
            reference with itself, a smoke check of the harness), or backend objects.
        tolerances: per-dtype table (default `resolve_tolerances()`).
        progress: called after each case with (index, total, spec, statuses by backend).
        policy, rule: the verdict policy (``"allclose"`` or ``"calibrated"``) and the
            calibrated rule (see `gradparity.judge.policy`).
        layer_own: also run every layer of every backend on the reference's upstream
            values (rows with ``mode="layer_own"``; see `gradparity.judge.layer_own`).
        concurrent: run each framework backend named in ``backends`` in a worker process
            of its own (`gradparity.adapters.worker`), `LOOKAHEAD` cases ahead: the
            frameworks compute the next cases while this process judges the current one.
            Same adapters, same arrays, same table; a worker that fails hands its calls
            back to this process. Ignored with ``layer_own``.
    """
    check_policy(policy)
    tol = tolerances or resolve_tolerances()
    adapters = [get_backend(b) if isinstance(b, str) else b for b in backends]
    # --layer-own runs single layers through the adapters: in this process
    workers, launched = (_framework_workers(backends, adapters, specs)
                         if concurrent and not layer_own else ({}, []))
    adapters = [workers.get(i, a) for i, a in enumerate(adapters)]
    rows: list[dict[str, object]] = []
    try:
        ahead = _Ahead(specs, list(workers.values()))
        for i, item in enumerate(specs, start=1):
            identity = ahead.identity(i - 1)
            result = evaluate_case(item, adapters, tolerances=tol, policy=policy,
                                   rule=rule, layer_own=layer_own, identity=identity,
                                   prepared=ahead.prepared(i - 1))
            rows += result.rows
            if progress:
                progress(i, len(specs), result.spec, result.statuses)
        if workers:  # the framework settings of the processes that computed
            from gradparity.adapters.worker import runtime as worker_runtime

            runtime = worker_runtime(workers.values()) or None
        else:
            runtime = None
    finally:
        for w in launched:
            w.close()
    return result_table(make_table(rows, environment(runtime)))


#: Workers per backend for a cold run of this many cases or more: JAX backends that
#: compile (one XLA program per structure and shapes) get two, which share the compiling
#: between both CPUs while this process waits for them. Warm (the store holds programs
#: for at least half the cases), one: a second worker's imports then cost more than it
#: saves (default suite, measured: cold 137 -> 115 s, warm 13.7 -> 16.3 s).
POOL_FROM_CASES = 64


def _pool_size(name: str, cases: int) -> int:
    if not (name.startswith("jax") and name != "jax.eager" and cases >= POOL_FROM_CASES):
        return 1
    from gradparity.adapters.jax_cache import stored_programs

    return 2 if stored_programs() < cases // 2 else 1


def _framework_workers(backends: Sequence[str | Backend], adapters: Sequence[Backend],
                       specs: Sequence[Spec | Case]) -> tuple[dict[int, Backend], list]:
    """Workers (`gradparity.adapters.worker.WorkerBackend`, or a `WorkerPool` of them)
    for each of gradparity's own framework adapters that was given by name and is
    installed, by its position in ``backends`` (backend objects of the caller's own stay
    here); and the workers this call launched (to close at its end). A worker the caller
    started already (`gradparity.adapters.worker.start`, as ``gradparity run`` does first
    thing) is used as it is."""
    from gradparity.adapters.worker import WorkerBackend, WorkerPool, started

    dtype = next((s if isinstance(s, Spec) else s.spec).dtype for s in specs) \
        if specs else "float64"
    workers: dict[int, Backend] = {}
    launched = []
    for i, (b, a) in enumerate(zip(backends, adapters, strict=True)):
        if not (isinstance(b, str) and b != "reference" and getattr(a, "name", None) == b
                and type(a).__module__.startswith("gradparity.adapters.")
                and a.available()):
            continue
        first = started(b)
        if first is None:
            first = WorkerBackend.launch(b, dtype)
            launched.append(first)
        more = [WorkerBackend.launch(b, dtype) for _ in range(_pool_size(b, len(specs)) - 1)]
        launched += more
        workers[i] = WorkerPool([first, *more]) if more else first
    return workers, launched


#: Cases sent to the workers ahead of the one judged here. Several, so that a worker is
#: never idle while another one, or this process, is slower for a while: at the start of
#: a run the JAX worker computes the first cases while torch still imports (about 2.5 s).
#: Their answers wait in the workers' pipes (`gradparity.adapters.worker.REPLY_PIPE`).
LOOKAHEAD = 8


#: How far ahead the reference and the oracle may be computed while a worker is not ready:
#: at most this many cases, holding at most `PREPARE_BYTES` of gradients.
PREPARE_AHEAD = 64
PREPARE_BYTES = 256 * 2**20


class _Ahead:
    """The cases' identities (`case_identity`), each made ahead and sent to the workers at
    once, so that they compute the next `LOOKAHEAD` cases while case i is judged here."""

    def __init__(self, specs: Sequence[Spec | Case], workers: list) -> None:
        self._specs, self._workers = specs, workers
        self._made: dict[int, tuple[Case, str, bool] | None] = {}
        self._sent: set[int] = set()
        # at least one case for each worker of the largest pool
        self._depth = max([LOOKAHEAD, *(len(getattr(w, "workers", (w,))) for w in workers)])
        self._prepared: dict[int, tuple[GradientSet, GradientSet | None]] = {}
        self._held = 0  # bytes of self._prepared
        self._next_prepared = 0

    def _make(self, i: int, send: bool = True) -> tuple[Case, str, bool] | None:
        if i >= len(self._specs):
            return None
        if i not in self._made:
            try:
                self._made[i] = case_identity(self._specs[i])
            except Exception:  # noqa: BLE001 - evaluate_case makes it again and reports it
                self._made[i] = None
        made = self._made[i]
        if send and made is not None and i not in self._sent:
            self._sent.add(i)
            for w in self._workers:
                w.prefetch(made[0])
        return made

    def identity(self, i: int) -> tuple[Case, str, bool] | None:
        """Case i's identity (None: `evaluate_case` makes it), after sending the next
        `LOOKAHEAD` cases (at least one per worker of the largest pool)."""
        if not self._workers:
            return None
        for j in range(i, i + 1 + self._depth):
            self._make(j)
        self._sent.discard(i)
        return self._made.pop(i)

    def prepared(self, i: int) -> tuple[GradientSet, GradientSet | None] | None:
        """Case i's reference and oracle gradients (None: `evaluate_case` computes them).
        While a worker keeps this process waiting (at the start of a run, torch imports
        for about 2.5 s), the next cases' are computed instead (`PREPARE_AHEAD`,
        `PREPARE_BYTES`); they are not sent to the workers any earlier."""
        if not self._workers:
            return None
        j = max(i + 1, self._next_prepared)
        while (j < min(len(self._specs), i + 1 + PREPARE_AHEAD)
               and self._held < PREPARE_BYTES and any(w.waiting() for w in self._workers)):
            made = self._make(j, send=False)
            if made is not None:
                try:
                    self._prepared[j] = (reference_gradients(made[0]),
                                         oracle_gradients(made[0]))
                except Exception:  # noqa: BLE001 - evaluate_case computes and reports it
                    pass
                else:
                    self._held += _nbytes(self._prepared[j])
            j += 1
        self._next_prepared = j
        done = self._prepared.pop(i, None)
        if done is not None:
            self._held -= _nbytes(done)
        return done


def _nbytes(sets: tuple[GradientSet, GradientSet | None]) -> int:
    return sum(a.nbytes for g in sets if g is not None
               for part in (g.forward, g.grads) for a in part.values())
