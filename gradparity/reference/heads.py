"""Output heads: the output activation, the loss J, and the gradients at the output.

Every head returns the *true partial derivatives* of ``J = (1/m) sum_i loss_i`` where
``loss_i`` sums over the ``n_L`` outputs of example ``i``. Arrays are ``(n_L, m)``.

* ``dZ(Z, Y)`` is dJ/dZ[L]. For the canonical pairs (linear+MSE with the 1/2, sigmoid+BCE,
  softmax+CE) it is ``(A[L] - Y) / m`` in both loss forms: the form changes how a framework
  computes it, not its value. For the general pairs it is ``dA[L] * g'(Z[L])`` (the seed's
  "any output activation" path).
* ``dA(Z, Y)`` is dJ/dA[L], defined for composed (``probs``) heads. It is computed from Z
  so that it keeps its accuracy near saturation; where its true value exceeds the dtype's
  range it is +-inf, which is the correctly rounded answer.
* ``saturated(A)`` marks outputs where A[L] rounded to exactly 0 or 1 in the working dtype:
  there a composed loss (log of A) cannot be evaluated as written.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gradparity.reference.activations import (
    identity,
    sigmoid,
    sigmoid_prime,
    tanh,
    tanh_prime,
)
from gradparity.spec import HUBER_DELTA

Array = np.ndarray


def softmax(z: Array) -> Array:
    """Column-wise softmax of ``(n, m)`` logits, shifted by the column max."""
    e = np.exp(z - z.max(axis=0, keepdims=True))
    return e / e.sum(axis=0, keepdims=True)


def logsumexp(z: Array) -> Array:
    """Column-wise log-sum-exp, shape ``(1, m)``."""
    mx = z.max(axis=0, keepdims=True)
    return mx + np.log(np.exp(z - mx).sum(axis=0, keepdims=True))


def _sum_over_m(per_element: Array, m: int) -> Array:
    """J = (1/m) * sum of per-element losses, as a 0-d array in the input's dtype."""
    return np.asarray(per_element.sum() / m, dtype=per_element.dtype)


# -- the heads: loss, dA[L] (composed forms) and dZ[L], side by side -----------------------
def mse_loss(z: Array, a: Array, y: Array, m: int) -> Array:
    r = a - y
    return _sum_over_m(0.5 * r * r, m)


def mse_dA(z: Array, a: Array, y: Array, m: int) -> Array:
    return (a - y) / m


def bce_loss(z: Array, a: Array, y: Array, m: int) -> Array:
    """sum softplus(z) - y z: the exact BCE of sigmoid(z), with no log of a rounded A."""
    zero = np.zeros((), dtype=z.dtype)
    return _sum_over_m(np.maximum(z, zero) - y * z + np.log1p(np.exp(-np.abs(z))), m)


def bce_dA(z: Array, a: Array, y: Array, m: int) -> Array:
    """(A - Y) / (A (1 - A)) / m, with A - Y and A(1 - A) both evaluated from Z."""
    a_minus_y = (1.0 - y) * sigmoid(z) - y * sigmoid(-z)
    with np.errstate(divide="ignore", over="ignore"):
        return a_minus_y / sigmoid_prime(z) / m


def ce_loss(z: Array, a: Array, y: Array, m: int) -> Array:
    """sum_k y_k (logsumexp(z) - z_k)."""
    return _sum_over_m(y * (logsumexp(z) - z), m)


def ce_dA(z: Array, a: Array, y: Array, m: int) -> Array:
    """-Y / A / m with 1/A = exp(logsumexp(z) - z); zero where Y is zero."""
    with np.errstate(over="ignore"):
        inv_a = np.exp(logsumexp(z) - z)
    return np.where(y != 0, -y * inv_a, 0.0).astype(z.dtype) / m


def l1_loss(z: Array, a: Array, y: Array, m: int) -> Array:
    return _sum_over_m(np.abs(a - y), m)


def l1_dA(z: Array, a: Array, y: Array, m: int, at_kink: float = 0.0) -> Array:
    """sign(A - Y) / m; at a zero residual (the kink) ``at_kink`` / m."""
    r = a - y
    return np.where(r > 0, 1.0, np.where(r < 0, -1.0, at_kink)).astype(z.dtype) / m


def huber_loss(z: Array, a: Array, y: Array, m: int) -> Array:
    r = np.abs(a - y)
    d = HUBER_DELTA
    return _sum_over_m(np.where(r <= d, 0.5 * r * r, d * (r - 0.5 * d)), m)


def huber_dA(z: Array, a: Array, y: Array, m: int) -> Array:
    return np.clip(a - y, -HUBER_DELTA, HUBER_DELTA) / m


@dataclass(frozen=True)
class Head:
    """Output activation + loss. ``output_prime`` is g'(Z[L]) for the general path."""

    name: str
    output: Callable[[Array], Array]
    output_prime: Callable[[Array], Array] | None
    loss: Callable[[Array, Array, Array, int], Array]
    dA_fn: Callable[..., Array]
    canonical: bool
    has_kink: bool = False  # L1: |r| at r = 0

    def forward(self, z: Array) -> Array:
        return self.output(z)

    def dA(self, z: Array, a: Array, y: Array, m: int, at_kink: float | None = None) -> Array:
        """dJ/dA[L], shape ``(n_L, m)``."""
        if self.has_kink:
            return self.dA_fn(z, a, y, m, 0.0 if at_kink is None else at_kink)
        return self.dA_fn(z, a, y, m)

    def dZ(self, z: Array, a: Array, y: Array, m: int, at_kink: float | None = None) -> Array:
        """dJ/dZ[L], shape ``(n_L, m)``: (A - Y)/m for canonical pairs, else dA * g'(Z)."""
        if self.canonical:
            if self.name == "sigmoid_bce":
                # A - Y from Z, so that A rounded to 1 does not cancel away Y = 1 errors.
                return ((1.0 - y) * sigmoid(z) - y * sigmoid(-z)) / m
            return (a - y) / m
        da = self.dA(z, a, y, m, at_kink)
        return da if self.output_prime is None else da * self.output_prime(z)

    def kink_mask(self, a: Array, y: Array) -> Array:
        """Outputs whose loss sits exactly at a kink (a zero L1 residual)."""
        if not self.has_kink:
            return np.zeros(a.shape, dtype=bool)
        return a == y

    def saturated(self, a: Array) -> Array:
        """Outputs where A[L] is exactly 0 or 1 (composed losses take log of these)."""
        if self.output in (sigmoid, softmax):
            return (a == 0) | (a == 1)
        return np.zeros(a.shape, dtype=bool)


HEAD_FUNCS: dict[str, Head] = {
    h.name: h
    for h in (
        Head("linear_mse", identity, None, mse_loss, mse_dA, canonical=True),
        Head("sigmoid_bce", sigmoid, sigmoid_prime, bce_loss, bce_dA, canonical=True),
        Head("softmax_ce", softmax, None, ce_loss, ce_dA, canonical=True),
        Head("sigmoid_mse", sigmoid, sigmoid_prime, mse_loss, mse_dA, canonical=False),
        Head("tanh_mse", tanh, tanh_prime, mse_loss, mse_dA, canonical=False),
        Head("linear_l1", identity, None, l1_loss, l1_dA, canonical=False, has_kink=True),
        Head("linear_huber", identity, None, huber_loss, huber_dA, canonical=False),
    )
}
