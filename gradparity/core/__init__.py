"""The vocabulary every layer shares: the spec of a case, the gradient set, errors and
exit codes."""

__version__ = "0.1.0"
