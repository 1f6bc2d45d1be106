"""The NumPy reference MLP: forward with a cache, and backprop by the seed's equations.

Shapes (column-major): ``X`` is ``(n0, m)``; ``parameters["Wl"]`` is ``(n_l, n_{l-1})``;
``parameters["bl"]`` is ``(n_l, 1)``; ``cache["Zl"]``, ``cache["Al"]`` are ``(n_l, m)``.
Per layer, going backwards from the output::

    dZ[l]   = dA[l] * g'(Z[l])                 (dZ[L] from the head)
    dW[l]   = dZ[l] . A[l-1]^T                 (true partials: dZ already carries 1/m)
    db[l]   = sum over examples of dZ[l]
    dA[l-1] = W[l]^T . dZ[l]

The seed writes ``dW = (1/m) dZ A^T`` because its dZ is per example (m times the true
partial); here dZ and dA are the true partials of J, so the 1/m sits in dZ[L].

Matrix products go through `gradparity.reference.extended.matmul`: plain ``@`` in float32
and float64; for the long-double oracle, float64 BLAS products without rounding error.

These four equations are written once, in `hidden_dZ` and `backward_step`; backprop, the
one-layer step, the self-test's faulty copy, layer-own and debug all call them.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from gradparity.core.gradients import GradientSet
from gradparity.reference.activations import ACTIVATION_FUNCS
from gradparity.reference.extended import matmul
from gradparity.reference.heads import HEAD_FUNCS

Array = np.ndarray

#: Convention keys for kinks: the hidden activation's name, or the head's name (L1 residual).
REFERENCE_KINKS: dict[str, float] = {"relu": 0.0, "leaky_relu": 0.01, "linear_l1": 0.0}


# -- the seed's backward equations, written once ---------------------------------------------
def hidden_dZ(dA: Array, g_prime: Array) -> Array:
    """dZ[l] = dA[l] * g'(Z[l]), element by element (``g_prime`` = g'(Z[l]))."""
    return dA * g_prime


def weight_gradient(dZ: Array, a_prev: Array) -> Array:
    """dW[l] = dZ[l] A[l-1]^T."""
    return matmul(dZ, a_prev.T)


def bias_gradient(dZ: Array) -> Array:
    """db[l] = the sum over examples (columns) of dZ[l], shape ``(n_l, 1)``."""
    return np.sum(dZ, axis=1, keepdims=True)


def input_gradient(W: Array, dZ: Array) -> Array:
    """dA[l-1] = W[l]^T dZ[l]."""
    return matmul(W.T, dZ)


def backward_step(dZ: Array, a_prev: Array, W: Array) -> dict[str, Array]:
    """From dZ[l] to the layer's gradients: ``{"dW", "db", "dA_prev"}``."""
    return {"dW": weight_gradient(dZ, a_prev), "db": bias_gradient(dZ),
            "dA_prev": input_gradient(W, dZ)}


def forward_propagation(
    X: Array, parameters: Mapping[str, Array], activation: str, head: str
) -> tuple[Array, dict[str, Array]]:
    """Forward pass. Returns ``(AL, cache)`` with ``cache = {A0, Z1, A1, ..., ZL, AL}``."""
    L = len(parameters) // 2
    g = ACTIVATION_FUNCS[activation]
    cache = {"A0": X}
    A = X
    for layer in range(1, L + 1):
        Z = matmul(parameters[f"W{layer}"], A) + parameters[f"b{layer}"]
        A = HEAD_FUNCS[head].forward(Z) if layer == L else g.forward(Z)
        cache[f"Z{layer}"] = Z
        cache[f"A{layer}"] = A
    return A, cache


def compute_loss(cache: Mapping[str, Array], Y: Array, head: str) -> Array:
    """J = (1/m) sum of per-example losses, a 0-d array in the cache's dtype."""
    L = (len(cache) - 1) // 2
    m = Y.shape[1]
    return HEAD_FUNCS[head].loss(cache[f"Z{L}"], cache[f"A{L}"], Y, m)


