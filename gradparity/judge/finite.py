"""Cases that cannot be judged: non-finite inputs, parameters or reference values.

A comparison needs a finite reference: NaN against NaN "agrees" element by element, and
an error against a NaN or infinite reference is not a number either. So a case whose
inputs (X, Y, parameters) or whose reference (loss, forward values, gradients) hold a NaN
or an infinity is not judged at all: every backend gets an ``error`` row with reason code
``invalid_case`` and a reason naming the first non-finite array (`invalid_case_reason`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np

from gradparity.core.gradients import GradientSet
from gradparity.reference.case import Case

#: The reason code of an ``error`` row whose case cannot be judged.
INVALID_CASE = "invalid_case"


def _nonfinite(name: str, a: object) -> str:
    arr = np.asarray(a)
    if not np.issubdtype(arr.dtype, np.number) or np.issubdtype(arr.dtype, np.integer):
        return ""
    bad = ~np.isfinite(arr)
    if not bad.any():
        return ""
    n_nan = int(np.isnan(arr).sum())
    n_inf = int(bad.sum()) - n_nan
    kinds = ", ".join(f"{n} {k}" for n, k in ((n_nan, "NaN"), (n_inf, "inf")) if n)
    first = tuple(int(i) for i in np.argwhere(bad)[0]) if arr.ndim else ()
    return f"{name} holds {kinds} (first at {first})"


def _first(named: Iterable[tuple[str, object]]) -> str:
    for name, a in named:
        text = _nonfinite(name, a)
        if text:
            return text
    return ""


def _arrays(d: Mapping[str, object]) -> list[tuple[str, object]]:
    return list(d.items())


def invalid_case_reason(case: Case, reference: GradientSet | None = None) -> str:
    """Why ``case`` cannot be judged (its inputs or its reference are not finite), or
    ``""`` when it can."""
    inputs = _first([("X", case.X), ("Y", case.Y), *_arrays(case.parameters)])
    if inputs:
        return f"invalid case: {inputs}; a case with non-finite inputs cannot be judged"
    if reference is None:
        return ""
    ref = _first([("loss", reference.loss), *_arrays(reference.forward),
                  *_arrays(reference.grads)])
    if ref:
        return (f"invalid case: the reference's {ref}; a tensor without a finite reference "
                "cannot be judged")
    return ""
