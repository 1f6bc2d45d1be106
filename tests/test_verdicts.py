"""Oracle metrics, the calibrated policy, reason codes and the explanations of differences."""

import math

import numpy as np
import pytest

from gradparity.core.gradients import GradientSet
from gradparity.core.spec import Spec
from gradparity.judge.policy import CalibratedRule
from gradparity.judge.tolerances import DEFAULT_TOLERANCES, Tolerance
from gradparity.judge.verdict import judge
from gradparity.reference.activations import _erf_extended
from gradparity.reference.case import make_case
from gradparity.reference.mlp import REFERENCE_KINKS, reference_gradients
from gradparity.reference.oracle import oracle_dtype, oracle_error, oracle_gradients, oracle_name

LONGDOUBLE_WIDER = np.finfo(np.longdouble).eps < np.finfo(np.float64).eps


def test_oracle_dtypes():
    assert oracle_dtype("float32") == np.float64
    assert oracle_name("float32") == "float64"
    if LONGDOUBLE_WIDER:
        assert oracle_name("float64") == "longdouble"
    else:
        assert oracle_name("float64") == "unavailable"


def test_oracle_error_units():
    o = np.ones(4)
    assert oracle_error(o, o, np.float32).norm_eps == 0.0
    x = o.copy()
    x[0] += np.finfo(np.float32).eps
    e = oracle_error(x, o, np.dtype(np.float32))
    assert e.worst_eps == pytest.approx(1.0)
    assert e.norm_eps == pytest.approx(0.5)  # ||d|| / ||o|| = eps / 2
    assert oracle_error(None, o, np.float32).norm_eps == np.inf


@pytest.mark.skipif(not LONGDOUBLE_WIDER, reason="long double is float64 here")
def test_extended_erf_agrees_with_libm_to_the_double_rounding():
    x = np.linspace(-8, 8, 1601)
    ext = _erf_extended(x.astype(np.longdouble))
    libm = np.array([math.erf(v) for v in x])
    assert np.max(np.abs(ext.astype(np.float64) - libm)) <= 2.3e-16
    assert ext.dtype == np.longdouble


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("activation", ["gelu", "tanh", "silu"])
def test_reference_is_within_a_few_eps_of_its_oracle(dtype, activation):
    if dtype == "float64" and not LONGDOUBLE_WIDER:
        pytest.skip("no wider type than float64 here")
    case = make_case(Spec((5, 16, 16, 3), activation=activation, head="softmax_ce",
                          dtype=dtype, batch=8))
    ref, orc = reference_gradients(case), oracle_gradients(case)
    for key, o in orc.grads.items():
        e = oracle_error(ref.grads[key], o, case.dtype)
        assert e.norm_eps < 8 and e.worst_eps < 16, (key, e)


def _noisy(ref: GradientSet, rel_eps: float, seed: int = 0) -> GradientSet:
    """The reference with every gradient element off by +-rel_eps eps (relative)."""
    rng = np.random.default_rng(seed)
    grads = {}
    for k, v in ref.grads.items():
        eps = np.finfo(v.dtype).eps
        grads[k] = (v * (1 + rel_eps * eps * rng.choice([-1.0, 1.0], size=v.shape))
                    ).astype(v.dtype)
    return GradientSet("noisy", ref.loss, dict(ref.forward), grads)


def test_calibrated_policy_catches_what_loose_allclose_misses():
    case = make_case(Spec((5, 16, 16, 3), activation="tanh", dtype="float64", batch=8))
    ref, orc = reference_gradients(case), oracle_gradients(case)
    if orc is None:
        pytest.skip("no oracle for float64 here")
    bad = _noisy(ref, 200.0)
    loose = Tolerance(rtol=1e-7, atol=1e-7)
    allclose = judge(case, bad, ref, tolerance=loose, oracle=orc)
    assert all(v.status == "pass" for v in allclose)
    calibrated = judge(case, bad, ref, tolerance=loose, oracle=orc, policy="calibrated")
    fails = [v for v in calibrated if v.status == "fail"]
    assert fails and all(v.reason_code == "rounding" for v in fails)
    assert "less accurate than the reference" in fails[0].reason
    assert fails[0].oracle.norm_eps > 4 * fails[0].reference_oracle.norm_eps + 16
    worse = judge(case, _noisy(ref, 1e11), ref, tolerance=loose, oracle=orc,
                  policy="calibrated")
    assert {v.reason_code for v in worse if v.status == "fail"} == {"mismatch"}


