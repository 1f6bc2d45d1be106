"""The learner's network, read from the file: sizes, activations, and the head from the cost.

* `literal_sizes` reads layer widths from the source (``layers_dims = [...]``,
  ``Network([2, 3, 1])``, ``initialize_parameters(2, 4, 1)``, ``TwoLayerNet(4, 10, 3)``,
  ``nn_model(X, Y, n_h=4)``, ``n_h = 4``), without running anything.
* `hidden_activation` and `output_activation` match a forward's ``A = g(Z)``.
* `match_cost` evaluates what the learner's cost function returned against every loss the
  harness knows (with its usual scalings: a mean or a sum, with or without the 1/2 of the
  squared error), so the head comes from the code's own cost, and the factor between the
  learner's J and the harness's is known.
"""

from __future__ import annotations

import ast
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradparity.core.spec import ACTIVATIONS
from gradparity.debug.diagnose import fits
from gradparity.reference.activations import ACTIVATION_FUNCS
from gradparity.reference.heads import HEAD_FUNCS, softmax

_DIMS_NAMES = ("layers_dims", "layer_dims", "layer_sizes", "layers", "sizes", "dims",
               "net_dims", "layers_dim", "nn_dims", "architecture")
_DIMS_CALLS = ("Network", "initialize_parameters_deep", "L_layer_model", "Net", "MLP",
               "NeuralNetwork")


def _ints(node: ast.AST, consts: Mapping[str, int]) -> list[int] | None:
    if isinstance(node, (ast.List, ast.Tuple)) and len(node.elts) >= 2:
        out = [_int(e, consts) for e in node.elts]
        if all(v is not None and v > 0 for v in out):
            return [int(v) for v in out if v is not None]
    if isinstance(node, ast.Name) and node.id in consts and isinstance(consts[node.id], list):
        return consts[node.id]  # type: ignore[return-value]
    return None


def _int(node: ast.AST, consts: Mapping[str, Any]) -> int | None:
    if isinstance(node, ast.Constant) and isinstance(node.value, int) \
            and not isinstance(node.value, bool):
        return node.value
    if isinstance(node, ast.Name) and isinstance(consts.get(node.id), int):
        return consts[node.id]
    return None


def _call_name(node: ast.Call) -> str:
    f = node.func
    if isinstance(f, ast.Attribute):
        return f.attr
    if isinstance(f, ast.Name):
        return f.id
    return ""


@dataclass(frozen=True)
class SourceSizes:
    sizes: tuple[int, ...]
    where: str


def _constants(tree: ast.Module) -> dict[str, Any]:
    consts: dict[str, Any] = {}
    for node in tree.body:
        if isinstance(node, ast.Assign) and len(node.targets) == 1 \
                and isinstance(node.targets[0], ast.Name):
            name = node.targets[0].id
            v = _int(node.value, consts)
            if v is not None:
                consts[name] = v
            else:
                lst = _ints(node.value, consts)
                if lst is not None:
                    consts[name] = lst
    return consts


def literal_sizes(tree: ast.Module | None, family: str) -> SourceSizes | None:
    """Layer widths the source states (see the module doc), or None."""
    if tree is None:
        return None
    consts = _constants(tree)
    for name in _DIMS_NAMES:
        v = consts.get(name)
        if isinstance(v, list) and family in ("dlai_deep", "nielsen", "dlai_2layer"):
            return SourceSizes(tuple(v), f"from {name} in your file")
    calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call)]
    for call in calls:
        name = _call_name(call)
        if family in ("dlai_deep", "nielsen") and name in _DIMS_CALLS:
            for arg in [*call.args, *(k.value for k in call.keywords)]:
                v = _ints(arg, consts)
                if v is not None:
                    return SourceSizes(tuple(v), f"from {name}(...) in your file")
        if family == "dlai_2layer" and name == "initialize_parameters" and len(call.args) == 3:
            v = [_int(a, consts) for a in call.args]
            if all(x is not None for x in v):
                return SourceSizes(tuple(int(x) for x in v if x is not None),
                                   "from initialize_parameters(...) in your file")
        if family == "cs231n" and len(call.args) >= 3 and name not in ("randn", "rand",
                                                                      "zeros", "ones"):
            kw = {k.arg: k.value for k in call.keywords}
            args = list(call.args[:3])
            v = [_int(a, consts) for a in args]
            if all(x is not None for x in v) and ("Net" in name or "net" in name):
                return SourceSizes(tuple(int(x) for x in v if x is not None),
                                   f"from {name}(...) in your file")
            del kw
    if family == "dlai_2layer":
        for call in calls:
            if _call_name(call) == "nn_model":
                for k in call.keywords:
                    if k.arg == "n_h" and _int(k.value, consts):
                        return SourceSizes((0, int(_int(k.value, consts) or 0), 0),
                                           "hidden width from nn_model(n_h=...) in your file")
                if len(call.args) >= 3 and _int(call.args[2], consts):
                    return SourceSizes((0, int(_int(call.args[2], consts) or 0), 0),
                                       "hidden width from nn_model(...) in your file")
        if isinstance(consts.get("n_h"), int):
            return SourceSizes((0, consts["n_h"], 0), "hidden width from n_h in your file")
    if family == "cs231n":
        keys = [("input_size", "input_dim"), ("hidden_size", "hidden_dim"),
                ("output_size", "num_classes")]
        found = [next((consts[k] for k in ks if isinstance(consts.get(k), int)), None)
                 for ks in keys]
        if all(v is not None for v in found):
            return SourceSizes(tuple(int(v) for v in found if v is not None),
                               "from input_size, hidden_size, num_classes in your file")
    return None


