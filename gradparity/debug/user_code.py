"""Load a user's file and run the user's functions without letting them crash the harness.

* `load_file` imports a ``.py`` file by path (``importlib``), under a private module name,
  with the file's folder on ``sys.path`` for the duration of the import (so its own helper
  modules import). Failing to import it is a `UsageError` naming ``file:line``.
* `run_traced` calls a user function on copies of the harness's arrays and returns a
  `UserCall`: the return value or the exception, where the user's code raised (the
  innermost frame outside gradparity, the standard library and installed packages:
  ``file:line`` and the source line), and, for every gradient or cache key the code stored
  in a dict, the line that stored it last. That is how a wrong tensor is traced back to the
  line that computed it, and how an exception is attributed to the quantity being computed
  (the key of the assignment that raised, or else the first key not yet stored).

Tracing uses ``sys.settrace`` for the user's frames only (the previous trace function is
restored afterwards) and is cheap at the sizes a debug session uses.
"""

from __future__ import annotations

import ast
import contextlib
import importlib.util
import inspect
import io
import linecache
import os
import re
import sys
import sysconfig
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType, ModuleType
from typing import Any

import numpy as np

from gradparity.core.errors import UsageError

#: Keys of the seed's gradient dict and forward cache.
GRAD_KEY = re.compile(r"^d(Z|W|b|A)(\d+)$")
CACHE_KEY = re.compile(r"^(Z|A)(\d+)$")

#: Arrays up to this size are snapshotted at every traced line, so that in-place edits
#: (``dZ[Z <= 0] = 0``) are attributed to their own line; larger ones by identity only.
_SNAPSHOT_MAX = 100_000


@dataclass(frozen=True)
class Location:
    """A line of user code."""

    file: str
    line: int
    source: str

    @property
    def short(self) -> str:
        """``file:line`` with the file relative to the working directory when inside it."""
        return f"{display_path(self.file)}:{self.line}"

    def __str__(self) -> str:
        return f"{self.short}: {self.source}" if self.source else self.short


@dataclass(frozen=True)
class UserException:
    """An exception raised by user code."""

    type: str
    message: str
    location: Location | None
    key: str | None  # the quantity being computed, when it can be told

    @property
    def text(self) -> str:
        msg = self.message.strip().splitlines()[0] if self.message.strip() else ""
        return f"{self.type}: {msg}" if msg else self.type


@dataclass
class UserCall:
    """What one call of a user function gave."""

    value: Any = None
    raised: UserException | None = None
    assigned: dict[str, Location] = field(default_factory=dict)
    partial: dict[str, Any] = field(default_factory=dict)
    output: str = ""

    @property
    def ok(self) -> bool:
        return self.raised is None


def display_path(path: str | os.PathLike[str]) -> str:
    """``path`` relative to the working directory when it is inside it, else as given."""
    p = Path(path)
    try:
        return str(p.resolve().relative_to(Path.cwd().resolve()))
    except (ValueError, OSError):
        return str(path)


# -- which frames are the user's ------------------------------------------------------------
def _library_roots() -> tuple[str, ...]:
    package = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # gradparity/
    roots = {package}
    paths = sysconfig.get_paths()
    for name in ("stdlib", "platstdlib", "purelib", "platlib"):
        if paths.get(name):
            roots.add(os.path.abspath(paths[name]))
    for prefix in {sys.prefix, sys.base_prefix, sys.exec_prefix}:
        roots.add(os.path.join(os.path.abspath(prefix), "lib"))
    return tuple(sorted(r.rstrip(os.sep) + os.sep for r in roots))


_LIB_ROOTS = _library_roots()


def is_user_file(filename: str) -> bool:
    """True for code the user wrote: not gradparity, the standard library or a package."""
    if not filename or filename.startswith("<"):
        return False
    path = os.path.abspath(filename)
    return not any(path.startswith(root) for root in _LIB_ROOTS)


def _location(filename: str, lineno: int) -> Location:
    return Location(filename, lineno, linecache.getline(filename, lineno).strip())


