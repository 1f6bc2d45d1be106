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

from gradparity.core.spec import ELU_ALPHA, LEAKY_SLOPE

Array = np.ndarray

_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_INV_SQRT_2 = 1.0 / math.sqrt(2.0)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_GELU_C = 0.044715
_erf_double = np.frompyfunc(math.erf, 1, 1)


def _erf_extended(x: Array) -> Array:
    """erf in the precision of ``x`` (for ``np.longdouble`` oracles), vectorised.

    |x| <= 6: erf(x) = 2/sqrt(pi) e^{-x^2} sum_n 2^n x^{2n+1} / (1*3*...*(2n+1)); every term
    is positive, so there is no cancellation (at most ~140 terms, fixed count).
    |x| > 6: erf(x) = sign(x) (1 - erfc(|x|)), erfc < 2e-17, from its asymptotic series
    (four terms: relative error < 1e-9 on erfc, far below the dtype's eps on erf).
    """
    dt = x.dtype
    ax = np.abs(x)
    small = np.minimum(ax, dt.type(6))
    x2 = small * small
    term = small.copy()
    total = small.copy()
    for n in range(1, 160):
        term = term * (2 * x2) / dt.type(2 * n + 1)
        total = total + term
    two_over_sqrt_pi = dt.type(2) / np.sqrt(_PI_EXT.astype(dt))
    series = two_over_sqrt_pi * np.exp(-x2) * total
    big = np.maximum(ax, dt.type(6))
    inv = dt.type(1) / (2 * big * big)
    erfc = np.exp(-big * big) / (big * np.sqrt(_PI_EXT.astype(dt))) * (
        1 - inv + 3 * inv * inv - 15 * inv * inv * inv)
    return np.sign(x) * np.where(ax <= 6, series, 1 - erfc)


#: pi to the precision of np.longdouble (parsed from a decimal string).
_PI_EXT = np.array(np.longdouble("3.14159265358979323846264338327950288"))


def _erf(z: Array) -> Array:
    if np.finfo(z.dtype).eps < np.finfo(np.float64).eps:
        return _erf_extended(z)
    return _erf_double(z).astype(np.float64)


def _like(z: Array, value: float | Array) -> Array:
    return np.asarray(value, dtype=z.dtype)


# -- sigmoid family (also used by the heads) ----------------------------------------------
def sigmoid(z: Array) -> Array:
    """1 / (1 + e^{-z}), evaluated without overflow for either sign of z."""
    e = np.exp(-np.abs(z))
    return np.where(z >= 0, 1.0 / (1.0 + e), e / (1.0 + e)).astype(z.dtype, copy=False)


# ``from_outputs``: evaluate sigmoid' and tanh' the way autodiff frameworks do, from the
# rounded output: s (1 - s) and 1 - t^2 (also inside silu, gelu_tanh and the sigmoid/tanh
# heads). Their relative error grows like eps / g'(z) for large |z|; the judge uses this to
# recognise that rounding (never the reference's own values).
def sigmoid_prime(z: Array, from_outputs: bool = False) -> Array:
    """sigmoid'(z) = e^{-|z|} / (1 + e^{-|z|})^2 (accurate where s (1 - s) cancels)."""
    if from_outputs:
        s = sigmoid(z)
        return s * (1.0 - s)
    e = np.exp(-np.abs(z))
    return (e / ((1.0 + e) * (1.0 + e))).astype(z.dtype, copy=False)


def tanh_prime(z: Array, from_outputs: bool = False) -> Array:
    """tanh'(z) = sech^2(z) = (2 e^{-|z|} / (1 + e^{-2|z|}))^2."""
    if from_outputs:
        t = np.tanh(z)
        return 1.0 - t * t
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


def silu_prime(z: Array, from_outputs: bool = False) -> Array:
    """d/dz z s(z) = s(z) + z s'(z)."""
    return sigmoid(z) + z * sigmoid_prime(z, from_outputs)


def _phi_cdf(z: Array) -> Array:
    return (0.5 * (1.0 + _erf(z * _INV_SQRT_2))).astype(z.dtype)


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


def gelu_tanh_prime(z: Array, from_outputs: bool = False) -> Array:
    u = _SQRT_2_OVER_PI * (z + _GELU_C * z * z * z)
    t = np.tanh(u)
    du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _GELU_C * z * z)
    return 0.5 * (1.0 + t) + 0.5 * z * tanh_prime(u, from_outputs) * du


@dataclass(frozen=True)
class Activation:
    """An element-wise activation g with its derivative g'.

    ``kinks`` lists the points where g is not differentiable; ``kink_derivative`` is the
    value the reference uses there (overridable per call through ``at_kink``).
    ``output_form``: the derivative can also be taken from the rounded output, as autodiff
    does (``from_outputs``; sigmoid, tanh and the activations built on them).
    """

    name: str
    forward: Callable[[Array], Array]
    derivative: Callable[..., Array]
    kinks: tuple[float, ...] = ()
    kink_derivative: float | None = None
    output_form: bool = False

    def prime(self, z: Array, at_kink: float | None = None, *,
              from_outputs: bool = False) -> Array:
        """g'(z); at a kink, ``at_kink`` (default: the reference convention); with
        ``from_outputs``, in the output form where there is one."""
        if self.output_form:
            return self.derivative(z, from_outputs)
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
        Activation("sigmoid", sigmoid, sigmoid_prime, output_form=True),
        Activation("tanh", tanh, tanh_prime, output_form=True),
        Activation("identity", identity, identity_prime),
        Activation("softplus", softplus, sigmoid),
        Activation("elu", elu, elu_prime),
        Activation("silu", silu, silu_prime, output_form=True),
        Activation("gelu", gelu, gelu_prime),
        Activation("gelu_tanh", gelu_tanh, gelu_tanh_prime, output_form=True),
    )
}
