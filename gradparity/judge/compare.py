"""Vectorised per-tensor comparison metrics and the allclose verdict.

`compare_arrays` measures one ``actual`` array against one ``expected`` array (same shape,
any rank, including 0-d) and returns a `TensorComparison` that feeds both a table row and
an assertion message laid out like ``torch.testing.assert_close``'s.

Non-finite values: an element agrees when both sides are the same infinity or both are NaN
(so a backend is never blamed for an overflow the reference also has); any other pairing
with a non-finite value is a mismatch.
"""

from __future__ import annotations

from dataclasses import dataclass, fields

import numpy as np

from gradparity.core import blocks as _blocks
from gradparity.judge.tolerances import eps

Array = np.ndarray

#: `TensorComparison` fields that are not table columns.
_PRIVATE = frozenset({"mismatch_mask", "diff", "shape_error", "abs_index", "rel_index"})


@dataclass(frozen=True)
class TensorComparison:
    """Metrics of ``actual`` against ``expected``.

    ``worst_index`` is the element that violates ``atol + rtol |expected|`` the most (or,
    when all pass, the one with the largest absolute difference); ``worst_value`` and
    ``worst_expected`` are the two values there. ``max_ulp`` counts representable values
    of ``dtype`` between the two; ``norm_err_eps`` is ``||a - e||_2 / (||e||_2 eps)``.
    """

    shape: tuple[int, ...]
    max_abs_err: float
    max_rel_err: float
    max_ulp: float
    cosine: float
    norm_err_eps: float
    worst_index: tuple[int, ...]
    worst_value: float
    worst_expected: float
    n_mismatch: int
    n_elements: int
    atol: float
    rtol: float
    passed: bool
    mismatch_mask: Array | None = None
    diff: Array | None = None
    shape_error: str = ""
    abs_index: tuple[int, ...] = ()
    rel_index: tuple[int, ...] = ()

    def as_row(self) -> dict[str, object]:
        # the public fields only, without asdict's deep copy of the two arrays
        row = {f.name: getattr(self, f.name) for f in fields(self)
               if f.name not in _PRIVATE}
        row["shape"] = "x".join(map(str, self.shape)) if self.shape else "scalar"
        row["worst_index"] = str(self.worst_index) if self.worst_index else "()"
        return row

    def message(self, what: str = "Tensor-likes") -> str:
        """A mismatch report in the layout of torch.testing.assert_close."""
        if self.shape_error:
            return f"{what}: {self.shape_error}"
        if self.passed:
            return f"{what} are close."
        pct = 100.0 * self.n_mismatch / max(self.n_elements, 1)
        return (
            f"{what} are not close!\n\n"
            f"Mismatched elements: {self.n_mismatch} / {self.n_elements} ({pct:.1f}%)\n"
            f"Greatest absolute difference: {self.max_abs_err:.6g} at index {self.abs_index} "
            f"(up to {self.atol:g} allowed)\n"
            f"Greatest relative difference: {self.max_rel_err:.6g} at index {self.rel_index} "
            f"(up to {self.rtol:g} allowed)\n"
            f"Worst element: index {self.worst_index}, actual {self.worst_value!r}, "
            f"expected {self.worst_expected!r}"
        )


def _ordered_ints(x: Array) -> Array:
    """Map floats to integers whose order (and differences) follow the float order."""
    itype = {4: np.int32, 8: np.int64, 2: np.int16}[x.dtype.itemsize]
    i = x.view(itype).astype(np.int64)
    low = np.int64(np.iinfo(itype).min)
    return np.where(i < 0, low - i, i)


def ulp_distance(actual: Array, expected: Array) -> Array:
    """Number of representable values between the elements (float64; inf if non-finite)."""
    dtype = np.promote_types(actual.dtype, expected.dtype)
    a = np.ascontiguousarray(actual, dtype=dtype)
    e = np.ascontiguousarray(expected, dtype=dtype)
    oa, oe = _ordered_ints(a), _ordered_ints(e)
    same_sign = (oa >= 0) == (oe >= 0)
    with np.errstate(over="ignore"):
        near = np.abs(oa - oe).astype(np.float64)
    far = np.abs(oa.astype(np.float64)) + np.abs(oe.astype(np.float64))
    d = np.where(same_sign, near, far)
    both_nan = np.isnan(a) & np.isnan(e)
    bad = ~(np.isfinite(a) & np.isfinite(e)) & ~((a == e) | both_nan)
    return np.where(bad, np.inf, np.where((a == e) | both_nan, 0.0, d))


