"""Errors raised for user mistakes, and the exit codes they map to.

`UsageError` carries a one-line message that names the field, the value and what was
expected. The command line prints it without a traceback and exits with code 2.
"""

from __future__ import annotations

#: Exit codes: every tensor agrees (or differs by a named cause); a parity failure or a
#: backend error; a usage or input error.
EXIT_OK, EXIT_FAIL, EXIT_USAGE = 0, 1, 2


class UsageError(ValueError):
    """A bad spec, suite file, option or input; the message is one line, for the user."""


class SpecError(UsageError):
    """A field of a `Spec` (or of a suite entry) has a value the harness cannot use."""

    def __init__(self, field: str, value: object, expected: str, *, where: str = "") -> None:
        self.field = field
        self.value = value
        self.expected = expected
        prefix = f"{where}: " if where else ""
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(f"{prefix}{field}={shown}: expected {expected}")


def check_finite_nonnegative(name: str, value: object) -> None:
    """Raise `SpecError` unless ``value`` is a finite number >= 0 (an int or float, not a
    bool): the rule of every tolerance and rule parameter."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not (
        0.0 <= float(value) < float("inf")
    ):
        raise SpecError(name, value, "a finite number >= 0")
