"""Row-major networks in the style of cs231n::

    class TwoLayerNet:
        def __init__(self, input_size, hidden_size, output_size, std=1e-4):
            self.params = {"W1": (D, H), "b1": (H,), "W2": (H, C), "b2": (C,)}
        def loss(self, X, y=None, reg=0.0) -> (loss, grads)   # scores when y is None

(or a function ``loss(X, y, params, reg)``; ``reg`` may also be an attribute). X is N x D,
y holds integer labels, the loss is the softmax cross-entropy averaged over N plus an L2
term. The layout is mapped to the reference's (``W[l] = W_l.T``, ``b[l] = b_l[:, None]``,
``dW[l] = grads["W{l}"].T``): a transposed gradient is still reported as a transpose, with
the shapes the learner wrote. The gradient check runs with ``reg = 0``; the L2 term's
gradient is checked apart, against the learner's own L2 term in the loss.
"""

from __future__ import annotations

import copy
import inspect
import re
from dataclasses import replace
from typing import Any

import numpy as np

from gradparity.core.errors import UsageError
from gradparity.debug.diagnose import fits
from gradparity.debug.families.base import (
    Context,
    Family,
    FamilyOutput,
    Probe,
    array_of,
    dtype_of,
    exception_outcome,
    exception_value,
    param_names,
)
from gradparity.debug.families.trace import Traced, trace_call
from gradparity.debug.quantities import walk_order
from gradparity.debug.result import Problem
from gradparity.reference.activations import ACTIVATION_FUNCS
from gradparity.reference.case import Case

_PARAM = re.compile(r"^(W|b)(\d+)$")
_REG_TRY = 0.1


def _params_in_init(cls: type) -> bool:
    try:
        src = inspect.getsource(cls.__init__)
    except (OSError, TypeError):
        return False
    return "self.params" in src


def _target(ctx: Context) -> tuple[str, Any] | None:
    """("class", cls), ("instance", obj) or ("function", f)."""
    inst = ctx.objects.get("__instance__")
    if inst is not None and isinstance(getattr(inst, "params", None), dict) \
            and callable(getattr(inst, "loss", None)):
        return "instance", inst
    for name, v in ctx.objects.items():  # the one the learner named
        if inspect.isclass(v) and callable(getattr(v, "loss", None)):
            return "class", v
        if inspect.isfunction(v) and name == getattr(v, "__name__", "") and (
                "loss" in name.lower() or name == "two_layer_net"):
            return "function", v
    best = None
    for name, v in ctx.names().items():
        if inspect.isclass(v) and callable(getattr(v, "loss", None)) and _params_in_init(v):
            mod = getattr(ctx.module, "__name__", None)
            if best is None or getattr(v, "__module__", None) == mod or "TwoLayer" in name:
                best = ("class", v)
    if best is not None:
        return best
    for name, v in ctx.names().items():
        if inspect.isfunction(v) and ("loss" in name.lower() or name == "two_layer_net"):
            names = [n.lower() for n in param_names(v)]
            if len(names) >= 3 and names[0] in ("x", "x_batch", "inputs") and any(
                    n in ("params", "model", "parameters", "weights") for n in names):
                return "function", v
    return None


