"""Matrix products in extended precision at float64 BLAS speed (error-free splitting).

NumPy has no BLAS for ``np.longdouble``: a long-double ``A @ B`` runs a plain loop, about
100x slower than ``dgemm``. `matmul` computes the same product from float64 matrix
products that make no rounding error (the Ozaki scheme):

1. Each row of ``A`` (each column of ``B``) is cut into ``SLICES`` slices of ``beta`` bits,
   scaled by a power of two of its own: ``A = A_1 + A_2 + ... + rest``, where every entry
   of ``A_s`` is an integer below ``2**beta`` times ``2**e_i`` (``e_i`` per row). The cuts
   are exact (scaling by powers of two, truncation, subtraction of a leading part).
2. ``beta`` is chosen so that ``2 * beta + ceil(log2 k) <= 53``: every dot product of a
   slice of ``A`` with a slice of ``B`` is a sum of ``k`` integers below ``2**(2 beta)``,
   so float64 ``dgemm`` computes it exactly, in any summation order.
3. The slice products with ``s + t <= SLICES - 1`` (0-based) are summed by order of
   size: those of each order ``s + t = j >= 1`` (each below ``2**(-beta j)`` of
   ``|A| |B|``) in float64, smallest order first, and that sum added to the exact leading
   product ``A_1 B_1`` in long double. A float64 sum of the lower orders rounds by at most
   a few ``2**-53`` of themselves, below ``2**-70`` of ``|A| |B|``; one long-double sum
   instead of one per product is what made the sums 4-5x faster (the x87 unit has no
   vector instructions). The terms left out (and the rest below the last slice) are below
   ``2**(-beta * SLICES)`` of ``|A| |B|``, elementwise.

With ``k <= 2**10`` (``beta = 21``) and 3 slices, that is about ``2**-63 |A| |B|``: the size
of long double's own rounding (``2**-64``), and far below float64's eps (``2**-52``).
`matmul` falls back to ``A @ B`` for anything but long double operands on a platform whose
long double is wider than float64, for non-finite entries, and for entries so small or
large that the scaled slices could leave float64's exponent range (entries below it
included, which float64 would round to zero).
"""

from __future__ import annotations

import sys

import numpy as np

#: Slices per operand; with ``beta`` >= 21 bits each they cover long double's 64 bits.
SLICES = 3

_LD = np.dtype(np.longdouble)
_WIDE = np.finfo(np.longdouble).nmant > np.finfo(np.float64).nmant


def slice_bits(k: int) -> int:
    """Bits per slice for inner dimension ``k``: the products of two slices summed over
    ``k`` terms stay below ``2**53`` (exact in float64), with one bit to spare for slices
    that round up to ``2**beta``."""
    return (52 - max(int(k) - 1, 0).bit_length()) // 2


def split(x: np.ndarray, axis: int, beta: int, slices: int | None = None,
          hi: np.ndarray | None = None) -> list[np.ndarray]:
    """``slices`` (default `SLICES`) float64 arrays whose exact sum is ``x`` up to a rest
    below the last slice's unit; along ``axis`` each lane shares a power of two, and every
    entry is an integer of at most ``beta`` bits times that power (module doc).

    Works in float64 only: ``x = hi + lo`` exactly (long double has 64 significant bits),
    and each slice is cut from both parts by rounding to the slice's unit with the
    ``(v + sigma) - sigma`` trick, whose result and remainder are exact. ``hi``: ``x``
    rounded to float64, when the caller has it already."""
    n = SLICES if slices is None else slices
    hi = np.asarray(x, dtype=np.float64) if hi is None else hi
    lo = None
    if x.dtype != hi.dtype and not float64_exact(x):  # else float64 values cast up
        lo = np.asarray(x - hi.astype(x.dtype), dtype=np.float64)
        if not lo.any():
            lo = None
    mx = np.max(np.abs(hi), axis=axis, keepdims=True) if hi.size else np.zeros_like(hi)
    # top: every entry of the lane is below 2**top (a lane of zeros gets any power)
    _, top = np.frexp(np.where(mx > 0, mx, 1.0))
    out = []
    for s in range(1, n + 1):
        # sigma's unit in the last place is the slice's unit 2**(top - beta*s)
        sigma = np.ldexp(0.75, top - beta * s + 53)
        part = (hi + sigma) - sigma
        last = s == n
        if not last:  # the remainders below the last slice are left out
            hi = hi - part
        if lo is not None:
            part_lo = (lo + sigma) - sigma
            if not last:
                lo = lo - part_lo
            part += part_lo
        out.append(part)
    return out


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
    k = a.shape[1]
    beta = slice_bits(k)
    sa = split(a, axis=1, beta=beta, hi=ha)
    sb = split(b, axis=0, beta=beta, hi=hb)
    n = len(sa)
    # the orders j = s + t >= 1 (0-based) in float64, smallest first; then the exact A_1 B_1
    low = None
    for j in range(n - 1, 0, -1):
        for s in range(j + 1):
            p = sa[s] @ sb[j - s]
            low = p if low is None else low + p
    top = (sa[0] @ sb[0]).astype(_LD)
    return top if low is None else top + low
