"""Matrix products in extended precision at float64 BLAS speed (error-free splitting).

NumPy has no BLAS for ``np.longdouble``: a long-double ``A @ B`` runs a plain loop, about
100x slower than ``dgemm``. `matmul` computes the same product from three float64 matrix
products (a form of the Ozaki scheme):

1. Each operand is cut into a leading slice and a rest (`split`): ``A = A_1 + A_r``. Each
   row of ``A_1`` (each column of ``B_1``) is a ``beta``-bit integer times a power of two
   of its own, ``2**e_i``; the cut is exact (scaling by powers of two and the
   ``(v + sigma) - sigma`` rounding). ``A_r`` is the rest in float64: the part of the
   float64 rounding of ``A`` below its slice, exact, plus the long double's bits below
   float64's last one, added with one float64 rounding (at most ``2**-53 |A_r|``, below
   ``2**(-53 - beta)`` of the row's largest entry).
2. ``beta`` is chosen so that ``2 * beta + ceil(log2 k) <= 52``: every entry of
   ``A_1 B_1`` is a sum of ``k`` integers below ``2**(2 beta)``, so float64 ``dgemm``
   computes it exactly, in any summation order.
3. ``A B = A_1 B_1 + A_1 B_r + A_r B``. ``A_r`` and ``B_r`` are below ``2**-beta`` of
   their lane's largest entry, so the last two products' terms are ``2**-beta`` smaller
   than those of ``A B`` (in units of the lanes' largest entries), and ``dgemm``'s error
   in them, at most ``k`` roundings of those terms, is below ``2**(log2(k) - 53 - beta)``:
   ``2**-64`` with ``k <= 2**10`` and ``beta = 21``, and far less in practice (rounding
   errors that do not line up grow like ``sqrt(k)``). In ``A_r B``, ``B`` is its float64
   rounding: the bits left out are below ``2**(-53 - beta)`` in the same units. The two
   are summed in float64 and added once, in long double, to the exact ``A_1 B_1``.

Measured against exact `mpmath` products (`tests/test_extended.py`), the error is a few
``1e-5`` float64 eps of ``|A| |B|``, elementwise, while the entries of a row (a column)
span less than a slice's ``2**beta``; cutting every operand into three slices, left out
below the third (the scheme before this one, with six products), lost the small entries'
low bits there (0.64 eps on a row of 1024 entries). NumPy's long-double loop is at
``1e-4`` to ``1e-3`` eps. Entries more than ``2**beta`` below their lane's largest fall
wholly into the float64 rest, and their products round like float64's, relative to
themselves: element by element, a tiny entry of ``|A| |B|`` made only of them can be off
by a sizeable part of its eps (0.25 eps for ``[1, 1e-10] @ [0, 1/3]``). In units of the
rows' and columns' largest entries, the units of the harness's oracle errors (scaled by
a tensor's norm or largest entry), the error stays below ``1e-3`` eps (tested).

`matmul` falls back to ``A @ B`` for anything but long double operands on a platform
whose long double is wider than float64, for non-finite entries, and for entries so small
or large that the scaled slices could leave float64's exponent range (entries below it
included, which float64 would round to zero).
"""

from __future__ import annotations

import sys

import numpy as np

_LD = np.dtype(np.longdouble)
_WIDE = np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant


def slice_bits(k: int) -> int:
    """Bits of the leading slices for inner dimension ``k``: the products of two slices
    summed over ``k`` terms stay below ``2**53`` (exact in float64), with one bit to spare
    for slices that round up to ``2**beta``."""
    return (52 - max(int(k) - 1, 0).bit_length()) // 2


