"""More ways PyTorch computes a gradient: torch.func (reverse and forward mode, per-example
``vmap(grad)``) and ``torch.compile``, each a backend with the protocol of
`gradparity.adapters.base`.

All four run the same functional MLP: a module of ``nn.Linear`` layers called with
``torch.func.functional_call`` on a dict of parameter tensors, zero "probe" tensors added
to every Z and A (the gradient with respect to a zero probe is the gradient with respect to
that quantity), and J built with `gradparity.adapters.torch_autograd`'s losses
(``reduction='sum'`` divided by ``m``). What differs is the transform:

* ``torch.func``: ``torch.func.grad_and_value`` (reverse mode, functorch);
* ``torch.fwd``: ``torch.func.jacfwd``: forward mode, one tangent per element of every
  input (the full gradient of the scalar J, built from directional derivatives along each
  basis vector: every element of every dW is a forward-mode derivative);
* ``torch.vmap``: ``torch.func.vmap(torch.func.grad(loss_i))``: per-example gradients of
  each example's own loss, turned into J's true partials by
  `gradparity.adapters.base.batch_from_per_example` (parameter gradients averaged,
  per-example dZ/dA divided by m);
* ``torch.compile``: the objective compiled by inductor (CPU, ``dynamic=True``, one
  compiled function per structure) and differentiated by ``torch.autograd.grad``
  (AOTAutograd compiles the backward too). Needs a C++ compiler; the first call of a new
  graph (compile + run) is reported apart from later calls (``meta``).

Each backend measures its own derivative at the kinks (relu'(0), leaky_relu'(0),
d|r|/dr at 0) through its own transform: forward mode need not agree with reverse mode
there.
"""

from __future__ import annotations

import os
import shutil
import threading
import time
import types
from collections.abc import Callable
from typing import Any

import numpy as np

from gradparity.adapters.base import (
    KINK_KEYS,
    PER_EXAMPLE_MODES,
    as_numpy,
    batch_from_per_example,
    check_jacfwd,
    dist_version,
    kink_value,
    modules_found,
)
from gradparity.adapters.torch_autograd import (
    _INSTALL_HINT,
    _NOTES,
    _activations,
    _loss,
    _outputs,
    _readable,
)
from gradparity.core.gradients import GradientSet

#: (depth, activation, head, loss_form, dtype, target kind): one objective per structure.
Structure = tuple[int, str, str, str, str, str]

#: C++ compilers inductor can use on CPU, after ``$CXX``.
CXX_CANDIDATES: tuple[str, ...] = ("g++", "c++", "clang++")


def _import() -> tuple[Any, Any, Any]:
    try:
        import torch
        import torch.nn.functional as F
        from torch import nn
    except ImportError as exc:
        raise RuntimeError(f"{_INSTALL_HINT}: {exc}") from exc
    return torch, nn, F


def _structure(case) -> Structure:
    spec = case.spec
    kind = (("labels" if case.labels is not None else "probs") if spec.head == "softmax_ce"
            else "values")
    return (spec.depth, spec.activation, spec.head, spec.loss_form, spec.dtype, kind)