def _shape_mismatch(actual: Array, expected: Array, rtol: float, atol: float) -> TensorComparison:
    return TensorComparison(
        shape=tuple(np.shape(actual)), max_abs_err=np.inf, max_rel_err=np.inf, max_ulp=np.inf,
        cosine=np.nan, norm_err_eps=np.inf, worst_index=(), worst_value=np.nan,
        worst_expected=np.nan, n_mismatch=int(np.size(expected)),
        n_elements=int(np.size(expected)), atol=atol, rtol=rtol, passed=False,
        shape_error=f"shape {tuple(np.shape(actual))} != expected {tuple(np.shape(expected))}",
    )


def compare_arrays(
    actual: Array, expected: Array, *, rtol: float, atol: float, dtype: str | None = None
) -> TensorComparison:
    """Compare two arrays of the same shape under ``|a - e| <= atol + rtol |e|``.

    Args:
        actual: the backend's array, any shape.
        expected: the array it is judged against, same shape.
        rtol, atol: tolerances (keyword-only).
        dtype: the working dtype for ULP and eps units (default: ``expected``'s; float64
            for a dtype that is not float16, float32 or float64, e.g. long double).
    """
    actual = np.asarray(actual)
    expected = np.asarray(expected)
    if actual.shape != expected.shape:
        return _shape_mismatch(actual, expected, rtol, atol)
    work = np.dtype(dtype) if dtype is not None else expected.dtype
    if not np.issubdtype(work, np.floating) or work.itemsize not in (2, 4, 8):
        work = np.dtype(np.float64)
    if atol >= 0 and rtol >= 0 and expected.size > _blocks.BLOCK:
        blocked = _compare_blocked(actual, expected, rtol=rtol, atol=atol, work=work)
        if blocked is not None:
            return blocked
    a = np.asarray(actual, dtype=np.float64)
    e = np.asarray(expected, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        d = a - e
    if atol >= 0 and rtol >= 0 and e.size and np.isfinite(d).all():
        # every element finite on both sides (a non-finite one makes d non-finite)
        return _compare_finite(actual, expected, a, e, d, rtol=rtol, atol=atol, work=work)
    return _compare_general(actual, expected, a, e, rtol=rtol, atol=atol, work=work)


def _compare_general(actual: Array, expected: Array, a: Array, e: Array, *, rtol: float,
                     atol: float, work: np.dtype) -> TensorComparison:
    """`compare_arrays` for any values (non-finite ones included); ``a``, ``e`` are the
    two arrays in float64."""
    n = int(e.size)

    both_nan = np.isnan(a) & np.isnan(e)
    same = (a == e) | both_nan  # equal values, equal infinities, NaN with NaN
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        diff = np.where(same, 0.0, np.abs(a - e))
        diff = np.where(np.isnan(diff), np.inf, diff)
        allowed = atol + rtol * np.abs(np.where(np.isfinite(e), e, 0.0))
        ok = same | (diff <= allowed)
        rel = np.where(same, 0.0, np.where(e != 0, diff / np.abs(e), np.inf))
        rel = np.where(np.isnan(rel), np.inf, rel)
    mismatch = ~ok
    n_mismatch = int(mismatch.sum())

    if n:
        with np.errstate(invalid="ignore"):
            badness = np.where(mismatch, diff - allowed, -np.inf)
        if n_mismatch:
            badness = np.where(np.isnan(badness), np.inf, badness)
            flat = int(np.argmax(badness))
        else:
            flat = int(np.argmax(diff))
        worst = tuple(int(i) for i in np.unravel_index(flat, e.shape))
        worst_value = float(a.flat[flat])
        worst_expected = float(e.flat[flat])
        max_abs = float(diff.max())
        max_rel = float(rel.max())
        abs_index = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), e.shape))
        rel_index = tuple(int(i) for i in np.unravel_index(int(np.argmax(rel)), e.shape))
        max_ulp = float(ulp_distance(actual.astype(work), expected.astype(work)).max())
    else:
        worst, worst_value, worst_expected = (), np.nan, np.nan
        abs_index = rel_index = ()
        max_abs = max_rel = max_ulp = 0.0

    finite = np.isfinite(a).all() and np.isfinite(e).all()
    if finite:
        cosine, norm_err = _norms(a, e, a - e, work)
    else:
        cosine = np.nan
        norm_err = 0.0 if bool(same.all()) else np.inf

    return TensorComparison(
        shape=tuple(e.shape), max_abs_err=max_abs, max_rel_err=max_rel, max_ulp=max_ulp,
        cosine=cosine, norm_err_eps=float(norm_err), worst_index=worst,
        worst_value=worst_value, worst_expected=worst_expected, n_mismatch=n_mismatch,
        n_elements=n, atol=float(atol), rtol=float(rtol), passed=n_mismatch == 0,
        mismatch_mask=mismatch, diff=diff, abs_index=abs_index, rel_index=rel_index,
    )


