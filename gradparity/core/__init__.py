"""The vocabulary every layer shares: the spec of a case, the gradient set, errors and
exit codes."""