def _probed_mlp(torch: Any, nn: Any, F: Any, structure: Structure) -> Any:
    """An ``nn.Module`` whose forward returns (Z list, A list) with probes added; its
    layers are placeholders (1 x 1): `functional_call` supplies every weight and bias."""
    depth, activation, head, form, dtype, _ = structure
    act = _activations(F)[activation]
    out = _outputs(torch)[head]
    tdtype = getattr(torch, dtype)

    class ProbedMLP(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.layers = nn.ModuleList(nn.utils.skip_init(nn.Linear, 1, 1, dtype=tdtype)
                                        for _ in range(depth))

        def forward(self, x: Any, z_probes: list[Any], a_probes: list[Any]
                    ) -> tuple[list[Any], list[Any]]:
            a, Zs, As = x, [], []
            for i, lin in enumerate(self.layers):
                z = lin(a) + z_probes[i]
                if i < depth - 1:
                    a = act(z) + a_probes[i]
                elif form == "probs":
                    a = out(z) + a_probes[i]
                else:  # fused loss: A[L] is reported, J does not see it
                    a = out(z)
                Zs.append(z)
                As.append(a)
            return Zs, As

    return ProbedMLP()


def _objective(structure: Structure) -> Callable[..., Any]:
    """``J(params, z_probes, a_probes, x, y, labels) -> (loss, (loss, Zs, As))``: J of the
    batch in ``x`` (``(m, n0)``) through `functional_call`; ``params`` maps
    ``layers.{i}.weight`` / ``layers.{i}.bias`` to tensors."""
    torch, nn, F = _import()
    from torch.func import functional_call

    model = _probed_mlp(torch, nn, F, structure)
    head, form, kind = structure[2], structure[3], structure[5]

    def J(params, z_probes, a_probes, x, y, labels):
        Zs, As = functional_call(model, params, (x, z_probes, a_probes))
        lab = labels if kind == "labels" else None
        loss = _loss(torch, F, head, form, Zs[-1], As[-1], y, lab, x.shape[0])
        return loss, (loss, Zs, As)

    return J


def _per_example(J: Callable[..., Any]) -> Callable[..., Any]:
    """The loss of one example (``x`` of shape ``(n0,)``): J of a batch of one."""
    def J1(params, z_probes, a_probes, x, y, labels):
        return J(params, [p[None] for p in z_probes], [p[None] for p in a_probes], x[None],
                 y[None], None if labels is None else labels[None])
    return J1


def _kink_input(torch: Any, F: Any, tdtype: Any) -> tuple[Any, Callable[[Any], Any]]:
    """x = zeros(3) and f(x) = relu(x0) + leaky_relu(x1) + |x2 - 0| (the L1 head's loss):
    one derivative of f gives the three kink conventions of `KINK_KEYS`, in that order."""
    acts = _activations(F)

    def f(x: Any) -> Any:
        parts = []
        for i, key in enumerate(KINK_KEYS):
            v = x[i:i + 1].reshape(1, 1)
            if key == "linear_l1":
                parts.append(_loss(torch, F, key, "logits", v, v, torch.zeros_like(v), None, 1))
            else:
                parts.append(acts[key](v).sum())
        return sum(parts)

    return torch.zeros(len(KINK_KEYS), dtype=tdtype), f


class TorchFuncBackend:
    """``torch.func.grad_and_value`` over `functional_call`; dZ, dA through zero probes."""

    name = "torch.func"
    #: The table's ``mode`` column for this backend's rows (a str, or per quantity).
    row_mode: str | dict[str, str] = "end_to_end"
    #: ``meta["ad_mode"]`` of its GradientSets: ``reverse`` or ``forward``.
    ad_mode = "reverse"
    _how = "torch.func.grad_and_value(J) over functional_call; dZ, dA via zero probes"

    def __init__(self) -> None:
        self._kinks: dict[str, dict[str, float]] = {}
        self._fns: dict[Structure, Callable[..., Any]] = {}
        self._lock = threading.Lock()

    # -- availability ----------------------------------------------------------------
    def available(self) -> bool:
        return modules_found("torch")

    def unavailable_reason(self) -> str:
        return "" if self.available() else _INSTALL_HINT

    def version(self) -> str | None:
        return dist_version("torch")

    # -- the transform ---------------------------------------------------------------
    def _transform(self, J: Callable[..., Any]) -> Callable[..., Any]:
        """``fn(params, z_probes, a_probes, x, y, labels) -> (grads of the first four,
        (loss, Zs, As))``."""
        from torch.func import grad_and_value

        def fn(*args):
            g, (_, aux) = grad_and_value(J, argnums=(0, 1, 2, 3), has_aux=True)(*args)
            return g, aux
        return fn

    def _function(self, structure: Structure) -> Callable[..., Any]:
        with self._lock:
            fn = self._fns.get(structure)
            if fn is None:
                fn = self._fns[structure] = self._transform(_objective(structure))
        return fn

    def _derivative(self, f: Callable[[Any], Any], x: Any) -> Any:
        """df/dx for a scalar f, by this backend's transform (for the kink conventions)."""
        from torch.func import grad

        return grad(f)(x)

    # -- kinks -----------------------------------------------------------------------
    def kink_conventions(self, dtype: str) -> dict[str, float]:
        """relu'(0), leaky_relu'(0) and |r|'(0) as this backend's transform computes them."""
        if dtype not in self._kinks:
            torch, _, F = _import()
            x, f = _kink_input(torch, F, getattr(torch, dtype))
            g = self._derivative(f, x).detach().numpy()
            if g.dtype != np.dtype(dtype):
                raise RuntimeError(f"{self.name}: kink derivative came back as {g.dtype}")
            self._kinks[dtype] = {k: kink_value(g[i]) for i, k in enumerate(KINK_KEYS)}
        return dict(self._kinks[dtype])

    # -- gradients -------------------------------------------------------------------
    def _inputs(self, case) -> tuple[Any, ...]:
        torch, _, _ = _import()
        spec = case.spec
        tdtype = getattr(torch, spec.dtype)
        L, m = spec.depth, case.m
        n_a = L - 1 + (spec.loss_form == "probs")

        def tensor(a: np.ndarray) -> Any:
            return torch.tensor(np.ascontiguousarray(_readable(a)), dtype=tdtype)

        params = {}
        for i in range(L):
            params[f"layers.{i}.weight"] = tensor(case.parameters[f"W{i + 1}"])
            params[f"layers.{i}.bias"] = tensor(case.parameters[f"b{i + 1}"][:, 0])
        z_probes = [torch.zeros((m, n), dtype=tdtype) for n in spec.sizes[1:]]
        a_probes = [torch.zeros((m, n), dtype=tdtype) for n in spec.sizes[1:1 + n_a]]
        labels = (torch.tensor(_readable(case.labels), dtype=torch.int64)
                  if _structure(case)[5] == "labels" else None)
        return params, z_probes, a_probes, tensor(case.X.T), tensor(case.Y.T), labels

    def _run(self, case) -> tuple[Any, Any, dict[str, object]]:
        """(grads, (loss, Zs, As), meta) of the transform on ``case``."""
        torch, _, _ = _import()
        fn = self._function(_structure(case))
        with torch.no_grad():  # torch.func transforms need no autograd graph outside
            grads, aux = fn(*self._inputs(case))
        return grads, aux, {}

    def gradients(self, case) -> GradientSet:
        torch, _, _ = _import()
        grads, (loss, Zs, As), meta = self._run(case)
        return self._gradient_set(case, grads, loss, Zs, As, meta, str(torch.__version__))

    def _gradient_set(self, case, grads, loss, Zs, As, meta, version: str) -> GradientSet:
        spec = case.spec
        L, dtype = spec.depth, case.dtype
        g_params, g_z, g_a, g_x = grads

        def np_(t: Any, what: str, transpose: bool = True) -> np.ndarray:
            return as_numpy(t.detach().numpy(), dtype, what=what, backend=self.name,
                            transpose=transpose)

        forward = {"A0": np.array(case.X, dtype=dtype, copy=True)}
        out: dict[str, np.ndarray] = {}
        for i in range(L):
            forward[f"Z{i + 1}"] = np_(Zs[i], f"Z{i + 1}")
            forward[f"A{i + 1}"] = np_(As[i], f"A{i + 1}")
        if spec.loss_form == "probs":
            out[f"dA{L}"] = np_(g_a[L - 1], f"dA{L}")
        for layer in range(L, 0, -1):
            out[f"dZ{layer}"] = np_(g_z[layer - 1], f"dZ{layer}")
            out[f"dW{layer}"] = np_(g_params[f"layers.{layer - 1}.weight"], f"dW{layer}",
                                    transpose=False)
            out[f"db{layer}"] = np_(g_params[f"layers.{layer - 1}.bias"], f"db{layer}",
                                    transpose=False)[..., None]
            out[f"dA{layer - 1}"] = (np_(g_x, "dA0") if layer == 1
                                     else np_(g_a[layer - 2], f"dA{layer - 1}"))
        notes = _NOTES[(spec.head, spec.loss_form)]
        if spec.head == "softmax_ce" and case.labels is None:
            notes += "; probability targets (no labels)"
        return GradientSet(backend=self.name,
                           loss=as_numpy(loss.detach().numpy(), dtype, what="loss",
                                         backend=self.name),
                           forward=forward, grads=out, notes=f"{notes}; {self._how}",
                           meta=dict(meta, version=version, ad_mode=self.ad_mode))


class TorchForwardBackend(TorchFuncBackend):
    """Forward mode: ``torch.func.jacfwd`` of J (one tangent per input element)."""

    name = "torch.fwd"
    row_mode = "jacfwd"
    ad_mode = "forward"
    _how = ("forward mode: torch.func.jacfwd(J), every gradient element a directional "
            "derivative along a basis vector; dZ, dA via zero probes")

    def gradients(self, case) -> GradientSet:
        check_jacfwd(case.spec, self.name)
        return super().gradients(case)

    def _transform(self, J: Callable[..., Any]) -> Callable[..., Any]:
        from torch.func import jacfwd

        return jacfwd(J, argnums=(0, 1, 2, 3), has_aux=True)

    def _derivative(self, f: Callable[[Any], Any], x: Any) -> Any:
        from torch.func import jacfwd

        return jacfwd(f)(x)


class TorchVmapBackend(TorchFuncBackend):
    """Per-example gradients, ``vmap(grad(loss_i))``, turned into J's true partials."""

    name = "torch.vmap"
    row_mode = PER_EXAMPLE_MODES
    _how = ("per-example gradients torch.func.vmap(grad(loss_i)) over functional_call; dW, "
            "db their mean over the batch; per-example dZ, dA (m x the true partial) "
            "divided by m")

    def _transform(self, J: Callable[..., Any]) -> Callable[..., Any]:
        from torch.func import grad, vmap

        J1 = _per_example(J)

        def fn(params, z_probes, a_probes, x, y, labels):
            g = grad(J1, argnums=(0, 1, 2, 3), has_aux=True)
            in_dims = (None, 0, 0, 0, 0, None if labels is None else 0)
            return vmap(g, in_dims=in_dims)(params, z_probes, a_probes, x, y, labels)
        return fn

    def _derivative(self, f: Callable[[Any], Any], x: Any) -> Any:
        from torch.func import grad, vmap

        return vmap(grad(f))(x[None])[0]

    def per_example(self, case) -> tuple[dict[str, np.ndarray], GradientSet]:
        """Per-example gradients in the reference's layout (``dWl`` ``(m, n_l, n_{l-1})``,
        ``dbl`` ``(m, n_l, 1)``, ``dZl``/``dAl`` ``(n_l, m)``, each example's gradient of
        its own loss) and the GradientSet of forward values (loss: mean of the losses)."""
        torch, _, _ = _import()
        fn = self._function(_structure(case))
        with torch.no_grad():
            grads, (loss, Zs, As) = fn(*self._inputs(case))
        shell = self._gradient_set(case, grads, loss.mean(), [t[:, 0, :] for t in Zs],
                                   [t[:, 0, :] for t in As], {}, str(torch.__version__))
        return dict(shell.grads), shell

    def gradients(self, case) -> GradientSet:
        per, shell = self.per_example(case)
        shell.grads = batch_from_per_example(per, case.m)
        return shell


class TorchCompileBackend(TorchFuncBackend):
    """``torch.compile`` (inductor, CPU, dynamic shapes) of J; ``torch.autograd.grad``."""

    name = "torch.compile"
    _how = ("torch.compile(J, backend='inductor', dynamic=True) then torch.autograd.grad "
            "(AOTAutograd compiles the backward); dZ, dA via zero probes")

    def __init__(self) -> None:
        super().__init__()
        self._count = 0  # structures compiled so far (each its own code object)

    @staticmethod
    def compiler() -> str | None:
        """The C++ compiler inductor would use on CPU (``$CXX`` or the first of
        `CXX_CANDIDATES` on PATH), or None."""
        for c in (os.environ.get("CXX"), *CXX_CANDIDATES):
            if c and shutil.which(c):
                return c
        return None

    def available(self) -> bool:
        return modules_found("torch") and self.compiler() is not None

    def unavailable_reason(self) -> str:
        if not modules_found("torch"):
            return _INSTALL_HINT
        if self.compiler() is None:
            return ("torch.compile (inductor on CPU) needs a C++ compiler: none of $CXX, "
                    f"{', '.join(CXX_CANDIDATES)} found on PATH")
        return ""

    def _transform(self, J: Callable[..., Any]) -> Callable[..., Any]:
        torch, _, _ = _import()
        # TorchDynamo keeps one cache of compiled graphs per code object, 8 entries by
        # default, then silently runs the function uncompiled: every structure gets a code
        # object of its own, and fullgraph=True makes a graph break or a full cache an
        # error instead of an eager run under this backend's name.
        self._count += 1
        code = J.__code__.replace(co_name=f"J_{self._count}")
        own = types.FunctionType(code, J.__globals__, code.co_name, J.__defaults__,
                                 J.__closure__)
        return torch.compile(own, backend="inductor", dynamic=True, fullgraph=True)

    def _derivative(self, f: Callable[[Any], Any], x: Any) -> Any:
        torch, _, _ = _import()
        x = x.clone().requires_grad_(True)
        with torch.enable_grad():
            (g,) = torch.autograd.grad(torch.compile(f, backend="inductor", fullgraph=True)(x),
                                       x)
        return g

    def _run(self, case) -> tuple[Any, Any, dict[str, object]]:
        torch, _, _ = _import()
        from torch._dynamo.utils import counters

        fn = self._function(_structure(case))
        params, z_probes, a_probes, x, y, labels = self._inputs(case)
        leaves = [*params.values(), *z_probes, *a_probes, x]
        for t in leaves:
            t.requires_grad_(True)
        graphs = counters["stats"]["unique_graphs"]
        t0 = time.perf_counter()
        with torch.enable_grad():
            _, (loss, Zs, As) = fn(params, z_probes, a_probes, x, y, labels)
            g = torch.autograd.grad(loss, leaves)
        seconds = time.perf_counter() - t0
        compiled = counters["stats"]["unique_graphs"] > graphs
        n = len(params)
        g_params = dict(zip(params, g[:n], strict=True))
        g_z = g[n:n + len(z_probes)]
        g_a = g[n + len(z_probes):n + len(z_probes) + len(a_probes)]
        meta = {"compiled": compiled, "seconds": seconds}
        return (g_params, g_z, g_a, g[-1]), (loss, Zs, As), meta
