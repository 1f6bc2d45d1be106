"""The fast paths of the judge give the same answers as the general ones."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from gradparity.judge.compare import _compare_finite, _compare_general, compare_arrays
from gradparity.judge.explanations import _median_rel_eps
from gradparity.reference.oracle import oracle_error


def _fields(c):
    out = {}
    for f in dataclasses.fields(c):
        v = getattr(c, f.name)
        v = v.tolist() if isinstance(v, np.ndarray) else v
        out[f.name] = "nan" if isinstance(v, float) and np.isnan(v) else v
    return out


def _cases():
    rng = np.random.default_rng(3)
    for dtype in (np.float32, np.float64):
        for shape in ((), (1,), (7,), (5, 4), (3, 2, 2)):
            e = rng.standard_normal(shape).astype(dtype)
            e = np.asarray(e)
            a = (e + rng.standard_normal(shape) * 1e-6).astype(dtype)
            yield a, e, dtype  # mostly close
            yield e.copy(), e, dtype  # identical
            z = np.zeros(shape, dtype=dtype)
            yield z, z, dtype  # all zeros
            if np.size(e) > 1:
                a2 = np.array(a, copy=True)
                a2.flat[0] = 0.0
                e2 = np.array(e, copy=True)
                e2.flat[1] = 0.0  # a zero expected where a is not, and the other way
                yield a2, e2, dtype
                yield (10 * a).astype(dtype), e, dtype  # far apart: every element fails
                yield (-a).astype(dtype), e, dtype  # opposite signs: ULPs across zero
                big = np.full(shape, np.finfo(dtype).max / 4, dtype=dtype)
                yield big, -big, dtype  # ULP distances near the int64 limit


@pytest.mark.parametrize("rtol,atol", [(1.3e-6, 1e-5), (1e-7, 1e-7), (0.0, 0.0)])
def test_finite_path_equals_general(rtol, atol):
    n = 0
    for a, e, dtype in _cases():
        with np.errstate(over="ignore", invalid="ignore"):
            _check_same(a, e, dtype, rtol, atol)
        n += 1
    assert n > 30


def _check_same(a, e, dtype, rtol, atol):
    a64, e64 = np.asarray(a, dtype=np.float64), np.asarray(e, dtype=np.float64)
    work = np.dtype(dtype)
    fast = _compare_finite(a, e, a64, e64, a64 - e64, rtol=rtol, atol=atol, work=work)
    slow = _compare_general(a, e, a64, e64, rtol=rtol, atol=atol, work=work)
    assert _fields(fast) == _fields(slow), (a, e)


def test_nonfinite_still_general():
    a = np.array([1.0, np.inf, np.nan])
    e = np.array([1.0, np.inf, np.nan])
    c = compare_arrays(a, e, rtol=1e-7, atol=1e-7)
    assert c.passed and c.norm_err_eps == 0.0 and np.isnan(c.cosine)
    c = compare_arrays(np.array([1.0, np.nan]), np.array([1.0, 2.0]), rtol=1e-7, atol=1e-7)
    assert not c.passed and c.max_abs_err == np.inf


def _oracle_error_ld(x, o, dtype):
    """The long-double computation, for comparison."""
    o = np.asarray(o, dtype=np.longdouble)
    d = np.asarray(x, dtype=np.longdouble) - o
    eps = np.longdouble(np.finfo(dtype).eps)
    norm = float(np.sqrt(np.sum(d * d)) / (np.sqrt(np.sum(o * o)) * eps))
    worst = float(np.max(np.abs(d)) / (np.max(np.abs(o)) * eps))
    return norm, worst


def test_oracle_error_float64_path_matches_long_double():
    rng = np.random.default_rng(5)
    o = rng.standard_normal((30, 20))
    x = o.astype(np.float32)
    e = oracle_error(x, o, np.dtype(np.float32))
    norm, worst = _oracle_error_ld(x, o, np.float32)
    assert e.norm_eps == pytest.approx(norm, rel=1e-12)
    assert e.worst_eps == pytest.approx(worst, rel=1e-12)
    # squares beyond float64's range: the long-double path answers
    big = o * 1e200
    e = oracle_error((big * (1 + 1e-7)).astype(np.float64), big, np.dtype(np.float32))
    assert np.isfinite(e.norm_eps) and e.norm_eps > 0


def test_oracle_error_long_double_oracle_in_float64():
    rng = np.random.default_rng(7)
    o = rng.standard_normal((40, 9)).astype(np.longdouble)
    o += o * np.longdouble(2.0**-53) * rng.uniform(-1, 1, o.shape).astype(np.longdouble)
    x = o.astype(np.float64) * (1 + 1e-15 * rng.standard_normal(o.shape))
    e = oracle_error(x, o, np.dtype(np.float64))
    norm, worst = _oracle_error_ld(x, o, np.float64)
    assert e.norm_eps == pytest.approx(norm, rel=1e-12)
    assert e.worst_eps == pytest.approx(worst, rel=1e-12)
    assert oracle_error(o.astype(np.float64), o, np.dtype(np.float64)).worst_eps <= 0.5


def test_median_rel_eps_float64_matches_long_double():
    rng = np.random.default_rng(6)
    o = rng.standard_normal(1001).astype(np.longdouble)
    o += o * np.longdouble(2.0**-53) * np.asarray(rng.uniform(-1, 1, 1001), np.longdouble)
    x = o.astype(np.float64)
    eps = float(np.finfo(np.float64).eps)
    got = _median_rel_eps(x, o, eps)
    want = float(np.median(np.abs(x.astype(np.longdouble) - o) / np.abs(o)) / eps)
    assert got == pytest.approx(want, rel=1e-6)
    assert 0.05 < got < 0.5  # a float64 rounding: about a quarter eps typically
