"""The deeplearning.ai L-layer family::

    initialize_parameters_deep(layer_dims) -> {"W1", "b1", ..., "WL", "bL"}
    L_model_forward(X, parameters) -> (AL, caches)   # caches[l-1] = ((A_prev, W, b), Z)
    compute_cost(AL, Y) -> cost
    L_model_backward(AL, Y, caches) -> grads         # dW1, db1, ..., dA...

with helpers ``linear_backward(dZ, cache)``, ``linear_activation_backward(dA, cache,
activation)``, ``relu_backward(dA, cache)``, ``sigmoid_backward(dA, cache)``. Column-major.

Two key layouts circulate: ``grads["dA" + str(l)]`` holding dA of layer l (with ``dA0``,
the gradient of X), and the first version's, where it holds dA of layer l - 1 (``dA1`` is
the gradient of X, ``dA{L}`` that of A[L-1]). The layout is read from the keys and shapes
and named in the report. dZ of each layer and the output's dA[L] are read from the
arguments the helpers were called with (``linear_backward(dZ, cache)``), the layer from the
weight matrix in the cache; they are optional.
"""

from __future__ import annotations

import re
from typing import Any

import numpy as np

from gradparity.debug.families.base import (
    Context,
    Family,
    FamilyOutput,
    Probe,
    array_of,
    dtype_of,
    exception_outcome,
    exception_values,
    find_role,
)
from gradparity.debug.families.dlai_2layer import call_by_names, copy_params, probe_cost
from gradparity.debug.families.trace import Traced, trace_call
from gradparity.debug.quantities import walk_order
from gradparity.debug.result import Problem
from gradparity.reference.case import Case

_DA = re.compile(r"^dA(\d+)$")


def layer_caches(caches: Any) -> list[tuple[Any, Any, Any, Any]] | None:
    """``[(A_prev, W, b, Z), ...]`` from the course's caches (``((A_prev, W, b), Z)`` per
    layer; also flat ``(A_prev, W, b, Z)`` tuples or dicts)."""
    if not isinstance(caches, (list, tuple)) or not caches:
        return None
    out = []
    for c in caches:
        if isinstance(c, (list, tuple)) and len(c) == 2 and isinstance(c[0], (list, tuple)) \
                and len(c[0]) == 3:
            (A_prev, W, b), Z = c
            if isinstance(Z, (list, tuple)):  # (Z, A) or (Z,) activation caches
                Z = Z[0]
            out.append((A_prev, W, b, Z))
        elif isinstance(c, (list, tuple)) and len(c) == 4:
            out.append(tuple(c))
        elif isinstance(c, dict) and {"A_prev", "W", "b", "Z"} <= set(c):
            out.append((c["A_prev"], c["W"], c["b"], c["Z"]))
        else:
            return None
    return out


def course_caches(forward: dict[str, np.ndarray], parameters: dict[str, np.ndarray],
                  L: int) -> list:
    return [((forward[f"A{layer - 1}"], parameters[f"W{layer}"], parameters[f"b{layer}"]),
             forward[f"Z{layer}"]) for layer in range(1, L + 1)]