class Cs231n(Family):
    name = "cs231n"
    title = "cs231n-style net: loss(X, y) -> (loss, grads) with params W1, b1, ..."
    default_activation = "relu"
    default_head = "softmax_ce"
    default_sizes = (4, 10, 3)
    layout = ("row-major (X is N x D, W1 is D x H, b1 is (H,)), compared after mapping to "
              "columns (W = W1.T, dW = grads['W1'].T)")
    row_major = True

    def score(self, ctx: Context) -> int:
        t = _target(ctx)
        if t is None:
            return 0
        return 10 if t[0] != "function" else 8

    def sizes(self, ctx: Context) -> tuple[tuple[int, ...], str] | None:
        inst = ctx.objects.get("__instance__")
        if inst is None or not isinstance(getattr(inst, "params", None), dict):
            return None
        got = _param_sizes(inst.params)
        return None if got is None else (got, f"from your {type(inst).__name__}'s params")

    def file_sizes(self, ctx: Context) -> tuple[tuple[int, ...], str] | None:
        """Sizes of a model the file builds at import (``net = TwoLayerNet(...)``,
        ``model = init_two_layer_model(...)``)."""
        if ctx.module is None:
            return None
        for name, v in vars(ctx.module).items():
            params = getattr(v, "params", None) if not isinstance(v, dict) else v
            if isinstance(params, dict) and not inspect.isclass(v):
                got = _param_sizes(params)
                if got is not None:
                    return got, f"from {name} in your file"
        return None

    # -- the learner's objects on a case ---------------------------------------------------
    def _params(self, case: Case) -> dict[str, np.ndarray]:
        out = {}
        for layer in range(1, case.spec.depth + 1):
            out[f"W{layer}"] = np.array(case.parameters[f"W{layer}"].T, copy=True, order="C")
            out[f"b{layer}"] = np.array(case.parameters[f"b{layer}"][:, 0], copy=True)
        return out

    def _make(self, ctx: Context, case: Case) -> tuple[str, Any, dict[str, np.ndarray]]:
        kind, obj = _target(ctx) or ("", None)
        params = self._params(case)
        sizes = list(case.spec.sizes)
        if kind == "class":
            inst = _construct(obj, sizes)
            tries = [tuple(sizes)] if len(sizes) == 3 and inst is None else []
            tries.append((sizes[0], sizes[1:-1], sizes[-1]))
            for args in tries if inst is None else []:
                try:
                    with np.errstate(all="ignore"):
                        inst = obj(*args)
                    break
                except Exception:  # noqa: BLE001 - try the next constructor form
                    continue
            if inst is None:
                for kw in ({"input_dim": sizes[0], "hidden_dims": sizes[1:-1],
                            "num_classes": sizes[-1]},
                           {"input_dim": sizes[0], "hidden_dim": sizes[1],
                            "num_classes": sizes[-1]}):
                    try:
                        inst = obj(**kw)
                        break
                    except Exception:  # noqa: BLE001 - the next form
                        continue
            if inst is None:
                raise UsageError(f"{ctx.label}: {obj.__name__}({', '.join(map(str, sizes))}) "
                                 "cannot be constructed (--sizes to change the network)")
            obj, kind = inst, "instance"
        elif kind == "instance":
            obj = copy.copy(obj)
        if kind == "instance":
            obj.params = dict(obj.params)
            obj.params.update(params)
            if hasattr(obj, "reg"):
                obj.reg = 0.0
        return kind, obj, params

    def _call(self, kind: str, obj: Any, params: dict[str, np.ndarray], X: np.ndarray,
              y: Any, reg: float) -> Traced:
        pattern = re.compile(r"^(W|b)\d+$")
        if kind == "instance":
            f = obj.loss
            names = param_names(f)
            kwargs = {"reg": reg} if "reg" in names else {}
            if "reg" not in names and hasattr(obj, "reg"):
                obj.reg = reg
            return trace_call(f, (X, y), kwargs, top=type(obj).loss, pattern=pattern)
        names = [n.lower() for n in param_names(obj)]
        args: list[Any] = []
        kwargs = {}
        for n in names:
            if n in ("x", "x_batch", "inputs"):
                args.append(X)
            elif n in ("y", "labels", "y_batch"):
                args.append(y)
            elif n in ("params", "model", "parameters", "weights"):
                args.append(params)
            elif n == "reg":
                args.append(reg)
            else:
                break
        return trace_call(obj, tuple(args), kwargs, pattern=pattern)

    def _labels(self, case: Case) -> Any:
        if case.labels is not None:
            return case.labels.copy()
        return case.Y.T.copy()

    def probe(self, ctx: Context, case: Case) -> Probe:
        from gradparity.reference.mlp import reference_gradients

        probe = Probe()
        kind, obj, params = self._make(ctx, case)
        t = self._call(kind, obj, params, case.X.T.copy(), self._labels(case), 0.0)
        ref = reference_gradients(case).forward
        L = case.spec.depth
        probe.cache = {f"Z{L}": ref[f"Z{L}"], f"A{L}": ref[f"A{L}"]}
        if not t.ok:
            probe.problem = f"your loss raised {t.raised.text}"
            return probe
        if isinstance(t.value, (tuple, list)) and len(t.value) == 2:
            probe.cost, probe.cost_fn_name = t.value[0], "loss"
        if L > 1:
            from gradparity.debug.families.trace import _arrays_in

            arrays = [a for v in t.final_locals.values() for a in _arrays_in(v, 3)]
            zs = [ref[f"Z{layer}"].T for layer in range(1, L)]
            for name in ("relu", "tanh", "sigmoid", "leaky_relu", "elu"):
                gs = [ACTIVATION_FUNCS[name].forward(z) for z in zs]
                if any(a.shape == g.shape and fits(a, g, case.spec.dtype)
                       for a in arrays for g in gs):
                    probe.hidden_name = name
                    break
        return probe

    def run(self, ctx: Context, case: Case) -> FamilyOutput:
        out = FamilyOutput()
        L = case.spec.depth
        kind, obj, params = self._make(ctx, case)
        user_params = obj.params if kind == "instance" else params
        weights = {layer: user_params[f"W{layer}"] for layer in range(1, L + 1)}
        X, y = case.X.T.copy(), self._labels(case)
        t = self._call(kind, obj, params, X, y, 0.0)
        out.traces.append(t)
        out.output = t.output
        out.notes["forward"] = "yours (inside loss)"
        order = walk_order(L, forward=False, output_dA=False, input_dA=False)
        out.required = {f"{q}{layer}" for layer in range(1, L + 1) for q in ("dW", "db")}
        if not t.ok:
            partial = next((v for v in t.exc_locals.values() if isinstance(v, dict)
                            and any(isinstance(k, str) and _PARAM.match(k) for k in v)), {})
            have = {f"d{m.group(1)}{m.group(2)}": v for k, v in partial.items()
                    if isinstance(k, str) and (m := _PARAM.match(k))}
            errors, nc = exception_outcome(t, order, have, weights, "loss", out.required)
            for k, v in have.items():  # what the loss had computed before it raised
                if k in order and k not in errors:
                    out.objects[k] = v
                    out.values[k] = _to_ref(k, v)
            if t.raised is not None and t.raised.key:
                m = _PARAM.match(t.raised.key)
                if m:
                    at = f"d{m.group(1)}{m.group(2)}"
                    if at in order and at not in errors:
                        msg = next(iter(errors.values()))
                        errors = {at: msg}
                        nc = {k: f"not computed: your loss raised at {at}" for k in order
                              if k != at}
            out.errors, out.not_computed = errors, nc
            for k in errors:
                v = exception_value(t, k)
                if v is not None:
                    out.raised_values[k] = _to_ref(k, v)
            return out
        value = t.value
        if not (isinstance(value, (tuple, list)) and len(value) == 2
                and isinstance(value[1], dict)):
            out.problems.append(Problem(f"loss(X, y) returned {type(value).__name__}, not "
                                        "(loss, grads)"))
            return out
        loss, grads = value
        for k, v in grads.items():
            m = _PARAM.match(k) if isinstance(k, str) else None
            if m is None:
                m = re.match(r"^d(W|b)(\d+)$", k) if isinstance(k, str) else None
            if m is None:
                continue
            key = f"d{m.group(1)}{m.group(2)}"
            if key not in order:
                continue
            out.objects[key] = v
            out.values[key] = _to_ref(key, v)
            out.dtypes[key] = dtype_of(v)
        try:
            out.loss = float(loss)
        except (TypeError, ValueError):
            out.loss = None
        reg_problem = self._check_reg(kind, obj, params, X, y, grads, loss, L)
        if reg_problem is not None:
            out.problems.append(reg_problem)
        return out

    def _check_reg(self, kind: str, obj: Any, params: dict[str, np.ndarray], X: np.ndarray,
                   y: Any, grads0: dict, loss0: Any, L: int) -> Problem | None:
        """The L2 term: with reg > 0, each W's gradient must grow by the derivative of the
        term the loss grew by (reg * sum W^2 -> 2 reg W; 0.5 reg * sum W^2 -> reg W)."""
        if kind == "instance":
            names = param_names(obj.loss)
            if "reg" not in names and not hasattr(obj, "reg"):
                return None
            user_params = obj.params
        else:
            if "reg" not in [n.lower() for n in param_names(obj)]:
                return None
            user_params = params
        t = self._call(kind, obj, params, X, y, _REG_TRY)
        if not t.ok or not (isinstance(t.value, (tuple, list)) and len(t.value) == 2):
            return None
        try:
            dloss = float(t.value[0]) - float(loss0)
        except (TypeError, ValueError):
            return None
        Ws = [np.asarray(user_params[f"W{layer}"], dtype=np.float64)
              for layer in range(1, L + 1)]
        ss = sum(float(np.sum(W * W)) for W in Ws)
        if ss == 0 or dloss == 0:
            return None
        c = dloss / (_REG_TRY * ss)  # the loss adds c * reg * sum W^2
        for layer, W in enumerate(Ws, start=1):
            g0, g1 = grads0.get(f"W{layer}"), t.value[1].get(f"W{layer}")
            if array_of(g0) is None or array_of(g1) is None or g0.shape != W.shape \
                    or g1.shape != W.shape or not (np.isfinite(g0).all()
                                                   and np.isfinite(g1).all()):
                continue
            got = np.asarray(g1, dtype=np.float64) - np.asarray(g0, dtype=np.float64)
            want = 2.0 * c * _REG_TRY * W
            if not np.allclose(got, want, rtol=1e-5, atol=1e-10 * float(np.abs(W).max())):
                k = float(np.sum(got * W) / (_REG_TRY * np.sum(W * W)))
                where = t.producer(g1)
                return Problem(f"the L2 term: your loss adds {_times(c)}reg * sum(W^2), whose "
                               f"gradient is {_times(2 * c)}reg * W{layer}; grads['W{layer}'] "
                               f"gets {_times(k)}reg * W{layer}", where)
        return None

    def explain(self, diagnosis: Any, key: str, user_value: Any) -> Any:
        return translate(diagnosis, key, user_value)

    def shape_reason(self, key: str, user_value: Any, expected_shape: tuple) -> str | None:
        a = array_of(user_value)
        if a is None or len(expected_shape) != 2:
            return None
        if key.startswith("db"):
            return (f"grads['b{key[2:]}'] has shape {tuple(a.shape)} where "
                    f"({expected_shape[0]},), the shape of b{key[2:]}, belongs")
        want = (expected_shape[1], expected_shape[0])  # the learner's W is the transpose
        return (f"grads['W{key[2:]}'] has shape {tuple(a.shape)} where {want}, the shape of "
                f"W{key[2:]}, belongs")

    def dtype(self, ctx: Context) -> str | None:
        t = _target(ctx)
        if t is None:
            return None
        kind, obj = t
        if kind == "instance":
            d = getattr(obj, "dtype", None)
            try:
                return np.dtype(d).name if d is not None else None
            except TypeError:
                return None
        return class_dtype(obj) if kind == "class" else None