def _norms(a: Array, e: Array, d: Array, work: np.dtype) -> tuple[float, float]:
    """(cosine, ||d||_2 / (||e||_2 eps)) of finite arrays, ``d = a - e``."""
    na, ne = float(np.linalg.norm(a)), float(np.linalg.norm(e))
    nd = float(np.linalg.norm(d))
    ae = float(np.dot(a.ravel(), e.ravel())) if na and ne else 0.0
    return _cosine_norm_err(na, ne, nd, ae, work)


def _cosine_norm_err(na: float, ne: float, nd: float, ae: float,
                     work: np.dtype) -> tuple[float, float]:
    """(cosine, ||d||_2 / (||e||_2 eps)) from the norms of a, e, d and the dot a . e."""
    if na == 0.0 and ne == 0.0:
        cosine = 1.0
    elif na == 0.0 or ne == 0.0:
        cosine = 0.0
    else:
        cosine = float(ae / (na * ne))
    if ne == 0.0:
        norm_err = 0.0 if nd == 0.0 else np.inf
    else:
        norm_err = nd / (ne * eps(work))
    return cosine, float(norm_err)


def _max_ulp_finite(actual: Array, expected: Array) -> float:
    """``ulp_distance(actual, expected).max()`` for finite arrays of one dtype, in fewer
    passes. On the raw bit patterns (sign and magnitude): where the sign bits agree, the
    distance is the difference of the patterns, which cannot overflow their integer type
    (both lie on one side of zero); where they differ, it is the sum of the magnitudes,
    summed in float64 as the general rule does (-0 and +0 have magnitude 0 either way)."""
    if not actual.dtype.isnative:  # the bit patterns are read in this machine's order
        actual = actual.astype(actual.dtype.newbyteorder("="))
    if not expected.dtype.isnative:
        expected = expected.astype(expected.dtype.newbyteorder("="))
    itype = {4: np.int32, 8: np.int64, 2: np.int16}[actual.dtype.itemsize]
    ra, re = actual.view(itype).ravel(), expected.view(itype).ravel()
    if not ra.size:
        return 0.0
    signs = np.bitwise_xor(ra, re)  # negative where the sign bits differ
    if int(signs.min()) >= 0:  # the usual case: one side of zero everywhere
        d = np.subtract(ra, re, out=signs)
        return float(max(int(d.max()), -int(d.min())))
    apart = signs < 0
    keep = ~apart
    near = 0.0
    if keep.any():
        d = ra[keep] - re[keep]
        near = float(max(int(d.max()), -int(d.min())))
    mask = np.iinfo(itype).max  # every bit but the sign
    far = ((ra[apart] & mask).astype(np.float64) + (re[apart] & mask).astype(np.float64))
    return max(near, float(far.max()))


