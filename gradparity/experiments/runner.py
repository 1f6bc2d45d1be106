"""Run specs through the reference and the backends; failures are isolated per case.

An exception in a backend (or in building a case) becomes a row with status ``error`` and
its message; an unavailable framework becomes a ``skipped`` row with the reason. The sweep
always goes on.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import pandas as pd

from gradparity.adapters.registry import get_backend
from gradparity.case import make_case
from gradparity.environment import environment
from gradparity.experiments.tables import make_table, status_row, verdict_rows
from gradparity.layer_own import backend_steps, judge_layer_own
from gradparity.oracle import oracle_gradients, oracle_name
from gradparity.policy import DEFAULT_RULE, CalibratedRule, check_policy
from gradparity.reference.mlp import reference_gradients
from gradparity.spec import Spec
from gradparity.tolerances import Tolerance, resolve_tolerances
from gradparity.verdict import judge

#: Backends compared with the reference by default.
DEFAULT_BACKENDS: tuple[str, ...] = ("torch", "jax")

Progress = Callable[[int, int, Spec, dict[str, str]], None]


def _case_status(statuses: list[str]) -> str:
    for s in ("error", "fail", "skipped", "saturation", "kink", "rounding"):
        if s in statuses:
            return s
    return "pass"


def run_specs(
    specs: Sequence[Spec],
    *,
    backends: Sequence[str] = DEFAULT_BACKENDS,
    tolerances: dict[str, Tolerance] | None = None,
    progress: Progress | None = None,
    policy: str = "allclose",
    rule: CalibratedRule = DEFAULT_RULE,
    layer_own: bool = False,
) -> pd.DataFrame:
    """Run every spec on every backend and return the tidy table (see `tables.COLUMNS`).

    Args:
        specs: the cases, in table order.
        backends: backend names compared with the reference (``"reference"`` compares the
            reference with itself, a smoke check of the harness).
        tolerances: per-dtype table (default `resolve_tolerances()`).
        progress: called after each case with (index, total, spec, statuses by backend).
        policy, rule: the verdict policy (``"allclose"`` or ``"calibrated"``) and the
            calibrated rule (see `gradparity.policy`).
        layer_own: also run every layer of every backend on the reference's upstream
            values (rows with ``mode="layer_own"``; see `gradparity.layer_own`).
    """
    check_policy(policy)
    tol = tolerances or resolve_tolerances()
    adapters = [get_backend(name) for name in backends]
    rows: list[dict[str, object]] = []
    for i, spec in enumerate(specs, start=1):
        statuses: dict[str, str] = {}
        try:
            case = make_case(spec)
            ref = reference_gradients(case)
            oracle = oracle_gradients(case)
        except Exception as exc:  # noqa: BLE001 - isolate the case, keep sweeping
            for b in adapters:
                rows.append(status_row(spec, b.name, "error",
                                       f"reference: {type(exc).__name__}: {exc}"))
                statuses[b.name] = "error"
            if progress:
                progress(i, len(specs), spec, statuses)
            continue
        for b in adapters:
            if not b.available():
                rows.append(status_row(spec, b.name, "skipped", b.unavailable_reason()))
                statuses[b.name] = "skipped"
                continue
            try:
                got = b.gradients(case)
                verdicts = judge(case, got, ref, tolerance=tol[spec.dtype],
                                 kink_conventions=b.kink_conventions(spec.dtype),
                                 oracle=oracle, policy=policy, rule=rule)
            except Exception as exc:  # noqa: BLE001 - isolate the backend, keep sweeping
                rows.append(status_row(spec, b.name, "error", f"{type(exc).__name__}: {exc}"))
                statuses[b.name] = "error"
                continue
            rows.extend(verdict_rows(spec, b.name, verdicts, oracle=oracle_name(spec.dtype),
                                     policy=policy))
            statuses[b.name] = _case_status([v.status for v in verdicts])
            if layer_own:
                try:
                    own = judge_layer_own(case, backend_steps(b, case, ref), ref,
                                          tolerance=tol[spec.dtype], backend=b.name,
                                          kink_conventions=b.kink_conventions(spec.dtype))
                except Exception as exc:  # noqa: BLE001 - isolate, keep sweeping
                    row = status_row(spec, b.name, "error",
                                     f"layer-own: {type(exc).__name__}: {exc}")
                    rows.append(dict(row, mode="layer_own"))
                    continue
                rows.extend(verdict_rows(spec, b.name, own, policy="allclose",
                                         mode="layer_own"))
        if progress:
            progress(i, len(specs), spec, statuses)
    return make_table(rows, environment())
