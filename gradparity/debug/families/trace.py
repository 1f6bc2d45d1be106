"""Where did a value come from? Follow the user's frames and remember every array they make.

`ArrayTrace` runs a user function under ``sys.settrace`` restricted to user code (files that
are not gradparity, the standard library or an installed package; notebook cells count as
user code). After every line of a user frame it looks at the frame's local variables (and
one level into the lists, tuples and dicts they hold) and records each array that is new or
whose contents changed, with the line that just ran; a function's return value is recorded
at its ``return`` line. Calls of user functions are recorded with their arguments.

That gives, for any array the user's code returned, the *deepest* line that made its value
(the helper function's line, not the line that stored it in ``grads``), and, for a value the
code never returned (a dZ computed inside ``linear_activation_backward``), the first line
whose array holds it (`ArrayTrace.find`).
"""

from __future__ import annotations

import contextlib
import io
import linecache
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import numpy as np

from gradparity.debug.user_code import (
    Location,
    UserException,
    exception_key,
    innermost_user_frame,
    is_user_file,
)

#: Arrays larger than this are not snapshotted (identity only).
SNAPSHOT_MAX = 200_000
#: At most this many snapshots per call (a training loop inside the traced call).
MAX_RECORDS = 20_000


@dataclass(frozen=True)
class TracedLocation(Location):
    """A line of user code and the user lines that called it (innermost caller first)."""

    via: tuple[Location, ...] = ()

    @property
    def short(self) -> str:
        if self.file.startswith("cell ["):
            return f"{self.file}, line {self.line}"
        return super().short


def location(filename: str, lineno: int) -> TracedLocation:
    """A `Location`; for a notebook cell the file is shown as ``cell [n]``."""
    return TracedLocation(cell_file_label(filename), lineno,
                          linecache.getline(filename, lineno).strip())


def _callers(frame: FrameType, top: Any) -> tuple[Location, ...]:
    out: list[Location] = []
    f = frame.f_back
    if frame.f_code is top:
        return ()
    while f is not None and is_user_code(f.f_code.co_filename) and len(out) < 4:
        out.append(location(f.f_code.co_filename, f.f_lineno))
        if f.f_code is top:
            break
        f = f.f_back
    return tuple(out)


_CELL_NUMBERS: dict[str, int] = {}


def cell_file_label(filename: str) -> str:
    """The name a report shows for ``filename``: ``cell [n]`` for Jupyter cells."""
    n = _CELL_NUMBERS.get(filename)
    if n is not None:
        return f"cell [{n}]"
    if "ipykernel_" in filename or filename.startswith("<ipython-input-"):
        n = _cell_number(filename)
        if n is not None:
            _CELL_NUMBERS[filename] = n
            return f"cell [{n}]"
    return filename


def _cell_number(filename: str) -> int | None:
    if filename.startswith("<ipython-input-"):
        try:
            return int(filename.split("-")[2])
        except (IndexError, ValueError):
            return None
    try:
        from IPython import get_ipython  # type: ignore[import-not-found]

        ip = get_ipython()
    except Exception:  # noqa: BLE001 - not in IPython
        return None
    if ip is None:
        return None
    source = "".join(linecache.getlines(filename))
    history = ip.user_ns.get("In", []) or []
    for n in range(len(history) - 1, 0, -1):
        if history[n].rstrip() == source.rstrip():
            return n
    return None


def is_user_code(filename: str) -> bool:
    """User files, and notebook cells (whose code has no real file)."""
    if "ipykernel_" in filename or filename.startswith("<ipython-input-"):
        return True
    return is_user_file(filename)


@dataclass
class Record:
    """One array a user line made (or changed)."""

    array: Any
    snapshot: np.ndarray | None
    where: Location
    function: str
    order: int


@dataclass
class Call:
    """One call of a user function: its name, arguments and where it was called from."""

    function: str
    args: dict[str, Any]
    order: int


@dataclass
class Traced:
    """What one traced call gave."""

    value: Any = None
    raised: UserException | None = None
    exc_names: tuple[str, ...] = ()
    exc_locals: dict[str, Any] = field(default_factory=dict)
    records: list[Record] = field(default_factory=list)
    calls: list[Call] = field(default_factory=list)
    final_locals: dict[str, Any] = field(default_factory=dict)
    output: str = ""

    @property
    def ok(self) -> bool:
        return self.raised is None

    # -- lookups ---------------------------------------------------------------------------
    def producer(self, value: Any) -> Location | None:
        """The first line whose record is ``value`` (the same object) with its final
        contents: the deepest line that made it."""
        a = value
        if not isinstance(a, np.ndarray):
            return None
        for r in self.records:
            if r.array is a and (r.snapshot is None or _equal(r.snapshot, a)):
                return r.where
        return None

    def find(self, candidates: Iterable[np.ndarray], fits: Callable[[np.ndarray, np.ndarray],
                                                                      bool]) -> Location | None:
        """The first line that made an array equal (``fits``) to one of ``candidates``."""
        cands = [np.asarray(c) for c in candidates if c is not None]
        cands = [c for c in cands if c.size and np.any(c)]  # zeros are everywhere
        for r in self.records:
            s = r.snapshot
            if s is None or s.dtype.kind not in "fiub":
                continue
            for c in cands:
                if s.shape == c.shape and fits(s, c):
                    return r.where
        return None