# -- announcing user code, capping its output ---------------------------------------------
#: Called with what is about to run (``"backpropagation (file.py:12)"``, ``"importing
#: file.py"``) before user code runs, and with ``""`` when it returned; the debug
#: command's child process records it, to name what was running if the process dies there.
user_code_hook: Callable[[str], None] | None = None

#: Characters of the user's printed output kept (the rest is counted, not stored).
OUTPUT_LIMIT = 20_000


def _announce(text: str) -> None:
    if user_code_hook is not None:
        user_code_hook(text)


def _describe(func: Callable) -> str:
    name = getattr(func, "__qualname__", None) or getattr(func, "__name__", repr(func))
    code = getattr(func, "__code__", None)
    if code is None:
        return str(name)
    return f"{name} ({display_path(code.co_filename)}:{code.co_firstlineno})"


class CappedOutput(io.StringIO):
    """A text stream that keeps the first `OUTPUT_LIMIT` characters and counts the rest."""

    def __init__(self, limit: int = OUTPUT_LIMIT) -> None:
        super().__init__()
        self.limit = limit
        self.dropped = 0

    def write(self, s: str) -> int:
        room = self.limit - self.tell()
        if room > 0:
            super().write(s[:room])
        self.dropped += max(0, len(s) - max(room, 0))
        return len(s)

    def getvalue(self) -> str:
        text = super().getvalue()
        if self.dropped:
            text += f"\n... output cut: {self.dropped} more characters\n"
        return text


# -- loading --------------------------------------------------------------------------------
_LOADED = 0


def python_file(path: str | os.PathLike[str]) -> Path:
    """``path`` as a `Path`, once it is known to name a ``.py`` file.

    Raises:
        UsageError: a folder, no such file, or not a ``.py`` file.
    """
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"file={str(path)!r}: is a folder, expected a Python file (.py)")
    if not p.is_file():
        raise UsageError(f"file={str(path)!r}: no such file")
    if p.suffix != ".py":
        raise UsageError(f"file={str(path)!r}: expected a Python file (.py)")
    return p


def load_file(path: str | os.PathLike[str]) -> ModuleType:
    """Import a user's ``.py`` file by path.

    Raises:
        UsageError: the file does not exist, is not a ``.py`` file, or raises on import
            (the message names ``file:line`` and the exception).
    """
    global _LOADED
    p = python_file(path)
    _LOADED += 1
    name = f"_gradparity_user_{_LOADED}_{re.sub(r'[^0-9a-zA-Z_]', '_', p.stem)}"
    spec = importlib.util.spec_from_file_location(name, p.resolve())
    if spec is None or spec.loader is None:
        raise UsageError(f"file={str(path)!r}: cannot be imported")
    module = importlib.util.module_from_spec(spec)
    folder = str(p.resolve().parent)
    sys.path.insert(0, folder)
    sys.modules[name] = module
    try:
        _announce(f"importing {display_path(p)}")
        with contextlib.redirect_stdout(CappedOutput()):
            spec.loader.exec_module(module)
        _announce("")
    except SyntaxError as exc:
        sys.modules.pop(name, None)
        where = f"{display_path(exc.filename or p)}:{exc.lineno}"
        raise UsageError(f"{where}: SyntaxError: {exc.msg}") from None
    except BaseException as exc:  # noqa: BLE001 - a user's import-time failure is a usage error
        sys.modules.pop(name, None)
        if isinstance(exc, KeyboardInterrupt):
            raise
        loc = innermost_user_frame(exc.__traceback__)
        where = loc.short if loc else display_path(p)
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise UsageError(f"{where}: importing it raised {type(exc).__name__}"
                         + (f": {first}" if first else "")) from None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    return module


def find_function(module: ModuleType, names: Iterable[str]) -> tuple[str, Callable] | None:
    """The first of ``names`` that is a function defined (or imported) in ``module``."""
    for n in names:
        f = getattr(module, n, None)
        if callable(f) and not inspect.isclass(f):
            return n, f
    return None


