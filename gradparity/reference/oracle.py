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
    """Normwise and worst-element error of ``x`` against ``oracle`` (see module doc)."""
    if x is None or np.shape(x) != np.shape(oracle):
        return OracleError(np.inf, np.inf)
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
