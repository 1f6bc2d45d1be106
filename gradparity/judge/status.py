"""The statuses of a row, in one order: from agreement to the worst outcome.

* ``pass``: within tolerance of the reference.
* ``rounding``, ``kink``, ``saturation``: a difference with a named, non-bug cause
  (`EXPLAINED`; see `gradparity.judge.verdict`).
* ``fail``: a real disagreement; ``error``: the backend (or the case) raised;
  ``skipped``: the framework is not installed.

`FAILING` statuses make a run fail (exit code 1). `worst_status` ranks by `STATUSES`.
"""

from __future__ import annotations

from collections.abc import Iterable

STATUSES: tuple[str, ...] = (
    "pass", "rounding", "kink", "saturation", "fail", "error", "skipped",
)
#: Statuses that make a run fail (exit code 1).
FAILING: frozenset[str] = frozenset({"fail", "error"})
#: Differences with a named, non-bug cause.
EXPLAINED: frozenset[str] = frozenset({"kink", "saturation", "rounding"})

_RANK = {s: i for i, s in enumerate(STATUSES)}


def worst_status(statuses: Iterable[str], default: str = "pass") -> str:
    """The last of ``statuses`` in `STATUSES` order (an unknown status ranks after all);
    ``default`` when there is none."""
    return max(statuses, key=lambda s: _RANK.get(s, len(_RANK)), default=default)
