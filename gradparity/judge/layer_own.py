"""Layer-own error: each layer of a backend fed the reference's upstream values.

End to end, a layer's gradients carry the error of every layer above it (backward) and
below it (forward). Here each layer ``l`` runs on its own in the backend: forward from the
reference's A[l-1], backward from the reference's dJ/dA[l] (the output layer from the loss,
as a one-layer network on the reference's A[L-1]). What still differs from the reference
is the error the layer *introduces*; an end-to-end difference that vanishes here is
*inherited*. `first_introducing_layer` names the first layer, in backprop order, that
introduces one (`gradparity.experiments.tables.error_origins`).

Rows are judged like end-to-end rows: allclose or the calibrated rule against a layer-own
oracle (the same step in the wider dtype), with the kink, saturation and output-form
rounding explanations evaluated layer by layer on the same upstream values.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from gradparity.adapters.base import LayerBackend
from gradparity.core.gradients import GradientSet
from gradparity.judge.compare import TensorComparison
from gradparity.judge.explanations import (
    agrees_where_untainted,
    explained_by,
    kink_counts,
    kink_reason,
    output_explanation,
    saturated_examples,
)
from gradparity.judge.policy import DEFAULT_RULE, CalibratedRule
from gradparity.judge.tolerances import Tolerance
from gradparity.judge.verdict import Found, TensorVerdict, judge_rows, measure
from gradparity.reference.case import Case
from gradparity.reference.mlp import backward_step, layer_step
from gradparity.reference.oracle import oracle_dtype

Array = np.ndarray
Step = dict[str, Array]


def output_subcase(case: Case, a_prev: Array) -> Case:
    """The output layer as a one-layer case whose input is ``a_prev`` (A[L-1])."""
    spec = case.spec
    L = spec.depth
    sub = spec.replace(sizes=(spec.sizes[L - 1], spec.sizes[L]), inputs=None, targets=None)
    return Case(spec=sub, X=np.array(a_prev, copy=True), Y=case.Y,
                parameters={"W1": case.parameters[f"W{L}"],
                            "b1": case.parameters[f"b{L}"]},
                labels=case.labels)


def backend_steps(backend: LayerBackend, case: Case, reference: GradientSet
                  ) -> dict[int, Step]:
    """Every layer of ``backend`` on the reference's upstream values."""
    L = case.spec.depth
    steps: dict[int, Step] = {}
    for layer in range(1, L):
        steps[layer] = backend.layer_gradients(case, layer, reference.forward[f"A{layer - 1}"],
                                               reference.grads[f"dA{layer}"])
    g = backend.gradients(output_subcase(case, reference.forward[f"A{L - 1}"]))
    steps[L] = {"Z": g.forward["Z1"], "A": g.forward["A1"], "loss": g.loss,
                "dZ": g.grads["dZ1"], "dW": g.grads["dW1"], "db": g.grads["db1"],
                "dA_prev": g.grads["dA0"]}
    if "dA1" in g.grads:
        steps[L]["dA"] = g.grads["dA1"]
    return steps


def reference_steps(case: Case, reference: GradientSet, *,
                    kinks: Mapping[str, float] | None = None,
                    from_outputs: bool = False,
                    z_at: Mapping[str, Array] | None = None) -> dict[int, Step]:
    """The reference's own layer steps on its upstream values (optionally with another
    kink convention, derivatives taken from rounded outputs, or derivatives evaluated at
    another backend's Z: ``z_at = {"Z1": ..., ...}``)."""
    L = case.spec.depth
    return {layer: layer_step(case, layer, reference.forward[f"A{layer - 1}"],
                              None if layer == L else reference.grads[f"dA{layer}"],
                              kinks=kinks, from_outputs=from_outputs,
                              z_at=None if z_at is None else z_at.get(f"Z{layer}"))
            for layer in range(1, L + 1)}


def stitch(case: Case, steps: Mapping[int, Step], backend: str) -> GradientSet:
    """Layer steps laid out as one `GradientSet` (keys as end to end)."""
    L = case.spec.depth
    forward = {"A0": case.X}
    grads: dict[str, Array] = {}
    for layer, s in steps.items():
        forward[f"Z{layer}"] = s["Z"]
        forward[f"A{layer}"] = s["A"]
        grads[f"dZ{layer}"] = s["dZ"]
        grads[f"dW{layer}"] = s["dW"]
        grads[f"db{layer}"] = s["db"]
        grads[f"dA{layer - 1}"] = s["dA_prev"]
    if "dA" in steps[L]:
        grads[f"dA{L}"] = steps[L]["dA"]
    return GradientSet(backend, steps[L]["loss"], forward, grads,
                       notes="layer-own: each layer on the reference's upstream values")


