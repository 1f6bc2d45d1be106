"""The fast paths of the judge give the same answers as the general ones."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gradparity.judge.compare import (
    _compare_finite,
    _compare_general,
    _max_ulp_finite,
    compare_arrays,
    ulp_distance,
)
from gradparity.judge.explanations import _median_rel_eps, _median_rel_outside
from gradparity.reference.oracle import hi_lo, oracle_error


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


_FLOATS = {
    np.float32: st.floats(width=32, allow_nan=False, allow_infinity=False),
    np.float64: st.floats(allow_nan=False, allow_infinity=False),
    np.float16: st.floats(width=16, allow_nan=False, allow_infinity=False),
}


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.float16])
@settings(max_examples=300, deadline=None)
@given(data=st.data())
def test_max_ulp_fast_path_equals_the_rule(dtype, data):
    """Every finite value, both signs, zeros of both signs, subnormals, the extremes."""
    n = data.draw(st.integers(1, 12))
    a = np.array(data.draw(st.lists(_FLOATS[dtype], min_size=n, max_size=n)), dtype=dtype)
    e = np.array(data.draw(st.lists(_FLOATS[dtype], min_size=n, max_size=n)), dtype=dtype)
    if data.draw(st.booleans()):  # mostly near: the case the fast path is for
        e = np.nextafter(a, np.zeros_like(a)).astype(dtype)  # towards 0: stays finite
    assert _max_ulp_finite(a, e) == float(ulp_distance(a, e).max())


def test_oracle_size_is_kept_per_tensor_and_not_reused_for_another():
    rng = np.random.default_rng(11)
    o = rng.standard_normal((6, 5))
    x = o.astype(np.float32)
    first = oracle_error(x, o, np.dtype(np.float32))
    assert oracle_error(x, o, np.dtype(np.float32)) == first  # kept: same answer
    o2 = 3.0 * o  # another tensor (maybe at a freed one's address): its own size
    want = _oracle_error_ld(x, o2, np.float32)
    got = oracle_error(x, o2, np.dtype(np.float32))
    assert (got.norm_eps, got.worst_eps) == pytest.approx(want, rel=1e-12)


@settings(max_examples=200, deadline=None)
@given(scale=st.floats(-20, 3), n=st.integers(1, 60), seed=st.integers(0, 2**16),
       zeros=st.integers(0, 5))
def test_median_band_shortcut_never_hides_a_median_in_the_band(scale, n, seed, zeros):
    """`precision_problem` skips the median when `_median_rel_outside` says so: that must
    only happen when the exact median is outside the band."""
    rng = np.random.default_rng(seed)
    o = rng.standard_normal(n)
    o[:min(zeros, n)] = 0.0  # excluded elements
    x = o * (1 + 10.0**scale * rng.uniform(-1, 1, n) * rng.choice([0.0, 1.0, 3.0], n))
    eps = float(np.finfo(np.float64).eps)
    eps32 = float(np.finfo(np.float32).eps)
    low, high = eps32 / 64, eps32 * 64
    if _median_rel_outside(x, o, low, high):
        got = _median_rel_eps(x, o, eps)
        assert not low <= got * eps <= high


def test_median_band_shortcut_answers_for_float32_like_values():
    rng = np.random.default_rng(8)
    o = rng.standard_normal(5000)
    assert not _median_rel_outside(o.astype(np.float32).astype(np.float64), o,
                                   float(np.finfo(np.float32).eps) / 64,
                                   float(np.finfo(np.float32).eps) * 64)
    assert _median_rel_outside(o.copy(), o, 1e-9, 1e-5)  # exact: far below
    assert _median_rel_outside(o * 1.1, o, 1e-9, 1e-5)  # far above


def _with_block(monkeypatch, size):
    from gradparity.core import blocks

    monkeypatch.setattr(blocks, "BLOCK", size)


@pytest.mark.parametrize("block", [1, 2, 3, 5])
@pytest.mark.parametrize("rtol,atol", [(1.3e-6, 1e-5), (1e-7, 1e-7), (0.0, 0.0)])
def test_blocked_path_equals_one_piece(monkeypatch, block, rtol, atol):
    """Large tensors are measured block by block: every metric is the one-piece one (the
    first index on ties across blocks included), the norms to rounding."""
    n = 0
    for a, e, _dtype in [*_cases(), *_tied_cases()]:
        if np.size(e) <= block:
            continue
        with np.errstate(over="ignore", invalid="ignore"):
            whole = _fields(compare_arrays(a, e, rtol=rtol, atol=atol))
        _with_block(monkeypatch, block)
        try:
            with np.errstate(over="ignore", invalid="ignore"):
                blocked = _fields(compare_arrays(a, e, rtol=rtol, atol=atol))
        finally:
            monkeypatch.undo()
        for k in ("cosine", "norm_err_eps"):
            w, b = whole.pop(k), blocked.pop(k)
            assert w == b or w == pytest.approx(b, rel=1e-12, abs=1e-300), (k, a, e)
        if not whole["n_mismatch"]:  # the arrays only a failing tensor's explanations use
            assert blocked.pop("mismatch_mask") is None and blocked.pop("diff") is None
            del whole["mismatch_mask"], whole["diff"]
        assert blocked == whole, (a, e, block)
        n += 1
    assert n > 20


def _tied_cases():
    """The largest difference (and the worst mismatch) equal in several blocks."""
    for dtype in (np.float32, np.float64):
        e = np.ones(12, dtype=dtype)
        a = e.copy()
        a[[2, 5, 9]] = 2.0  # the same difference three times
        yield a, e, dtype
        a = e.copy()
        a[[7, 3]] = [3.0, 3.0]
        yield a.reshape(3, 4), e.reshape(3, 4), dtype


def test_blocked_path_is_used_and_non_finite_falls_back(monkeypatch):
    import gradparity.judge.compare as compare

    calls = []
    real = compare._compare_blocked
    monkeypatch.setattr(compare, "_compare_blocked",
                        lambda *a, **k: calls.append(1) or real(*a, **k))
    _with_block(monkeypatch, 4)
    e = np.arange(1.0, 11.0)
    a = e.copy()
    a[8] = np.nan
    c = compare_arrays(a, e, rtol=1e-7, atol=1e-7)
    assert calls and c.n_mismatch == 1 and c.max_abs_err == np.inf  # the general rule
    c = compare_arrays(e + 1e-3, e, rtol=1e-7, atol=1e-7)
    assert len(calls) == 2 and c.n_mismatch == 10
    assert c.mismatch_mask.shape == e.shape and c.diff.shape == e.shape  # for explanations


@pytest.mark.parametrize("block", [1, 4, 7])
def test_blocked_oracle_error_equals_one_piece(monkeypatch, block):
    rng = np.random.default_rng(13)
    for o, dtype in ((rng.standard_normal((6, 5)), np.float32),
                     (rng.standard_normal((4, 9)).astype(np.longdouble), np.float64)):
        x = (o * (1 + 1e-6 * rng.standard_normal(o.shape))).astype(dtype)
        whole = oracle_error(x, o, np.dtype(dtype))
        _with_block(monkeypatch, block)
        o2 = o.copy()  # a tensor of its own: no kept size or error
        blocked = oracle_error(x.copy(), o2, np.dtype(dtype))
        monkeypatch.undo()
        assert blocked.worst_eps == whole.worst_eps
        assert blocked.norm_eps == pytest.approx(whole.norm_eps, rel=1e-12)


def _mixed_pairs():
    """Small tensors of both dtypes, with ties, mismatches, zeros, opposite signs,
    non-finite elements, an empty actual and a shape mismatch among them."""
    pairs = [(a, e) for a, e, _ in [*_cases(), *_tied_cases()]]
    rng = np.random.default_rng(17)
    e = rng.standard_normal((4, 3))
    a = e.copy()
    a[1, 2] = np.nan
    pairs.append((a, e))
    a = e.copy()
    a[0, 0] = np.inf
    pairs.append((a, e))
    pairs.append((np.full((0,), np.nan), e))
    pairs.append((e.T.copy(), e))
    pairs.append((e.astype(np.float32), e))  # another dtype than the working one
    return pairs


@pytest.mark.parametrize("block", [None, 7, 40])
@pytest.mark.parametrize("rtol,atol", [(1.3e-6, 1e-5), (1e-7, 1e-7), (0.0, 0.0)])
def test_many_small_tensors_together_equal_one_at_a_time(monkeypatch, block, rtol, atol):
    """`compare_many` measures small tensors together: every field, the masks and
    differences included, is what `compare_arrays` gives each on its own."""
    from gradparity.judge.compare import compare_many

    if block is not None:  # groups end at a block: several groups, and large tensors
        _with_block(monkeypatch, block)
    pairs = _mixed_pairs()
    with np.errstate(all="ignore"):
        for dtype in (None, "float64", "float32"):
            together = compare_many(pairs, rtol=rtol, atol=atol, dtype=dtype)
            alone = [compare_arrays(a, e, rtol=rtol, atol=atol, dtype=dtype)
                     for a, e in pairs]
            assert len(together) == len(alone)
            for (a, e), t, one in zip(pairs, together, alone, strict=True):
                assert _fields(t) == _fields(one), (a, e, dtype)


def test_big_endian_arrays_are_measured_like_native_ones():
    from gradparity.judge.compare import compare_many

    a, e = np.array([1.0, 2.0]), np.array([1.0, 3.0])
    want = _fields(compare_arrays(a, e, rtol=1e-7, atol=1e-7))
    big_a, big_e = a.astype(">f8"), e.astype(">f8")
    assert _fields(compare_arrays(big_a, big_e, rtol=1e-7, atol=1e-7)) == want
    assert _fields(compare_many([(big_a, big_e)], rtol=1e-7, atol=1e-7)[0]) == want


def _median_rel_outside_rule(x, o, low, high):
    """`_median_rel_outside` as first written: whole arrays, both counts."""
    hi, lo = hi_lo(np.asarray(o))
    abs_hi = np.abs(hi)
    keep = abs_hi > np.finfo(np.float64).tiny
    n = int(np.count_nonzero(keep))
    if n == 0:
        return True
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.asarray(x, dtype=np.float64) - hi
        if lo is not None:
            d = d - lo
        d = np.abs(d)
        below = np.count_nonzero((d < (0.5 * low) * abs_hi) & keep)
        if below >= n // 2 + 1:
            return True
        above = np.count_nonzero((d > (2.0 * high) * abs_hi) & keep)
    return above >= n // 2 + 1


@pytest.mark.parametrize("block", [1, 2, 3, 7])
@settings(max_examples=60, deadline=None)
@given(scale=st.floats(-20, 3), n=st.integers(1, 40), seed=st.integers(0, 2**16),
       zeros=st.integers(0, 30), wide=st.booleans())
def test_median_band_blocks_answer_as_the_whole_array(block, scale, n, seed, zeros, wide):
    """Block by block, with the count below stopping early, the answer is the one of the
    whole-array rule: mostly-zero oracles, long-double oracles, errors on either side."""
    from gradparity.core import blocks

    rng = np.random.default_rng(seed)
    o = rng.standard_normal(n)
    o[:min(zeros, n)] = 0.0
    x = o * (1 + 10.0**scale * rng.uniform(-1, 1, n) * rng.choice([0.0, 1.0, 3.0], n))
    # where the oracle is 0 (left out of the counts), anything: 0, tiny or large
    x[:min(zeros, n)] = rng.choice([0.0, 1e-300, 1.0], min(zeros, n))
    if wide:
        o = o.astype(np.longdouble) * (1 + np.longdouble(2.0**-60))
    eps32 = float(np.finfo(np.float32).eps)
    whole = blocks.BLOCK
    blocks.BLOCK = block
    try:
        for low, high in ((eps32 / 64, eps32 * 64), (1e-9, 1e-5), (1e-30, 1e-25)):
            assert _median_rel_outside(x, o, low, high) == _median_rel_outside_rule(
                x, o, low, high)
    finally:
        blocks.BLOCK = whole
