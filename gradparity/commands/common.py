"""Shared pieces of the command modules: exit codes and small argument parsers."""

from __future__ import annotations

EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


def csv_list(value: str) -> list[str]:
    """``"a,b, c"`` -> ``["a", "b", "c"]`` (for options that take comma-separated names)."""
    return [v.strip() for v in value.split(",") if v.strip()]
