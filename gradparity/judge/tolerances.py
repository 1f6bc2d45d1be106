"""Per-dtype tolerance tables for the allclose verdict.

An element passes when ``|actual - expected| <= atol + rtol * |expected|`` (the
``torch.testing.assert_close`` rule). The defaults are torch.testing's for float32 and
float64. They are blunt: rounding error grows with fan-in and depth, which is why every row
also keeps the raw metrics (max ULP, normwise error in units of eps) for re-judging.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from gradparity.core.errors import SpecError, check_finite_nonnegative


@dataclass(frozen=True)
class Tolerance:
    """Relative and absolute tolerance of one dtype."""

    rtol: float
    atol: float

    def __post_init__(self) -> None:
        for name in ("rtol", "atol"):
            check_finite_nonnegative(name, getattr(self, name))


#: Defaults: torch.testing.assert_close's table.
DEFAULT_TOLERANCES: dict[str, Tolerance] = {
    "float32": Tolerance(rtol=1.3e-6, atol=1e-5),
    "float64": Tolerance(rtol=1e-7, atol=1e-7),
}


def eps(dtype: str | np.dtype) -> float:
    """Machine epsilon of a floating dtype."""
    return float(np.finfo(np.dtype(dtype)).eps)


def resolve_tolerances(
    overrides: Mapping[str, Mapping[str, float]] | None = None,
    *,
    rtol: float | None = None,
    atol: float | None = None,
) -> dict[str, Tolerance]:
    """The table in force: defaults, then per-dtype ``overrides``, then global rtol/atol."""
    table = dict(DEFAULT_TOLERANCES)
    for dtype, values in (overrides or {}).items():
        if dtype not in table:
            raise SpecError("tolerances", dtype, f"a dtype, one of {', '.join(table)}")
        unknown = set(values) - {"rtol", "atol"}
        if unknown:
            raise SpecError(f"tolerances.{dtype}", sorted(unknown)[0], "rtol or atol")
        base = table[dtype]
        table[dtype] = Tolerance(rtol=values.get("rtol", base.rtol),
                                 atol=values.get("atol", base.atol))
    if rtol is not None or atol is not None:
        table = {
            d: Tolerance(rtol=t.rtol if rtol is None else rtol,
                         atol=t.atol if atol is None else atol)
            for d, t in table.items()
        }
    return table
