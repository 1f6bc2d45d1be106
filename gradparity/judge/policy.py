"""Verdict policies: the plain allclose rule, and a rule calibrated against the oracle.

``allclose`` (default): every element within ``atol + rtol |reference|`` of the same-dtype
reference (the per-dtype tables in `tolerances`).

``calibrated``: a backend's tensor passes when its distance to the higher-precision
oracle is not much larger than the same-dtype reference's own distance to it, normwise and
for the worst element (both in units of the dtype's eps; see `gradparity.reference.oracle`)::

    backend_err <= multiplier * reference_err + floor_eps

This is the rule of torch._dynamo's accuracy check (``res_error <= k * ref_error + tol``):
it scales with the conditioning of each tensor instead of a fixed atol/rtol. The floor
covers tensors the reference gets exactly (dyadic data) where a backend that sums in
another order is a few eps off. The defaults come from measurements on the default suite,
reported in the README ("Verdicts").

Under ``allclose`` a tensor that fails allclose but passes the calibrated rule still
fails, with reason code ``rounding``; under ``calibrated`` the calibrated rule decides and
allclose is kept in the table as ``allclose_passed``. Both verdicts are in every row.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from gradparity.core.errors import SpecError, check_finite_nonnegative

POLICIES: tuple[str, ...] = ("allclose", "calibrated")


@dataclass(frozen=True)
class CalibratedRule:
    """``backend_err <= multiplier * reference_err + floor_eps`` (errors in eps units)."""

    multiplier: float = 4.0
    floor_eps: float = 16.0

    def __post_init__(self) -> None:
        for name in ("multiplier", "floor_eps"):
            check_finite_nonnegative(name, getattr(self, name))

    def passes(self, backend_err: float, reference_err: float) -> bool:
        """Never for an infinite or NaN error (of either side): an error that is not a
        finite number cannot be within a budget, however large the reference's is."""
        if not (math.isfinite(backend_err) and math.isfinite(reference_err)):
            return False
        return backend_err <= self.multiplier * reference_err + self.floor_eps

    def describe(self) -> str:
        return f"err <= {self.multiplier:g} x reference err + {self.floor_eps:g} eps"


DEFAULT_RULE = CalibratedRule()


def check_policy(policy: str) -> str:
    if policy not in POLICIES:
        raise SpecError("policy", policy, f"one of {', '.join(POLICIES)}")
    return policy
