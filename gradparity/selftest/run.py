"""The harness tests itself: known faults must be flagged, unmodified backends must not be.

For every case of a suite, each fault of `gradparity.selftest.faults` is injected into a copy of the
reference and the result is judged exactly as a backend would be (same explanations:
kinks, saturation, rounding). A fault is

* ``detected`` when a row fails, or when the faulty code cannot run at all (``W @ dZ``
  with a non-square W raises, as the learner's code would: the harness reports it);
* ``no effect`` when its gradients equal the reference's bit for bit (relu'(A) is relu'(Z);
  a sign flip of an all-zero tensor): nothing to detect, left out of the rate;
* ``not applicable`` when the case is too shallow for it (no hidden layer).

The per-example backends (``torch.vmap``, ``jax.vmap``) also get the faults of
`gradparity.selftest.faults.WRAPPER_FAULTS` injected into their own wrapper, the step that
turns per-example gradients into J's partials (a dZ not divided by m, dW summed instead of
averaged): rows ``<backend>: <fault>`` of the fault table.

False alarms are unmodified backends (the reference's own copy, torch, jax) with a failing
row whose reason is a disagreement (``mismatch``, ``nonfinite``, ``convention``), or a
backend that raises. A failing
row with reason code ``rounding`` under the calibrated policy says the backend is further
from the oracle than the reference: a precision finding about that framework, counted
separately (``less_accurate``), not a false alarm. The targets are 100% detection and 0
false alarms.

The default policy is ``calibrated``: under ``allclose`` with torch.testing's atol, a
perturbation of 1e-3 of a tensor whose entries are all below ~1e-2 stays under atol = 1e-5
and is missed; the measured tables for both policies are in the README.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from gradparity.adapters.base import CaseNotSupported, batch_from_per_example
from gradparity.adapters.registry import get_backend
from gradparity.core.gradients import GradientSet
from gradparity.core.spec import Spec
from gradparity.judge.status import FAILING
from gradparity.judge.tolerances import Tolerance, resolve_tolerances
from gradparity.judge.verdict import judge
from gradparity.reference.case import Case, make_case
from gradparity.reference.mlp import REFERENCE_KINKS, reference_gradients
from gradparity.reference.oracle import oracle_gradients
from gradparity.selftest.faults import (
    FAULTS,
    WRAPPER_FAULTS,
    faulty_backpropagation,
    inject,
    inject_wrapper,
)

Progress = Callable[[int, int, Spec], None]


@dataclass
class SelfTestReport:
    """``detail``: one row per case x fault (or backend); ``faults`` and ``false_alarms``:
    the rates."""

    detail: pd.DataFrame
    faults: pd.DataFrame
    false_alarms: pd.DataFrame

    @property
    def ok(self) -> bool:
        rates = self.faults["detection_rate"].dropna()
        return bool((rates == 1.0).all() and (self.false_alarms["false_alarms"] == 0).all())


def _same(a: GradientSet, b: GradientSet) -> bool:
    return a.grads.keys() == b.grads.keys() and all(
        a.grads[k].shape == b.grads[k].shape
        and np.array_equal(a.grads[k], b.grads[k], equal_nan=True) for k in a.grads)


def _first_failure(verdicts, *, codes: frozenset[str] | None = None) -> tuple[bool, str]:
    for v in verdicts:
        if v.status in FAILING and (codes is None or v.reason_code in codes):
            return True, v.key
    return False, ""


DISAGREEMENTS = frozenset({"mismatch", "nonfinite", "convention", "error"})


def _judge_fault(case: Case, ref: GradientSet, oracle, name: str, tol: Tolerance,
                 policy: str) -> dict[str, object]:
    fault = FAULTS[name]
    row: dict[str, object] = {"case_id": case.spec.case_id, "subject": name,
                              "expected_first": fault.first(case.spec.depth)}
    if case.spec.depth < fault.min_depth:
        return dict(row, outcome="not applicable", first_flagged="")
    try:
        bad = inject(name, case, ref)
    except (ValueError, IndexError) as exc:  # the faulty code does not run
        return dict(row, outcome="detected", first_flagged=f"raised {type(exc).__name__}")
    if _same(bad, ref):
        return dict(row, outcome="no effect", first_flagged="")
    verdicts = judge(case, bad, ref, tolerance=tol, kink_conventions=REFERENCE_KINKS,
                     oracle=oracle, policy=policy)
    detected, key = _first_failure(verdicts)
    return dict(row, outcome="detected" if detected else "missed", first_flagged=key)


def run_selftest(
    specs: Sequence[Spec],
    *,
    backends: Sequence[str] = ("torch", "jax"),
    policy: str = "calibrated",
    tolerances: dict[str, Tolerance] | None = None,
    progress: Progress | None = None,
) -> SelfTestReport:
    """Inject every fault into every case; judge the unmodified backends too."""
    tol = tolerances or resolve_tolerances()
    adapters = [get_backend(b) for b in backends]
    rows: list[dict[str, object]] = []
    for i, spec in enumerate(specs, start=1):
        case = make_case(spec)
        ref = reference_gradients(case)
        oracle = oracle_gradients(case)
        t = tol[spec.dtype]
        for name in FAULTS:
            rows.append(dict(_judge_fault(case, ref, oracle, name, t, policy), kind="fault"))
        copy = GradientSet("reference copy", ref.loss, dict(ref.forward),
                           faulty_backpropagation(case, ref.forward, None))
        subjects: list[tuple[str, GradientSet | None, dict[str, float]]] = [
            ("reference copy", copy, REFERENCE_KINKS)]
        for b in adapters:
            if b.available():
                try:
                    got = b.gradients(case)
                except CaseNotSupported:  # not this backend's kind of case: no subject
                    continue
                except Exception as exc:  # noqa: BLE001 - a backend that cannot run is flagged
                    rows.append({"case_id": spec.case_id, "subject": b.name,
                                 "kind": "unmodified", "expected_first": "",
                                 "first_flagged": f"raised {type(exc).__name__}",
                                 "outcome": "false alarm"})
                    continue
                subjects.append((b.name, got, b.kink_conventions(spec.dtype)))
                if hasattr(b, "per_example"):
                    rows += _wrapper_faults(b, case, ref, oracle, t, policy)
        for name, got, conv in subjects:
            verdicts = judge(case, got, ref, tolerance=t, kink_conventions=conv,
                             oracle=oracle, policy=policy)
            alarm, key = _first_failure(verdicts, codes=DISAGREEMENTS)
            precision, pkey = _first_failure(verdicts, codes=frozenset({"rounding"}))
            outcome = ("false alarm" if alarm else "less accurate" if precision else "quiet")
            rows.append({"case_id": spec.case_id, "subject": name, "kind": "unmodified",
                         "expected_first": "", "first_flagged": key or pkey,
                         "outcome": outcome})
        if progress:
            progress(i, len(specs), spec)
    detail = pd.DataFrame(rows, columns=["case_id", "kind", "subject", "outcome",
                                         "first_flagged", "expected_first"])
    return SelfTestReport(detail, _fault_rates(detail), _alarm_rates(detail))


def _wrapper_faults(backend, case: Case, ref: GradientSet, oracle, tol: Tolerance,
                    policy: str) -> list[dict[str, object]]:
    """Every wrapper fault (`WRAPPER_FAULTS`) of a per-example backend on ``case``: its
    per-example gradients turned into J's partials with one step left out."""
    per, shell = backend.per_example(case)
    good = GradientSet(shell.backend, shell.loss, shell.forward,
                       batch_from_per_example(per, case.m))
    conv = backend.kink_conventions(case.spec.dtype)
    rows = []
    for name, fault in WRAPPER_FAULTS.items():
        bad = inject_wrapper(name, per, shell, case.m)
        row: dict[str, object] = {
            "case_id": case.spec.case_id, "subject": f"{backend.name}: {name}", "kind": "fault",
            "expected_first": fault.first(case.spec.depth, case.spec.loss_form == "probs")}
        if _same(bad, good):  # m = 1, or NaN wherever the fault would show
            rows.append(dict(row, outcome="no effect", first_flagged=""))
            continue
        verdicts = judge(case, bad, ref, tolerance=tol, kink_conventions=conv, oracle=oracle,
                         policy=policy)
        detected, key = _first_failure(verdicts)
        rows.append(dict(row, outcome="detected" if detected else "missed", first_flagged=key))
    return rows