def namespace_sizes(ns: Mapping[str, Any], family: str, where: str = "notebook"
                    ) -> SourceSizes | None:
    """Layer widths from a notebook's variables (``layers_dims = [...]``)."""
    if family not in ("dlai_deep", "nielsen", "dlai_2layer"):
        return None
    for name in _DIMS_NAMES:
        v = ns.get(name)
        if isinstance(v, (list, tuple)) and len(v) >= 2 and all(
                isinstance(x, int) and not isinstance(x, bool) and x > 0 for x in v):
            return SourceSizes(tuple(v), f"from {name} in your {where}")
    return None


def data_dims(ns: Mapping[str, Any]) -> tuple[int, int] | None:
    """(n0, nL) from the learner's column-major data in a namespace (``X, Y =
    load_planar_dataset()``: X is (n0, m), Y is (nL, m))."""
    for xn, yn in (("X", "Y"), ("train_X", "train_Y"), ("train_x", "train_y"),
                   ("X_train", "Y_train")):
        X, Y = ns.get(xn), ns.get(yn)
        if isinstance(X, np.ndarray) and isinstance(Y, np.ndarray) and X.ndim == 2 \
                and Y.ndim == 2 and X.shape[1] == Y.shape[1] and X.shape[1] > 1:
            return int(X.shape[0]), int(Y.shape[0])
    return None


# -- activations ---------------------------------------------------------------------------
def _forward(name: str):
    if name == "softmax":
        return softmax
    return ACTIVATION_FUNCS[name].forward


def activation_of(pairs: Sequence[tuple[Any, Any]], dtype: str,
                  names: Sequence[str] = ACTIVATIONS) -> str | None:
    """The activation g with A = g(Z) on every (Z, A) pair, or None."""
    arrays = []
    for Z, A in pairs:
        try:
            Z, A = np.asarray(Z, dtype=np.float64), np.asarray(A, dtype=np.float64)
        except (TypeError, ValueError):
            return None
        if Z.shape != A.shape:
            return None
        arrays.append((Z, A))
    if not arrays:
        return None
    for name in names:
        g = _forward(name)
        with np.errstate(all="ignore"):
            if all(fits(A, g(Z), dtype) for Z, A in arrays):
                return name
    return None


OUTPUTS = ("sigmoid", "softmax", "identity", "tanh")


def output_activation(Z: Any, A: Any, dtype: str) -> str | None:
    Zs = np.asarray(Z, dtype=np.float64)
    names = [n for n in OUTPUTS if not (n == "softmax" and (Zs.ndim < 2 or Zs.shape[0] < 2))]
    return activation_of([(Z, A)], dtype, names)


# -- the cost ------------------------------------------------------------------------------
@dataclass(frozen=True)
class CostMatch:
    """The head the learner's cost computes, and its J over the harness's J."""

    head: str
    scale: float
    text: str


def _heads_for(output: str | None, n_out: int) -> list[str]:
    by_output = {"sigmoid": ["sigmoid_bce", "sigmoid_mse"], "softmax": ["softmax_ce"],
                 "identity": ["linear_mse", "linear_l1", "linear_huber"],
                 "tanh": ["tanh_mse"]}
    if output is not None:
        return by_output.get(output, [])
    heads = ["sigmoid_bce", "sigmoid_mse", "linear_mse", "tanh_mse"]
    return (["softmax_ce"] + heads) if n_out > 1 else heads


def match_cost(value: Any, Z: np.ndarray, A: np.ndarray, Y: np.ndarray, output: str | None,
               *, per_example: bool = False) -> CostMatch | None:
    """Which head (and scaling) gives the learner's cost ``value`` on (Z, A, Y).

    ``per_example``: the value is the cost of one example (column 0), not of the batch.
    """
    try:
        v = float(np.asarray(value, dtype=np.float64).sum())
    except (TypeError, ValueError):
        return None
    if not np.isfinite(v):
        return None
    Z, A, Y = (np.asarray(x, dtype=np.float64) for x in (Z, A, Y))
    if per_example:
        Z, A, Y = Z[:, :1], A[:, :1], Y[:, :1]
    m, n = Y.shape[1], Y.shape[0]
    scalings = [(1.0, "the mean over examples"), (float(m), "a sum over examples"),
                (2.0, "the mean without the 1/2"), (2.0 * m, "a sum without the 1/2"),
                (2.0 / n, "the mean over all elements"),
                (1.0 / n, "the mean over all elements, with the 1/2")]
    for head in _heads_for(output, n):
        h = HEAD_FUNCS[head]
        with np.errstate(all="ignore"):
            Ah = h.forward(Z)
            J = float(h.loss(Z, Ah, Y, m))
        if not np.isfinite(J) or J == 0.0:
            continue
        is_mse = "mse" in head
        for k, text in scalings:
            if not is_mse and ("1/2" in text or "elements" in text):
                continue
            if abs(v - k * J) <= 1e-4 * max(abs(v), abs(k * J)) + 1e-12:
                if per_example and k == 1.0:
                    text = "the cost of one example"
                return CostMatch(head, k, text)
    return None
