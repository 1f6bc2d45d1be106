"""Backends with an injected fault: the reference's backprop with one known bug (the
self-test's faults and the corner faults of `gradparity.selftest.faults`), which claims
the reference's kink conventions. The search must find each of them."""

from __future__ import annotations

from gradparity.core.gradients import GradientSet
from gradparity.reference.mlp import REFERENCE_KINKS, reference_gradients
from gradparity.selftest.faults import ALL_FAULTS, inject

#: The prefix of a faulty backend's name: ``reference+<fault>``.
PREFIX = "reference+"


class FaultyBackend:
    """The reference with fault ``fault`` (a key of `ALL_FAULTS`), as a backend."""

    def __init__(self, fault: str) -> None:
        if fault not in ALL_FAULTS:
            from gradparity.core.errors import UsageError

            raise UsageError(f"fault={fault!r}: expected one of {', '.join(ALL_FAULTS)}")
        self.fault = fault
        self.name = PREFIX + fault

    def available(self) -> bool:
        return True

    def unavailable_reason(self) -> str:
        return ""

    def gradients(self, case) -> GradientSet:
        return inject(self.fault, case, reference_gradients(case, backend="reference"))

    def kink_conventions(self, dtype: str) -> dict[str, float]:
        return dict(REFERENCE_KINKS)

    def version(self) -> str | None:
        return None


def is_faulty_name(name: str) -> bool:
    """True for ``reference+<fault>`` with a known fault."""
    return name.startswith(PREFIX) and name[len(PREFIX):] in ALL_FAULTS
