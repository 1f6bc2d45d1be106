"""The long-double oracle's BLAS products: accuracy against exact arithmetic (mpmath)."""

from __future__ import annotations

import mpmath
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradparity.core.spec import Spec
from gradparity.reference import extended
from gradparity.reference.case import make_case
from gradparity.reference.mlp import reference_gradients
from gradparity.reference.oracle import oracle_dtype

pytestmark = pytest.mark.skipif(oracle_dtype("float64") is None,
                                reason="long double is float64 on this platform")

EPS64 = float(np.finfo(np.float64).eps)


def _mp(a: np.ndarray) -> list[list[mpmath.mpf]]:
    """Long-double entries as exact mpmath numbers (hi + lo float64 parts)."""
    hi = a.astype(np.float64)
    lo = (a - hi).astype(np.float64)
    return [[mpmath.mpf(float(hi[i, j])) + mpmath.mpf(float(lo[i, j]))
             for j in range(a.shape[1])] for i in range(a.shape[0])]


def _rel_error(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """max |c - a b| / (|a| |b|) elementwise, with a b exact, in float64 eps."""
    with mpmath.workprec(300):
        A, B, C = _mp(a), _mp(b), _mp(c)
        k = a.shape[1]
        scale = np.abs(a).astype(np.float64) @ np.abs(b).astype(np.float64)
        worst = 0.0
        for i in range(a.shape[0]):
            for j in range(b.shape[1]):
                exact = mpmath.fsum(A[i][p] * B[p][j] for p in range(k))
                worst = max(worst, float(abs(C[i][j] - exact)) / scale[i, j])
    return worst / EPS64


def _ld(rng, shape, spread=0.0):
    """Long-double values with all 64 bits of significand used."""
    x = rng.standard_normal(shape) * np.exp(spread * rng.standard_normal(shape))
    x = x.astype(np.longdouble)
    return x + x * np.longdouble(2.0**-53) * rng.uniform(-1, 1, shape).astype(np.longdouble)


@pytest.mark.parametrize("n,k,m,spread", [(4, 5, 3, 0.0), (8, 32, 4, 0.0), (3, 300, 5, 0.0),
                                          (6, 16, 6, 3.0), (3, 1024, 3, 0.0),
                                          (3, 1024, 3, 2.0), (2, 3000, 2, 0.0),
                                          (2, 3000, 2, 2.0)])
def test_product_error_far_below_float64_eps(n, k, m, spread):
    """Against exact products, elementwise in units of float64 eps times ``|A| |B|``: at
    least 1000x more accurate than float64's eps, entries spanning orders of magnitude
    within a slice's 2**beta (``spread``) and inner dimensions beyond 2**10 (fewer bits in
    the slices) included, and close to NumPy's long-double loop (eps_ld = eps64 / 2048)
    or better."""
    rng = np.random.default_rng(n * 1000 + k)
    a, b = _ld(rng, (n, k), spread), _ld(rng, (k, m), spread)
    split_err = _rel_error(extended.matmul(a, b), a, b)
    loop_err = _rel_error(a @ b, a, b)
    assert split_err <= 1e-3, split_err
    assert split_err <= 4 * max(loop_err, 2.0**-11), (split_err, loop_err)


def _lane_error(c: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    """max |c - a b| / (max |row of a| max |column of b|), with a b exact, in float64 eps:
    the units the harness's errors against the oracle are in (scaled by the tensor's
    norm or largest entry, not element by element)."""
    with mpmath.workprec(300):
        A, B, C = _mp(a), _mp(b), _mp(c)
        rows = np.max(np.abs(a.astype(np.float64)), axis=1)
        cols = np.max(np.abs(b.astype(np.float64)), axis=0)
        worst = 0.0
        for i in range(a.shape[0]):
            for j in range(b.shape[1]):
                exact = mpmath.fsum(A[i][p] * B[p][j] for p in range(a.shape[1]))
                worst = max(worst, float(abs(C[i][j] - exact)) / (rows[i] * cols[j]))
    return worst / EPS64


@pytest.mark.parametrize("n,k,m,spread", [(3, 64, 3, 6.0), (3, 1024, 3, 6.0), (4, 16, 4, 10.0)])
def test_rows_spanning_more_than_a_slice_stay_accurate_in_their_lanes_units(n, k, m, spread):
    """Entries more than 2**beta below their row's largest fall wholly into the float64
    rest, whose product rounds like float64: element by element that can be a sizeable
    part of an eps of a tiny entry of |A| |B|, but in units of the rows' and columns'
    largest entries it stays far below float64's eps."""
    rng = np.random.default_rng(7 + k)
    a, b = _ld(rng, (n, k), spread), _ld(rng, (k, m), spread)
    assert _lane_error(extended.matmul(a, b), a, b) <= 1e-3
    tiny = np.array([[1.0, 1e-10]], dtype=np.longdouble)
    third = np.array([[0.0], [1 / 3]], dtype=np.longdouble)
    assert _lane_error(extended.matmul(tiny, third), tiny, third) <= 1e-3


@pytest.mark.parametrize("exact64", [False, True])
def test_the_leading_slices_are_exact_and_their_product_exact_in_float64(exact64):
    """``lead + rest`` is ``x`` up to one float64 rounding of ``rest`` (none at all for
    float64 values cast up); ``lead`` is a ``beta``-bit integer per entry times its row's
    power of two, so that ``lead_A @ lead_B`` is exact in float64."""
    rng = np.random.default_rng(1)
    k = 64
    a = _ld(rng, (5, k), 2.0)
    if exact64:
        a = a.astype(np.float64).astype(np.longdouble)
    beta = extended.slice_bits(k)
    assert 2 * beta + (k - 1).bit_length() <= 52
    lead, rest = extended.split(a, axis=1, beta=beta)
    assert lead.dtype == rest.dtype == np.float64
    off = np.abs(a - (lead.astype(np.longdouble) + rest.astype(np.longdouble)))
    if exact64:
        assert not off.any()
    else:
        assert off.any()  # the long double's low bits are there, rounded once
        assert np.all(off <= np.ldexp(np.abs(rest), -53).astype(np.longdouble))
    _, top = np.frexp(np.max(np.abs(a.astype(np.float64)), axis=1, keepdims=True))
    unit = np.ldexp(1.0, top - beta)
    units = lead / unit
    assert np.array_equal(units, np.round(units))  # integers...
    assert np.all(np.abs(units) <= 2.0**beta)  # ...of at most beta bits
    assert np.all(np.abs(rest) <= unit / 2)  # the rest lies below the slice
    # so the slices' product is exact in float64: compare with exact integer arithmetic
    b = _ld(rng, (k, 3))
    lead_b, _ = extended.split(b, axis=0, beta=beta)
    _, topb = np.frexp(np.max(np.abs(b.astype(np.float64)), axis=0, keepdims=True))
    ua = units.astype(np.int64)
    ub = (lead_b / np.ldexp(1.0, topb - beta)).astype(np.int64)
    assert np.array_equal(lead @ lead_b,
                          (ua @ ub) * np.ldexp(1.0, top - beta) * np.ldexp(1.0, topb - beta))


def test_falls_back_for_other_dtypes_and_nonfinite():
    a = np.arange(6.0).reshape(2, 3)
    b = np.arange(6.0).reshape(3, 2)
    assert np.array_equal(extended.matmul(a, b), a @ b)
    a32 = a.astype(np.float32)
    assert extended.matmul(a32, b.astype(np.float32)).dtype == np.float32
    bad = a.astype(np.longdouble)
    bad[0, 0] = np.inf
    with np.errstate(invalid="ignore"):
        got = extended.matmul(bad, b.astype(np.longdouble))
        want = bad @ b.astype(np.longdouble)
    assert np.array_equal(got, want, equal_nan=True)


@pytest.mark.parametrize("scale", [2.0**600, 2.0**-600, 2.0**-1040, "below float64"])
def test_entries_near_float64_range_limits_fall_back(scale):
    """Huge or tiny entries (subnormal in float64 included) would push the scaled slices
    out of float64's range: the long-double product answers instead."""
    rng = np.random.default_rng(4)
    a = rng.standard_normal((5, 7)).astype(np.longdouble)
    b = rng.standard_normal((7, 3)).astype(np.longdouble)
    if scale == "below float64":  # long double's range: 0 once rounded to float64
        if not extended._WIDE:
            pytest.skip("long double is float64 here")
        a[2, 3] = np.longdouble("1e-400")
        b[:, 1] = np.longdouble("1e-400")  # a whole lane of them, too
    else:
        a[2, 3] *= scale
    with np.errstate(all="ignore"):
        got = extended.matmul(a, b)
    assert np.array_equal(got, a @ b)


@pytest.mark.parametrize("activation,head,form", [("tanh", "softmax_ce", "logits"),
                                                  ("relu", "sigmoid_bce", "probs"),
                                                  ("gelu", "linear_mse", "logits")])
def test_oracle_matches_the_long_double_loop(monkeypatch, activation, head, form):
    """The whole oracle (every product split) against NumPy's long-double loop: the two
    differ by long double's rounding only, over 100 times below float64's eps."""
    spec = Spec((5, 32, 32, 3 if head == "softmax_ce" else 2), activation=activation,
                head=head, loss_form=form, batch=16, seed=4, dtype="float64")
    case = make_case(spec).astype(np.longdouble)
    split = reference_gradients(case)
    monkeypatch.setattr(extended, "_WIDE", False)  # every product as a @ b
    loop = reference_gradients(case)
    for key, o in loop.grads.items():
        s = split.grads[key]
        scale = float(np.max(np.abs(o.astype(np.float64))))
        if scale == 0:
            continue
        diff = float(np.max(np.abs((s - o).astype(np.float64))))
        assert diff <= 1e-2 * EPS64 * scale, (key, diff / (EPS64 * scale))


@pytest.mark.skipif(not extended._X87, reason="reads the x87 80-bit long double's bits")
@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_float64_exact_reads_the_bits_right(data):
    """True exactly when every entry survives a round trip through float64: float64
    values cast up (any sign, zeros, float64's extremes) are, an entry with a bit below
    float64's last, or outside its normal range, is not; any layout."""
    n = data.draw(st.integers(1, 6))
    m = data.draw(st.integers(1, 5))
    values = data.draw(st.lists(st.floats(allow_nan=False, allow_infinity=False,
                                          allow_subnormal=False), min_size=n * m,
                                max_size=n * m))
    x = np.array(values, dtype=np.float64).reshape(n, m).astype(np.longdouble)
    assert extended.float64_exact(x) and extended.float64_exact(x.T)
    i = data.draw(st.integers(0, n * m - 1))
    change = data.draw(st.sampled_from(["below", "tiny", "huge", "none"]))
    y = x.copy()
    if change == "below" and y.flat[i] != 0:
        y.flat[i] += y.flat[i] * np.longdouble(2.0) ** -60  # a bit float64 cannot hold
    elif change == "tiny":
        y.flat[i] = np.longdouble(2.0) ** -1030  # subnormal in float64
    elif change == "huge":
        y.flat[i] = np.longdouble(2.0) ** 1030  # beyond float64
    with np.errstate(over="ignore"):
        survives = bool(np.all(y.astype(np.float64).astype(np.longdouble) == y)
                        and np.all(np.isfinite(y.astype(np.float64))))
    normal = bool(np.all((np.abs(y) >= np.longdouble(2.0) ** -1022) | (y == 0)))
    assert extended.float64_exact(y) == (survives and normal)
    assert extended.float64_exact(np.asfortranarray(y)) == extended.float64_exact(y)


@pytest.mark.skipif(not extended._X87, reason="reads the x87 80-bit long double's bits")
@pytest.mark.parametrize("significand,exponent", [
    (0, 0x7FFF),                  # pseudo-infinity
    (0, 16383),                   # pseudo-zero
    (0x4000000000000000, 16383),  # unnormal: the explicit leading bit clear
])
def test_float64_exact_rejects_encodings_arithmetic_never_makes(significand, exponent):
    x = np.ones(3, dtype=np.longdouble)
    words = x.view(np.uint64).reshape(-1, 2)
    words[1, 0], words[1, 1] = significand, exponent
    assert not extended.float64_exact(x)
