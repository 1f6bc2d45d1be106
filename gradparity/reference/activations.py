"""Hidden and output activations: each forward next to its derivative g'(Z).

Every function takes ``z`` of any shape (here ``(n_l, m)``) and returns an array of the
same shape and dtype. Derivatives are written from Z in forms that keep their relative
accuracy for large ``|z|`` (e.g. sigmoid' as ``e^{-|z|} / (1 + e^{-|z|})^2`` rather than
``s (1 - s)``).

Non-differentiable points ("kinks") are explicit: `Activation.kinks` lists them, and the
derivative used *at* a kink is a parameter, so that a framework's convention (relu'(0),
leaky_relu'(0)) can be reproduced exactly and named in reports. The reference's own
convention is the seed document's: relu'(0) = 0; leaky_relu'(0) = the negative slope.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gradparity.spec import ELU_ALPHA, LEAKY_SLOPE

Array = np.ndarray

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_C = 0.044715
_erf = np.frompyfunc(math.erf, 1, 1)


def _like(z: Array, value: float | Array) -> Array:
    return np.asarray(value, dtype=z.dtype)


# -- sigmoid family (also used by the heads) ----------------------------------------------
def sigmoid(z: Array) -> Array:
    """1 / (1 + e^{-z}), evaluated without overflow for either sign of z."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


def sigmoid_prime(z: Array) -> Array:
    """sigmoid'(z) = e^{-|z|} / (1 + e^{-|z|})^2 (accurate where s (1 - s) cancels)."""
    e = np.exp(-np.abs(z))
    return (e / ((1.0 + e) * (1.0 + e))).astype(z.dtype, copy=False)


def tanh_prime(z: Array) -> Array:
    """tanh'(z) = sech^2(z) = (2 e^{-|z|} / (1 + e^{-2|z|}))^2."""
    e = np.exp(-np.abs(z))
    s = 2.0 * e / (1.0 + e * e)
    return (s * s).astype(z.dtype, copy=False)


# -- the activations, forward and derivative side by side ---------------------------------
def relu(z: Array) -> Array:
    return np.maximum(z, _like(z, 0.0))


def relu_prime(z: Array, at_kink: float = 0.0) -> Array:
    return np.where(z > 0, 1.0, np.where(z < 0, 0.0, at_kink)).astype(z.dtype)


def leaky_relu(z: Array) -> Array:
    return np.where(z > 0, z, _like(z, LEAKY_SLOPE) * z)


def leaky_relu_prime(z: Array, at_kink: float = LEAKY_SLOPE) -> Array:
    return np.where(z > 0, 1.0, np.where(z < 0, LEAKY_SLOPE, at_kink)).astype(z.dtype)


def tanh(z: Array) -> Array:
    return np.tanh(z)


def identity(z: Array) -> Array:
    return z.copy()


def identity_prime(z: Array) -> Array:
    return np.ones_like(z)


def softplus(z: Array) -> Array:
    """log(1 + e^z) = max(z, 0) + log1p(e^{-|z|})."""
    return np.maximum(z, _like(z, 0.0)) + np.log1p(np.exp(-np.abs(z)))


def elu(z: Array) -> Array:
    return np.where(z > 0, z, _like(z, ELU_ALPHA) * np.expm1(np.minimum(z, _like(z, 0.0))))


def elu_prime(z: Array) -> Array:
    # alpha = 1: both one-sided derivatives at 0 are 1, so 0 is not a kink.
    return np.where(z > 0, _like(z, 1.0), _like(z, ELU_ALPHA) * np.exp(np.minimum(z, 0)))


def silu(z: Array) -> Array:
    return z * sigmoid(z)


def silu_prime(z: Array) -> Array:
    """d/dz z s(z) = s(z) + z s'(z)."""
    return sigmoid(z) + z * sigmoid_prime(z)


def _phi_cdf(z: Array) -> Array:
    return (0.5 * (1.0 + _erf(z * _INV_SQRT_2).astype(np.float64))).astype(z.dtype)


def gelu(z: Array) -> Array:
    """Exact GELU: z * Phi(z), Phi the standard normal CDF (erf form)."""
    return z * _phi_cdf(z)


def gelu_prime(z: Array) -> Array:
    """Phi(z) + z phi(z)."""
    pdf = (_INV_SQRT_2PI * np.exp(-0.5 * z * z)).astype(z.dtype)
    return _phi_cdf(z) + z * pdf


def gelu_tanh(z: Array) -> Array:
    """Tanh approximation: 0.5 z (1 + tanh(sqrt(2/pi) (z + 0.044715 z^3)))."""
    u = _SQRT_2_OVER_PI * (z + _GELU_C * z * z * z)
    return 0.5 * z * (1.0 + np.tanh(u))


def gelu_tanh_prime(z: Array) -> Array:
    u = _SQRT_2_OVER_PI * (z + _GELU_C * z * z * z)
    t = np.tanh(u)
    du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_C * z * z)
    return 0.5 * (1.0 + t) + 0.5 * z * tanh_prime(u) * du


@dataclass(frozen=True)
class Activation:
    """An element-wise activation g with its derivative g'.

    ``kinks`` lists the points where g is not differentiable; ``kink_derivative`` is the
    value the reference uses there (overridable per call through ``at_kink``).
    """

    name: str
    forward: Callable[[Array], Array]
    derivative: Callable[..., Array]
    kinks: tuple[float, ...] = ()
    kink_derivative: float | None = None

    def prime(self, z: Array, at_kink: float | None = None) -> Array:
        """g'(z); at a kink, ``at_kink`` (default: the reference convention)."""
        if not self.kinks:
            return self.derivative(z)
        value = self.kink_derivative if at_kink is None else at_kink
        return self.derivative(z, value)

    def at_kink(self, z: Array) -> Array:
        """Boolean mask of the elements of ``z`` exactly at a kink."""
        mask = np.zeros(z.shape, dtype=bool)
        for k in self.kinks:
            mask |= z == k
        return mask


ACTIVATION_FUNCS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("relu", relu, relu_prime, kinks=(0.0,), kink_derivative=0.0),
        Activation("leaky_relu", leaky_relu, leaky_relu_prime, kinks=(0.0,),
                   kink_derivative=LEAKY_SLOPE),
        Activation("sigmoid", sigmoid, sigmoid_prime),
        Activation("tanh", tanh, tanh_prime),
        Activation("identity", identity, identity_prime),
        Activation("softplus", softplus, sigmoid),
        Activation("elu", elu, elu_prime),
        Activation("silu", silu, silu_prime),
        Activation("gelu", gelu, gelu_prime),
        Activation("gelu_tanh", gelu_tanh, gelu_tanh_prime),
    )
}
