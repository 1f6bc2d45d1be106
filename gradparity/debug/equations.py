"""The seed's equations one quantity at a time, evaluated on given upstream values.

`evaluate(key, get, net)` computes one quantity from the values ``get`` returns for its
inputs (`inputs_of`): that is how a wrong tensor is told apart from one that only inherits
an upstream mistake (feed it the user's own upstream values), and it is the base every
diagnosis candidate modifies. Values are true partials of ``J = (1/m) sum_i loss_i``::

    Z[l]    = W[l] A[l-1] + b[l]          A[l] = g(Z[l])   (A[L] = the head's output)
    dA[L]   = dJ/dA[L] of the head        dZ[L] = (A[L] - Y)/m (canonical heads), the head's
                                                  dJ/dZ[L], or dA[L] * out'(Z[L])
    dZ[l]   = dA[l] * g'(Z[l])            dW[l] = dZ[l] A[l-1]^T
    db[l]   = sum over examples of dZ[l]  dA[l-1] = W[l]^T dZ[l]
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gradparity.debug.quantities import key, split
from gradparity.reference.activations import ACTIVATION_FUNCS, Activation
from gradparity.reference.heads import HEAD_FUNCS, Head, softmax
from gradparity.reference.mlp import bias_gradient, hidden_dZ, input_gradient, weight_gradient

Array = np.ndarray
Getter = Callable[[str], "Array | None"]


@dataclass(frozen=True)
class Net:
    """What the equations need besides the values: shapes, activation, head, targets."""

    depth: int
    activation: str
    head: str
    Y: Array
    parameters: dict[str, Array]
    output_dA_reported: bool = False  # dZ[L] then follows from the user's dA[L]

    @property
    def m(self) -> int:
        return int(self.Y.shape[1])

    @property
    def g(self) -> Activation:
        return ACTIVATION_FUNCS[self.activation]

    @property
    def h(self) -> Head:
        return HEAD_FUNCS[self.head]

    def param(self, k: str) -> Array | None:
        return self.parameters.get(k)


def inputs_of(k: str, net: Net) -> tuple[str, ...]:
    """The computed quantities ``k`` is made from (parameters and Y left out)."""
    q, layer = split(k)
    L = net.depth
    if q == "Z":
        return (key("A", layer - 1),) if layer > 1 else ()
    if q == "A":
        return (key("Z", layer),)
    if q == "dA" and layer == L:
        return (key("Z", L), key("A", L))
    if q == "dZ" and layer == L:
        extra = (key("dA", L),) if net.output_dA_reported else ()
        return (key("Z", L), key("A", L), *extra)
    if q == "dZ":
        return (key("dA", layer), key("Z", layer))
    if q == "dW":
        return (key("dZ", layer),) + ((key("A", layer - 1),) if layer > 1 else ())
    if q == "db":
        return (key("dZ", layer),)
    if q == "dA":
        return (key("dZ", layer + 1),)
    raise ValueError(k)


def output_chain(dA: Array, Z: Array, A: Array, h: Head) -> Array:
    """dZ[L] from dA[L] through the output activation (its Jacobian for softmax)."""
    if h.output is softmax:
        return A * (dA - np.sum(A * dA, axis=0, keepdims=True))
    if h.output_prime is None:
        return dA
    return dA * h.output_prime(Z)


def evaluate(k: str, get: Getter, net: Net) -> Array | None:
    """Quantity ``k`` by the seed's equations from ``get``'s values; ``None`` if an input is
    missing or the shapes do not fit."""
    q, layer = split(k)
    L = net.depth
    try:
        with np.errstate(all="ignore"):
            if q == "Z":
                A_prev = get(key("A", layer - 1))
                return net.parameters[key("W", layer)] @ A_prev + net.parameters[key("b", layer)]
            if q == "A":
                Z = get(key("Z", layer))
                return net.h.forward(Z) if layer == L else net.g.forward(Z)
            if q == "dA" and layer == L:
                return net.h.dA(get(key("Z", L)), get(key("A", L)), net.Y, net.m)
            if q == "dZ" and layer == L:
                Z, A = get(key("Z", L)), get(key("A", L))
                if net.output_dA_reported:
                    return output_chain(get(key("dA", L)), Z, A, net.h)
                if net.h.canonical:  # from the cache's A, as the seed writes it
                    return (A - net.Y) / net.m
                return net.h.dZ(Z, A, net.Y, net.m)
            if q == "dZ":
                return hidden_dZ(get(key("dA", layer)), net.g.prime(get(key("Z", layer))))
            if q == "dW":
                return weight_gradient(get(key("dZ", layer)), get(key("A", layer - 1)))
            if q == "db":
                return bias_gradient(get(key("dZ", layer)))
            if q == "dA":
                return input_gradient(net.parameters[key("W", layer + 1)],
                                      get(key("dZ", layer + 1)))
    except (TypeError, ValueError, AttributeError, KeyError, IndexError):
        return None
    raise ValueError(k)
