"""A network class with per-example backprop, in the style of Nielsen's book::

    class Network:
        def __init__(self, sizes): ...      # self.weights, self.biases: lists, column-major
        def feedforward(self, a): ...
        def backprop(self, x, y): ...       # -> (nabla_b, nabla_w), one example
        def cost_derivative(self, output_activations, y): ...

``x`` and ``y`` are column vectors of one example. The batch gradient is the mean of the
per-example ``backprop`` calls (what ``update_mini_batch`` averages), compared with the
reference's dW and db; the hidden ``delta`` of each layer is diagnosed through them. The
activations and the cost come from the class: the ``zs`` and ``activations`` lists backprop
builds, and ``cost_derivative`` (or ``self.cost.fn``/``delta`` of the book's second version).
"""

from __future__ import annotations

import copy
import inspect
from typing import Any

import numpy as np

from gradparity.core.errors import UsageError
from gradparity.debug.families.base import (
    Context,
    Family,
    FamilyOutput,
    Probe,
    array_of,
    dtype_of,
    exception_outcome,
    exception_values,
    param_names,
)
from gradparity.debug.families.trace import Traced, trace_call
from gradparity.debug.quantities import walk_order
from gradparity.debug.result import Problem
from gradparity.reference.case import Case


def _network_class(ctx: Context) -> type | None:
    inst = ctx.objects.get("__instance__")
    if inst is not None and callable(getattr(inst, "backprop", None)):
        return type(inst)
    best = None
    for name, v in ctx.names().items():
        if inspect.isclass(v) and callable(getattr(v, "backprop", None)):
            names = param_names(v.backprop)
            if len(names) >= 3:  # self, x, y
                mod = getattr(ctx.module, "__name__", None)
                own = mod is None or getattr(v, "__module__", None) == mod
                if best is None or own or name == "Network":
                    best = v
    return best


