"""The package's shape: imports flow one way, no module imports the command line, no import
cycle (function-local imports included).

Imports are read with `ast` from every module of the package, at module level and inside
functions. The layers, from the bottom up::

    core -> reference -> adapters -> judge -> experiments | debug | ci | selftest | bench
        | report | fuzz -> cli

A module may import its own package and any lower layer. The four uses (experiments, debug,
ci, selftest) stand side by side and import each other only along `BETWEEN_USES`. The root
package (``gradparity/__init__.py``, the public API, and ``__main__``) stands above
everything: no library module imports it.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "gradparity"

LAYERS: dict[str, int] = {
    "core": 0, "reference": 1, "adapters": 2, "judge": 3,
    "experiments": 4, "debug": 4, "ci": 4, "selftest": 4, "bench": 4, "report": 4,
    "fuzz": 4, "cli": 5,
}
USES = frozenset({"experiments", "debug", "ci", "selftest", "bench", "report", "fuzz"})
#: The only imports between two uses, and why each is needed.
BETWEEN_USES: dict[tuple[str, str], str] = {
    ("ci", "experiments"): "a baseline reruns its cases with the runner, as one tidy table",
    ("debug", "experiments"): "a debug session is written as the runner's tidy table",
    ("selftest", "experiments"): "the self-test report uses the tables' markdown writer",
    ("ci", "debug"): "the CI gate checks a user's own torch or JAX model the way debug does",
    ("bench", "experiments"): "the benchmark times the runner's verdict on one case",
    ("report", "experiments"): "the HTML report draws the result table's figures and tables",
    ("report", "ci"): "the HTML report shows the diff of two results (gradparity diff)",
    ("fuzz", "experiments"): "a searched case is judged by the runner's evaluate_case and "
                             "written as its tidy table and a TOML suite",
    ("fuzz", "selftest"): "the search proves itself on the self-test's injected faults",
}
ROOT = "gradparity"  # the public API face, above every layer


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


MODULES: dict[str, Path] = {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _resolve(name: str) -> str:
    """The module an import of ``name`` loads: itself, or the nearest enclosing one."""
    while name not in MODULES and "." in name:
        name = name.rsplit(".", 1)[0]
    return name


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def imports_of(module: str) -> list[tuple[str, int, bool]]:
    """(imported gradparity module, line, runtime) for every import of ``module``, at any
    depth; ``runtime`` is False under ``if TYPE_CHECKING:`` (annotations only)."""
    tree = ast.parse(MODULES[module].read_text(), filename=str(MODULES[module]))
    package = module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]
    found: list[tuple[str, int, bool]] = []

    def visit(node: ast.AST, runtime: bool) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for child in node.body:
                visit(child, False)
            for child in node.orelse:
                visit(child, runtime)
            return
        if isinstance(node, ast.Import):
            found.extend((_resolve(a.name), node.lineno, runtime) for a in node.names
                         if a.name.split(".")[0] == ROOT)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            if base.split(".")[0] == ROOT:
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    found.append((sub if sub in MODULES else _resolve(base), node.lineno,
                                  runtime))
        for child in ast.iter_child_nodes(node):
            visit(child, runtime)

    visit(tree, True)
    return found


def layer_of(module: str) -> str:
    parts = module.split(".")
    return parts[1] if len(parts) > 1 and parts[1] in LAYERS else ROOT


def edge_problem(source: str, target: str) -> str:
    """Why ``source`` may not import ``target``, or ``""``."""
    a, b = layer_of(source), layer_of(target)
    if b == ROOT:
        return "imports the package root (the public API): import the defining module"
    if a == ROOT or a == b:
        return ""
    if b == "cli":
        return "a library module imports the command line"
    if a in USES and b in USES:
        return "" if (a, b) in BETWEEN_USES else f"{a} -> {b} is not in BETWEEN_USES"
    if LAYERS[b] > LAYERS[a]:
        return f"upward: {a} (layer {LAYERS[a]}) imports {b} (layer {LAYERS[b]})"
    return ""


def all_edges() -> list[tuple[str, str, int, bool]]:
    return [(m, t, line, runtime) for m in MODULES for t, line, runtime in imports_of(m)
            if t != m]


def layering_problems(edges) -> list[str]:
    return [f"{MODULES[s].relative_to(PACKAGE.parent)}:{line} imports {t}: {why}"
            for s, t, line, _ in edges if (why := edge_problem(s, t))]


def cycles(edges) -> list[list[str]]:
    """Strongly connected components of more than one module. Every import counts, also
    one under ``if TYPE_CHECKING:``: a cycle of annotations is still a cycle of concepts."""
    graph: dict[str, set[str]] = {m: set() for m in MODULES}
    for s, t, _, _ in edges:
        graph[s].add(t)
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def strongconnect(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return found


def test_every_layer_is_a_folder_of_the_package():
    folders = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    assert folders == set(LAYERS)
    loose = sorted(p.name for p in PACKAGE.glob("*.py"))
    assert loose == ["__init__.py", "__main__.py"]


def test_imports_flow_down_the_layers():
    assert layering_problems(all_edges()) == []


def test_no_library_module_imports_the_cli():
    offenders = [f"{s} -> {t}" for s, t, _, _ in all_edges()
                 if layer_of(t) == "cli" and layer_of(s) not in ("cli", ROOT)]
    assert offenders == []


def test_no_import_cycle():
    assert cycles(all_edges()) == []


def test_the_checks_see_function_local_imports_and_fail():
    """The rules catch an upward or circular import, also one inside a function."""
    src = "def f():\n    from gradparity.cli.common import csv_list\n"
    tree = ast.parse(src)
    imp = next(n for n in ast.walk(tree) if isinstance(n, ast.ImportFrom))
    assert imp.module == "gradparity.cli.common"
    assert edge_problem("gradparity.judge.verdict", "gradparity.cli.common")
    assert edge_problem("gradparity.core.spec", "gradparity.reference.mlp").startswith("upward")
    assert edge_problem("gradparity.debug.session", "gradparity.ci.baseline")
    assert edge_problem("gradparity.experiments.runner", ROOT)
    assert not edge_problem("gradparity.ci.baseline", "gradparity.experiments.runner")
    fake = [("gradparity.judge.verdict", "gradparity.judge.compare", 1, True),
            ("gradparity.judge.compare", "gradparity.judge.verdict", 2, True)]
    assert cycles(fake) == [["gradparity.judge.compare", "gradparity.judge.verdict"]]
    type_only = [(*fake[0][:3], True), (*fake[1][:3], False)]
    assert cycles(type_only) == [["gradparity.judge.compare", "gradparity.judge.verdict"]]


def test_function_local_imports_are_read():
    edges = {(s, t) for s, t, _, _ in all_edges()}
    # registry imports the reference inside a method
    assert ("gradparity.adapters.registry", "gradparity.reference.mlp") in edges


# -- facts defined once ---------------------------------------------------------------------
def _status_collections(path: Path) -> list[int]:
    """Lines of tuples, lists and sets of string literals that name ``fail`` and ``error``:
    a status order or a failing set."""
    lines = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
            names = {e.value for e in node.elts if isinstance(e, ast.Constant)}
            if {"fail", "error"} <= names:
                lines.append(node.lineno)
    return lines


def test_statuses_are_ordered_and_grouped_in_one_module():
    found = {str(p.relative_to(PACKAGE)): lines for p in PACKAGE.rglob("*.py")
             if (lines := _status_collections(p))}
    assert list(found) == ["judge/status.py"]


def test_status_finder_sees_a_second_order(tmp_path):
    f = tmp_path / "x.py"
    f.write_text('ORDER = ("error", "fail", "skipped")\n')
    assert _status_collections(f) == [1]


def test_one_definition_of_the_default_backends_and_kink_keys():
    for name in ("DEFAULT_BACKENDS", "KINK_KEYS", "REFERENCE_KINKS", "STATUSES", "FAILING"):
        where = [str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
                 for node in ast.walk(ast.parse(p.read_text()))
                 if isinstance(node, (ast.Assign, ast.AnnAssign))
                 and name in {t.id for t in (node.targets if isinstance(node, ast.Assign)
                                             else [node.target]) if isinstance(t, ast.Name)}]
        assert len(where) == 1, (name, where)
# -- the seed's backward equations, written once ----------------------------------------------
def _is_T(node: ast.expr) -> bool:
    return isinstance(node, ast.Attribute) and node.attr == "T"


def _equation_sites(path: Path) -> list[tuple[str, int]]:
    """``X @ Y.T`` (dW = dZ A^T), ``W.T @ X`` (dA = W^T dZ), the same as
    ``matmul(X, Y.T)`` / ``matmul(W.T, X)`` (the reference's product), and
    ``np.sum(X, axis=1, keepdims=True)`` (db) in one file."""
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        pair = None
        if isinstance(node, ast.BinOp) and isinstance(node.op, ast.MatMult):
            pair = node.left, node.right
        if (isinstance(node, ast.Call) and len(node.args) == 2 and (
                (isinstance(node.func, ast.Name) and node.func.id == "matmul")
                or (isinstance(node.func, ast.Attribute) and node.func.attr == "matmul"))):
            pair = node.args[0], node.args[1]
        if pair is not None:
            if _is_T(pair[1]):
                found.append(("dW", node.lineno))
            if _is_T(pair[0]):
                found.append(("dA", node.lineno))
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr == "sum"
                and {(k.arg, ast.unparse(k.value)) for k in node.keywords}
                == {("axis", "1"), ("keepdims", "True")}):
            found.append(("db", node.lineno))
    return found


#: Files that may hold such products for another reason: the frameworks' own batch-major
#: forward (``a @ W.T``; the benchmark's bare JAX network too) and the catalogue of
#: learners' wrong variants that debug tries.
NOT_THE_SEED = ("adapters/torch_autograd.py", "adapters/jax_grad.py", "debug/diagnose.py",
                "bench/measure.py")


def test_backward_equations_are_written_once_in_the_reference():
    sites = {str(p.relative_to(PACKAGE)): _equation_sites(p) for p in PACKAGE.rglob("*.py")}
    mlp = sorted(q for q, _ in sites.pop("reference/mlp.py"))
    assert mlp == ["dA", "dW", "db"]
    elsewhere = {f: s for f, s in sites.items() if s and f not in NOT_THE_SEED}
    assert elsewhere == {}


@pytest.mark.parametrize("snippet", ["g = dZ @ A.T", "g = W.T @ dZ",
                                     "g = matmul(dZ, A.T)", "g = np.matmul(W.T, dZ)",
                                     "g = np.sum(dZ, axis=1, keepdims=True)"])
def test_equation_finder_sees_each_equation(tmp_path, snippet):
    f = tmp_path / "x.py"
    f.write_text(snippet + "\n")
    assert len(_equation_sites(f)) == 1