_INPUT = ("input_size", "input_dim", "n_input", "d_in", "in_features")
_HIDDEN = ("hidden_size", "hidden_dim", "n_hidden")
_HIDDENS = ("hidden_dims", "hidden_sizes", "hidden_layers")
_OUTPUT = ("output_size", "num_classes", "n_classes", "output_dim", "n_output")


def _construct(cls: type, sizes: list[int]) -> Any:
    """The class built from its parameter names (``input_dim``, ``hidden_dims``,
    ``num_classes``...), or None."""
    names = [n for n in param_names(cls.__init__)][1:]
    kw: dict[str, Any] = {}
    for n in names:
        if n in _INPUT:
            kw[n] = sizes[0]
        elif n in _HIDDEN and len(sizes) == 3:
            kw[n] = sizes[1]
        elif n in _HIDDENS:
            kw[n] = list(sizes[1:-1])
        elif n in _OUTPUT:
            kw[n] = sizes[-1]
    if len(kw) < 2:
        return None
    try:
        with np.errstate(all="ignore"):
            return cls(**kw)
    except Exception:  # noqa: BLE001 - the caller tries positional forms
        return None


def class_dtype(cls: Any) -> str | None:
    """``float32`` when the class's ``dtype`` parameter defaults to it (cs231n's
    FullyConnectedNet)."""
    try:
        p = inspect.signature(cls.__init__).parameters.get("dtype")
    except (TypeError, ValueError):
        return None
    if p is None or p.default is p.empty:
        return None
    try:
        name = np.dtype(p.default).name
    except TypeError:
        return None
    return name if name in ("float32", "float64") else None


