"""Judge one backend's `GradientSet` against the reference: per-tensor rows with a status.

Statuses:
* ``pass``: within tolerance of the reference.
* ``kink``: outside tolerance of the reference, but within tolerance of the reference
  re-run with the backend's own derivative at the non-differentiable points (measured from
  the framework, e.g. leaky_relu'(0) = 1 in JAX vs 0.01 here). A convention difference,
  reported with the conventions named, not a bug.
* ``saturation``: a composed (``probs``) head whose output rounded to exactly 0 or 1; the
  mismatches sit in those examples, and everything upstream follows from the backend's own
  output gradient (checked by re-running reference backprop from the backend's dZ[L]).
  For a forward-mode backend (``meta["ad_mode"] == "forward"``) whose J is non-finite, a
  tensor that is non-finite in every element is saturation too (`FORWARD_MODE_SPREAD`).
* ``rounding``: dJ/dA[L] of a composed head (e.g. (A - Y) / (A (1 - A)) for BCE), which a
  framework evaluates from its own rounded Z[L] and A[L]; its relative error can reach
  eps / min(A, 1 - A) plus eps |Z| (see ``dA_condition`` in the heads), and every
  mismatch is within that budget (on top of atol/rtol), element by element.
  The same status marks a tensor whose derivatives the framework takes from rounded
  outputs (1 - tanh^2, s (1 - s)) when it agrees with the reference evaluated that way.
* ``fail``: a real disagreement. ``error`` and ``skipped`` rows come from the runner.

Every non-pass row has a ``reason_code``: ``kink``, ``saturation``, ``rounding``, or for
failures ``nonfinite`` (inf/NaN where the reference is finite), ``convention`` (the
backend's tensor is the reference's up to a constant factor or a transpose: a scaling or
layout difference, named), ``rounding`` (a rounding-size difference that one of the two
rules accepts: outside atol/rtol but within the calibrated budget, or within atol/rtol but
further from the oracle than the calibrated budget allows) or ``mismatch`` (both rules
reject it: a real disagreement).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from gradparity.core.gradients import GradientSet, backprop_order
from gradparity.judge.compare import TensorComparison
from gradparity.judge.explanations import (
    OUTPUT_FORM_TEXT,
    agrees_where_untainted,
    budget_text,
    compare_tensors,
    dtype_problem,
    explained_by,
    failure_reason,
    kink_counts,
    kink_reason,
    oracle_errors,
    output_explanation,
    precision_problem,
    saturated_examples,
    uses_output_form,
)
from gradparity.judge.policy import DEFAULT_RULE, CalibratedRule, check_policy
from gradparity.judge.tolerances import Tolerance
from gradparity.reference.case import Case
from gradparity.reference.heads import SATURATION_P
from gradparity.reference.mlp import reference_gradients
from gradparity.reference.oracle import OracleError


@dataclass(frozen=True)
class TensorVerdict:
    """One (layer, quantity) of one backend: the metrics, a status and its reason."""

    layer: int
    quantity: str
    comparison: TensorComparison
    status: str
    reason: str = ""
    against: str = "reference"
    reason_code: str = ""
    passed: bool | None = None
    oracle: OracleError | None = None
    reference_oracle: OracleError | None = None
    calibrated_passed: bool | None = None

    @property
    def key(self) -> str:
        return "loss" if self.quantity == "loss" else f"{self.quantity}{self.layer}"

@dataclass
class Measured:
    """Every tensor of one judgement, in backprop order, before any explanation: the
    allclose comparison, the errors against the oracle (backend's, reference's), the
    calibrated rule's answer and whether the policy passes the tensor."""

    order: list[tuple[int, str]]
    base: list[TensorComparison]
    errs: list[tuple[OracleError, OracleError] | None]
    calibrated: list[bool | None]
    ok: list[bool]
    against: str = "reference"

    def verdict(self, i: int, status: str, reason: str = "", code: str = "") -> TensorVerdict:
        """The row of tensor ``i`` with a status and its reason."""
        (layer, q), e = self.order[i], self.errs[i]
        return TensorVerdict(layer, q, self.base[i], status, reason, against=self.against,
                             reason_code=code, passed=self.ok[i],
                             oracle=None if e is None else e[0],
                             reference_oracle=None if e is None else e[1],
                             calibrated_passed=self.calibrated[i])


