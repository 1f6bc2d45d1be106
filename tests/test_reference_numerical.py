"""The NumPy reference verified independently: finite differences and complex step, float64.

No other framework is involved. Three checks per case:

* backprop vs Richardson finite differences of the reference's own J (and central
  differences, looser): backprop differentiates the forward it claims to;
* backprop vs complex step on a second, plain definition of J (`numerical.py`): agreement to
  rounding, and the second J's real part equals the reference's J;
* fault injection: the same comparison reports known bugs, so the checks above can fail.

Plus the float32 code path against float64, and the bookkeeping of exact kinks.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import numpy as np
import pytest
from support.numerical import (
    COMPLEX_STEP_ACTIVATIONS,
    DEFAULT_STEPS,
    complex_safe_loss,
    complex_step_gradients,
    finite_difference,
    forward_from,
    numerical_gradients,
)

from gradparity.core.spec import ACTIVATIONS, Spec, head_forms
from gradparity.reference.activations import ACTIVATION_FUNCS, sigmoid
from gradparity.reference.case import make_case
from gradparity.reference.heads import HEAD_FUNCS
from gradparity.reference.mlp import (
    backpropagation,
    compute_loss,
    forward_propagation,
    reference_gradients,
)

SMALL = (3, 4, 3)
DEEP = (2, 3, 3, 3, 2)
BATCH = 5
# Seeds 0 and 2: with seed 1, silu + linear_huber puts a residual within 1e-4 of the
# Huber threshold |r| = 1, where the Richardson stencil straddles a branch (reported by
# `finite_difference(...).crossed()`, see test_richardson_matches_backprop).
SEEDS = (0, 2)

EPS64 = np.finfo(np.float64).eps
EPS32 = np.finfo(np.float32).eps

# Error budgets, as ``|actual - expected| <= max(rtol |expected|, atol)``.
#
# Richardson, h = h0 max(1, |x|), h0 = 3e-4: truncation h^4 |f^(5)| / 30 ~ 3e-16 |f^(5)|,
# far below rounding: the stencil weights sum to 2 (8 + 1) / 12 = 1.5 in absolute value, so
# rounding in J (~ eps |J|, J ~ 1..3) gives ~ 1.5 eps |J| / h ~ 3e-12 absolute. For dA[L]
# of a composed BCE/CE loss the step is h0 * a, and the rounding error relative to
# dA ~ y / (m a) is ~ 1.5 eps |J| m / h0 ~ 2e-11. Budget: atol 1e-10 (30x the rounding
# estimate) and rtol 1e-10. Measured worst over all cases here: 4e-13 relative above atol
# (and rtol 6e-11 would already be needed with atol 1e-11, so atol cannot go lower).
FD_RICHARDSON = {"rtol": 1e-10, "atol": 1e-10}
# Central, h0 = 6e-6: truncation h^2 |f'''| / 6 ~ 6e-12 |f'''|; rounding ~ eps |J| / h
# ~ 1e-10 absolute. Measured: atol 1e-10 needs rtol 7e-9; budget 10x both.
FD_CENTRAL = {"rtol": 1e-7, "atol": 1e-9}
# Complex step has no subtraction: it is exact to rounding (h = 1e-30, the h^2 term is
# 1e-60), so what is left is backprop's own rounding, a few eps per layer and sum. Measured
# worst: 8e-16 relative above atol 1e-15. Budget ~450 eps relative.
COMPLEX_STEP = {"rtol": 1e-13, "atol": 1e-15}
# J (reference) vs Re J (complex-safe): two summations of the same few terms; measured 2 eps.
LOSS_RTOL = 1e-13
# float32 vs float64 reference, normwise per tensor: max |g32 - g64| <= K eps32 max |g64|
# (K eps32 = 3e-5, below the customary rtol 1e-4). Inputs are rounded to float32 once, then
# a few layers of rounding: measured K ~ 12 for most tensors, worst 43 for a db (a sum over
# the batch with cancellation, whose error scales with sum |dZ| rather than |db|).
FLOAT32_K = 256


# -- the comparison, used in both directions -------------------------------------------------
@dataclass(frozen=True)
class Worst:
    """The worst element of a comparison: ``error = |a - e| / max(|e|, floor)``."""

    error: float
    key: str = ""
    index: tuple[int, ...] = ()
    actual: float = 0.0
    expected: float = 0.0

    def __str__(self) -> str:
        return (f"worst relative error {self.error:.3e} at {self.key}{list(self.index)}: "
                f"got {self.actual!r}, expected {self.expected!r}")


def worst_relative_error(actual: dict[str, np.ndarray], expected: dict[str, np.ndarray], *,
                         floor: float = 0.0, normwise: bool = False) -> Worst:
    """Largest ``|a - e| / max(|e|, floor)`` over every key and element.

    ``floor = atol / rtol`` turns ``error <= rtol`` into ``|a - e| <= max(rtol |e|, atol)``.
    With ``normwise=True`` the floor of each tensor is its largest ``|e|`` (normwise error).
    Key sets and shapes must match exactly (a missing or extra key is an error).
    """
    assert set(actual) == set(expected), (
        f"keys differ: only actual {sorted(set(actual) - set(expected))}, "
        f"only expected {sorted(set(expected) - set(actual))}")
    worst = Worst(0.0)
    for key in sorted(expected):
        a = np.asarray(actual[key], dtype=np.float64)
        e = np.asarray(expected[key], dtype=np.float64)
        assert a.shape == e.shape, f"{key}: shape {a.shape}, expected {e.shape}"
        diff = np.abs(a - e)
        f = float(np.abs(e).max(initial=0.0)) if normwise else floor
        denom = np.maximum(np.abs(e), f)
        with np.errstate(divide="ignore", invalid="ignore"):
            err = np.where(diff == 0, 0.0, diff / denom)
        err = np.where(np.isnan(err), np.inf, err)
        if err.size and err.max() > worst.error:
            ix = np.unravel_index(int(np.argmax(err)), err.shape)
            worst = Worst(float(err[ix]), key, tuple(int(i) for i in ix), float(a[ix]),
                          float(e[ix]))
    return worst


def within(actual, expected, *, rtol: float, atol: float) -> Worst:
    """`worst_relative_error` with the floor of an (rtol, atol) budget."""
    return worst_relative_error(actual, expected, floor=atol / rtol)


# -- cases -------------------------------------------------------------------------------------
def _spec(sizes, activation, head, form, seed, **kw) -> Spec:
    return Spec(sizes, activation, head, form, batch=BATCH, seed=seed, **kw)


ALL_SPECS = [
    pytest.param(_spec(sizes, act, head, form, seed),
                 id=f"{act}-{head}.{form}-{'x'.join(map(str, sizes))}-s{seed}")
    for sizes in (SMALL, DEEP)
    for act in ACTIVATIONS
    for head, form in head_forms()
    for seed in SEEDS
]
COMPLEX_SPECS = [p for p in ALL_SPECS if p.values[0].activation in COMPLEX_STEP_ACTIVATIONS]
SEED0_SPECS = [p for p in ALL_SPECS if p.values[0].seed == SEEDS[0]]


@functools.cache
def _reference(spec: Spec):
    return reference_gradients(make_case(spec))


@functools.cache
def _richardson(spec: Spec):
    return finite_difference(make_case(spec), method="richardson")


@functools.cache
def _complex_step(spec: Spec):
    return complex_step_gradients(make_case(spec))


# -- backprop vs finite differences ------------------------------------------------------------
@pytest.mark.parametrize("spec", ALL_SPECS)
def test_richardson_matches_backprop(spec: Spec) -> None:
    ref = _reference(spec)
    fd = _richardson(spec)
    # No stencil x +- 2h may straddle a branch point (relu/leaky_relu kink or elu's jump in
    # g'' at Z = 0, L1 residual 0, Huber |r| = delta): there the difference quotient is not
    # the derivative backprop computes. "normal" draws make this rare; if it happens, this
    # says where, instead of a bare mismatch below.
    assert not fd.crossed(), f"finite-difference stencil crosses a branch point: {fd.crossed()}"
    assert fd.loss == float(ref.loss)  # same forward, same J
    assert all(g.dtype == np.float64 for g in fd.grads.values())
    w = within(ref.grads, fd.grads, **FD_RICHARDSON)
    assert w.error <= FD_RICHARDSON["rtol"], str(w)


@pytest.mark.parametrize("spec", SEED0_SPECS)
def test_central_differences_match_backprop(spec: Spec) -> None:
    case = make_case(spec)
    fd = finite_difference(case, method="central")
    assert not fd.crossed(), f"finite-difference stencil crosses a branch point: {fd.crossed()}"
    w = within(_reference(spec).grads, fd.grads, **FD_CENTRAL)
    assert w.error <= FD_CENTRAL["rtol"], str(w)


def test_keys_and_shapes_follow_backprop() -> None:
    for form in ("logits", "probs"):
        spec = _spec(DEEP, "tanh", "sigmoid_bce", form, 0)
        case = make_case(spec)
        grads = numerical_gradients(case)
        ref = _reference(spec).grads
        assert set(grads) == set(ref)
        assert ("dA4" in grads) == (form == "probs")
        for key, g in grads.items():
            assert g.shape == ref[key].shape, key
        sizes = spec.sizes
        for layer in range(1, spec.depth + 1):
            assert grads[f"dW{layer}"].shape == (sizes[layer], sizes[layer - 1])
            assert grads[f"db{layer}"].shape == (sizes[layer], 1)
            assert grads[f"dZ{layer}"].shape == (sizes[layer], BATCH)
        assert grads["dA0"].shape == (sizes[0], BATCH)


def test_numerical_gradients_api() -> None:
    spec = _spec(SMALL, "tanh", "linear_mse", "logits", 0)
    case = make_case(spec)
    central = numerical_gradients(case)  # default method: central
    explicit = finite_difference(case, method="central", h=DEFAULT_STEPS["central"]).grads
    assert worst_relative_error(central, explicit).error == 0.0
    # float32 cases are differentiated in float64 (the values of the float32 case)
    g32 = numerical_gradients(make_case(spec.replace(dtype="float32")), method="richardson")
    assert all(g.dtype == np.float64 for g in g32.values())
    with pytest.raises(ValueError, match="method"):
        numerical_gradients(case, method="forward")
    with pytest.raises(ValueError, match="positive"):
        numerical_gradients(case, h=0.0)


def test_forward_from_reproduces_forward_propagation() -> None:
    spec = _spec(DEEP, "gelu", "softmax_ce", "probs", 0)
    case = make_case(spec)
    _, cache = forward_propagation(case.X, case.parameters, spec.activation, spec.head)
    for start in range(spec.depth + 1):
        tail = forward_from(cache[f"A{start}"], start, case.parameters, spec.activation,
                            spec.head)
        assert set(tail) == {f"A{start}"} | {f"{q}{k}" for k in range(start + 1, spec.depth + 1)
                                            for q in "ZA"}
        for key, value in tail.items():
            np.testing.assert_array_equal(value, cache[key])


# -- backprop vs complex step --------------------------------------------------------------------
@pytest.mark.parametrize("spec", COMPLEX_SPECS)
def test_complex_step_matches_backprop(spec: Spec) -> None:
    cs = _complex_step(spec)
    w = within(_reference(spec).grads, cs, **COMPLEX_STEP)
    assert w.error <= COMPLEX_STEP["rtol"], str(w)


@pytest.mark.parametrize("spec", COMPLEX_SPECS)
def test_complex_safe_loss_matches_reference_loss(spec: Spec) -> None:
    J = complex_safe_loss(make_case(spec))
    ref = float(_reference(spec).loss)
    assert J.imag == 0.0
    assert abs(J.real - ref) <= LOSS_RTOL * abs(ref), (J.real, ref)


def test_complex_step_is_not_available_for_erf_gelu() -> None:
    assert set(ACTIVATIONS) - set(COMPLEX_STEP_ACTIVATIONS) == {"gelu"}
    case = make_case(_spec(SMALL, "gelu", "linear_mse", "logits", 0))
    with pytest.raises(NotImplementedError, match="'gelu'.*erf"):
        complex_step_gradients(case)
    with pytest.raises(NotImplementedError, match="'gelu'"):
        complex_safe_loss(case)


def test_richardson_and_complex_step_agree_on_composed_output_gradient() -> None:
    # dA[L] of a composed loss near a small probability: steps scale with the distance to
    # the log's singularity, so the finite difference stays accurate there.
    spec = _spec(SMALL, "identity", "softmax_ce", "probs", 1)
    L = spec.depth
    a = _reference(spec).forward[f"A{L}"]
    fd = _richardson(spec).grads[f"dA{L}"]
    cs = _complex_step(spec)[f"dA{L}"]
    assert a.min() < 0.05  # a small probability is among them
    w = within({"dA": fd}, {"dA": cs}, **FD_RICHARDSON)
    assert w.error <= FD_RICHARDSON["rtol"], str(w)


@pytest.mark.parametrize("seed", [0, 1])
def test_composed_output_gradient_is_undefined_where_the_output_rounded(seed: int) -> None:
    # "saturated": some sigmoid outputs round to exactly 1 with y = 0; the composed loss
    # -(1 - y) log(1 - a) of that rounded A is infinite, so dJ/dA[L] has no numerical value
    # there (NaN), while every other element and every other key stays defined.
    spec = _spec(SMALL, "tanh", "sigmoid_bce", "probs", seed, regime="saturated")
    case = make_case(spec)
    ref = reference_gradients(case)
    a, y = ref.forward["A2"], case.Y
    undefined = ((a == 1) & (y != 1)) | ((a == 0) & (y != 0))
    assert undefined.any()
    fd = finite_difference(case, method="richardson")
    cs = complex_step_gradients(case)
    for numeric in (fd.grads, cs):
        np.testing.assert_array_equal(np.isnan(numeric["dA2"]), undefined)
        assert all(np.isfinite(v).all() for k, v in numeric.items() if k != "dA2")
    rest = {k: v for k, v in ref.grads.items() if k != "dA2"}
    w = within(rest, {k: cs[k] for k in rest}, **COMPLEX_STEP)
    assert w.error <= COMPLEX_STEP["rtol"], str(w)


# -- the checks can fail -------------------------------------------------------------------
def _times_m(spec, case, grads):
    grads["dW1"] = grads["dW1"] * case.m  # the seed's per-example dZ without its 1/m


def _transpose_square(spec, case, grads):
    assert grads["dW2"].shape[0] == grads["dW2"].shape[1]
    grads["dW2"] = grads["dW2"].T.copy()


def _flip_db2(spec, case, grads):
    grads["db2"] = -grads["db2"]


def _sigmoid_prime_is_s(spec, case, grads):
    # sigmoid' written as s instead of s (1 - s) in every hidden layer
    _, cache = forward_propagation(case.X, case.parameters, spec.activation, spec.head)
    grads.update(backpropagation(cache, case.Y, case.parameters, spec.activation, spec.head,
                                 with_output_dA=spec.loss_form == "probs", prime=sigmoid))


FAULTS = [
    pytest.param(_spec(SMALL, "tanh", "linear_mse", "logits", 0), _times_m, "dW1",
                 id="dW1-times-m"),
    pytest.param(_spec(DEEP, "silu", "softmax_ce", "logits", 0), _transpose_square, "dW2",
                 id="dW2-transposed"),
    pytest.param(_spec(SMALL, "relu", "sigmoid_bce", "probs", 0), _flip_db2, "db2",
                 id="db2-sign"),
    pytest.param(_spec(DEEP, "sigmoid", "tanh_mse", "probs", 0), _sigmoid_prime_is_s, "dZ3",
                 id="sigmoid-prime-s"),
]


@pytest.mark.parametrize(("spec", "fault", "corrupted"), FAULTS)
def test_comparison_detects_fault(spec: Spec, fault, corrupted: str) -> None:
    """``corrupted``: a key the fault must change (the first one, in backprop order)."""
    case = make_case(spec)
    good = {k: v.copy() for k, v in _reference(spec).grads.items()}
    bad = {k: v.copy() for k, v in good.items()}
    fault(spec, case, bad)
    changed = [k for k in bad if not np.array_equal(bad[k], good[k])]
    assert corrupted in changed, changed

    fd = _richardson(spec).grads
    cs = _complex_step(spec)
    # the unbroken gradients pass; the broken ones fail by orders of magnitude, and the
    # worst element is in a corrupted tensor
    for numeric, budget in ((fd, FD_RICHARDSON), (cs, COMPLEX_STEP)):
        assert within(good, numeric, **budget).error <= budget["rtol"]
        w = within(bad, numeric, **budget)
        assert w.error > 1e4 * budget["rtol"], str(w)
        assert w.key in changed, str(w)


def test_loss_comparison_detects_missing_half() -> None:
    spec = _spec(SMALL, "tanh", "linear_mse", "logits", 0)
    case = make_case(spec)
    _, cache = forward_propagation(case.X, case.parameters, spec.activation, spec.head)
    r = cache["A2"] - case.Y
    no_half = float(np.sum(r * r) / case.m)  # J without the 1/2 of the seed's MSE
    J = complex_safe_loss(case).real
    assert abs(J - float(compute_loss(cache, case.Y, spec.head))) <= LOSS_RTOL * abs(J)
    assert abs(J - no_half) > 0.4 * abs(J)


# -- float32 code path ---------------------------------------------------------------------
@pytest.mark.parametrize("spec", SEED0_SPECS)
def test_float32_reference_tracks_float64(spec: Spec) -> None:
    r64 = _reference(spec)
    r32 = reference_gradients(make_case(spec.replace(dtype="float32")))
    # no silent upcasts anywhere in the float32 path
    arrays = {"loss": r32.loss, **r32.forward, **r32.grads}
    upcast = {k: str(v.dtype) for k, v in arrays.items() if v.dtype != np.float32}
    assert not upcast, f"float32 case returned other dtypes: {upcast}"
    for got, want in ((r32.grads, r64.grads), (r32.forward, r64.forward),
                      ({"loss": r32.loss}, {"loss": r64.loss})):
        w = worst_relative_error(got, want, normwise=True)
        assert w.error <= FLOAT32_K * EPS32, str(w)


def test_float32_comparison_detects_precision_loss() -> None:
    # a float16 round trip of one tensor is far outside the float32 budget
    spec = _spec(SMALL, "tanh", "linear_mse", "logits", 0)
    r32 = reference_gradients(make_case(spec.replace(dtype="float32")))
    bad = dict(r32.grads, dW1=r32.grads["dW1"].astype(np.float16).astype(np.float32))
    w = worst_relative_error(bad, _reference(spec).grads, normwise=True)
    assert w.error > FLOAT32_K * EPS32 and w.key == "dW1", str(w)


# -- kinks: exact zeros, and the convention used there ---------------------------------------
KINK_HEADS = [pytest.param(head, form, id=f"{head}.{form}") for head, form in head_forms()]


@pytest.mark.parametrize("sizes", [SMALL, DEEP], ids=["small", "deep"])
@pytest.mark.parametrize(("head", "form"), KINK_HEADS)
def test_relu_kink_convention_changes_exactly_the_kink_elements(sizes, head, form) -> None:
    spec = _spec(sizes, "relu", head, form, 0, regime="kinks")
    case = make_case(spec)
    L = spec.depth
    relu = ACTIVATION_FUNCS["relu"]
    default = reference_gradients(case)
    half = reference_gradients(case, kinks={"relu": 0.5})
    for layer in range(1, L):
        Z = default.forward[f"Z{layer}"]
        mask = relu.at_kink(Z)
        np.testing.assert_array_equal(mask, Z == 0.0)
        assert mask[:, 0].all()  # the all-zero example: Z = 0 exactly in every layer
        dZ0, dZ1 = default.grads[f"dZ{layer}"], half.grads[f"dZ{layer}"]
        dA0, dA1 = default.grads[f"dA{layer}"], half.grads[f"dA{layer}"]
        changed = dZ0 != dZ1
        if layer == L - 1:  # dA of the top hidden layer does not depend on the convention
            np.testing.assert_array_equal(dA0, dA1)
            np.testing.assert_array_equal(changed, mask & (dA0 != 0))
            np.testing.assert_array_equal(dZ1[~mask], dZ0[~mask])
        else:  # lower layers: only kinks, or where the upstream gradient changed
            assert not (changed & ~mask & (dA0 == dA1)).any()
        np.testing.assert_array_equal(dZ0[mask], 0.0)  # reference: relu'(0) = 0
        np.testing.assert_array_equal(dZ1[mask], 0.5 * dA1[mask])
    # output-side quantities never depend on a hidden kink convention
    np.testing.assert_array_equal(default.grads[f"dZ{L}"], half.grads[f"dZ{L}"])


def test_relu_kink_convention_is_visible_somewhere() -> None:
    # for a classification head the zero example has a nonzero output gradient, so the
    # relu'(0) convention changes dZ of the top hidden layer there
    spec = _spec(SMALL, "relu", "sigmoid_bce", "logits", 0, regime="kinks")
    case = make_case(spec)
    default = reference_gradients(case).grads["dZ1"]
    half = reference_gradients(case, kinks={"relu": 0.5}).grads["dZ1"]
    assert (default != half)[:, 0].any()


@pytest.mark.parametrize("sizes", [SMALL, DEEP], ids=["small", "deep"])
def test_l1_kink_convention_changes_exactly_the_zero_residuals(sizes) -> None:
    spec = _spec(sizes, "relu", "linear_l1", "logits", 0, regime="kinks")
    case = make_case(spec)
    L = spec.depth
    default = reference_gradients(case)
    half = reference_gradients(case, kinks={"linear_l1": 0.5})
    A, Y = default.forward[f"A{L}"], case.Y
    mask = HEAD_FUNCS["linear_l1"].kink_mask(A, Y)
    assert mask.any() and mask[:, ::2].all()  # make_case sets every other target to A[L]
    changed = default.grads[f"dZ{L}"] != half.grads[f"dZ{L}"]
    np.testing.assert_array_equal(changed, mask)
    np.testing.assert_array_equal(half.grads[f"dZ{L}"][mask], 0.5 / case.m)


def test_finite_differences_report_stencils_at_kinks() -> None:
    # exact kinks (regime "kinks") must show up as crossings, on the kink elements
    spec = _spec(SMALL, "relu", "linear_l1", "logits", 0, regime="kinks")
    case = make_case(spec)
    fd = finite_difference(case, method="richardson")
    ref = reference_gradients(case)
    crossed = fd.crossed()
    assert crossed and "dZ1" in crossed and "dZ2" in crossed
    relu_kinks = ACTIVATION_FUNCS["relu"].at_kink(ref.forward["Z1"])
    assert (fd.crossings["dZ1"] | ~relu_kinks).all()
    l1_kinks = HEAD_FUNCS["linear_l1"].kink_mask(ref.forward["A2"], case.Y)
    assert (fd.crossings["dZ2"] | ~l1_kinks).all()


def test_complex_step_takes_the_branch_of_the_real_part() -> None:
    # away from exact kinks, relu and L1 are analytic on each side: complex step holds there
    spec = _spec(SMALL, "relu", "linear_l1", "logits", 0)
    w = within(_reference(spec).grads, _complex_step(spec), **COMPLEX_STEP)
    assert w.error <= COMPLEX_STEP["rtol"], str(w)

