"""Import a learner's file the way it is written: many run a training script at import time.

`load_module` imports the file under a time limit. When the import runs too long (training
at import time), or fails in top-level code that is not a definition (a data file that is
not there, a plot), the file is imported again with its definitions only: imports,
functions, classes and assignments of literal values (``layers_dims = [12288, 20, 7, 1]``).
An import of the definitions that fails on its own (a helper module that is missing) is
skipped and said so. ``definitions_only=True`` skips top-level code from the start.
"""

from __future__ import annotations

import ast
import contextlib
import io
import os
import re
import signal
import sys
import threading
import types
import warnings
from dataclasses import dataclass, field
from pathlib import Path

from gradparity.core.errors import UsageError
from gradparity.debug.user_code import display_path, load_file, python_file

#: Seconds a file's import may take before its top-level code is skipped.
IMPORT_TIME_LIMIT = 10.0


@dataclass
class Loaded:
    """The user's module and how it was imported."""

    module: types.ModuleType
    tree: ast.Module | None
    note: str = ""
    skipped: list[str] = field(default_factory=list)


class _ImportTimeout(Exception):
    pass


@contextlib.contextmanager
def _time_limit(seconds: float):
    if seconds <= 0 or threading.current_thread() is not threading.main_thread() \
            or not hasattr(signal, "setitimer"):
        yield
        return

    def handler(signum, frame):
        raise _ImportTimeout()

    old = signal.signal(signal.SIGALRM, handler)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, old)


@contextlib.contextmanager
def _quiet():
    """The user's top-level code prints and warns into nothing."""
    with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()), \
            warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def parse(path: str | Path, *, py2: bool = False) -> ast.Module | None:
    """The file's syntax tree; ``py2``: also read Python 2 code (print statements,
    ``except E, e``), line for line."""
    try:
        text = Path(path).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return None
    try:
        return ast.parse(text)
    except (SyntaxError, ValueError):
        if not py2:
            return None
    try:
        return ast.parse(py2_to_py3(text))
    except (SyntaxError, ValueError):
        return None


_PRINT = re.compile(r"^(\s*)print\b(?!\s*\()\s*(.*?)\s*(#.*)?$")
_MAGIC = re.compile(r"^(\s*)[%!]")
_EXCEPT = re.compile(r"^(\s*except\s+[\w.]+|\s*except\s*\([^)]*\))\s*,\s*(\w+)\s*:")


def py2_to_py3(text: str) -> str:
    """Python 2 print statements and ``except E, e:`` as Python 3, IPython magics and shell
    lines (``%matplotlib inline``) as ``pass``, line for line (so that line numbers and the
    source shown for them stay the file's)."""
    out = []
    for line in text.splitlines():
        magic = _MAGIC.match(line)
        if magic:  # an IPython magic or shell line of an exported notebook
            out.append(f"{magic.group(1)}pass")
            continue
        m = _PRINT.match(line)
        if m and not m.group(2).startswith(("=", ".", "[")):
            body = m.group(2).rstrip(",")
            line = f"{m.group(1)}print({body})"
        line = _EXCEPT.sub(r"\1 as \2:", line)
        out.append(line)
    return "\n".join(out) + "\n"


def _is_literal(node: ast.AST) -> bool:
    try:
        ast.literal_eval(node)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        return False
    return True


def _definition(node: ast.stmt) -> bool:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Import,
                         ast.ImportFrom)):
        return True
    if isinstance(node, ast.Assign) and _is_literal(node.value):
        return True
    if isinstance(node, ast.AnnAssign) and node.value is not None and _is_literal(node.value):
        return True
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant)  # docstring


def load_definitions(path: str | Path, name: str) -> Loaded:
    """Execute only the definitions of ``path`` (see the module doc)."""
    p = Path(path).resolve()
    tree = parse(p, py2=True)
    if tree is None:
        load_file(p)  # raises the SyntaxError as a UsageError
        raise UsageError(f"file={str(path)!r}: cannot be parsed")
    module = types.ModuleType(name)
    module.__file__ = str(p)
    module.__dict__["xrange"] = range  # Python 2 code
    sys.modules[name] = module
    skipped: list[str] = []
    folder = str(p.parent)
    sys.path.insert(0, folder)
    try:
        for node in tree.body:
            if not _definition(node):
                continue
            code = compile(ast.Module(body=[node], type_ignores=[]), str(p), "exec")
            try:
                with _quiet(), _time_limit(IMPORT_TIME_LIMIT):
                    exec(code, module.__dict__)  # noqa: S102 - the user's own file
            except (Exception, _ImportTimeout) as exc:  # noqa: BLE001 - skip that statement
                line = ast.get_source_segment(p.read_text(encoding="utf-8", errors="replace"),
                                              node) or ""
                first = line.splitlines()[0] if line else f"line {node.lineno}"
                supplied = _supply_helpers(node, module.__dict__, tree)
                extra = (f"; the course's {', '.join(supplied)} supplied by the harness"
                         if supplied else "")
                skipped.append(f"{display_path(p)}:{node.lineno} {first.strip()} "
                               f"({type(exc).__name__}{extra})")
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(folder)
    return Loaded(module, tree, skipped=skipped)