def accepts(func: Callable, n_args: int) -> bool:
    """True if ``func`` can be called with ``n_args`` positional arguments."""
    try:
        inspect.signature(func).bind(*range(n_args))
    except TypeError:
        return False
    except ValueError:  # no signature (a builtin): let the call decide
        return True
    return True


def signature_text(name: str, func: Callable) -> str:
    try:
        return f"{name}{inspect.signature(func)}"
    except (TypeError, ValueError):
        return f"{name}(...)"


# -- exceptions -----------------------------------------------------------------------------
def innermost_user_frame(tb) -> Location | None:
    """The deepest traceback frame in user code, as a `Location`."""
    found = None
    for frame, lineno in traceback.walk_tb(tb):
        if is_user_file(frame.f_code.co_filename):
            found = (frame.f_code.co_filename, lineno)
    return _location(*found) if found else None


def _user_frames(tb) -> list[tuple[FrameType, int]]:
    return [(f, n) for f, n in traceback.walk_tb(tb) if is_user_file(f.f_code.co_filename)]


_SAFE_NODES = (ast.Expression, ast.Constant, ast.Name, ast.Load, ast.BinOp, ast.Add, ast.Sub,
               ast.Mult, ast.JoinedStr, ast.FormattedValue, ast.UnaryOp, ast.USub, ast.Call)


def _safe_key_expr(node: ast.AST) -> bool:
    """Only names, constants, arithmetic, f-strings and str()/int() calls: evaluating the
    subscript of ``grads["dA" + str(l)]`` in the user's frame then has no side effects."""
    for n in ast.walk(node):
        if not isinstance(n, _SAFE_NODES):
            return False
        if isinstance(n, ast.Call) and not (isinstance(n.func, ast.Name)
                                            and n.func.id in ("str", "int") and not n.keywords):
            return False
    return True


def _statement_at(filename: str, lineno: int) -> ast.stmt | None:
    source = "".join(linecache.getlines(filename))
    try:
        tree = ast.parse(source)
    except (SyntaxError, ValueError):
        return None
    best = None
    for node in ast.walk(tree):
        if isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign, ast.Expr, ast.Return)):
            end = getattr(node, "end_lineno", node.lineno) or node.lineno
            if node.lineno <= lineno <= end and (
                    best is None or end - node.lineno < best[1] - best[0]):
                best = (node.lineno, end, node)
    return None if best is None else best[2]


def _subscript_keys(stmt: ast.stmt, frame: FrameType, pattern: re.Pattern) -> list[str]:
    """Keys (matching ``pattern``) that ``stmt`` assigns with ``d[...] = ...``."""
    if isinstance(stmt, ast.Assign):
        targets = list(stmt.targets)
    elif isinstance(stmt, (ast.AugAssign, ast.AnnAssign)):
        targets = [stmt.target]
    else:
        return []
    flat: list[ast.AST] = []
    for t in targets:
        flat.extend(t.elts if isinstance(t, (ast.Tuple, ast.List)) else [t])
    keys = []
    for t in flat:
        if not isinstance(t, ast.Subscript) or not _safe_key_expr(t.slice):
            continue
        try:
            value = eval(compile(ast.Expression(t.slice), "<key>", "eval"),  # noqa: S307
                         {"__builtins__": {"str": str, "int": int}}, dict(frame.f_locals))
        except Exception:  # noqa: BLE001 - not evaluable here: no key
            continue
        if isinstance(value, str) and pattern.match(value):
            keys.append(value)
    return keys


def exception_key(tb, pattern: re.Pattern, order: list[str]) -> str | None:
    """The quantity whose assignment raised: the subscript key of the failing statement in
    the innermost user frame that has one (``grads["dA" + str(l)] = ...`` -> ``"dA2"``),
    evaluated with that frame's variables. Several keys (a tuple target): the first in
    ``order``."""
    for frame, lineno in reversed(_user_frames(tb)):
        stmt = _statement_at(frame.f_code.co_filename, lineno)
        if stmt is None:
            continue
        keys = _subscript_keys(stmt, frame, pattern)
        if keys:
            ranked = sorted(keys, key=lambda k: order.index(k) if k in order else len(order))
            return ranked[0]
    return None


