"""The deeplearning.ai 2-layer family (the planar-data classifier)::

    initialize_parameters(n_x, n_h, n_y) -> {"W1", "b1", "W2", "b2"}
    forward_propagation(X, parameters) -> (A2, cache)     # cache {"Z1", "A1", "Z2", "A2"}
    compute_cost(A2, Y[, parameters]) -> cost
    backward_propagation(parameters, cache, X, Y) -> grads  # {"dW1", "db1", "dW2", "db2"}

Column-major, as the reference. The grads hold dW and db only; the dZ1, dZ2 the function
computes on the way are read from its local variables (optional: never "missing").
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from gradparity.debug.families.base import (
    Context,
    Family,
    FamilyOutput,
    Probe,
    array_of,
    cache_key,
    dtype_of,
    exception_outcome,
    exception_values,
    find_role,
    grad_key,
    is_function,
    param_names,
    required_count,
    weights_read,
)
from gradparity.debug.families.trace import trace_call
from gradparity.debug.quantities import walk_order
from gradparity.debug.result import Problem
from gradparity.reference.case import Case


def call_by_names(func: Callable, values: dict[str, Any], default_order: list[str]
                  ) -> tuple[list[Any], str]:
    """Arguments for ``func`` chosen by its parameter names (``parameters``, ``cache``, ``X``,
    ``Y``, ``AL``...), else in ``default_order``."""
    names = param_names(func)
    n_req = max(required_count(func), 0)
    args: list[Any] = []
    used: set[str] = set()
    for i, n in enumerate(names):
        low = n.lower()
        pick = None
        if "param" in low:
            pick = "parameters"
        elif "cache" in low:
            pick = "cache"
        elif low in ("x", "x_train", "inputs", "data"):
            pick = "X"
        elif low in ("y", "y_train", "labels", "targets"):
            pick = "Y"
        elif low.startswith("a") and any(c.isdigit() for c in low) or low in ("al", "yhat",
                                                                               "y_hat"):
            pick = "AL"
        if pick is None or pick not in values or pick in used:
            if i >= n_req:
                break
            pick = next((p for p in default_order if p not in used and p in values), None)
            if pick is None:
                break
        used.add(pick)
        args.append(values[pick])
    return args, ", ".join(names[:len(args)])


def copy_params(case: Case) -> dict[str, np.ndarray]:
    return {k: np.array(v, copy=True) for k, v in case.parameters.items()}


def probe_cost(probe: Probe, found_cost: tuple[str, Any] | None, AL: Any, case: Case) -> None:
    """The learner's cost on ``AL`` and the case's ``Y`` (``found_cost`` is its (name,
    function), if any), into ``probe`` when it returns."""
    cost = found_cost[1] if found_cost else None
    if is_function(cost) and array_of(AL) is not None:
        args, _ = call_by_names(cost, {"AL": np.array(AL, copy=True), "Y": case.Y.copy(),
                                       "parameters": copy_params(case)},
                                ["AL", "Y", "parameters"])
        c = trace_call(cost, tuple(args))
        if c.ok:
            probe.cost, probe.cost_fn_name = c.value, found_cost[0]


class DlaiTwoLayer(Family):
    name = "dlai_2layer"
    title = ("deeplearning.ai 2-layer: forward_propagation(X, parameters), "
             "compute_cost(A2, Y), backward_propagation(parameters, cache, X, Y) (also the "
             "3-layer courses' backward_propagation(X, Y, cache))")
    default_activation = "tanh"
    default_head = "sigmoid_bce"
    default_sizes = (2, 4, 1)

    @staticmethod
    def backward(ctx: Context) -> tuple[str, Any] | None:
        return find_role(ctx, ("backward_propagation",), ("backward", "back_prop", "backprop"),
                         ("cache",))

    @staticmethod
    def forward(ctx: Context) -> tuple[str, Any] | None:
        return find_role(ctx, ("forward_propagation",), ("forward", "forward_prop"),
                         ("x", "param"))

    @staticmethod
    def cost(ctx: Context) -> tuple[str, Any] | None:
        return find_role(ctx, ("compute_cost",), ("cost", "loss"), ("y",))

    def depth(self, ctx: Context) -> int | None:
        reads = [weights_read(f[1]) for f in (self.forward(ctx), self.backward(ctx)) if f]
        reads = [r for r in reads if r]
        return max(reads) if reads else None

    def score(self, ctx: Context) -> int:
        found = self.backward(ctx)
        if found is None:
            return 0
        name, bp = found
        names = [n.lower() for n in param_names(bp)]
        s = 5 if name == "backward_propagation" else 3
        if any("param" in n for n in names) and any("cache" in n for n in names):
            s += 5
        elif any("cache" in n for n in names) and any(n in ("x", "y") for n in names):
            s += 3
        if self.forward(ctx) is not None:
            s += 2
        return s

    # -- forward ---------------------------------------------------------------------------
    def _forward(self, ctx: Context, case: Case):
        found = self.forward(ctx)
        if found is None:
            return None, None
        fwd = found[1]
        args, _ = call_by_names(fwd, {"X": case.X.copy(), "parameters": copy_params(case),
                                      "Y": case.Y.copy()}, ["X", "parameters"])
        t = trace_call(fwd, tuple(args))
        return fwd, t

    @staticmethod
    def _cache(value: Any, L: int) -> tuple[Any, dict[str, Any]] | None:
        """The cache object the backward takes, and its Z/A values by the reference's keys:
        a dict (``{"Z1": ..., "A1": ...}``, any case) or the tuple of the course's 3-layer
        version (``(z1, a1, W1, b1, z2, a2, W2, b2, ...)``)."""
        items = list(value) if isinstance(value, (tuple, list)) else [value]
        for v in items:
            if isinstance(v, dict):
                vals = {cache_key(k): x for k, x in v.items() if cache_key(k) is not None}
                if vals:
                    return v, vals
        for v in items:
            if isinstance(v, (tuple, list)) and len(v) == 4 * L and all(
                    array_of(x) is not None for x in v):
                vals = {}
                for layer in range(1, L + 1):
                    vals[f"Z{layer}"], vals[f"A{layer}"] = v[4 * layer - 4], v[4 * layer - 3]
                return v, vals
        return None

    def probe(self, ctx: Context, case: Case) -> Probe:
        probe = Probe()
        _, t = self._forward(ctx, case)
        if t is None:
            probe.problem = "no forward_propagation(X, parameters) in your code"
            return probe
        if not t.ok:
            probe.problem = f"your forward_propagation raised {t.raised.text}"
            return probe
        L = case.spec.depth
        parsed = self._cache(t.value, L)
        cache = parsed[1] if parsed is not None else {}
        probe.cache = dict(cache)
        AL = t.value[0] if isinstance(t.value, (tuple, list)) else cache.get(f"A{L}")
        if array_of(AL) is None or np.ndim(AL) == 0:
            if isinstance(t.value, (tuple, list)) and np.ndim(t.value[0]) == 0:
                # forward_propagation_n(X, Y, parameters) -> (cost, cache)
                probe.cost, probe.cost_fn_name = t.value[0], self.forward(ctx)[0]
            AL = cache.get(f"A{L}")
            if probe.cost is not None:
                return probe
        if array_of(AL) is not None:
            probe.cache.setdefault(f"A{L}", AL)
        probe_cost(probe, self.cost(ctx), AL, case)
        return probe

    # -- run -------------------------------------------------------------------------------
    def run(self, ctx: Context, case: Case) -> FamilyOutput:
        out = FamilyOutput()
        L = case.spec.depth
        weights = {layer: case.parameters[f"W{layer}"] for layer in range(1, L + 1)}
        fwd, t = self._forward(ctx, case)
        cache: Any = None
        if t is not None:
            out.traces.append(t)
            out.output += t.output
            out.forward = True
            forder = walk_order(L, forward=True, output_dA=False, input_dA=False)
            if not t.ok:
                out.errors, out.not_computed = exception_outcome(
                    t, forder, {}, weights, "forward_propagation")
            else:
                parsed = self._cache(t.value, L)
                cache = parsed[0] if parsed is not None else None
                if parsed is None:
                    out.problems.append(Problem(f"forward_propagation returned "
                                                f"{type(t.value).__name__}, not (A2, cache)"))
                else:
                    for k in forder:
                        if k in parsed[1]:
                            out.values[k] = parsed[1][k]
                            out.required.add(k)
        if cache is None:
            from gradparity.reference.mlp import reference_gradients

            ref = reference_gradients(case).forward
            cache = {k: np.array(v, copy=True) for k, v in ref.items() if k != "A0"}
            out.backprop_cache = dict(ref)
            if t is not None and not t.ok:
                out.notes["forward"] = (f"yours ({self.forward(ctx)[0]}) raised; "
                                        "backward_propagation ran on the harness's cache")
            else:
                out.notes["forward"] = "the harness's (no forward_propagation in your code)"
        else:
            out.notes["forward"] = f"yours ({self.forward(ctx)[0]})"
        bp = self.backward(ctx)[1]
        values = {"parameters": copy_params(case), "cache": cache, "X": case.X.copy(),
                  "Y": case.Y.copy()}
        args, _ = call_by_names(bp, values, ["parameters", "cache", "X", "Y"])
        order = walk_order(L, forward=False, output_dA=False, input_dA=False)
        b = trace_call(bp, tuple(args))
        out.traces.append(b)
        out.output += b.output
        for layer in range(1, L + 1):
            out.required |= {f"dW{layer}", f"db{layer}"}
        grads: dict[str, Any] = {}
        if not b.ok:
            grads = {grad_key(k): v for k, v in b.exc_locals.items() if grad_key(k)}
            errors, nc = exception_outcome(b, order, grads, weights, "backward_propagation")
            out.errors.update(errors)
            out.not_computed.update(nc)
            out.raised_values.update(exception_values(b, errors))
        elif isinstance(b.value, dict):
            grads = {grad_key(k): v for k, v in b.value.items() if grad_key(k)}
        elif isinstance(b.value, (tuple, list)) and any(isinstance(v, dict) for v in b.value):
            d = next(v for v in b.value if isinstance(v, dict))
            grads = {grad_key(k): v for k, v in d.items() if grad_key(k)}
        else:
            hint = " (missing `return grads`?)" if b.value is None else ""
            out.problems.append(Problem(f"backward_propagation returned "
                                        f"{type(b.value).__name__}, not a dict of gradients"
                                        f"{hint}"))
        for k, v in grads.items():
            if k in order:
                out.values[k] = v
        for name, v in b.final_locals.items():  # dZ2, dZ1 computed on the way
            k = grad_key(name)
            if k is not None and k in order and k not in out.values and k[:2] in ("dZ", "dA") \
                    and array_of(v) is not None:
                out.values[k] = v
        for k, v in out.values.items():
            out.dtypes[k] = dtype_of(v) if k.startswith("d") else ""
        return out


FAMILY = DlaiTwoLayer()