def test_rounding_reason_code_under_strict_allclose_and_pass_when_calibrated():
    case = make_case(Spec((5, 16, 16, 3), activation="tanh", dtype="float32", batch=8))
    ref, orc = reference_gradients(case), oracle_gradients(case)
    slightly = _noisy(ref, 2.0)
    strict = Tolerance(rtol=0.0, atol=0.0)
    rows = judge(case, slightly, ref, tolerance=strict, oracle=orc)
    fails = [v for v in rows if v.status == "fail"]
    assert fails and {v.reason_code for v in fails} == {"rounding"}
    assert "--policy calibrated accepts" in fails[0].reason
    rows = judge(case, slightly, ref, tolerance=strict, oracle=orc, policy="calibrated")
    assert all(v.status == "pass" for v in rows)
    assert all(v.calibrated_passed for v in rows)


def test_calibrated_rule_arithmetic_and_validation():
    rule = CalibratedRule(multiplier=2, floor_eps=3)
    assert rule.passes(7.0, 2.0) and not rule.passes(7.1, 2.0)
    with pytest.raises(ValueError, match="multiplier=-1"):
        CalibratedRule(multiplier=-1)


def test_relu_kink_with_a_half_convention_is_named():
    spec = Spec((5, 8, 8, 2), activation="relu", head="linear_mse", batch=16, seed=7,
                regime="kinks")
    case = make_case(spec)
    ref = reference_gradients(case)
    half = reference_gradients(case, kinks={"relu": 0.5}, backend="maximum")
    rows = judge(case, half, ref, tolerance=DEFAULT_TOLERANCES["float64"],
                 kink_conventions={**REFERENCE_KINKS, "relu": 0.5})
    kinks = [v for v in rows if v.status == "kink"]
    assert kinks and all(v.reason_code == "kink" for v in kinks)
    assert "relu'(0): reference 0, maximum 0.5" in kinks[0].reason
    # the same numbers without the convention are failures: kinks are never hidden
    rows = judge(case, half, ref, tolerance=DEFAULT_TOLERANCES["float64"],
                 kink_conventions=REFERENCE_KINKS)
    assert any(v.status == "fail" for v in rows)


def test_output_form_derivatives_are_recognised_as_rounding():
    pytest.importorskip("torch")
    from gradparity.adapters.registry import get_backend

    spec = Spec((5, 8, 2), activation="tanh", head="tanh_mse", dtype="float64", batch=16,
                seed=11, regime="saturated")
    case = make_case(spec)
    ref, orc = reference_gradients(case), oracle_gradients(case)
    if orc is None:
        pytest.skip("no oracle for float64 here")
    torch = get_backend("torch")
    rows = judge(case, torch.gradients(case), ref, tolerance=DEFAULT_TOLERANCES["float64"],
                 oracle=orc, policy="calibrated",
                 kink_conventions=torch.kink_conventions("float64"))
    statuses = {v.status for v in rows}
    assert "fail" not in statuses and "rounding" in statuses
    assert any("1 - tanh^2" in v.reason for v in rows if v.status == "rounding")


def test_float32_work_in_a_float64_case_is_caught_under_allclose():
    case = make_case(Spec((5, 16, 16, 3), activation="tanh", dtype="float64", batch=8))
    ref, orc = reference_gradients(case), oracle_gradients(case)
    if orc is None:
        pytest.skip("no oracle for float64 here")
    low = reference_gradients(case.astype(np.float32))
    upcast = GradientSet("trunc", low.loss.astype(np.float64),
                         {k: v.astype(np.float64) for k, v in low.forward.items()},
                         {k: v.astype(np.float64) for k, v in low.grads.items()})
    rows = judge(case, upcast, ref, tolerance=DEFAULT_TOLERANCES["float64"], oracle=orc)
    grads = [v for v in rows if v.quantity in ("dW", "db", "dZ", "dA")]
    assert grads and all(v.status == "fail" for v in grads)
    assert "float32 precision" in grads[0].reason
    kept = GradientSet("kept", low.loss, low.forward, low.grads)  # float32 arrays as is
    rows = judge(case, kept, ref, tolerance=DEFAULT_TOLERANCES["float64"], oracle=orc)
    assert "returned float32 for a float64 case" in rows[0].reason
