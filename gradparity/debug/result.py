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

    def _repr_html_(self) -> str:
        """The report in a Jupyter notebook: monospaced, findings in red, a pass in green;
        then the statuses, a small error plot and the per-quantity table."""
        import html

        lines = []
        for line in self.report().splitlines():
            text = html.escape(line)
            if line.startswith(("First divergence", "Problem")) or "FAIL" in line:
                text = f'<span style="color:#b00020">{text}</span>'
            elif line.startswith(("All ", "No bug found")):
                text = f'<span style="color:#1b7f3b">{text}</span>'
            lines.append(text)
        from gradparity.experiments.notebook import result_view

        # no tolerance line: a learner's bug is no rounding to set a tolerance by
        return result_view(self.table(), head="<pre>" + "\n".join(lines) + "</pre>",
                           tolerances=False)

    def table(self) -> pd.DataFrame:
        """The full tidy table (`gradparity.experiments.tables.COLUMNS`)."""
        return make_debug_table(self)