class DlaiDeep(Family):
    name = "dlai_deep"
    title = ("deeplearning.ai L-layer: L_model_forward(X, parameters) -> (AL, caches), "
             "compute_cost(AL, Y), L_model_backward(AL, Y, caches)")
    default_activation = "relu"
    default_head = "sigmoid_bce"
    default_sizes = (4, 5, 5, 1)

    @staticmethod
    def backward(ctx: Context) -> tuple[str, Any] | None:
        return find_role(ctx, ("L_model_backward", "L_model_backprop", "L_layer_backward"),
                         ("model_backward", "l_backward", "deep_backward"), ("cache",))

    @staticmethod
    def forward(ctx: Context) -> tuple[str, Any] | None:
        return find_role(ctx, ("L_model_forward", "L_layer_forward"),
                         ("model_forward", "l_forward", "deep_forward"), ("x", "param"))

    def score(self, ctx: Context) -> int:
        if self.backward(ctx) is None:
            return 0
        s = 10
        if self.forward(ctx) is not None:
            s += 2
        return s

    def _forward(self, ctx: Context, case: Case, params: dict[str, np.ndarray]
                 ) -> Traced | None:
        found = self.forward(ctx)
        if found is None:
            return None
        fwd = found[1]
        args, _ = call_by_names(fwd, {"X": case.X.copy(), "parameters": params},
                                ["X", "parameters"])
        return trace_call(fwd, tuple(args))

    @staticmethod
    def _split(value: Any) -> tuple[Any, list | None]:
        if isinstance(value, (tuple, list)) and len(value) == 2:
            return value[0], layer_caches(value[1])
        return None, None

    def probe(self, ctx: Context, case: Case) -> Probe:
        probe = Probe()
        t = self._forward(ctx, case, copy_params(case))
        if t is None:
            probe.problem = "no L_model_forward(X, parameters) in your code"
            return probe
        if not t.ok:
            probe.problem = f"your L_model_forward raised {t.raised.text}"
            return probe
        AL, caches = self._split(t.value)
        if caches is None:
            probe.problem = "your L_model_forward did not return (AL, caches)"
            return probe
        L = len(caches)
        for layer, (A_prev, _W, _b, Z) in enumerate(caches, start=1):
            probe.cache[f"Z{layer}"] = Z
            if layer > 1:
                probe.cache[f"A{layer - 1}"] = A_prev
        probe.cache[f"A{L}"] = AL
        probe_cost(probe, find_role(ctx, ("compute_cost",), ("cost", "loss"), ("y",)), AL,
                   case)
        return probe

    def run(self, ctx: Context, case: Case) -> FamilyOutput:
        out = FamilyOutput()
        L = case.spec.depth
        params = copy_params(case)
        weights = {layer: params[f"W{layer}"] for layer in range(1, L + 1)}
        t = self._forward(ctx, case, params)
        AL: Any = None
        caches_obj: Any = None
        if t is not None:
            out.traces.append(t)
            out.output += t.output
            out.forward = True
            forder = walk_order(L, forward=True, output_dA=False, input_dA=False)
            if not t.ok:
                out.errors, out.not_computed = exception_outcome(
                    t, forder, {}, weights, "L_model_forward")
            else:
                AL, caches = self._split(t.value)
                if caches is None or len(caches) != L:
                    got = "no" if caches is None else f"{len(caches)} layer"
                    out.problems.append(Problem(
                        f"L_model_forward returned {got} caches, not (AL, caches) with "
                        f"{L} ((A_prev, W, b), Z) entries"))
                    AL = None
                else:
                    caches_obj = t.value[1]
                    for layer, (A_prev, _W, _b, Z) in enumerate(caches, start=1):
                        out.values[f"Z{layer}"] = Z
                        if layer > 1:
                            out.values[f"A{layer - 1}"] = A_prev
                    out.values[f"A{L}"] = AL
                    out.required |= {k for k in forder if k in out.values}
        if caches_obj is None:
            from gradparity.reference.mlp import reference_gradients

            ref = reference_gradients(case).forward
            fw = {k: np.array(v, copy=True) for k, v in ref.items()}
            caches_obj = course_caches(fw, params, L)
            AL = fw[f"A{L}"]
            out.backprop_cache = dict(ref)
            out.notes["forward"] = (
                "the harness's (no L_model_forward in your code)" if t is None
                else f"yours ({self.forward(ctx)[0]}) failed, so your backward ran on the "
                "harness's caches")
        else:
            out.notes["forward"] = f"yours ({self.forward(ctx)[0]})"
        zs = {}
        lc = layer_caches(caches_obj) or []
        for layer, (_A, _W, _b, Z) in enumerate(lc, start=1):
            if array_of(Z) is not None:
                zs[layer] = Z
        bp = self.backward(ctx)[1]
        args, _ = call_by_names(bp, {"AL": AL, "Y": case.Y.copy(), "cache": caches_obj},
                                ["AL", "Y", "cache"])
        order = walk_order(L, forward=False, output_dA=True, input_dA=True)
        b = trace_call(bp, tuple(args))
        out.traces.append(b)
        out.output += b.output
        for layer in range(1, L + 1):
            out.required |= {f"dW{layer}", f"db{layer}"}
        seen = self._from_calls(b, weights, zs, L)
        grads: dict[str, Any] = {}
        if not b.ok:
            grads = dict(b.final_locals.get("grads", {})) if isinstance(
                b.final_locals.get("grads"), dict) else {}
            for v in b.exc_locals.values():
                if type(v) is dict and any(isinstance(k, str) and k.startswith("dW") for k in v):
                    grads = dict(v)
            mapped, _ = self._map(grads, L, case)
            have = {**seen, **mapped}
            errors, nc = exception_outcome(b, order, have, weights, "L_model_backward")
            out.errors.update(errors)
            out.not_computed.update(nc)
            out.raised_values.update(exception_values(b, errors))
            grads = mapped
        elif isinstance(b.value, dict):
            grads, layout = self._map(dict(b.value), L, case)
            if layout:
                out.notes["keys"] = layout
        else:
            hint = " (missing `return grads`?)" if b.value is None else ""
            out.problems.append(Problem(f"L_model_backward returned "
                                        f"{type(b.value).__name__}, not a dict of gradients"
                                        f"{hint}"))
        for k, v in seen.items():
            if k not in grads and k not in out.errors:
                out.values[k] = v
        for k, v in grads.items():
            if k in order:
                out.values[k] = v
        for k, v in out.values.items():
            out.dtypes[k] = dtype_of(v) if k.startswith("d") else ""
        return out

    @staticmethod
    def _from_calls(b: Traced, weights: dict[int, np.ndarray], zs: dict[int, Any], L: int
                    ) -> dict[str, Any]:
        """dZ[l] and dA[l] as the helpers received them (``linear_backward(dZ, cache)``,
        ``linear_activation_backward(dA, cache, ...)``)."""
        from gradparity.debug.families.base import layer_of

        found: dict[str, Any] = {}
        for call in b.calls:
            arrays = {n: v for n, v in call.args.items() if array_of(v) is not None}
            layer = layer_of(list(call.args.values()), weights)
            if layer is None:
                for lz, Z in zs.items():
                    if any(v is Z for v in call.args.values()):
                        layer = lz
                        break
            if layer is None:
                continue
            for n, v in arrays.items():
                low = n.lower()
                if low in ("dz",) or low.startswith("dz"):
                    found.setdefault(f"dZ{layer}", v)
                elif low in ("da", "dal") or (low.startswith("da") and "prev" not in low):
                    if any(v is w for w in weights.values()):
                        continue
                    found.setdefault(f"dA{layer}", v)
        found = {k: v for k, v in found.items() if not (k.startswith("dA") and k != f"dA{L}")}
        return found

    @staticmethod
    def _map(grads: dict[str, Any], L: int, case: Case) -> tuple[dict[str, Any], str]:
        """The learner's keys in the reference's: dW/db as they are; dA per the layout."""
        out = {k: v for k, v in grads.items() if isinstance(k, str)
               and re.match(r"^d(W|b)\d+$", k)}
        das = {int(m.group(1)): v for k, v in grads.items() if isinstance(k, str)
               and (m := _DA.match(k))}
        if not das:
            return out, ""
        sizes, m = case.spec.sizes, case.m

        def fits_shape(shift: int) -> int:
            n = 0
            for i, v in das.items():
                a = array_of(v)
                j = i - shift
                if a is not None and 0 <= j <= L and a.shape == (sizes[j], m):
                    n += 1
            return n

        std, shifted = fits_shape(0), fits_shape(1)
        if shifted > std or (shifted == std and 0 not in das and L in das):
            for i, v in das.items():
                out[f"dA{i - 1}"] = v
            return out, ('grads["dA" + str(l)] holds dA of layer l - 1 (the course\'s first '
                         f"version: dA1 is the gradient of X, dA{L} that of A{L - 1})")
        for i, v in das.items():
            out[f"dA{i}"] = v
        return out, ""


FAMILY = DlaiDeep()
