"""The higher-precision oracle: the reference evaluated on the same values in a wider dtype.

float32 cases are judged against float64; float64 cases against ``np.longdouble`` where the
platform's long double is wider than float64 (x86-64: 64-bit significand, eps ~1.1e-19),
otherwise the oracle is unavailable and said so. The case's arrays are cast up exactly, so
the oracle differs from the working-dtype reference only by rounding. Its matrix products
run on float64 BLAS without rounding error (`gradparity.reference.extended`); the
elementwise steps run in long double.

Errors against the oracle are in units of the working dtype's eps:

* ``norm_eps = ||x - o||_2 / (||o||_2 eps)`` (normwise);
* ``worst_eps = max |x - o| / (||o||_inf eps)`` (worst element, relative to the tensor's
  scale, so tiny elements do not dominate).
"""

from __future__ import annotations

import threading
import weakref
from dataclasses import dataclass

import numpy as np

from gradparity.core.blocks import blocks
from gradparity.core.gradients import GradientSet
from gradparity.reference.case import Case
from gradparity.reference.mlp import reference_gradients


def oracle_dtype(dtype: str | np.dtype) -> np.dtype | None:
    """The oracle's dtype for a working dtype, or ``None`` when no wider type exists."""
    dt = np.dtype(dtype)
    if dt == np.float32:
        return np.dtype(np.float64)
    if dt == np.float64 and np.finfo(np.longdouble).eps < np.finfo(np.float64).eps:
        return np.dtype(np.longdouble)
    return None


def oracle_name(dtype: str | np.dtype) -> str:
    """``"float64"``, ``"longdouble"`` or ``"unavailable"``."""
    od = oracle_dtype(dtype)
    if od is None:
        return "unavailable"
    return "longdouble" if od == np.longdouble and od != np.float64 else str(od)


def oracle_gradients(case: Case) -> GradientSet | None:
    """The reference on ``case``'s values in the oracle dtype (``None`` if unavailable)."""
    od = oracle_dtype(case.dtype)
    if od is None:
        return None
    return reference_gradients(case.astype(od), backend="oracle")


@dataclass(frozen=True)
class OracleError:
    """Distance of one tensor to the oracle, in units of the working dtype's eps."""

    norm_eps: float
    worst_eps: float


def oracle_error(x: np.ndarray | None, oracle: np.ndarray, dtype: np.dtype) -> OracleError:
    """Normwise and worst-element error of ``x`` against ``oracle`` (see module doc).

    Computed in float64: a float64 oracle as it is, a long-double one as ``hi + lo`` (see
    `hi_lo`), so ``x - o = (x - hi) - lo`` to float64's rounding: a relative change of the
    result of about 1e-16, far below anything these errors are compared with. Non-finite
    values, or sums of squares that overflow float64, take the long-double path."""
    if x is None or np.shape(x) != np.shape(oracle):
        return OracleError(np.inf, np.inf)
    if isinstance(x, np.ndarray) and isinstance(oracle, np.ndarray):
        key = (id(x), id(oracle), np.dtype(dtype).str)
        with _SPLITS_LOCK:
            hit = _ERRORS.get(key)
        if hit is not None and hit[0]() is x and hit[1]() is oracle:
            return hit[2]  # the reference's error, judged once per backend
        out = _oracle_error(x, oracle, dtype)
        with _SPLITS_LOCK:
            if len(_ERRORS) > 512:
                _ERRORS.clear()
            _ERRORS[key] = (weakref.ref(x), weakref.ref(oracle), out)
        return out
    return _oracle_error(x, oracle, dtype)


def _oracle_error(x: np.ndarray, oracle: np.ndarray, dtype: np.dtype) -> OracleError:
    if np.asarray(x).dtype.itemsize <= 8:
        hi, lo = hi_lo(np.asarray(oracle))
        fast = _oracle_error_f64(np.asarray(x), hi, lo, dtype)
        if fast is not None:
            return fast
    o = np.asarray(oracle, dtype=np.longdouble)
    d = np.asarray(x, dtype=np.longdouble) - o
    eps = np.longdouble(np.finfo(dtype).eps)
    with np.errstate(invalid="ignore", over="ignore"):
        if not (np.isfinite(o).all() and np.isfinite(d).all()):
            same = bool(np.all((np.asarray(x) == np.asarray(oracle))
                               | (np.isnan(np.asarray(x, dtype=np.float64))
                                  & np.isnan(np.asarray(oracle, dtype=np.float64)))))
            return OracleError(0.0 if same else np.inf, 0.0 if same else np.inf)
        no = np.sqrt(np.sum(o * o))
        nd = np.sqrt(np.sum(d * d))
        inf_o = np.max(np.abs(o)) if o.size else np.longdouble(0)
        max_d = np.max(np.abs(d)) if d.size else np.longdouble(0)
    norm = 0.0 if nd == 0 else (np.inf if no == 0 else float(nd / (no * eps)))
    worst = 0.0 if max_d == 0 else (np.inf if inf_o == 0 else float(max_d / (inf_o * eps)))
    return OracleError(norm, worst)


