"""A debug session as the tidy table of `gradparity.experiments.tables` (same columns).

One row per quantity of the user's code (``backend="user"``, ``against="reference"``; for a
torch module also ``against="jax"``), then the frameworks' rows against the reference. The
user's dZ/dA rows hold true partials (per-example values divided by m, as the reason says).
Statuses of user rows: ``pass``, ``fail``, ``error``, ``inherited`` (follows from an
upstream finding), ``skipped`` (not reported or not computed), and the frameworks'
explained statuses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from gradparity.debug.localize import Check
from gradparity.debug.record import DebugRecord

if TYPE_CHECKING:
    import pandas as pd

#: The backend name of the user's code in the table.
USER = "user"


def check_reason(c: Check) -> str:
    parts = [c.reason] if c.reason else []
    if c.scale != 1.0 and c.reported and c.comparison is not None:
        parts.append(f"your values divided by m = {c.scale:g} (per-example convention)")
    if c.diagnosis is not None:
        parts.append(f"diagnosis [{c.diagnosis.code}]: {c.diagnosis.text}")
    if c.location is not None and c.is_finding:
        parts.append(f"at {c.location}")
    return "; ".join(parts)


def _row(columns, base: dict, c: Check, backend: str, against: str) -> dict[str, object]:
    row: dict[str, object] = {col: None for col in columns}
    row.update(base, layer=c.layer, quantity=c.quantity, backend=backend, against=against)
    if c.comparison is not None:
        for k, v in c.comparison.as_row().items():
            if k in row:
                row[k] = v
    passed = c.status == "pass"
    row.update(passed=passed, status=c.status, reason=check_reason(c))
    if "allclose_passed" in row:
        row["allclose_passed"] = bool(c.comparison is not None and c.comparison.passed)
    if "reason_code" in row:
        row["reason_code"] = c.diagnosis.code if c.diagnosis is not None else (
            "" if passed else c.status)
    if "policy" in row:
        row["policy"] = "allclose"
    if "oracle" in row:
        row["oracle"] = "unavailable"
    return {k: row[k] for k in columns}


def debug_rows(result: DebugRecord) -> list[dict[str, object]]:
    from gradparity.experiments.rows import COLUMNS, spec_columns, status_row, verdict_rows

    spec = result.spec
    base = spec_columns(spec)
    rows = []
    for p in result.problems:
        text = p.text + (f"; at {p.location}" if p.location else "")
        rows.append(status_row(spec, USER, "error", text))
    rows += [_row(COLUMNS, base, c, USER, "reference") for c in result.checks]
    rows += [_row(COLUMNS, base, c, USER, result.versus_name) for c in result.versus]
    for f in result.frameworks:
        if f.status == "ran":
            rows += verdict_rows(spec, f.name, f.verdicts)
        else:
            rows.append(status_row(spec, f.name, "skipped" if f.status == "skipped" else "error",
                                   f.reason))
    return rows


def make_debug_table(result: DebugRecord) -> pd.DataFrame:
    from gradparity.experiments.environment import environment
    from gradparity.experiments.tables import make_table

    return make_table(debug_rows(result), environment())


def table_parts(result: DebugRecord) -> tuple[list[dict[str, object]], dict[str, str]]:
    """The table's rows and environment, without pandas (a child process sends them; the
    parent makes the table only when it writes one)."""
    from gradparity.adapters.worker import runtime
    from gradparity.experiments.environment import environment

    env = environment()
    for k, v in runtime().items():  # the frameworks' settings where they computed
        env.setdefault(k, v)
    return debug_rows(result), env