def split(x: np.ndarray, axis: int, beta: int, hi: np.ndarray | None = None
          ) -> tuple[np.ndarray, np.ndarray]:
    """``(lead, rest)``, float64 arrays with ``lead + rest == x`` up to one float64
    rounding of ``rest`` (module doc). Along ``axis`` each lane of ``lead`` shares a power
    of two, and every entry is an integer of at most ``beta`` bits times that power.

    Works in float64 only: ``x = hi + lo`` exactly (long double has 64 significant bits);
    ``lead`` is ``hi`` rounded to the slice's unit with the ``(v + sigma) - sigma`` trick,
    whose result and remainder are exact. ``hi``: ``x`` rounded to float64, when the
    caller has it already."""
    hi = np.asarray(x, dtype=np.float64) if hi is None else hi
    mx = np.max(np.abs(hi), axis=axis, keepdims=True) if hi.size else np.zeros_like(hi)
    # top: every entry of the lane is below 2**top (a lane of zeros gets any power)
    _, top = np.frexp(np.where(mx > 0, mx, 1.0))
    # sigma's unit in the last place is the slice's unit 2**(top - beta)
    sigma = np.ldexp(0.75, top - beta + 53)
    lead = (hi + sigma) - sigma
    rest = hi - lead
    if x.dtype != hi.dtype and not float64_exact(x):  # else float64 values cast up
        rest += np.asarray(x - hi.astype(x.dtype), dtype=np.float64)
    return lead, rest


#: Long double is the x87 80-bit format, little-endian (x86): a 64-bit significand with an
#: explicit leading bit in the first 8 bytes, the sign and a 15-bit exponent in the next 2.
_X87 = (_WIDE and np.finfo(np.longdouble).nmant == 63 and _LD.itemsize == 16
        and sys.byteorder == "little")


def float64_exact(x: np.ndarray) -> bool:
    """Whether every entry of the long-double ``x`` is a float64 value (a parameter or an
    input cast up), read from the bits: the significand's low 11 bits are zero and the
    exponent is within float64's normal range (or the entry is zero). Two integer passes
    instead of a long-double subtraction. ``False`` when this cannot be read (another
    long-double format, or a layout without a contiguous axis): the caller then
    subtracts."""
    if not _X87 or x.dtype != _LD or not x.size:
        return False
    c = x if x.flags.c_contiguous else (x.T if x.flags.f_contiguous else None)
    if c is None:
        return False
    words = c.reshape(-1).view(np.uint64).reshape(-1, 2)  # the rest of a slot is padding
    significand, top = words[:, 0], words[:, 1]
    if (significand & np.uint64(0x7FF)).any():
        return False
    # biased exponent within float64's normal range: 16383 - 1022 .. 16383 + 1023, with
    # the explicit leading bit set (no unnormal, pseudo-zero or pseudo-infinity encodings)
    exponent = top & np.uint64(0x7FFF)
    normal = ((exponent >= np.uint64(15361)) & (exponent <= np.uint64(17406))
              & (significand >> np.uint64(63) == np.uint64(1)))
    zero = (significand == 0) & (exponent == 0)
    return bool(np.all(normal | zero))


def _safe(x: np.ndarray, hi: np.ndarray) -> bool:
    """``x`` (a long-double operand) rounded to float64 (``hi``) is finite, no entry of
    ``x`` fell below float64's range (a non-zero rounded to 0), and the rest are far
    enough from float64's range limits that the slices and their products stay normal
    float64 numbers."""
    if not hi.size:
        return True
    big = max(float(hi.max()), -float(hi.min()))
    if not np.isfinite(big):  # NaN compares false: caught here too
        return False
    zero = hi == 0
    if zero.any() and np.any(x[zero] != 0):  # only hi's zeros looked at in long double
        return False
    if big == 0:
        return True
    small = float(np.min(np.abs(hi), where=~zero, initial=np.inf))
    return big < 2.0**400 and small > 2.0**-300


def matmul(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """``a @ b``; for long double operands, by error-free splitting into float64 products
    (module doc). 2-d operands only take the split path; anything else is ``a @ b``."""
    if not (_WIDE and a.dtype == _LD and b.dtype == _LD and a.ndim == 2 and b.ndim == 2
            and a.shape[1] == b.shape[0]):
        return a @ b
    with np.errstate(over="ignore", invalid="ignore"):
        ha, hb = a.astype(np.float64), b.astype(np.float64)
    if not (_safe(a, ha) and _safe(b, hb)):
        return a @ b
    beta = slice_bits(a.shape[1])
    a1, ar = split(a, axis=1, beta=beta, hi=ha)
    b1, br = split(b, axis=0, beta=beta, hi=hb)
    low = a1 @ br  # the two products below 2**-beta of |A| |B|, in float64
    low += ar @ hb
    top = (a1 @ b1).astype(_LD)  # exact
    return top + low
