"""Layer-own error: a layer fed the reference's upstream values shows only its own error."""

import numpy as np
import pytest

import gradparity.experiments.runner as runner
from gradparity.adapters.registry import get_backend
from gradparity.core.gradients import GradientSet
from gradparity.core.spec import Spec
from gradparity.experiments.tables import error_origins
from gradparity.judge.layer_own import backend_steps, judge_layer_own, stitch
from gradparity.judge.tolerances import DEFAULT_TOLERANCES
from gradparity.reference.activations import ACTIVATION_FUNCS
from gradparity.reference.case import make_case
from gradparity.reference.mlp import REFERENCE_KINKS, layer_step, reference_gradients

SPEC = Spec((4, 6, 6, 6, 3), activation="tanh", head="softmax_ce", dtype="float64", batch=5)


class BrokenLayer:
    """A backend whose layer ``bad`` uses g(Z) where g'(Z) belongs; all else is right."""

    def __init__(self, bad: int):
        self.name, self.bad = f"broken{bad}", bad

    def available(self):
        return True

    def kink_conventions(self, dtype):
        return dict(REFERENCE_KINKS)

    def layer_gradients(self, case, layer, a_prev, dA_out):
        step = layer_step(case, layer, a_prev, dA_out)
        if layer == self.bad:
            dZ = dA_out * ACTIVATION_FUNCS[case.spec.activation].forward(step["Z"])
            step.update(dZ=dZ, dW=dZ @ a_prev.T, db=dZ.sum(axis=1, keepdims=True),
                        dA_prev=case.parameters[f"W{layer}"].T @ dZ)
        return step

    def gradients(self, case):
        ref = reference_gradients(case)
        L = case.spec.depth
        steps, dA = {}, None
        for layer in range(L, 0, -1):
            a_prev = ref.forward[f"A{layer - 1}"]
            steps[layer] = (layer_step(case, layer, a_prev) if layer == L
                            else self.layer_gradients(case, layer, a_prev, dA))
            dA = steps[layer]["dA_prev"]
        g = stitch(case, steps, self.name)
        return GradientSet(self.name, g.loss, g.forward, g.grads)


def _failing(rows):
    return [r.key for r in rows if r.status == "fail"]


def test_layer_own_isolates_the_layer_that_introduces_the_error():
    case = make_case(SPEC)
    ref = reference_gradients(case)
    b = BrokenLayer(2)
    own = judge_layer_own(case, backend_steps(b, case, ref), ref,
                          tolerance=DEFAULT_TOLERANCES["float64"], backend=b.name)
    assert _failing(own) == ["dZ2", "dW2", "db2", "dA1"]  # layer 2's own outputs only


def test_run_names_first_failure_and_introducing_layer(monkeypatch):
    b = BrokenLayer(2)
    real = runner.get_backend
    monkeypatch.setattr(runner, "get_backend", lambda n: b if n == b.name else real(n))
    df = runner.run_specs([SPEC], backends=[b.name], layer_own=True)
    assert set(df["mode"]) == {"end_to_end", "layer_own"}
    e2e = df[(df["mode"] == "end_to_end") & (df["status"] == "fail")]
    assert list(e2e["quantity"] + e2e["layer"].astype(str)) == [
        "dZ2", "dW2", "db2", "dA1", "dZ1", "dW1", "db1", "dA0"]  # inherited below layer 2
    origins = error_origins(df)
    assert origins.to_dict("records") == [{"case_id": SPEC.case_id, "backend": b.name,
                                           "first_failing": "dZ2", "introduced_by_layer": 2}]


@pytest.mark.parametrize("name", ["torch", "jax"])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_frameworks_layer_by_layer_agree_with_the_reference(name, dtype):
    pytest.importorskip(name)
    spec = SPEC.replace(dtype=dtype, activation="gelu", head="sigmoid_bce", loss_form="probs",
                        sizes=(4, 6, 6, 6, 2))
    case = make_case(spec)
    ref = reference_gradients(case)
    b = get_backend(name)
    steps = backend_steps(b, case, ref)
    for layer in range(1, spec.depth):
        assert steps[layer]["dW"].dtype == np.dtype(dtype)
    rows = judge_layer_own(case, steps, ref, tolerance=DEFAULT_TOLERANCES[dtype],
                           kink_conventions=b.kink_conventions(dtype), backend=name)
    assert {r.status for r in rows} <= {"pass", "rounding"}
    assert len(rows) == len({(r.layer, r.quantity) for r in rows})


def test_layer_own_rows_carry_oracle_metrics_and_the_calibrated_verdict():
    case = make_case(SPEC)
    ref = reference_gradients(case)
    b = BrokenLayer(2)
    rows = judge_layer_own(case, backend_steps(b, case, ref), ref,
                           tolerance=DEFAULT_TOLERANCES["float64"], backend=b.name,
                           policy="calibrated")
    by_key = {r.key: r for r in rows}
    if np.finfo(np.longdouble).eps >= np.finfo(np.float64).eps:
        pytest.skip("no oracle for float64 here")
    assert by_key["dW3"].calibrated_passed and by_key["dW3"].oracle.norm_eps < 16
    assert by_key["dZ2"].status == "fail" and not by_key["dZ2"].calibrated_passed
    assert by_key["dZ2"].oracle.norm_eps > 1e6
