"""Per-example or true partials: which convention the user's dZ and dA follow.

The seed's code carries dZ and dA per example: ``dZ[L] = A[L] - Y`` is m times the true
partial dJ/dZ[L] of ``J = (1/m) sum_i loss_i``, and the 1/m appears in
``dW = (1/m) dZ A^T`` and ``db = (1/m) sum dZ``. Code written from the calculus keeps true
partials (``dZ[L] = (A[L] - Y) / m``, ``dW = dZ A^T``). Both give the same dW and db, and
both are correct. The harness reports true partials.

`detect` walks the user's values under both hypotheses and keeps the one under which the
code is most consistent: fewer findings, counting as findings also the values that match
the reference only because a factor in their own equation cancels a wrong upstream value
(under the wrong hypothesis the seed's ``dW = (1/m) dZ A^T`` is such a value); then a later
first divergence; then more dZ/dA that agree. A one-off scaling mistake therefore cannot
flip the convention. Without any reported dZ or dA, or with m = 1, the two conventions
cannot be told apart (and need not be).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gradparity.debug.diagnose import DTYPE_CODES
from gradparity.debug.localize import Check

PER_EXAMPLE = "per_example"
TRUE_PARTIAL = "true_partial"
UNDETERMINED = "undetermined"
AUTOGRAD = "autograd"


@dataclass(frozen=True)
class Convention:
    """The convention the walk used: ``name``, the factor dZ/dA were divided by, and a
    sentence for the report."""

    name: str
    factor: float
    text: str


def per_example(m: int, depth: int) -> Convention:
    return Convention(PER_EXAMPLE, float(m),
                      f"per-example dZ/dA, as in the seed (dZ{depth} = A{depth} - Y): m = {m} "
                      "times the true partials; compared after dividing by m, dW and db "
                      "directly")


def true_partial(depth: int) -> Convention:
    return Convention(TRUE_PARTIAL, 1.0,
                      f"true partials of J = (1/m) sum of losses (dZ{depth} = (A{depth} - Y)/m)"
                      "; compared directly")


def autograd() -> Convention:
    return Convention(AUTOGRAD, 1.0, "true partials (autograd of your module); compared "
                      "directly")


def _score(checks: list[Check]) -> tuple[int, int, int]:
    """Inconsistencies first: findings, plus quantities that are right only because they
    cancel a wrong upstream value (under the wrong hypothesis, the seed's ``dW = (1/m) dZ
    A^T`` looks like a 1/m that cancels an m-times-too-large dZ)."""
    findings = [i for i, c in enumerate(checks) if c.is_finding and not (
        c.diagnosis is not None and c.diagnosis.code in DTYPE_CODES)]
    compensating = sum(1 for c in checks if c.compensates)
    first = findings[0] if findings else len(checks)
    agree = sum(1 for c in checks if c.quantity in ("dZ", "dA") and c.status == "pass")
    return (len(findings) + compensating, -first, -agree)


def detect(m: int, depth: int, walk: Callable[[float], list[Check]],
           intermediates_reported: bool) -> tuple[Convention, list[Check]]:
    """The convention the user's code follows and the walk under it.

    Args:
        m: the batch size.
        walk: runs the localisation with dZ/dA divided by the given factor.
        intermediates_reported: the user's grads holds at least one dZ or dA.
    """
    if not intermediates_reported:
        return (Convention(UNDETERMINED, 1.0, "not needed: your grads holds no dZ or dA; dW "
                           "and db are the same in both conventions and compared directly"),
                walk(1.0))
    if m == 1:
        return (Convention(UNDETERMINED, 1.0, "m = 1: per-example values and true partials "
                           "coincide"), walk(1.0))
    true_checks = walk(1.0)
    pe_checks = walk(float(m))
    if _score(pe_checks) < _score(true_checks):
        return per_example(m, depth), pe_checks
    return true_partial(depth), true_checks