_SPLITS: dict[int, tuple[weakref.ref, np.ndarray, np.ndarray | None]] = {}
_ERRORS: dict[tuple[int, int, str], tuple[weakref.ref, weakref.ref, OracleError]] = {}
_SPLITS_LOCK = threading.Lock()


def hi_lo(o: np.ndarray) -> tuple[np.ndarray, np.ndarray | None]:
    """``(hi, lo)``: float64 arrays with ``hi + lo == o`` exactly for a long-double ``o``
    (64 significant bits fit in two float64), ``(o, None)`` for float64 or narrower. The
    split of an oracle tensor is kept while the tensor lives (every backend and the
    reference are measured against the same one)."""
    if o.dtype.itemsize <= 8:
        return np.asarray(o, dtype=np.float64), None
    with _SPLITS_LOCK:
        hit = _SPLITS.get(id(o))
    if hit is not None and hit[0]() is o:
        return hit[1], hit[2]
    hi = o.astype(np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        lo = (o - hi).astype(np.float64)
    with _SPLITS_LOCK:
        if len(_SPLITS) > 512:
            _SPLITS.clear()
        _SPLITS[id(o)] = (weakref.ref(o), hi, lo)
    return hi, lo


_SIZES: dict[int, tuple[weakref.ref, float, float]] = {}


def _oracle_size(o: np.ndarray) -> tuple[float, float]:
    """``(sum of squares, max |o|)`` of a float64 oracle tensor, kept while it lives (every
    backend and the reference are measured against the same one)."""
    with _SPLITS_LOCK:
        hit = _SIZES.get(id(o))
    if hit is not None and hit[0]() is o:
        return hit[1], hit[2]
    of = o.ravel()
    no2, inf_o = 0.0, 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        for part in blocks(of.size):  # in cache-sized blocks: one piece up to BLOCK
            ob = of[part]
            no2 += float(np.dot(ob, ob))
            inf_o = max(inf_o, float(ob.max()), -float(ob.min()))
    with _SPLITS_LOCK:
        if len(_SIZES) > 512:
            _SIZES.clear()
        _SIZES[id(o)] = (weakref.ref(o), no2, inf_o)
    return no2, inf_o


def _oracle_error_f64(x: np.ndarray, o: np.ndarray, lo: np.ndarray | None, dtype: np.dtype
                      ) -> OracleError | None:
    """`oracle_error` in float64 against ``o + lo`` (``lo`` None: zero), or ``None`` when
    a value is not finite or a sum of squares overflows (the caller then takes the
    long-double path). ``x`` is cast to float64 block by block (`blocks`)."""
    if not o.size:
        return OracleError(0.0, 0.0)
    xf, of = x.reshape(-1), o.reshape(-1)
    lf = None if lo is None else lo.reshape(-1)
    nd2, max_d = 0.0, 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        no2, inf_o = _oracle_size(o)
        for part in blocks(of.size):
            d = np.asarray(xf[part], dtype=np.float64) - of[part]
            if lf is not None:
                d -= lf[part]
            nd2 += float(np.dot(d, d))
            max_d = max(max_d, float(d.max()), -float(d.min()))  # max |d|, without |d|
    if not (np.isfinite(no2) and np.isfinite(nd2)):
        return None  # inf/NaN somewhere, or squares beyond float64's range
    eps = float(np.finfo(dtype).eps)
    no, nd = np.sqrt(no2), np.sqrt(nd2)
    norm = 0.0 if nd == 0 else (np.inf if no == 0 else float(nd / (no * eps)))
    worst = 0.0 if max_d == 0 else (np.inf if inf_o == 0 else float(max_d / (inf_o * eps)))
    return OracleError(norm, worst)
