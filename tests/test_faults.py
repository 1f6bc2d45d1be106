"""Injected faults are caught, and the first failing row names the right layer and quantity."""

import numpy as np
import pytest

from gradparity.core.spec import Spec
from gradparity.judge.tolerances import DEFAULT_TOLERANCES
from gradparity.judge.verdict import judge
from gradparity.reference.case import make_case
from gradparity.reference.mlp import reference_gradients
from gradparity.selftest.faults import FAULTS, inject

SPECS = [
    Spec((4, 4, 4, 3), activation="tanh", head="softmax_ce", dtype="float32", batch=6),
    Spec((4, 4, 4, 4), activation="elu", head="linear_mse", dtype="float64", batch=3),
    Spec((5, 7, 3, 2), activation="sigmoid", head="sigmoid_bce", loss_form="probs",
         dtype="float64", batch=5, seed=3),
    Spec((3, 6, 6, 2), activation="gelu", head="linear_huber", dtype="float64", batch=4),
    Spec((3, 6, 2), activation="silu", head="tanh_mse", dtype="float32", batch=8, seed=2),
]


def _first_failure(verdicts):
    return next(v for v in verdicts if v.status == "fail")


@pytest.mark.parametrize("spec", SPECS, ids=lambda s: s.case_id)
@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_fault_is_flagged_at_its_first_quantity(spec, fault):
    f = FAULTS[fault]
    if spec.depth < f.min_depth:
        pytest.skip(f"{fault} needs depth >= {f.min_depth}")
    case = make_case(spec)
    ref = reference_gradients(case)
    L = spec.depth
    if fault == "transposed_W_in_dA" and spec.sizes[L] != spec.sizes[L - 1]:
        with pytest.raises(ValueError, match="matmul"):  # the learner's code fails to run
            inject(fault, case, ref)
        return
    bad = inject(fault, case, ref)
    verdicts = judge(case, bad, ref, tolerance=DEFAULT_TOLERANCES[spec.dtype])
    failing = [v for v in verdicts if v.status == "fail"]
    assert failing, f"{fault} was not detected on {spec.case_id}"
    first = _first_failure(verdicts)
    assert first.key == f.first(spec.depth)
    assert first.reason  # says why: elements outside tolerance, or the shapes


def test_unmodified_reference_passes_everything():
    for spec in SPECS:
        case = make_case(spec)
        ref = reference_gradients(case)
        again = reference_gradients(case)
        verdicts = judge(case, again, ref, tolerance=DEFAULT_TOLERANCES[spec.dtype])
        assert all(v.status == "pass" for v in verdicts)


def test_transposed_square_dW_is_a_value_mismatch_and_rectangular_a_shape_error():
    square = make_case(SPECS[0])  # W1 is 4x4
    ref = reference_gradients(square)
    v = _first_failure(judge(square, inject("transposed_dW", square, ref), ref,
                             tolerance=DEFAULT_TOLERANCES["float32"]))
    assert v.key == "dW1" and "outside atol" in v.reason and v.reason_code == "mismatch"
    rect = make_case(SPECS[2])  # W1 is 7x5
    ref = reference_gradients(rect)
    v = _first_failure(judge(rect, inject("transposed_dW", rect, ref), ref,
                             tolerance=DEFAULT_TOLERANCES["float64"]))
    assert v.key == "dW1" and v.reason_code == "convention"
    assert "transpose" in v.reason
    assert "shape (5, 7) != expected (7, 5)" in v.comparison.message()


def test_single_perturbed_element_is_located():
    case = make_case(SPECS[3])
    ref = reference_gradients(case)
    bad = inject("perturbed_element", case, ref)
    v = _first_failure(judge(case, bad, ref, tolerance=DEFAULT_TOLERANCES["float64"]))
    assert v.comparison.n_mismatch == 1
    flat = ref.grads["dW1"].size // 2
    assert v.comparison.worst_index == tuple(np.unravel_index(flat, ref.grads["dW1"].shape))


def test_injection_does_not_touch_the_original():
    case = make_case(SPECS[0])
    ref = reference_gradients(case)
    before = {k: v.copy() for k, v in ref.grads.items()}
    for name in FAULTS:
        if name != "transposed_W_in_dA":  # W3 is 3x4: that bug does not run here
            inject(name, case, ref)
    for k, v in before.items():
        np.testing.assert_array_equal(ref.grads[k], v)


def test_reason_codes_name_scale_conventions_and_nonfinite_values():
    spec = SPECS[3]
    case = make_case(spec)
    ref = reference_gradients(case)
    v = _first_failure(judge(case, inject("missing_1_over_m", case, ref), ref,
                             tolerance=DEFAULT_TOLERANCES["float64"]))
    assert v.reason_code == "convention" and "x m: per-example" in v.reason
    v = _first_failure(judge(case, inject("sign_flip", case, ref), ref,
                             tolerance=DEFAULT_TOLERANCES["float64"]))
    assert v.key == f"dZ{spec.depth}" and "-1: sign flip" in v.reason
    bad = inject("perturbed_element", case, ref)
    bad.grads["dW2"][0, 0] = np.nan
    v = _first_failure(judge(case, bad, ref, tolerance=DEFAULT_TOLERANCES["float64"]))
    assert v.key == "dW2" and v.reason_code == "nonfinite"