def _equal(a: np.ndarray, b: np.ndarray) -> bool:
    return a.shape == b.shape and a.dtype == b.dtype and bool(
        np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"))


def _arrays_in(value: Any, depth: int = 2) -> Iterable[np.ndarray]:
    if isinstance(value, np.ndarray):
        if value.dtype.kind in "fiub":
            yield value
        return
    if depth <= 0:
        return
    if isinstance(value, (list, tuple)):
        for v in value[:64]:
            yield from _arrays_in(v, depth - 1)
    elif type(value) is dict:
        for v in list(value.values())[:64]:
            yield from _arrays_in(v, depth - 1)


class _Tracer:
    def __init__(self, top: Callable | None) -> None:
        self.records: list[Record] = []
        self.calls: list[Call] = []
        self.known: dict[int, tuple[Any, np.ndarray | None]] = {}
        self.prev: dict[FrameType, int] = {}
        self.top_code = getattr(top, "__code__", None)
        self.final_locals: dict[str, Any] = {}
        self.n = 0

    def global_trace(self, frame: FrameType, event: str, arg: Any):
        if event != "call" or not is_user_code(frame.f_code.co_filename):
            return None
        self.prev[frame] = frame.f_lineno
        code = frame.f_code
        names = code.co_varnames[:code.co_argcount + code.co_kwonlyargcount]
        loc = frame.f_locals
        self.calls.append(Call(code.co_name, {n: loc[n] for n in names if n in loc}, self.n))
        self.n += 1
        return self.local_trace

    def local_trace(self, frame: FrameType, event: str, arg: Any):
        if event in ("line", "return"):
            line = self.prev.get(frame, frame.f_lineno)
            self.scan(frame, line)
            if event == "return":
                self.prev.pop(frame, None)
                if isinstance(arg, (np.ndarray, tuple, list)):
                    for a in _arrays_in(arg, 1):
                        self.note(a, frame, line)
                if self.top_code is not None and frame.f_code is self.top_code:
                    self.final_locals = dict(frame.f_locals)
            else:
                self.prev[frame] = frame.f_lineno
        return self.local_trace

    def note(self, a: np.ndarray, frame: FrameType, line: int) -> None:
        if len(self.records) >= MAX_RECORDS:
            return
        old = self.known.get(id(a))
        if old is not None and old[0] is a and (old[1] is None or _equal(old[1], a)):
            return
        snap = a.copy() if a.size <= SNAPSHOT_MAX else None
        self.known[id(a)] = (a, snap)
        here = location(frame.f_code.co_filename, line)
        where = TracedLocation(here.file, here.line, here.source,
                               _callers(frame, self.top_code))
        self.records.append(Record(a, snap, where, frame.f_code.co_name, self.n))
        self.n += 1

    def scan(self, frame: FrameType, line: int) -> None:
        for value in list(frame.f_locals.values()):
            for a in _arrays_in(value):
                self.note(a, frame, line)


def trace_call(func: Callable, args: tuple = (), kwargs: dict | None = None, *,
               top: Callable | None = None, pattern: re.Pattern | None = None,
               order: list[str] | None = None) -> Traced:
    """Call ``func(*args, **kwargs)`` under the array trace; the user's exceptions become
    `Traced.raised` (KeyboardInterrupt excepted); printed output is captured."""
    tracer = _Tracer(top if top is not None else func)
    out = io.StringIO()
    result = Traced()
    previous = sys.gettrace()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), \
                np.errstate(all="ignore"):
            sys.settrace(tracer.global_trace)
            try:
                result.value = func(*args, **(kwargs or {}))
            finally:
                sys.settrace(previous)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - the user's failure becomes a finding
        tb = exc.__traceback__
        key = exception_key(tb, pattern, order or []) if pattern is not None else None
        loc = innermost_user_frame(tb)
        if loc is not None:
            loc = TracedLocation(cell_file_label(loc.file), loc.line, loc.source)
        result.raised = UserException(type(exc).__name__, str(exc), loc, key)
        frames = [(f, n) for f, n in _walk(tb) if is_user_code(f.f_code.co_filename)]
        if frames:
            frame, lineno = frames[-1]
            result.exc_locals = dict(frame.f_locals)
            result.exc_names = _names_at(frame.f_code.co_filename, lineno)
        del tb
    result.records = tracer.records
    result.calls = tracer.calls
    result.final_locals = tracer.final_locals
    result.output = out.getvalue()
    tracer.prev.clear()
    return result


def _walk(tb):
    import traceback

    return list(traceback.walk_tb(tb))


def _names_at(filename: str, lineno: int) -> tuple[str, ...]:
    """Variable names read or written by the statement at ``filename:lineno``."""
    import ast

    text = linecache.getline(filename, lineno).strip()
    if text.endswith(":"):
        text = text[:-1]
    for candidate in (text, text + ")", "(" + text + ")"):
        try:
            tree = ast.parse(candidate)
        except SyntaxError:
            continue
        return tuple(dict.fromkeys(n.id for n in ast.walk(tree) if isinstance(n, ast.Name)))
    return ()