def measure(case: Case, actual: GradientSet, reference: GradientSet,
            oracle: GradientSet | None, *, tolerance: Tolerance, policy: str,
            rule: CalibratedRule, against: str = "reference") -> Measured:
    """The metrics and the policy's pass/fail of every tensor (`Measured`)."""
    spec = case.spec
    order = backprop_order(spec.depth, with_output_dA=spec.loss_form == "probs")
    base = compare_tensors(actual, reference, order, tolerance, spec.dtype)
    errs = [oracle_errors(actual, reference, oracle, layer, q, case) for layer, q in order]
    calibrated = [None if e is None else (rule.passes(e[0].norm_eps, e[1].norm_eps)
                                          and rule.passes(e[0].worst_eps, e[1].worst_eps))
                  for e in errs]
    ok = [c.passed if (policy == "allclose" or k is None) else k
          for c, k in zip(base, calibrated, strict=True)]
    return Measured(order, base, errs, calibrated, ok, against)


def judge(
    case: Case,
    actual: GradientSet,
    reference: GradientSet,
    *,
    tolerance: Tolerance,
    kink_conventions: Mapping[str, float] | None = None,
    oracle: GradientSet | None = None,
    policy: str = "allclose",
    rule: CalibratedRule = DEFAULT_RULE,
) -> list[TensorVerdict]:
    """Rows for every (layer, quantity) in backprop order, with statuses and reasons.

    Args:
        case: the case both gradient sets were computed on.
        actual: the backend's gradients; reference: the same-dtype reference's.
        tolerance: atol/rtol of the case's dtype (allclose rule).
        kink_conventions: the backend's derivatives at kinks (see `Backend`).
        oracle: the reference in a wider dtype (`gradparity.reference.oracle`), for the oracle
            metrics and the calibrated rule; ``None`` leaves them empty.
        policy: ``"allclose"`` or ``"calibrated"`` (see `gradparity.judge.policy`).
        rule: the calibrated rule's multiplier and floor.
    """
    check_policy(policy)
    spec = case.spec
    m = measure(case, actual, reference, oracle, tolerance=tolerance, policy=policy, rule=rule)
    order, base = m.order, m.base
    other_forms: list[GradientSet] = []

    def output_form_refs() -> list[GradientSet]:
        # a float64 backend may legitimately round like this, too; built only when a
        # tensor first looks like float32 work
        if not other_forms and uses_output_form(spec):
            other_forms.append(reference_gradients(case, kinks=kink_conventions,
                                                   from_outputs=True))
        return other_forms

    precision = [dtype_problem(actual, layer, q, case)
                 or (precision_problem(actual, reference, output_form_refs, oracle, layer,
                                        q, case) if ok else "")
                 for (layer, q), ok in zip(order, m.ok, strict=True)]
    m.ok = [ok and not p for ok, p in zip(m.ok, precision, strict=True)]
    verdict_ok, row = m.ok, m.verdict

    if all(verdict_ok):
        return [row(i, "pass") for i in range(len(order))]

    conv = dict(kink_conventions or {})
    forward_ok = all(c.passed for (_, q), c in zip(order, base, strict=True) if q in ("Z", "A"))
    backend_forward = actual.forward if forward_ok else None

    kinks = kink_counts(case, reference, actual) if forward_ok else {}
    kink_ref = kink_text = None
    if kinks:
        # The seed's equations at the backend's own forward values, with its kink
        # conventions: explains a different derivative choice at a kink, and elements
        # that rounding put on different sides of it.
        kink_ref = reference_gradients(case, kinks=conv, forward=backend_forward)
        kink_text = kink_reason(spec, kinks, conv, actual.backend)

    sat = saturated_examples(case, reference)
    forward_mode = actual.meta.get("ad_mode") == "forward"
    sat_ref = None
    dZL = actual.grads.get(f"dZ{spec.depth}")
    if sat.any() and dZL is not None and dZL.shape == reference.grads[f"dZ{spec.depth}"].shape:
        sat_ref = reference_gradients(case, kinks=conv, forward=backend_forward,
                                      dZ_output=dZL.astype(case.dtype))
    sat_text = (f"composed {spec.head} saturates: A{spec.depth} within {SATURATION_P:g} of "
                f"0 or 1 in {int(sat.sum())}/{spec.batch} examples ({spec.dtype})")

    cache: dict[str, GradientSet | None] = {}

    def output_form_ref() -> GradientSet | None:
        if "alt" not in cache:
            cache["alt"] = None
            if uses_output_form(spec):
                cache["alt"] = reference_gradients(case, kinks=conv, forward=backend_forward,
                                                   from_outputs=True)
        return cache["alt"]

    L = spec.depth
    upstream = set(order[order.index((L, "dZ")) + 1:])

    def output_saturated(done: list[TensorVerdict]) -> bool:
        return any(v.key == f"dZ{L}" and v.status in ("pass", "saturation") for v in done)

    policy_oracle = oracle if policy == "calibrated" else None

    def lost_precision(i: int, layer: int, q: str, c: TensorComparison,
                       done: list[TensorVerdict]) -> Found:
        return ("fail", precision[i], "mismatch") if precision[i] else None

    def at_kink(i: int, layer: int, q: str, c: TensorComparison,
                done: list[TensorVerdict]) -> Found:
        if explained_by(actual, kink_ref, policy_oracle, layer, q, tolerance, case, rule):
            return "kink", kink_text or "", "kink"
        return None

    def at_output(i: int, layer: int, q: str, c: TensorComparison,
                  done: list[TensorVerdict]) -> Found:
        explained = output_explanation(case, reference, c, layer, q, sat)
        if not explained:
            return None
        text = sat_text if explained == "saturation" else budget_text(case, reference, c,
                                                                       layer)
        return explained, text, explained

    def from_saturated_output(i: int, layer: int, q: str, c: TensorComparison,
                              done: list[TensorVerdict]) -> Found:
        # Upstream of the output, "follows from the backend's own dZ[L]" explains a
        # difference only when that dZ[L] is itself explained by saturation.
        if (sat_ref is not None and (layer, q) in upstream and output_saturated(done)
                and agrees_where_untainted(actual, sat_ref, layer, q, tolerance, spec.dtype)):
            return "saturation", sat_text, "saturation"
        if sat.any() and q == "loss":
            return "saturation", sat_text, "saturation"
        if sat.any() and forward_mode and not np.isfinite(actual.loss):
            got = actual.get(layer, q)
            if got is not None and got.size and not np.isfinite(got).any():
                return "saturation", sat_text + FORWARD_MODE_SPREAD, "saturation"
        return None

    def output_form(i: int, layer: int, q: str, c: TensorComparison,
                    done: list[TensorVerdict]) -> Found:
        if explained_by(actual, output_form_ref(), policy_oracle, layer, q, tolerance, case,
                        rule):
            return "rounding", OUTPUT_FORM_TEXT, "rounding"
        return None

    return judge_rows(m, [lost_precision, at_kink, at_output, from_saturated_output,
                          output_form],
                      case=case, actual=actual, reference=reference, tolerance=tolerance,
                      rule=rule)


