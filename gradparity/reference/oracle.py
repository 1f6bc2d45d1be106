"""The higher-precision oracle: the reference evaluated on the same values in a wider dtype.

float32 cases are judged against float64; float64 cases against ``np.longdouble`` where the
platform's long double is wider than float64 (x86-64: 64-bit significand, eps ~1.1e-19),
otherwise the oracle is unavailable and said so. The case's arrays are cast up exactly, so
the oracle differs from the working-dtype reference only by rounding.

Errors against the oracle are in units of the working dtype's eps:

* ``norm_eps = ||x - o||_2 / (||o||_2 eps)`` (normwise);
* ``worst_eps = max |x - o| / (||o||_inf eps)`` (worst element, relative to the tensor's
  scale, so tiny elements do not dominate).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

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

    Computed in the oracle's dtype (float64 for float32 work: the difference of a float32
    and a float64 value is exact or rounded once, far below float32's eps); in long double
    only for long-double oracles. Non-finite values, or sums of squares that overflow
    float64, take the long-double path."""
    if x is None or np.shape(x) != np.shape(oracle):
        return OracleError(np.inf, np.inf)
    if np.asarray(oracle).dtype == np.float64 and np.asarray(x).dtype.itemsize <= 8:
        fast = _oracle_error_f64(np.asarray(x, dtype=np.float64), np.asarray(oracle), dtype)
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


def _oracle_error_f64(x: np.ndarray, o: np.ndarray, dtype: np.dtype) -> OracleError | None:
    """`oracle_error` in float64 for a float64 oracle, or ``None`` when a value is not
    finite or a sum of squares overflows (the caller then takes the long-double path)."""
    if not o.size:
        return OracleError(0.0, 0.0)
    with np.errstate(invalid="ignore", over="ignore"):
        d = x - o
        of, df = o.ravel(), d.ravel()
        no2, nd2 = float(np.dot(of, of)), float(np.dot(df, df))
    if not (np.isfinite(no2) and np.isfinite(nd2)):
        return None  # inf/NaN somewhere, or squares beyond float64's range
    eps = float(np.finfo(dtype).eps)
    no, nd = np.sqrt(no2), np.sqrt(nd2)
    inf_o, max_d = float(np.max(np.abs(o))), float(np.max(np.abs(d)))
    norm = 0.0 if nd == 0 else (np.inf if no == 0 else float(nd / (no * eps)))
    worst = 0.0 if max_d == 0 else (np.inf if inf_o == 0 else float(max_d / (inf_o * eps)))
    return OracleError(norm, worst)
