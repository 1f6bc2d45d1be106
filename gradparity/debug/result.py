"""`DebugResult`: a debug session's findings (`DebugRecord`) with its two outputs, the short
report (`gradparity.debug.report`) and the tidy table (`gradparity.debug.table`).

The outputs read a `DebugRecord`, below this module, so the imports run one way:
record <- report, table <- result.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradparity.debug.record import DebugRecord, FrameworkRun, Problem
from gradparity.debug.report import render
from gradparity.debug.table import make_debug_table

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["DebugResult", "FrameworkRun", "Problem"]


class DebugResult(DebugRecord):
    """The outcome of `debug_numpy` or `debug_torch`: the fields of `DebugRecord`, and
    `report()` and `table()`."""

    def report(self) -> str:
        """The short human report (see `gradparity.debug.report`)."""
        return render(self)

    def table(self) -> pd.DataFrame:
        """The full tidy table (`gradparity.experiments.tables.COLUMNS`)."""
        return make_debug_table(self)
