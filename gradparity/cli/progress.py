"""Progress of a run on stderr: a tqdm bar on a terminal, one plain line per case
otherwise (CI logs stay readable), nothing with ``-q``.

tqdm rather than rich: one small pure-Python package with no dependencies of its own,
already in the ``report`` extra, that draws cases done/total, rate and ETA itself; rich
would bring pygments and markdown-it for one bar. Without tqdm a terminal gets the plain
lines.
"""

from __future__ import annotations

import sys
from typing import Any, TextIO


def _not_pass(statuses: Any) -> int | None:
    """Rows of the case that are not a plain pass (`CaseStatuses`), else None."""
    n = getattr(statuses, "rows_not_pass", None)
    return n if isinstance(n, int) else None


def use_bar(stream: TextIO) -> bool:
    """A bar when ``stream`` is a terminal of known width and tqdm is installed (a
    terminal that reports 0 columns would get an empty bar: plain lines then)."""
    import os

    try:
        if not stream.isatty():
            return False
    except (AttributeError, ValueError):
        return False
    try:
        if os.get_terminal_size(stream.fileno()).columns == 0:
            return False
    except (AttributeError, ValueError, OSError):
        pass  # no file descriptor (a stream object that says it is a terminal)
    import importlib.util

    return importlib.util.find_spec("tqdm") is not None


class PlainLines:
    """``[ 3/20] <case_id>  torch pass  jax kink`` per case."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream

    def __call__(self, i: int, total: int, spec: Any, statuses: Any) -> None:
        marks = "  ".join(f"{b} {s}" for b, s in statuses.items())
        width = len(str(total))
        name = f"{spec.case_id}  " if spec is not None else ""  # None: a search shard
        print(f"[{i:>{width}}/{total}] {name}{marks}", file=self.stream, flush=True)


class Bar:
    """A tqdm bar: cases done/total, rate, ETA, and the running count of rows that are
    not a plain pass (or of backend x case outcomes, if the runner does not count rows)."""

    def __init__(self, stream: TextIO) -> None:
        self.stream = stream
        self.bar = None
        self.not_pass = 0
        self.rows = True

    def __call__(self, i: int, total: int, spec: Any, statuses: Any) -> None:
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, file=self.stream, unit="case", dynamic_ncols=True,
                            mininterval=0.2, leave=True)
        n = _not_pass(statuses)
        if n is None:
            self.rows = False
            n = sum(s != "pass" for s in statuses.values())
        self.not_pass += n
        self.bar.set_postfix_str(
            f"not pass: {self.not_pass} {'rows' if self.rows else 'outcomes'}", refresh=False)
        self.bar.update(i - self.bar.n)
        if i >= total:
            self.bar.close()


def case_progress(quiet: bool, stream: TextIO | None = None):
    """The progress callback of `run_specs` for the command line: None with ``quiet``."""
    if quiet:
        return None
    stream = sys.stderr if stream is None else stream
    return Bar(stream) if use_bar(stream) else PlainLines(stream)
