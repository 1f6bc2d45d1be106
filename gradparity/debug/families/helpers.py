"""Standard versions of the helpers course files import from utility modules that are often
not shipped with them (``dnn_utils``: ``sigmoid(Z) -> (A, cache)``, ``relu_backward(dA,
cache)``; ``planar_utils``/``reg_utils``: ``sigmoid(x) -> s``). Used only when such an
import fails, and said so in the report."""

from __future__ import annotations

import ast
from collections.abc import Callable

import numpy as np


def _sigmoid_cached(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return 1 / (1 + np.exp(-Z)), Z


def _relu_cached(Z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return np.maximum(0, Z), Z


def _relu_backward(dA: np.ndarray, cache: np.ndarray) -> np.ndarray:
    dZ = np.array(dA, copy=True)
    dZ[cache <= 0] = 0
    return dZ


def _sigmoid_backward(dA: np.ndarray, cache: np.ndarray) -> np.ndarray:
    s = 1 / (1 + np.exp(-cache))
    return dA * s * (1 - s)


def _sigmoid(x: np.ndarray) -> np.ndarray:
    return 1 / (1 + np.exp(-x))


def _relu(x: np.ndarray) -> np.ndarray:
    return np.maximum(0, x)


CACHED: dict[str, Callable] = {"sigmoid": _sigmoid_cached, "relu": _relu_cached,
                               "relu_backward": _relu_backward,
                               "sigmoid_backward": _sigmoid_backward}
PLAIN: dict[str, Callable] = {"sigmoid": _sigmoid, "relu": _relu}


def for_module(module: str, tree: ast.Module | None = None) -> dict[str, Callable]:
    """The helpers ``module`` gives in the courses (by its name; for another name, by how
    the file calls them: ``A, cache = sigmoid(Z)`` is the cached form)."""
    name = module.rsplit(".", 1)[-1].lower()
    if name.startswith("dnn"):
        return CACHED
    if name.endswith("utils") or name.startswith(("planar", "reg", "init", "gc")):
        return PLAIN
    if tree is None:
        return {}
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    cached = any(isinstance(n, ast.Assign) and isinstance(n.targets[0], ast.Tuple)
                 and isinstance(n.value, ast.Call) and isinstance(n.value.func, ast.Name)
                 and n.value.func.id in ("sigmoid", "relu") for n in ast.walk(tree))
    table = CACHED if cached else PLAIN
    return {k: v for k, v in table.items() if k in used}