def backpropagation(
    cache: Mapping[str, Array],
    Y: Array,
    parameters: Mapping[str, Array],
    activation: str,
    head: str,
    *,
    kinks: Mapping[str, float] | None = None,
    dZ_output: Array | None = None,
    with_output_dA: bool = False,
    prime: Callable[[Array], Array] | None = None,
    from_outputs: bool = False,
) -> dict[str, Array]:
    """Backprop. Returns ``{dZl, dWl, dbl, dA(l-1)}`` for every layer (true partials of J).

    Args:
        kinks: derivative to use at non-differentiable points, keyed by activation or head
            name (defaults: `REFERENCE_KINKS`).
        dZ_output: start backprop from this dJ/dZ[L] instead of the head's (used to ask
            whether a backend's upstream gradients follow from its own output gradient).
        with_output_dA: also return dJ/dA[L] (composed heads).
        prime: replace the hidden activation's derivative (fault injection, self-test).
        from_outputs: take sigmoid' and tanh' from the rounded outputs, as autodiff
            frameworks do (see `gradparity.reference.activations`).
    """
    conv = {**REFERENCE_KINKS, **(kinks or {})}
    L = len(parameters) // 2
    m = Y.shape[1]
    g = ACTIVATION_FUNCS[activation]
    h = HEAD_FUNCS[head]
    ZL, AL = cache[f"Z{L}"], cache[f"A{L}"]
    grads: dict[str, Array] = {}
    if with_output_dA:
        grads[f"dA{L}"] = h.dA(ZL, AL, Y, m, conv.get(head), from_outputs=from_outputs)
    dZ = (h.dZ(ZL, AL, Y, m, conv.get(head), from_outputs=from_outputs)
          if dZ_output is None else dZ_output)
    for layer in range(L, 0, -1):
        if layer < L:
            z = cache[f"Z{layer}"]
            gp = (g.prime(z, conv.get(activation), from_outputs=from_outputs)
                  if prime is None else prime(z))
            dZ = hidden_dZ(grads[f"dA{layer}"], gp)
        step = backward_step(dZ, cache[f"A{layer - 1}"], parameters[f"W{layer}"])
        grads[f"dZ{layer}"] = dZ
        grads[f"dW{layer}"] = step["dW"]
        grads[f"db{layer}"] = step["db"]
        grads[f"dA{layer - 1}"] = step["dA_prev"]
    return grads


def reference_gradients(
    case,
    *,
    kinks: Mapping[str, float] | None = None,
    dZ_output: Array | None = None,
    forward: Mapping[str, Array] | None = None,
    backend: str = "reference",
    from_outputs: bool = False,
) -> GradientSet:
    """Run forward and backprop on a `Case` and pack the result as a `GradientSet`.

    ``forward`` replaces the reference's own forward cache (``{A0, Z1, A1, ...}``): the
    seed's backprop equations are then evaluated at another backend's forward values.
    ``from_outputs``: derivatives from rounded outputs (see `backpropagation`).
    """
    spec = case.spec
    with np.errstate(over="ignore", under="ignore"):
        if forward is None:
            _, cache = forward_propagation(case.X, case.parameters, spec.activation, spec.head)
        else:
            cache = {k: np.asarray(v, dtype=case.X.dtype) for k, v in forward.items()}
        loss = compute_loss(cache, case.Y, spec.head)
        grads = backpropagation(
            cache, case.Y, case.parameters, spec.activation, spec.head,
            kinks=kinks, dZ_output=dZ_output, with_output_dA=spec.loss_form == "probs",
            from_outputs=from_outputs,
        )
    return GradientSet(backend=backend, loss=loss, forward=dict(cache), grads=grads,
                       notes="NumPy reference, seed equations, true partials of J")


def layer_step(
    case,
    layer: int,
    a_prev: Array,
    dA_out: Array | None = None,
    *,
    kinks: Mapping[str, float] | None = None,
    z_at: Array | None = None,
    from_outputs: bool = False,
) -> dict[str, Array]:
    """One layer on its own: forward from ``a_prev`` = A[l-1] ``(n_{l-1}, m)`` and, for a
    hidden layer, backward from ``dA_out`` = dJ/dA[l] ``(n_l, m)``; the output layer's
    backward starts from the loss. Returns ``Z``, ``A``, ``dZ``, ``dW``, ``db``,
    ``dA_prev`` (and ``loss``, plus ``dA`` for composed heads, at the output layer).
    ``z_at`` evaluates the derivatives at another backend's Z[l] (its side of a kink);
    ``from_outputs`` takes them from rounded outputs (see `backpropagation`)."""
    spec = case.spec
    conv = {**REFERENCE_KINKS, **(kinks or {})}
    W, b = case.parameters[f"W{layer}"], case.parameters[f"b{layer}"]
    m = case.m
    with np.errstate(over="ignore", under="ignore"):
        Z = matmul(W, a_prev) + b
        Zd = Z if z_at is None else np.asarray(z_at, dtype=Z.dtype)
        out: dict[str, Array] = {"Z": Z}
        if layer == spec.depth:
            h = HEAD_FUNCS[spec.head]
            A = h.forward(Z)
            out.update(A=A, loss=h.loss(Z, A, case.Y, m))
            Ad = A if z_at is None else h.forward(Zd)
            if spec.loss_form == "probs":
                out["dA"] = h.dA(Zd, Ad, case.Y, m, conv.get(spec.head),
                                 from_outputs=from_outputs)
            dZ = h.dZ(Zd, Ad, case.Y, m, conv.get(spec.head), from_outputs=from_outputs)
        else:
            g = ACTIVATION_FUNCS[spec.activation]
            out["A"] = g.forward(Z)
            dZ = hidden_dZ(dA_out, g.prime(Zd, conv.get(spec.activation),
                                           from_outputs=from_outputs))
    out.update(dZ=dZ, **backward_step(dZ, a_prev, W))
    return out