_N = 0


def _supply_helpers(node: ast.stmt, namespace: dict, tree: ast.Module | None = None
                    ) -> list[str]:
    """The course helpers a missing utility module would have given (``from dnn_utils
    import sigmoid, relu_backward``; ``from planar_utils import sigmoid``)."""
    if not isinstance(node, ast.ImportFrom) or not node.module:
        return []
    from gradparity.debug.families import helpers

    table = helpers.for_module(node.module, tree)
    out = []
    for a in node.names:
        if a.name in table and (a.asname or a.name) not in namespace:
            namespace[a.asname or a.name] = table[a.name]
            out.append(a.name)
    if [a.name for a in node.names] == ["*"]:
        for n, f in table.items():
            if n not in namespace:
                namespace[n] = f
                out.append(n)
    return out


def _forget_user_modules(tree: ast.Module | None) -> None:
    """Helper modules the file imports (``from dnn_utils import ...``) are imported afresh,
    not taken from an earlier import of another file's (or an older) version."""
    if tree is None:
        return
    from gradparity.debug.user_code import is_user_file

    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
    for name in names:
        mod = sys.modules.get(name)
        f = getattr(mod, "__file__", None)
        if mod is not None and f and is_user_file(f):
            del sys.modules[name]


def _relative_imports(tree: ast.Module) -> bool:
    return any(isinstance(n, ast.ImportFrom) and n.level for n in ast.walk(tree))


def _load_in_package(p: Path, time_limit: float) -> types.ModuleType | None:
    """``pkg/classifiers/fc_net.py`` with ``from ..layers import *``: imported as
    ``pkg.classifiers.fc_net`` with the folder above ``pkg`` on ``sys.path``."""
    import importlib

    p = p.resolve()
    parts = [p.stem]
    folder = p.parent
    while (folder / "__init__.py").is_file():
        parts.insert(0, folder.name)
        folder = folder.parent
    if len(parts) == 1:
        return None
    name = ".".join(parts)
    for mod in [m for m in sys.modules if m == parts[0] or m.startswith(parts[0] + ".")]:
        del sys.modules[mod]
    sys.path.insert(0, str(folder))
    try:
        with _time_limit(time_limit), _quiet():
            return importlib.import_module(name)
    except (Exception, _ImportTimeout):  # noqa: BLE001 - fall back to a plain import
        return None
    finally:
        with contextlib.suppress(ValueError):
            sys.path.remove(str(folder))


def load_module(path: str | Path, *, definitions_only: bool = False,
                time_limit: float | None = None) -> Loaded:
    """Import the user's file (see the module doc).

    Raises:
        UsageError: no such file, not a ``.py`` file, a syntax error.
    """
    global _N
    p = python_file(path)
    if time_limit is None:
        time_limit = IMPORT_TIME_LIMIT
    os.environ.setdefault("MPLBACKEND", "Agg")  # a plt.show() at import must not block
    tree = parse(p)
    _N += 1
    name = f"_gradparity_family_{_N}_{re.sub(r'[^0-9a-zA-Z_]', '_', p.stem)}"
    if tree is None:
        tree2 = parse(p, py2=True)
        if tree2 is None:
            load_file(p)  # raises the SyntaxError as a UsageError
        _forget_user_modules(tree2)
        loaded = load_definitions(p, name)
        loaded.note = ("not Python 3 as it is (Python 2 print statements, IPython % or ! "
                       "lines): read line for line with those as Python 3, only its "
                       "definitions imported")
        return loaded
    _forget_user_modules(tree)
    if definitions_only:
        loaded = load_definitions(p, name)
        loaded.note = "definitions only (top-level code skipped, as asked)"
        return loaded
    if tree is not None and _relative_imports(tree):
        packaged = _load_in_package(p, time_limit)
        if packaged is not None:
            return Loaded(packaged, tree, "imported as part of its package (it has relative "
                          "imports)")
    why = ""
    try:
        with _time_limit(time_limit), _quiet():
            module = load_file(p)
        return Loaded(module, tree)
    except (_ImportTimeout, UsageError) as exc:
        if isinstance(exc, UsageError) and "SyntaxError" in str(exc):
            raise
        if isinstance(exc, _ImportTimeout) or "_ImportTimeout" in str(exc):
            why = (f"importing it ran longer than {time_limit:g} s (training at import "
                   "time?), so only its definitions were imported")
        else:
            why = f"{exc}; only its definitions were imported"
    loaded = load_definitions(p, name)
    loaded.note = why
    return loaded