def _fault_description(subject: str) -> str:
    if subject in FAULTS:
        return FAULTS[subject].description
    return WRAPPER_FAULTS[subject.rpartition(": ")[2]].description


def _fault_rates(detail: pd.DataFrame) -> pd.DataFrame:
    d = detail[detail["kind"] == "fault"]
    out = []
    wrapper = [s for s in dict.fromkeys(d["subject"]) if s not in FAULTS]
    for name in [*FAULTS, *wrapper]:
        f = d[d["subject"] == name]
        detected = int((f["outcome"] == "detected").sum())
        missed = int((f["outcome"] == "missed").sum())
        applicable = detected + missed
        localised = int(((f["outcome"] == "detected")
                         & ((f["first_flagged"] == f["expected_first"])
                            | f["first_flagged"].str.startswith("raised"))).sum())
        out.append({
            "fault": name, "description": _fault_description(name), "cases": len(f),
            "applicable": applicable, "detected": detected, "missed": missed,
            "no_effect": int((f["outcome"] == "no effect").sum()),
            "not_applicable": int((f["outcome"] == "not applicable").sum()),
            "detection_rate": detected / applicable if applicable else np.nan,
            "localised_rate": localised / detected if detected else np.nan,
        })
    return pd.DataFrame(out)


def _alarm_rates(detail: pd.DataFrame) -> pd.DataFrame:
    d = detail[detail["kind"] == "unmodified"]
    out = []
    for name, g in d.groupby("subject", sort=False):
        alarms = int((g["outcome"] == "false alarm").sum())
        out.append({"backend": name, "cases": len(g), "false_alarms": alarms,
                    "false_alarm_rate": alarms / len(g) if len(g) else np.nan,
                    "less_accurate": int((g["outcome"] == "less accurate").sum())})
    return pd.DataFrame(out)


def selftest_markdown(report: SelfTestReport, *, suite: str, policy: str) -> str:
    """The two tables as markdown, for the terminal and for ``summary.md``."""
    from gradparity.experiments.tables import markdown_table

    faults = report.faults.copy()
    for c in ("detection_rate", "localised_rate"):
        faults[c] = faults[c].map(lambda v: "" if pd.isna(v) else f"{100 * v:.1f}%")
    alarms = report.false_alarms.copy()
    alarms["false_alarm_rate"] = alarms["false_alarm_rate"].map(lambda v: f"{100 * v:.1f}%")
    n = report.detail["case_id"].nunique()
    verdict = "PASS" if report.ok else "FAIL"
    return "\n".join([
        f"# gradparity selftest: {suite} ({n} cases, policy {policy}): {verdict}", "",
        "## Injected faults", "",
        markdown_table(faults, index=False),
        "## Unmodified backends", "",
        markdown_table(alarms, index=False),
    ])
