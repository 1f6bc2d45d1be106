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
* ``saturated(A, Y)`` marks outputs where a composed loss (log of A) cannot be evaluated
  as written: a sigmoid output within `SATURATION_P` of 0 or 1, or a softmax probability
  of a target class below it. Frameworks clamp there (torch's BCE divides by
  ``max(A (1 - A), 1e-12)`` and takes logs no lower than -100) or return inf/NaN, and in
  float32 such outputs are often exactly 0 or 1.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gradparity.core.spec import HUBER_DELTA
from gradparity.reference.activations import (
    identity,
    sigmoid,
    sigmoid_prime,
    tanh,
    tanh_prime,
)

Array = np.ndarray

#: Probability below which a composed loss is saturated (torch's BCE clamp is 1e-12).
SATURATION_P = 1e-12


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


def bce_dA(z: Array, a: Array, y: Array, m: int, from_outputs: bool = False) -> Array:
    """(A - Y) / (A (1 - A)) / m, with A - Y and A(1 - A) both evaluated from Z."""
    a_minus_y = (1.0 - y) * sigmoid(z) - y * sigmoid(-z)
    with np.errstate(divide="ignore", over="ignore"):
        return a_minus_y / sigmoid_prime(z, from_outputs) / m


def bce_dA_condition(z: Array, a: Array) -> Array:
    """Relative error, in eps, of dA = (A - Y) / (A (1 - A)) as frameworks evaluate it.

    From the rounded A: A and 1 - A each carry an absolute error of eps/2, so about
    1 / min(A, 1 - A). From Z (each backend's Z differs by its own rounding, of relative
    size eps): d log|dA| / dz is at most 1 in size, so |z|. Infinite where A is 0 or 1.
    """
    a64 = a.astype(np.float64)
    with np.errstate(divide="ignore"):
        return 1.0 / np.minimum(a64, 1.0 - a64) + np.abs(z.astype(np.float64)) + 1.0


def ce_dA_condition(z: Array, a: Array) -> Array:
    """Relative error, in eps, of dA = -Y / A as frameworks evaluate it: A = exp(z_k - lse)
    is conditioned by |z_k| + |lse| <= |z_k| + max|z| + log(n) w.r.t. the rounding of Z and
    of the shift; the division adds one rounding."""
    z64 = np.abs(z.astype(np.float64))
    return z64 + z64.max(axis=0, keepdims=True) + np.log(z.shape[0]) + 2.0


def ce_loss(z: Array, a: Array, y: Array, m: int) -> Array:
    """sum_k y_k (logsumexp(z) - z_k)."""
    return _sum_over_m(y * (logsumexp(z) - z), m)


def ce_dA(z: Array, a: Array, y: Array, m: int) -> Array:
    """-Y / A / m with 1/A = exp(logsumexp(z) - z); zero where Y is zero."""
    with np.errstate(over="ignore"):
        inv_a = np.exp(logsumexp(z) - z)
    with np.errstate(invalid="ignore"):
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
    output_prime: Callable[..., Array] | None
    loss: Callable[[Array, Array, Array, int], Array]
    dA_fn: Callable[..., Array]
    canonical: bool
    has_kink: bool = False  # L1: |r| at r = 0
    dA_condition: Callable[[Array, Array], Array] | None = None
    dA_output_form: bool = False  # dA uses sigmoid' (see `Activation.output_form`)

    def forward(self, z: Array) -> Array:
        return self.output(z)

    def dA(self, z: Array, a: Array, y: Array, m: int, at_kink: float | None = None, *,
           from_outputs: bool = False) -> Array:
        """dJ/dA[L], shape ``(n_L, m)``; ``from_outputs``: output-form derivatives."""
        if self.has_kink:
            return self.dA_fn(z, a, y, m, 0.0 if at_kink is None else at_kink)
        if self.dA_output_form:
            return self.dA_fn(z, a, y, m, from_outputs)
        return self.dA_fn(z, a, y, m)

    def dZ(self, z: Array, a: Array, y: Array, m: int, at_kink: float | None = None, *,
           from_outputs: bool = False) -> Array:
        """dJ/dZ[L], shape ``(n_L, m)``: (A - Y)/m for canonical pairs, else dA * g'(Z)."""
        if self.canonical:
            if self.name == "sigmoid_bce":
                # A - Y from Z, so that A rounded to 1 does not cancel away Y = 1 errors.
                return ((1.0 - y) * sigmoid(z) - y * sigmoid(-z)) / m
            if self.name == "softmax_ce":
                # For a one-hot target, A_k - 1 = -(sum of the other probabilities): no
                # cancellation when A_k is close to (or rounded to) 1.
                others = np.where(y == 1, 0.0, a).sum(axis=0, keepdims=True)
                return np.where(y == 1, -others, a - y).astype(z.dtype) / m
            return (a - y) / m
        da = self.dA(z, a, y, m, at_kink, from_outputs=from_outputs)
        return da if self.output_prime is None else da * self.output_prime(z, from_outputs)

    def dA_rounding_budget(self, z: Array, a: Array) -> Array | None:
        """Relative error, in units of eps, that dA[L] carries when a framework evaluates
        it from its own rounded Z[L] and A[L] (composed losses); ``None`` if negligible."""
        return None if self.dA_condition is None else self.dA_condition(z, a)

    def kink_mask(self, a: Array, y: Array) -> Array:
        """Outputs whose loss sits exactly at a kink (a zero L1 residual)."""
        if not self.has_kink:
            return np.zeros(a.shape, dtype=bool)
        return a == y

    def saturated(self, a: Array, y: Array) -> Array:
        """Outputs, ``(n_L, m)``, where a composed loss saturates (see module doc)."""
        if self.output is sigmoid:
            a64 = a.astype(np.float64)
            return np.minimum(a64, 1.0 - a64) <= SATURATION_P
        if self.output is softmax:
            # a target class near 0, or any class in the subnormal range (flushed to zero
            # by some backends, where log's derivative is then 0 * inf)
            return ((y != 0) & (a <= SATURATION_P)) | (a < np.finfo(a.dtype).tiny)
        return np.zeros(a.shape, dtype=bool)


HEAD_FUNCS: dict[str, Head] = {
    h.name: h
    for h in (
        Head("linear_mse", identity, None, mse_loss, mse_dA, canonical=True),
        Head("sigmoid_bce", sigmoid, sigmoid_prime, bce_loss, bce_dA, canonical=True,
             dA_condition=bce_dA_condition, dA_output_form=True),
        Head("softmax_ce", softmax, None, ce_loss, ce_dA, canonical=True,
             dA_condition=ce_dA_condition),
        Head("sigmoid_mse", sigmoid, sigmoid_prime, mse_loss, mse_dA, canonical=False),
        Head("tanh_mse", tanh, tanh_prime, mse_loss, mse_dA, canonical=False),
        Head("linear_l1", identity, None, l1_loss, l1_dA, canonical=False, has_kink=True),
        Head("linear_huber", identity, None, huber_loss, huber_dA, canonical=False),
    )
}