#: Why a forward-mode backend's gradient can be non-finite everywhere on a saturated case.
FORWARD_MODE_SPREAD = (
    "; forward mode: J itself is non-finite, and every gradient element is a tangent of "
    "the sum over all examples, where 0 x inf = nan from the saturated ones reaches every "
    "element (reverse mode keeps it to those examples)")

#: What an explanation returns when it fits: (status, reason, reason_code).
Found = tuple[str, str, str] | None
#: One explanation of a tensor outside tolerance: (index, layer, quantity, comparison,
#: the rows judged so far) -> `Found`.
Explanation = Callable[[int, int, str, TensorComparison, list[TensorVerdict]], Found]


def judge_rows(m: Measured, explanations: Sequence[Explanation], *, case: Case,
               actual: GradientSet, reference: GradientSet, tolerance: Tolerance,
               rule: CalibratedRule) -> list[TensorVerdict]:
    """The judge loop, end to end and layer-own: a tensor the policy passes passes; else
    the first of ``explanations`` that fits names its status; else it fails, with the
    reason code and reason of `failure_reason`."""
    out: list[TensorVerdict] = []
    for i, ((layer, q), c) in enumerate(zip(m.order, m.base, strict=True)):
        if m.ok[i]:
            out.append(m.verdict(i, "pass"))
            continue
        for explain in explanations:
            found = explain(i, layer, q, c, out)
            if found is not None:
                out.append(m.verdict(i, *found))
                break
        else:
            code, reason = failure_reason(actual, reference, layer, q, c, tolerance, case,
                                          m.errs[i], m.calibrated[i], rule)
            out.append(m.verdict(i, "fail", reason, code))
    return out