def _index(flat: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    return tuple(int(i) for i in np.unravel_index(flat, shape))


def _elementwise(d: Array, e: Array, rtol: float,
                 atol: float) -> tuple[Array, Array, Array, Array]:
    """The passes every finite path shares, for ``d = a - e`` (float64, finite):
    ``|d|``, ``allowed = atol + rtol |e|``, ``mismatch = |d| > allowed`` and the relative
    error ``|d| / |e|`` (0 where ``d`` is 0)."""
    diff = np.abs(d)
    abs_e = np.abs(e)
    allowed = np.multiply(abs_e, rtol)
    allowed += atol
    mismatch = diff > allowed
    with np.errstate(invalid="ignore", divide="ignore"):
        rel = np.divide(diff, abs_e, out=abs_e)
    # 0/0 (equal zeros) is the only NaN (d is finite): 0 in the metric; fmax is 0 there
    # and leaves every other (non-negative) value as it is, in one pass
    np.fmax(rel, 0.0, out=rel)
    return diff, allowed, mismatch, rel


def _compare_finite(actual: Array, expected: Array, a: Array, e: Array, d: Array, *,
                    rtol: float, atol: float, work: np.dtype) -> TensorComparison:
    """`compare_arrays` when every element of both arrays is finite and atol, rtol >= 0:
    the same metrics in fewer passes (no NaN/inf bookkeeping)."""
    shape = e.shape
    a, e, d = a.reshape(-1), e.reshape(-1), d.reshape(-1)  # 0-d too: arrays, not scalars
    diff, allowed, mismatch, rel = _elementwise(d, e, rtol, atol)
    n_mismatch = int(np.count_nonzero(mismatch))
    flat_abs = int(np.argmax(diff))
    flat_rel = int(np.argmax(rel))
    if n_mismatch:
        badness = diff - allowed
        badness[~mismatch] = -np.inf
        flat = int(np.argmax(badness))
    else:
        flat = flat_abs
    if actual.dtype == expected.dtype == work:
        max_ulp = _max_ulp_finite(np.ascontiguousarray(actual), np.ascontiguousarray(expected))
    else:  # a cast to the working dtype may overflow: the general rule
        max_ulp = float(ulp_distance(actual.astype(work), expected.astype(work)).max())
    cosine, norm_err = _norms(a, e, d, work)
    return TensorComparison(
        shape=tuple(shape), max_abs_err=float(diff[flat_abs]),
        max_rel_err=float(rel[flat_rel]), max_ulp=max_ulp, cosine=cosine,
        norm_err_eps=norm_err, worst_index=_index(flat, shape),
        worst_value=float(a[flat]), worst_expected=float(e[flat]),
        n_mismatch=n_mismatch, n_elements=int(e.size), atol=float(atol), rtol=float(rtol),
        passed=n_mismatch == 0, mismatch_mask=mismatch.reshape(shape),
        diff=diff.reshape(shape),
        abs_index=_index(flat_abs, shape), rel_index=_index(flat_rel, shape),
    )


class _First:
    """The largest value seen and its flat index; on ties the earliest (`np.argmax`)."""

    __slots__ = ("value", "index")

    def __init__(self, start: float) -> None:
        self.value, self.index = start, -1

    def offer(self, block: Array, start: int) -> None:
        i = int(np.argmax(block))
        v = float(block[i])
        if v > self.value or self.index < 0:
            self.value, self.index = v, start + i


def _compare_blocked(actual: Array, expected: Array, *, rtol: float, atol: float,
                     work: np.dtype) -> TensorComparison | None:
    """`_compare_finite` block by block (`gradparity.core.blocks`), for a large tensor;
    ``None`` when an element is not finite (the caller then takes the general rule).
    Every metric equals `_compare_finite`'s except the norms and the cosine, whose sums
    of squares are summed block by block (a rounding-level difference, like another BLAS
    kernel's)."""
    shape = expected.shape
    af = np.ascontiguousarray(actual).reshape(-1)
    ef = np.ascontiguousarray(expected).reshape(-1)
    raw_ulp = actual.dtype == expected.dtype == work
    n_mismatch = 0
    abs_max, rel_max, bad_max = _First(-1.0), _First(-1.0), _First(-np.inf)
    max_ulp = 0.0
    aa = ee = dd = ae = 0.0
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        for part in _blocks.blocks(ef.size):
            s = part.start
            ab, eb = af[part], ef[part]
            a, e = np.asarray(ab, dtype=np.float64), np.asarray(eb, dtype=np.float64)
            d = a - e
            if not np.isfinite(d).all():
                return None
            diff, allowed, mismatch, rel = _elementwise(d, e, rtol, atol)
            k = int(np.count_nonzero(mismatch))
            abs_max.offer(diff, s)
            rel_max.offer(rel, s)
            if k:
                n_mismatch += k
                badness = diff - allowed
                badness[~mismatch] = -np.inf
                bad_max.offer(badness, s)
            if raw_ulp:
                max_ulp = max(max_ulp, _max_ulp_finite(ab, eb))
            else:  # a cast to the working dtype may overflow: the general rule
                max_ulp = max(max_ulp, float(ulp_distance(ab.astype(work),
                                                          eb.astype(work)).max()))
            aa += float(np.dot(a, a))
            ee += float(np.dot(e, e))
            dd += float(np.dot(d, d))
            ae += float(np.dot(a, e))
    na, ne, nd = float(np.sqrt(aa)), float(np.sqrt(ee)), float(np.sqrt(dd))
    cosine, norm_err = _cosine_norm_err(na, ne, nd, ae if na and ne else 0.0, work)
    flat = bad_max.index if n_mismatch else abs_max.index
    mismatch_mask = diff_full = None
    if n_mismatch:  # the explanations look at where the mismatches are
        a64, e64 = np.asarray(af, dtype=np.float64), np.asarray(ef, dtype=np.float64)
        diff_full = np.abs(a64 - e64)
        mismatch_mask = (diff_full > np.abs(e64) * rtol + atol).reshape(shape)
        diff_full = diff_full.reshape(shape)
    return TensorComparison(
        shape=tuple(shape), max_abs_err=abs_max.value, max_rel_err=rel_max.value,
        max_ulp=max_ulp, cosine=cosine, norm_err_eps=norm_err,
        worst_index=_index(flat, shape), worst_value=float(af[flat]),
        worst_expected=float(ef[flat]), n_mismatch=n_mismatch, n_elements=int(ef.size),
        atol=float(atol), rtol=float(rtol), passed=n_mismatch == 0,
        mismatch_mask=mismatch_mask, diff=diff_full,
        abs_index=_index(abs_max.index, shape), rel_index=_index(rel_max.index, shape),
    )


def compare_many(pairs: list[tuple[Array, Array]], *, rtol: float, atol: float,
                 dtype: str | None = None) -> list[TensorComparison]:
    """``[compare_arrays(a, e, ...) for a, e in pairs]``, with the same results, field for
    field; the small tensors (at most `gradparity.core.blocks.BLOCK` elements, both sides
    in the working dtype, every element finite) are measured together, in one set of
    passes over their concatenation, up to a block at a time: per tensor, the passes
    cost far more in calls than in arithmetic on the few hundred elements a small
    network's tensors have."""
    out: list[TensorComparison | None] = [None] * len(pairs)
    group: list[int] = []
    size = 0
    work_of = None if dtype is None else np.dtype(dtype)

    def flush() -> None:
        nonlocal size
        if group:
            for i, c in zip(group, _compare_group([pairs[i] for i in group], rtol=rtol,
                                                  atol=atol, work=work_of), strict=True):
                out[i] = c
        group.clear()
        size = 0

    for i, (a, e) in enumerate(pairs):
        if (rtol >= 0 and atol >= 0 and isinstance(a, np.ndarray)
                and isinstance(e, np.ndarray) and a.shape == e.shape
                and 0 < e.size <= _blocks.BLOCK and a.dtype == e.dtype
                and e.dtype == (work_of if work_of is not None else e.dtype)
                and e.dtype.kind == "f" and e.dtype.itemsize in (2, 4, 8)):
            if size + e.size > _blocks.BLOCK or (group and pairs[group[0]][1].dtype
                                                 != e.dtype):
                flush()  # a group: one dtype, at most a block
            group.append(i)
            size += e.size
        else:
            out[i] = compare_arrays(a, e, rtol=rtol, atol=atol, dtype=dtype)
    flush()
    return out  # type: ignore[return-value]


def _first(values: Array, maxima: Array, sizes: Array, starts: Array) -> Array:
    """Per segment, the flat index of the first element equal to the segment's maximum
    (every segment holds one: the maximum is attained)."""
    at = np.flatnonzero(values == np.repeat(maxima, sizes))
    return at[np.searchsorted(at, starts)]


def _compare_group(pairs: list[tuple[Array, Array]], *, rtol: float, atol: float,
                   work: np.dtype | None) -> list[TensorComparison]:
    """`compare_many`'s small tensors (one dtype, the working one), measured together;
    a tensor with a non-finite element goes through `compare_arrays` on its own."""
    sizes = np.array([e.size for _, e in pairs], dtype=np.intp)
    starts = np.zeros(len(pairs), dtype=np.intp)
    np.cumsum(sizes[:-1], out=starts[1:])
    raw_a = np.concatenate([a.reshape(-1) for a, _ in pairs])
    raw_e = np.concatenate([e.reshape(-1) for _, e in pairs])
    a64, e64 = raw_a.astype(np.float64), raw_e.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore", divide="ignore"):
        d = a64 - e64
        finite = np.isfinite(d)
        if not finite.all():  # rare: those tensors on their own, the rest together again
            whole = np.logical_and.reduceat(finite, starts)
            rest = [p for p, ok in zip(pairs, whole, strict=True) if ok]
            done = iter(_compare_group(rest, rtol=rtol, atol=atol, work=work) if rest
                        else [])
            return [next(done) if ok else compare_arrays(a, e, rtol=rtol, atol=atol,
                                                          dtype=work)
                    for (a, e), ok in zip(pairs, whole, strict=True)]
        diff, allowed, mismatch, rel = _elementwise(d, e64, rtol, atol)
        n_mismatch = np.add.reduceat(mismatch, starts, dtype=np.intp)
        max_abs = np.maximum.reduceat(diff, starts)
        max_rel = np.maximum.reduceat(rel, starts)
        at_abs = _first(diff, max_abs, sizes, starts)
        at_rel = _first(rel, max_rel, sizes, starts)
        at_bad = at_abs
        if n_mismatch.any():
            badness = diff - allowed
            badness[~mismatch] = -np.inf
            at_bad = np.where(n_mismatch > 0,
                              _first(badness, np.maximum.reduceat(badness, starts), sizes,
                                     starts), at_abs)
        # ULPs on the raw bit patterns, as `_max_ulp_finite`: apart where the signs differ
        itype = {4: np.int32, 8: np.int64, 2: np.int16}[raw_a.dtype.itemsize]
        ra, re = raw_a.view(itype), raw_e.view(itype)
        apart = (ra ^ re) < 0
        near = np.abs(np.where(apart, 0, ra - re))
        max_ulp = np.maximum.reduceat(near, starts).astype(np.float64)
        if apart.any():
            mask = np.iinfo(itype).max
            far = np.where(apart, (ra & mask).astype(np.float64)
                           + (re & mask).astype(np.float64), 0.0)
            np.maximum(max_ulp, np.maximum.reduceat(far, starts), out=max_ulp)
    out = []
    for k, (_a, e) in enumerate(pairs):
        s, t, shape = int(starts[k]), int(starts[k] + sizes[k]), e.shape
        cosine, norm_err = _norms(a64[s:t], e64[s:t], d[s:t], work or e.dtype)
        flat, fa, fr = int(at_bad[k]) - s, int(at_abs[k]) - s, int(at_rel[k]) - s
        n = int(n_mismatch[k])
        out.append(TensorComparison(
            shape=tuple(shape), max_abs_err=float(max_abs[k]), max_rel_err=float(max_rel[k]),
            max_ulp=float(max_ulp[k]), cosine=cosine, norm_err_eps=norm_err,
            worst_index=_index(flat, shape), worst_value=float(a64[s + flat]),
            worst_expected=float(e64[s + flat]), n_mismatch=n, n_elements=int(sizes[k]),
            atol=float(atol), rtol=float(rtol), passed=n == 0,
            mismatch_mask=mismatch[s:t].reshape(shape), diff=diff[s:t].reshape(shape),
            abs_index=_index(fa, shape), rel_index=_index(fr, shape)))
    return out
