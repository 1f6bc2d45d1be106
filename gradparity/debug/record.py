"""`DebugRecord`: everything a debug session found, for the report, the table and tests
(`gradparity.debug.result.DebugResult` adds the two outputs)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from gradparity.core.errors import EXIT_FAIL, EXIT_OK
from gradparity.core.gradients import GradientSet
from gradparity.core.spec import Spec
from gradparity.debug.conventions import Convention
from gradparity.debug.localize import Check, first_divergence
from gradparity.debug.user_code import Location
from gradparity.judge.tolerances import Tolerance
from gradparity.reference.case import Case

if TYPE_CHECKING:
    from gradparity.judge.verdict import TensorVerdict


@dataclass(frozen=True)
class Problem:
    """A finding about the user's code as a whole (not one quantity)."""

    text: str
    location: Location | None = None


@dataclass
class FrameworkRun:
    """One framework on the same case: its verdicts against the reference, or why none."""

    name: str
    status: str  # "ran", "skipped", "error"
    verdicts: list[TensorVerdict] = field(default_factory=list)
    reason: str = ""
    gradients: GradientSet | None = field(default=None, repr=False)

    @property
    def statuses(self) -> dict[str, str]:
        return {v.key: v.status for v in self.verdicts}

    @property
    def failing(self) -> list[TensorVerdict]:
        from gradparity.judge.status import FAILING

        return [v for v in self.verdicts if v.status in FAILING]


@dataclass
class DebugRecord:
    """The outcome of `debug_numpy` or `debug_torch`, as data.

    Attributes:
        kind: ``"numpy"`` (a user's backprop) or ``"torch"`` (a user's nn.Sequential).
        source: what was debugged (a path, ``module:attr``, a function name).
        spec, case: the case everything ran on.
        checks: one `Check` per quantity of the user's code, in the order it computes them.
        convention: the dZ/dA convention detected (and used to compare).
        frameworks: the reference's agreement with torch and jax on the same case.
        versus: for a torch module, its quantities against JAX (``against="jax"``).
        problems: findings about the code as a whole (e.g. it returned None).
        notes: how the sizes, activation and head were chosen; which forward ran.
        tolerance: atol/rtol used.
        user_output: what the user's code printed.
    """

    kind: str
    source: str
    spec: Spec
    case: Case
    checks: list[Check]
    convention: Convention
    frameworks: list[FrameworkRun]
    tolerance: Tolerance
    versus: list[Check] = field(default_factory=list)
    versus_name: str = ""
    problems: list[Problem] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    user_output: str = ""

    @property
    def first(self) -> Check | None:
        """The first quantity, in the order the code computes them, that diverges."""
        return first_divergence(self.checks)

    @property
    def findings(self) -> list[Check]:
        return [c for c in self.checks if c.is_finding]

    @property
    def inherited(self) -> list[Check]:
        return [c for c in self.checks if c.status == "inherited"]

    def check(self, key: str) -> Check:
        return next(c for c in self.checks if c.key == key)

    @property
    def frameworks_agree(self) -> bool:
        return all(not f.failing and f.status != "error" for f in self.frameworks)

    @property
    def passed(self) -> bool:
        """No finding in the user's code, no framework disagreement."""
        return (not self.findings and not self.problems and self.frameworks_agree
                and not any(c.is_finding for c in self.versus))

    @property
    def exit_code(self) -> int:
        return EXIT_OK if self.passed else EXIT_FAIL