class Nielsen(Family):
    name = "nielsen"
    title = ("Network class, per-example backprop(x, y) -> (nabla_b, nabla_w); batch "
             "gradient = mean over examples")
    default_activation = "sigmoid"
    default_head = "sigmoid_mse"
    default_sizes = (4, 5, 5, 2)

    def score(self, ctx: Context) -> int:
        cls = _network_class(ctx)
        if cls is None:
            return 0
        s = 10
        if hasattr(cls, "feedforward"):
            s += 1
        return s

    def sizes(self, ctx: Context) -> tuple[tuple[int, ...], str] | None:
        inst = ctx.objects.get("__instance__")
        ws = getattr(inst, "weights", None) if inst is not None else None
        if isinstance(ws, (list, tuple)) and ws and all(array_of(w) is not None for w in ws):
            return ((int(ws[0].shape[1]), *(int(w.shape[0]) for w in ws)),
                    f"from your {type(inst).__name__}'s weights")
        return None

    def _instance(self, ctx: Context, case: Case) -> Any:
        inst = ctx.objects.get("__instance__")
        sizes = list(case.spec.sizes)
        if inst is not None:
            net = copy.copy(inst)
        else:
            cls = _network_class(ctx)
            try:
                with np.errstate(all="ignore"):
                    net = cls(sizes)
            except Exception as exc:  # noqa: BLE001 - the learner's constructor
                raise UsageError(f"{ctx.label}: {cls.__name__}({sizes}) raised "
                                 f"{type(exc).__name__}: {exc}") from None
        L = case.spec.depth
        old_b = getattr(net, "biases", None)
        flat = (isinstance(old_b, (list, tuple)) and bool(old_b)
                and array_of(old_b[0]) is not None and old_b[0].ndim == 1)
        net.weights = [np.array(case.parameters[f"W{layer}"], copy=True)
                       for layer in range(1, L + 1)]
        net.biases = [np.array(case.parameters[f"b{layer}"][:, 0] if flat
                               else case.parameters[f"b{layer}"], copy=True)
                      for layer in range(1, L + 1)]
        net.__dict__["_gradparity_flat"] = flat  # 1-D vectors: x, y and biases of shape (n,)
        if hasattr(net, "sizes"):
            net.sizes = sizes
        if hasattr(net, "num_layers"):
            net.num_layers = len(sizes)
        return net

    def _calls(self, net: Any, case: Case, trace_all: bool) -> list[Traced]:
        out = []
        flat = bool(getattr(net, "_gradparity_flat", False))
        for i in range(case.m):
            x, y = case.X[:, [i]].copy(), case.Y[:, [i]].copy()
            if flat:
                x, y = x[:, 0], y[:, 0]
            out.append(trace_call(net.backprop, (x, y), top=type(net).backprop))
            if not out[-1].ok or not trace_all and i == 0:
                break
        return out

    def probe(self, ctx: Context, case: Case) -> Probe:
        probe = Probe()
        net = self._instance(ctx, case)
        calls = self._calls(net, case, True)
        if not calls[-1].ok:
            probe.problem = f"your backprop raised {calls[-1].raised.text}"
            return probe
        zs_all, acts_all = [], []
        for t in calls:
            zs, acts = t.final_locals.get("zs"), t.final_locals.get("activations")
            if not isinstance(zs, list) or not isinstance(acts, list):
                probe.problem = "your backprop keeps no zs/activations lists"
                break
            zs_all.append(zs)
            acts_all.append(acts)
        L = case.spec.depth
        if len(zs_all) == case.m and all(len(z) == L and len(a) == L + 1
                                         for z, a in zip(zs_all, acts_all, strict=True)):
            for layer in range(1, L + 1):
                try:
                    probe.cache[f"Z{layer}"] = np.column_stack([z[layer - 1] for z in zs_all])
                    probe.cache[f"A{layer}"] = np.column_stack([a[layer] for a in acts_all])
                except ValueError:
                    probe.cache.clear()
                    break
        a0 = probe.cache.get(f"A{L}")
        if a0 is None:
            return probe
        a, y = a0[:, [0]], case.Y[:, [0]]
        cost = getattr(net, "cost", None)
        fn = getattr(cost, "fn", None)
        if callable(fn):
            try:
                probe.cost = fn(a.copy(), y.copy())
                probe.cost_per_example, probe.cost_fn_name = True, f"{cost.__name__}.fn" \
                    if inspect.isclass(cost) else "cost.fn"
            except Exception:  # noqa: BLE001 - no usable cost
                probe.cost = None
        elif callable(getattr(net, "cost_derivative", None)):
            try:
                with np.errstate(all="ignore"):
                    d = np.asarray(net.cost_derivative(a.copy(), y.copy()), dtype=np.float64)
            except Exception:  # noqa: BLE001 - no usable cost derivative
                d = None
            if d is not None and d.shape == a.shape and np.allclose(d, a - y, rtol=1e-6):
                probe.cost = 0.5 * float(np.sum((a - y) ** 2))
                probe.cost_per_example = True
                probe.cost_fn_name = "cost_derivative (a - y, the quadratic cost)"
            elif d is not None and d.shape == a.shape and np.allclose(
                    d, (a - y) / (a * (1 - a)), rtol=1e-6):
                with np.errstate(all="ignore"):
                    probe.cost = float(-np.sum(y * np.log(a) + (1 - y) * np.log(1 - a)))
                probe.cost_per_example = True
                probe.cost_fn_name = "cost_derivative (the cross-entropy's)"
        return probe

    def run(self, ctx: Context, case: Case) -> FamilyOutput:
        out = FamilyOutput()
        L = case.spec.depth
        net = self._instance(ctx, case)
        weights = {layer: net.weights[layer - 1] for layer in range(1, L + 1)}
        calls = self._calls(net, case, True)
        out.traces.append(calls[0])
        out.output = "".join(t.output for t in calls)
        order = walk_order(L, forward=False, output_dA=False, input_dA=False)
        out.required = {f"{q}{layer}" for layer in range(1, L + 1) for q in ("dW", "db")}
        out.notes["forward"] = "yours (inside backprop)"
        last = calls[-1]
        if not last.ok:
            have = {}
            for q, name in (("dW", "nabla_w"), ("db", "nabla_b")):
                lst = last.exc_locals.get(name)
                if isinstance(lst, list) and len(lst) == L:
                    have.update({f"{q}{i + 1}": a for i, a in enumerate(lst)
                                 if array_of(a) is not None and np.any(a)})
            errors, nc = exception_outcome(last, order, have, weights, "backprop",
                                           out.required)
            nc.update({k: "not checked: your backprop raised before returning it"
                       for k in have if k not in errors})
            if len(calls) > 1:
                errors = {k: (f"{msg} (example {len(calls) - 1})", loc)
                          for k, (msg, loc) in errors.items()}
            out.errors, out.not_computed = errors, nc
            out.raised_values.update(exception_values(last, errors))
            out.traces[0] = last
            return out
        per_b: list[list[Any]] = [[] for _ in range(L)]
        per_w: list[list[Any]] = [[] for _ in range(L)]
        first: dict[str, Any] = {}
        for i, t in enumerate(calls):
            v = t.value
            if not (isinstance(v, (tuple, list)) and len(v) == 2
                    and all(isinstance(p, (list, tuple)) for p in v)):
                out.problems.append(Problem(f"backprop returned {type(v).__name__}, not "
                                            "(nabla_b, nabla_w) lists"))
                return out
            nb, nw = v
            if len(nb) != L or len(nw) != L:
                out.problems.append(Problem(
                    f"backprop returned {len(nb)} nabla_b and {len(nw)} nabla_w entries "
                    f"for a network of {L} layers"))
                return out
            for layer in range(L):
                per_b[layer].append(nb[layer])
                per_w[layer].append(nw[layer])
                if i == 0:
                    first[f"db{layer + 1}"] = nb[layer]
                    first[f"dW{layer + 1}"] = nw[layer]
        for layer in range(1, L + 1):
            for q, per in (("dW", per_w), ("db", per_b)):
                k = f"{q}{layer}"
                arrays = [array_of(np.asarray(a)) if not isinstance(a, np.ndarray) else a
                          for a in per[layer - 1]]
                if any(a is None for a in arrays):
                    out.values[k] = per[layer - 1][0]
                    continue
                if q == "db" and all(a.ndim == 1 for a in arrays):
                    arrays = [a[:, None] for a in arrays]  # 1-D biases, as columns
                try:
                    mean = np.mean(np.stack(arrays), axis=0).astype(arrays[0].dtype)
                except ValueError:
                    out.values[k] = arrays[0]
                    continue
                out.values[k] = mean
                out.dtypes[k] = dtype_of(arrays[0])
        out.objects = first  # where: example 0's arrays are the learner's objects
        return out


FAMILY = Nielsen()