def oracle_steps(case: Case, reference: GradientSet) -> GradientSet | None:
    """The layer steps in the oracle's dtype on the reference's upstream values (cast up
    exactly): the truth each layer-own step is measured against (None if no wider type)."""
    od = oracle_dtype(case.dtype)
    if od is None:
        return None
    wide = case.astype(od)
    L = case.spec.depth
    steps = {layer: layer_step(wide, layer, reference.forward[f"A{layer - 1}"].astype(od),
                               None if layer == L else reference.grads[f"dA{layer}"].astype(od))
             for layer in range(1, L + 1)}
    return stitch(wide, steps, "oracle")


def judge_layer_own(
    case: Case,
    steps: Mapping[int, Step],
    reference: GradientSet,
    *,
    tolerance: Tolerance,
    kink_conventions: Mapping[str, float] | None = None,
    backend: str = "backend",
    policy: str = "allclose",
    rule: CalibratedRule = DEFAULT_RULE,
) -> list[TensorVerdict]:
    """Rows for every (layer, quantity) of the layer-own run, with statuses and reasons;
    oracle metrics and the calibrated rule as end to end (`gradparity.judge.verdict.judge`)."""
    spec = case.spec
    L = spec.depth
    actual = stitch(case, steps, backend)
    conv = dict(kink_conventions or {})
    oracle = oracle_steps(case, reference)
    m = measure(case, actual, reference, oracle, tolerance=tolerance, policy=policy, rule=rule,
                against="reference upstream")

    lazy: dict[str, GradientSet] = {}

    def alt(name: str, make: Callable[[], dict[int, Step]]) -> GradientSet:
        if name not in lazy:
            lazy[name] = stitch(case, make(), "reference")
        return lazy[name]

    kinks = kink_counts(case, reference, actual)
    sat = saturated_examples(case, reference)
    policy_oracle = oracle if policy == "calibrated" else None

    def at_kink(i: int, layer: int, q: str, c: TensorComparison,
                done: list[TensorVerdict]) -> Found:
        if kinks and explained_by(actual, alt("kink", lambda: reference_steps(
                case, reference, kinks=conv, z_at=actual.forward)), policy_oracle, layer, q,
                tolerance, case, rule):
            return "kink", kink_reason(spec, kinks, conv, backend), "kink"
        return None

    def at_output(i: int, layer: int, q: str, c: TensorComparison,
                  done: list[TensorVerdict]) -> Found:
        explained = output_explanation(case, reference, c, layer, q, sat)
        if not explained:
            return None
        return explained, f"layer {L} on its own: {explained} at the output", explained

    def from_saturated_output(i: int, layer: int, q: str, c: TensorComparison,
                              done: list[TensorVerdict]) -> Found:
        if sat.any() and (q == "loss" or _from_own_output(case, actual, reference, layer, q,
                                                          tolerance)):
            return "saturation", f"composed {spec.head} saturates at the output", "saturation"
        return None

    def output_form(i: int, layer: int, q: str, c: TensorComparison,
                    done: list[TensorVerdict]) -> Found:
        if explained_by(actual, alt("outputs", lambda: reference_steps(
                case, reference, kinks=conv, from_outputs=True)), policy_oracle, layer, q,
                tolerance, case, rule):
            return "rounding", ("derivative taken from the rounded output "
                                "(s(1 - s), 1 - tanh^2), as autodiff does"), "rounding"
        return None

    return judge_rows(m, [at_kink, at_output, from_saturated_output, output_form], case=case,
                      actual=actual, reference=reference, tolerance=tolerance, rule=rule)


def _from_own_output(case: Case, actual: GradientSet, reference: GradientSet, layer: int,
                     q: str, tol: Tolerance) -> bool:
    """dW[L], db[L], dA[L-1] follow from the backend's own dZ[L] (saturated output)."""
    L = case.spec.depth
    if (layer, q) not in ((L, "dW"), (L, "db"), (L - 1, "dA")):
        return False
    dZ = actual.grads[f"dZ{L}"].astype(case.dtype)
    a_prev = reference.forward[f"A{L - 1}"]
    with np.errstate(all="ignore"):
        step = backward_step(dZ, a_prev, case.parameters[f"W{L}"])
    own = {f"dW{L}": step["dW"], f"db{L}": step["db"], f"dA{L - 1}": step["dA_prev"]}
    follow = GradientSet("own", reference.loss, reference.forward, own)
    return agrees_where_untainted(actual, follow, layer, q, tol, case.spec.dtype)