# -- tracing --------------------------------------------------------------------------------
class _Recorder:
    """Records, per dict key matching ``pattern``, the user line that stored it last."""

    def __init__(self, pattern: re.Pattern) -> None:
        self.pattern = pattern
        self.assigned: dict[str, Location] = {}
        self.seen: dict[int, tuple[dict, dict[str, tuple[Any, Any]]]] = {}
        self.prev: dict[FrameType, int] = {}

    def global_trace(self, frame: FrameType, event: str, arg: Any):
        if event != "call" or not is_user_file(frame.f_code.co_filename):
            return None
        self.prev[frame] = frame.f_lineno
        return self.local_trace

    def local_trace(self, frame: FrameType, event: str, arg: Any):
        if event in ("line", "return"):
            self.scan(frame, self.prev.get(frame, frame.f_lineno))
            if event == "line":
                self.prev[frame] = frame.f_lineno
            else:
                self.prev.pop(frame, None)
        return self.local_trace

    def scan(self, frame: FrameType, line: int) -> None:
        for value in list(frame.f_locals.values()):
            if type(value) is not dict:
                continue
            entry = self.seen.get(id(value))
            if entry is None or entry[0] is not value:
                entry = (value, {})
                self.seen[id(value)] = entry
            snaps = entry[1]
            for k, v in list(value.items()):
                if not (isinstance(k, str) and self.pattern.match(k)):
                    continue
                old = snaps.get(k)
                if old is None or old[0] is not v or not _same_contents(old[1], v):
                    self.assigned[k] = _location(frame.f_code.co_filename, line)
                    snaps[k] = (v, _snapshot(v))

    def largest_dict(self) -> dict[str, Any]:
        """Contents of the dict with the most matching keys (the user's ``grads``)."""
        best: dict[str, Any] = {}
        for value, snaps in self.seen.values():
            if len(snaps) > len(best):
                best = {k: value[k] for k in snaps if k in value}
        return best


def _snapshot(v: Any) -> Any:
    if isinstance(v, np.ndarray) and v.size <= _SNAPSHOT_MAX:
        return v.copy()
    return None


def _same_contents(snap: Any, v: Any) -> bool:
    if snap is None or not isinstance(v, np.ndarray):
        return True
    if snap.shape != v.shape or snap.dtype != v.dtype:
        return False
    return bool(np.array_equal(snap, v, equal_nan=np.issubdtype(v.dtype, np.inexact)))


def copy_arrays(d: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """A fresh dict of copies (the user's code may modify what it is given)."""
    return {k: np.array(v, copy=True) for k, v in d.items()}


def run_traced(func: Callable, args: tuple, *, pattern: re.Pattern, order: list[str]
               ) -> UserCall:
    """Call ``func(*args)``; never raises for the user's exceptions (KeyboardInterrupt
    excepted). Output the user's code prints is captured in `UserCall.output`."""
    rec = _Recorder(pattern)
    out = CappedOutput()
    call = UserCall()
    previous = sys.gettrace()
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(out), \
                np.errstate(all="ignore"):
            _announce(_describe(func))
            sys.settrace(rec.global_trace)
            try:
                call.value = func(*args)
            finally:
                sys.settrace(previous)
                _announce("")
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # noqa: BLE001 - the user's failure becomes a finding
        tb = exc.__traceback__
        key = exception_key(tb, pattern, order)
        call.raised = UserException(type(exc).__name__, str(exc), innermost_user_frame(tb),
                                    key)
        del tb
    call.assigned = dict(rec.assigned)
    call.partial = rec.largest_dict()
    call.output = out.getvalue()
    rec.prev.clear()
    return call