def _param_sizes(params: dict) -> tuple[int, ...] | None:
    Ws = sorted(((int(m.group(2)), v) for k, v in params.items()
                 if isinstance(k, str) and (m := _PARAM.match(k)) and m.group(1) == "W"),
                key=lambda t: t[0])
    if not Ws or any(array_of(w) is None or w.ndim != 2 for _, w in Ws):
        return None
    dims = [int(Ws[0][1].shape[0])]
    for _, w in Ws:
        if int(w.shape[0]) != dims[-1]:
            return None
        dims.append(int(w.shape[1]))
    return tuple(dims)


def _times(c: float) -> str:
    for nice in (0.5, 1.0, 2.0):
        if abs(c - nice) <= 1e-4 * nice:
            c = nice
    return "" if c == 1.0 else f"{c:.4g} * "


def _to_ref(key: str, v: Any) -> Any:
    """A row-major gradient in the reference's layout (transposed; a bias as a column)."""
    a = array_of(v)
    if a is None:
        return v
    if key.startswith("db"):
        if a.ndim == 1:
            return a.reshape(-1, 1)
        return a.T
    return a.T if a.ndim == 2 else a


def translate(diagnosis: Any, key: str, user_value: Any) -> Any:
    """Diagnosis texts in the learner's row-major terms where the layout matters."""
    if diagnosis is None:
        return None
    code = diagnosis.code.split("+")[0]
    a = array_of(user_value)
    if code == "transpose" and key.startswith("dW") and a is not None:
        layer = key[2:]
        want = (a.shape[1], a.shape[0]) if a.ndim == 2 else ()
        text = (f"the transpose of grads['W{layer}']: shape {tuple(a.shape)} where {want}, "
                f"the shape of W{layer}, belongs (e.g. dscores.T.dot(h) where "
                "h.T.dot(dscores) belongs)")
        return replace(diagnosis, text=text)
    if code == "wrong_axis_sum" and key.startswith("db"):
        text = (f"summed over the units (axis=1) where the sum over the N examples (axis=0) "
                f"belongs: grads['b{key[2:]}'] has shape "
                f"{tuple(a.shape) if a is not None else '?'}")
        return replace(diagnosis, text=text)
    return diagnosis


FAMILY = Cs231n()
