"""PyTorch autograd adapter: the case's MLP built from nn.Linear and torch.nn.functional.

Idiomatic torch, batch-major: ``X`` enters as an ``(m, n0)`` tensor, each layer is an
``nn.Linear`` whose ``weight`` is the case's ``W[l]`` (``(n_l, n_{l-1})``, the same layout
as ``nn.Linear.weight``) and whose ``bias`` is ``b[l][:, 0]``. Activations and losses come
from ``torch.nn.functional``. Losses use ``reduction='sum'`` divided by ``m`` so that
``J = (1/m) sum_i loss_i`` exactly as in the reference (torch's default ``mean`` would
divide by ``m * n_out``, and ``mse_loss`` has no 1/2).

Intermediates come from torch itself: ``retain_grad()`` on every Z and A, and
``X.requires_grad`` for dA0. Tensors stay in the case's dtype (float32 or float64; no
``set_default_dtype``). The layers are ``nn.Linear`` with their initialisation left out
(`_GivenLinear`): the case's parameters replace it anyway, so nothing is drawn and torch's
global RNG is left as it was. Drawing it inside ``torch.random.fork_rng`` cost 2-24 ms a
case for values thrown away; ``nn.utils.skip_init`` would skip it through the meta device,
whose first use imports sympy and torch.fx: seconds of a small debug session.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import numpy as np

from gradparity.adapters.base import (
    KINK_KEYS,
    as_numpy,
    dist_version,
    kink_value,
    modules_found,
)
from gradparity.core.gradients import GradientSet
from gradparity.core.spec import HUBER_DELTA, LEAKY_SLOPE

_INSTALL_HINT = "torch is not installed (pip install 'gradparity[torch]')"


def _activations(F: Any) -> dict[str, Callable[[Any], Any]]:
    """Hidden activations, by spec name, from torch.nn.functional."""
    return {
        "relu": F.relu,
        "leaky_relu": lambda z: F.leaky_relu(z, negative_slope=LEAKY_SLOPE),
        "sigmoid": F.sigmoid,
        "tanh": F.tanh,
        "identity": lambda z: z,
        "softplus": F.softplus,
        "elu": F.elu,
        "silu": F.silu,
        "gelu": lambda z: F.gelu(z, approximate="none"),
        "gelu_tanh": lambda z: F.gelu(z, approximate="tanh"),
    }


def _outputs(torch: Any) -> dict[str, Callable[[Any], Any]]:
    """Output activations (A[L] from Z[L]), by head name; softmax over classes (dim=1)."""
    return {
        "linear_mse": lambda z: z,
        "sigmoid_bce": torch.sigmoid,
        "softmax_ce": lambda z: torch.softmax(z, dim=1),
        "sigmoid_mse": torch.sigmoid,
        "tanh_mse": torch.tanh,
        "linear_l1": lambda z: z,
        "linear_huber": lambda z: z,
    }


#: How J is built, per (head, loss_form) and target kind, for `GradientSet.notes`.
_NOTES: dict[tuple[str, str], str] = {
    ("linear_mse", "logits"): "J = F.mse_loss(Z, Y, reduction='sum') / (2 * m); torch's "
    "MSELoss(mean) would be 2/n_out times this (mean over m*n_out, no 1/2)",
    ("sigmoid_bce", "logits"): "J = F.binary_cross_entropy_with_logits(Z, Y, reduction='sum')"
    " / m; torch's mean reduction would divide by m*n_out",
    ("sigmoid_bce", "probs"): "A = torch.sigmoid(Z); J = F.binary_cross_entropy(A, Y, "
    "reduction='sum') / m (torch clamps log at -100); mean would divide by m*n_out",
    ("softmax_ce", "logits"): "J = F.cross_entropy(Z, labels, reduction='sum') / m "
    "(class-probability targets when there are no labels); mean divides by m as well",
    ("softmax_ce", "probs"): "A = torch.softmax(Z, dim=1); J = F.nll_loss(torch.log(A), "
    "labels, reduction='sum') / m (or -(Y * log A).sum() / m for probability targets)",
    ("sigmoid_mse", "probs"): "A = torch.sigmoid(Z); J = F.mse_loss(A, Y, "
    "reduction='sum') / (2 * m); MSELoss(mean) would be 2/n_out times this",
    ("tanh_mse", "probs"): "A = torch.tanh(Z); J = F.mse_loss(A, Y, reduction='sum') "
    "/ (2 * m); MSELoss(mean) would be 2/n_out times this",
    ("linear_l1", "logits"): "J = F.l1_loss(Z, Y, reduction='sum') / m; mean would divide "
    "by m*n_out",
    ("linear_huber", "logits"): "J = F.huber_loss(Z, Y, reduction='sum', delta=1.0) / m; "
    "mean would divide by m*n_out",
}


def _loss(torch: Any, F: Any, head: str, form: str, z: Any, a: Any, y: Any,
          labels: Any | None, m: int) -> Any:
    """J = (1/m) sum_i loss_i from Z[L] (logits forms) or A[L] (probs forms).

    The MSE heads divide by the integer ``2 * m`` rather than multiplying by 0.5 (the same
    bits: 0.5 x is exact): under ``torch.func.jvp``/``jacfwd``, a Python float times a 0-d
    float32 tensor gives a float64 tangent (torch 2.13; README "Gradient paths").
    """
    if head == "linear_mse":
        return F.mse_loss(z, y, reduction="sum") / (2 * m)
    if head == "sigmoid_bce":
        if form == "logits":
            return F.binary_cross_entropy_with_logits(z, y, reduction="sum") / m
        return F.binary_cross_entropy(a, y, reduction="sum") / m
    if head == "softmax_ce":
        if form == "logits":
            return F.cross_entropy(z, labels if labels is not None else y, reduction="sum") / m
        if labels is not None:
            return F.nll_loss(torch.log(a), labels, reduction="sum") / m
        return -(y * torch.log(a)).sum() / m
    if head in ("sigmoid_mse", "tanh_mse"):
        return F.mse_loss(a, y, reduction="sum") / (2 * m)
    if head == "linear_l1":
        return F.l1_loss(z, y, reduction="sum") / m
    if head == "linear_huber":
        return F.huber_loss(z, y, reduction="sum", delta=HUBER_DELTA) / m
    raise ValueError(f"head={head!r}: no torch loss for it")


@functools.cache
def _given_linear(nn: Any) -> type:
    class _GivenLinear(nn.Linear):
        """``nn.Linear`` whose parameters are put in by its maker: allocated, not drawn."""

        def reset_parameters(self) -> None:
            pass

    return _GivenLinear


def _readable(a: Any) -> np.ndarray:
    """``a`` as an array torch can read, same values: one in the other byte order or with
    negative strides (a flipped view), both of which torch refuses, is copied into native
    order; anything else is left as it is."""
    a = np.asarray(a)
    if not a.dtype.isnative:
        return a.astype(a.dtype.newbyteorder("="))
    return a if all(s >= 0 for s in a.strides) else np.ascontiguousarray(a)


def _source(torch: Any, a: np.ndarray, tdtype: Any) -> Any:
    """``a`` for a copy into a ``tdtype`` tensor: a view of its memory where torch can
    take one (a writable float32 or float64 array, once `_readable`), else a tensor of
    its own."""
    a = _readable(a)
    if a.flags.writeable and a.dtype in (np.float32, np.float64):
        return torch.from_numpy(a)
    return torch.tensor(a, dtype=tdtype)


class TorchBackend:
    """PyTorch autograd (``loss.backward()``) on nn.Linear layers; CPU, case dtype."""

    name = "torch"

    def __init__(self) -> None:
        self._kinks: dict[str, dict[str, float]] = {}

    # -- availability ----------------------------------------------------------------
    def available(self) -> bool:
        return modules_found("torch")

    def unavailable_reason(self) -> str:
        return "" if self.available() else _INSTALL_HINT

    def version(self) -> str | None:
        return dist_version("torch")

    def _import(self) -> tuple[Any, Any, Any]:
        try:
            import torch
            import torch.nn.functional as F
            from torch import nn
        except ImportError as exc:
            raise RuntimeError(f"{_INSTALL_HINT}: {exc}") from exc
        return torch, nn, F

    def _linear(self, n_in: int, n_out: int, W: np.ndarray, b: np.ndarray, tdtype: Any
                ) -> Any:
        """An ``nn.Linear(n_in, n_out)`` holding ``W`` ``(n_out, n_in)`` and ``b``
        ``(n_out, 1)``, copied in; torch's global RNG is not used."""
        torch, nn, _ = self._import()
        lin = _given_linear(nn)(n_in, n_out, dtype=tdtype)
        with torch.no_grad():
            lin.weight.copy_(_source(torch, W, tdtype))
            lin.bias.copy_(_source(torch, b[:, 0], tdtype))
        return lin

    # -- kinks -----------------------------------------------------------------------
    def kink_conventions(self, dtype: str) -> dict[str, float]:
        """relu'(0), leaky_relu'(0) and |r|'(0) as torch's autograd computes them."""
        if dtype not in self._kinks:
            torch, _, F = self._import()
            tdtype = getattr(torch, dtype)
            acts = _activations(F)
            out: dict[str, float] = {}
            with torch.enable_grad():
                for key in KINK_KEYS:
                    x = torch.zeros((1, 1), dtype=tdtype, requires_grad=True)
                    if key == "linear_l1":
                        y = _loss(torch, F, key, "logits", x, x, torch.zeros_like(x), None, 1)
                    else:
                        y = acts[key](x).sum()
                    (g,) = torch.autograd.grad(y, x)
                    out[key] = kink_value(g.detach().numpy())
            self._kinks[dtype] = out
        return dict(self._kinks[dtype])

    # -- gradients -------------------------------------------------------------------
    def gradients(self, case) -> GradientSet:
        torch, nn, F = self._import()
        spec = case.spec
        L, m, form = spec.depth, case.m, spec.loss_form
        dtype = case.dtype
        tdtype = getattr(torch, spec.dtype)
        act = _activations(F)[spec.activation]
        out_act = _outputs(torch)[spec.head]

        def tensor(a: np.ndarray) -> Any:
            # a copy: no memory shared with the case
            return torch.tensor(_readable(a), dtype=tdtype)

        with torch.enable_grad():
            layers = []
            for layer in range(1, L + 1):
                n_in, n_out = spec.sizes[layer - 1], spec.sizes[layer]
                layers.append(self._linear(n_in, n_out, case.parameters[f"W{layer}"],
                                           case.parameters[f"b{layer}"], tdtype))

            x = tensor(case.X.T).requires_grad_(True)  # batch-major (m, n0)
            y = tensor(case.Y.T)
            labels = None if case.labels is None else torch.tensor(_readable(case.labels),
                                                                   dtype=torch.int64)
            Z: dict[int, Any] = {}
            A: dict[int, Any] = {0: x}
            a = x
            for layer, lin in enumerate(layers, start=1):
                z = lin(a)
                z.retain_grad()
                Z[layer] = z
                if layer < L:
                    a = act(z)
                    if a is z:  # identity: A[l] is Z[l]; dA[l] = dZ[l]
                        a = z.view_as(z)
                    a.retain_grad()
                elif form == "probs":
                    a = out_act(z)
                    a.retain_grad()
                else:  # fused loss: A[L] is reported but is not part of J
                    with torch.no_grad():
                        a = out_act(z.detach()).clone()
                A[layer] = a
            loss = _loss(torch, F, spec.head, form, Z[L], A[L], y, labels, m)
            loss.backward()

        def np_(t: Any, what: str, transpose: bool = True) -> np.ndarray:
            if t is None:
                raise RuntimeError(f"torch: no gradient for {what}")
            return as_numpy(t.detach().numpy(), dtype, what=what, backend=self.name,
                            transpose=transpose)

        forward = {"A0": np_(x, "A0")}
        grads: dict[str, np.ndarray] = {}
        for layer in range(1, L + 1):
            forward[f"Z{layer}"] = np_(Z[layer], f"Z{layer}")
            forward[f"A{layer}"] = np_(A[layer], f"A{layer}")
        if form == "probs":
            grads[f"dA{L}"] = np_(A[L].grad, f"dA{L}")
        for layer in range(L, 0, -1):
            lin = layers[layer - 1]
            grads[f"dZ{layer}"] = np_(Z[layer].grad, f"dZ{layer}")
            grads[f"dW{layer}"] = np_(lin.weight.grad, f"dW{layer}", transpose=False)
            grads[f"db{layer}"] = np_(lin.bias.grad, f"db{layer}", transpose=False)[:, None]
            grads[f"dA{layer - 1}"] = np_(A[layer - 1].grad, f"dA{layer - 1}")
        key = (spec.head, form)
        notes = _NOTES[key]
        if spec.head == "softmax_ce" and case.labels is None:
            notes += "; probability targets (no labels)"
        return GradientSet(
            backend=self.name,
            loss=as_numpy(loss.detach().numpy(), dtype, what="loss", backend=self.name),
            forward=forward,
            grads=grads,
            notes=notes + "; dZ, dA via retain_grad, dA0 via X.requires_grad",
            meta={"version": str(torch.__version__)},
        )

    # -- one layer on its own ---------------------------------------------------------
    def layer_gradients(self, case, layer: int, a_prev: np.ndarray, dA_out: np.ndarray
                        ) -> dict[str, np.ndarray]:
        """A hidden layer fed the reference's upstream values: forward from ``a_prev``
        (A[l-1], ``(n_{l-1}, m)``), backward from ``dA_out`` (dJ/dA[l]) through
        ``A.backward(gradient=dA_out)``. Keys as `reference.mlp.layer_step`."""
        torch, nn, F = self._import()
        spec = case.spec
        tdtype = getattr(torch, spec.dtype)
        act = _activations(F)[spec.activation]
        with torch.enable_grad():
            lin = self._linear(spec.sizes[layer - 1], spec.sizes[layer],
                               case.parameters[f"W{layer}"], case.parameters[f"b{layer}"],
                               tdtype)
            x = torch.tensor(a_prev.T, dtype=tdtype).requires_grad_(True)
            z = lin(x)
            z.retain_grad()
            a = act(z)
            if a is z:
                a = z.view_as(z)
            a.backward(gradient=torch.tensor(dA_out.T, dtype=tdtype))

        def np_(t: Any, what: str, transpose: bool = True) -> np.ndarray:
            return as_numpy(t.detach().numpy(), case.dtype, what=what, backend=self.name,
                            transpose=transpose)

        return {"Z": np_(z, "Z"), "A": np_(a, "A"), "dZ": np_(z.grad, "dZ"),
                "dW": np_(lin.weight.grad, "dW", transpose=False),
                "db": np_(lin.bias.grad, "db", transpose=False)[:, None],
                "dA_prev": np_(x.grad, "dA_prev")}
