"""Independent numerical derivatives of J, to verify the reference's backprop.

Two methods, both in double precision and never involving another framework:

* **Finite differences** of the reference's own J (`forward_propagation` + `compute_loss`),
  central (second order) or Richardson-extrapolated (fourth order)::

      central:    (f(x + h) - f(x - h)) / (2h)
      richardson: (f(x - 2h) - 8 f(x - h) + 8 f(x + h) - f(x + 2h)) / (12h)

  with ``h = h0 * max(1, |x|)`` per element. This checks backprop against the forward it
  claims to differentiate.
* **Complex step**: ``Im J(x + i h) / h`` with ``h = 1e-30 * max(1, |x|)``, on a *second*,
  deliberately plain definition of J written here (textbook formulas, branches of
  piecewise functions chosen on the real part; the erf ``gelu`` is not supported). No
  subtraction, so the result is accurate to rounding; and because that J is written
  independently, it also checks the reference's forward.

Both return the keys and shapes of `backpropagation`: ``dWl (n_l, n_{l-1})``,
``dbl (n_l, 1)``, ``dZl (n_l, m)`` for ``l = 1..L``, ``dAl (n_l, m)`` for ``l = 0..L-1``
(``dA0`` is dJ/dX) and, for ``probs`` loss forms, ``dAL``. A derivative with respect to an
intermediate Z[l] or A[l] treats J as a function of that array alone: the forward is re-run
from it (`forward_from`), the layers before it left as they are. J as a function of A[L] is
the *composed* loss (the loss of the output activation's values, `output_loss`); its steps
scale with the distance of A[L] to the log's singularity, and where an output rounded to
exactly 0 or 1 under a log that derivative is undefined (NaN). The reference computes
dA[L] from Z[L] instead, so there it has a value the numerical methods cannot confirm.

Finite differences assume J is smooth over the stencil ``x +- 2h``. `finite_difference`
reports, per element, whether any stencil point changed a branch of a piecewise function
(`branch_signature`: relu/leaky_relu kinks and elu's second-derivative jump at Z = 0, the L1
residual at 0, the Huber residual at ``|r| = delta``), so that a mismatch there can be
explained rather than mistaken for a backprop bug.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradparity.core.spec import ACTIVATIONS, ELU_ALPHA, HEADS, HUBER_DELTA, LEAKY_SLOPE
from gradparity.reference.activations import ACTIVATION_FUNCS
from gradparity.reference.case import Case
from gradparity.reference.heads import HEAD_FUNCS
from gradparity.reference.mlp import compute_loss, forward_propagation

Array = np.ndarray

#: Default relative step ``h0`` per method. Central: ``eps^(1/3) ~ 6e-6`` balances the
#: truncation error ``h^2 |f'''| / 6`` against rounding ``~ eps |J| / h`` in float64.
#: Richardson: ``eps^(1/5) ~ 7e-4`` would balance ``h^4 |f^(5)| / 30`` against rounding, but
#: 3e-4 is as accurate on these nets (truncation stays far below rounding) and narrows the
#: stencil ``x +- 2h``, so that fewer stencils straddle a kink.
DEFAULT_STEPS: dict[str, float] = {"central": 6e-6, "richardson": 3e-4}

#: Finite-difference stencils as ``(k, w)`` pairs: ``f'(x) ~ sum w (f(x + kh) - f(x - kh)) / h``.
STENCILS: dict[str, tuple[tuple[int, float], ...]] = {
    "central": ((1, 1.0 / 2.0),),
    "richardson": ((1, 8.0 / 12.0), (2, -1.0 / 12.0)),
}

#: Hidden activations with a branch point at Z = 0 (relu, leaky_relu: kink in g; elu with
#: alpha = 1: g is C^1 but g'' jumps from 1 to 0, which spoils higher-order stencils).
BRANCHED_ACTIVATIONS: tuple[str, ...] = ("relu", "leaky_relu", "elu")

#: Hidden activations the complex-safe J supports (NumPy has no complex erf).
COMPLEX_STEP_ACTIVATIONS: tuple[str, ...] = tuple(a for a in ACTIVATIONS if a != "gelu")

COMPLEX_STEP_H = 1e-30


# -- J of the reference, from any point of the forward -------------------------------------
def forward_from(
    A: Array, start: int, parameters: Mapping[str, Array], activation: str, head: str
) -> dict[str, Array]:
    """Layers ``start+1 .. L`` of the reference forward, from a given ``A[start]``.

    Returns ``{"A{start}": A, "Z{start+1}": ..., ..., "AL": ...}``; with ``start = 0`` it is
    `forward_propagation`'s cache.
    """
    L = len(parameters) // 2
    g = ACTIVATION_FUNCS[activation]
    out = {f"A{start}": A}
    for layer in range(start + 1, L + 1):
        Z = parameters[f"W{layer}"] @ A + parameters[f"b{layer}"]
        A = HEAD_FUNCS[head].forward(Z) if layer == L else g.forward(Z)
        out[f"Z{layer}"] = Z
        out[f"A{layer}"] = A
    return out


def output_loss(AL: Any, Y: Array, head: str) -> Any:
    """J as a function of A[L]: the composed loss, ``(1/m) sum loss(A[L], Y)``.

    Plain formulas (real or complex ``AL``): MSE ``r^2 / 2``, BCE
    ``-(y log a + (1 - y) log(1 - a))``, CE ``-sum y log a``, L1 ``sign(Re r) r``, Huber with
    its branch chosen on ``|Re r|``. (The reference's `compute_loss` evaluates BCE and CE
    from Z[L], so it cannot be perturbed in A[L].)
    """
    return output_loss_terms(AL, Y, head).sum() / Y.shape[1]


def output_loss_terms(AL: Any, Y: Array, head: str) -> Any:
    """The per-element terms of `output_loss` (``0 log 0`` taken as 0), shape of ``AL``."""
    loss = HEADS[head].loss
    if loss == "mse":
        r = AL - Y
        per = 0.5 * r * r
    elif loss == "bce":
        with np.errstate(divide="ignore", invalid="ignore"):  # masked by the where
            per = (np.where(Y != 0, -Y * np.log(AL), 0.0)
                   + np.where(Y != 1, -(1.0 - Y) * np.log(1.0 - AL), 0.0))
    elif loss == "ce":
        with np.errstate(divide="ignore", invalid="ignore"):
            per = np.where(Y != 0, -Y * np.log(AL), 0.0)
    elif loss == "l1":
        r = AL - Y
        per = np.sign(np.real(r)) * r
    elif loss == "huber":
        r = AL - Y
        s = np.sign(np.real(r))
        per = np.where(np.abs(np.real(r)) <= HUBER_DELTA, 0.5 * r * r,
                       HUBER_DELTA * (s * r - 0.5 * HUBER_DELTA))
    else:  # pragma: no cover - HEADS and this function list the same losses
        raise ValueError(f"unknown loss {loss!r}")
    return per


def _finite_output_loss(AL: Any, Y: Array, head: str) -> Any:
    """`output_loss` without its non-finite terms.

    The composed loss is a sum of one term per element of A[L], so the terms of the other
    elements are constants while one element is perturbed; dropping the infinite ones
    (outputs that rounded to exactly 0 or 1) keeps the other derivatives defined.
    """
    terms = output_loss_terms(AL, Y, head)
    return np.where(np.isfinite(terms), terms, 0.0).sum() / Y.shape[1]


def branch_signature(cache: Mapping[str, Array], Y: Array, activation: str,
                     head: str) -> Array:
    """Which side of every branch point the forward is on, as one flat boolean array.

    Hidden ``Z > 0`` for `BRANCHED_ACTIVATIONS`; the residual ``r > 0`` for L1 and
    ``|r| <= delta`` for Huber. Real parts are used, so complex caches work too.
    """
    L = (len(cache) - 1) // 2
    parts: list[Array] = []
    if activation in BRANCHED_ACTIVATIONS:
        parts += [np.real(cache[f"Z{layer}"]) > 0 for layer in range(1, L)]
    loss = HEADS[head].loss
    if loss in ("l1", "huber"):
        r = np.real(cache[f"A{L}"] - Y)
        parts.append(r > 0 if loss == "l1" else np.abs(r) <= HUBER_DELTA)
    if not parts:
        return np.zeros(0, dtype=bool)
    return np.concatenate([p.ravel() for p in parts])


# -- what to differentiate: one entry per gradient key --------------------------------------
@dataclass(frozen=True)
class _Net:
    """One definition of J: a forward from X, a forward from A[l] or Z[l], and the loss."""

    full: Callable[[Array, Mapping[str, Array]], dict[str, Array]]  # (X, params) -> cache
    hidden: Callable[[Array], Array]  # g(Z) of the hidden layers
    output: Callable[[Array], Array]  # output activation of layer L
    tail: Callable[[Array, int], dict[str, Array]]  # (A[l], l) -> layers l+1..L
    loss: Callable[[Mapping[str, Array]], Any]  # full cache -> J
    loss_of_output: Callable[[Array], Any]  # A[L] -> J (composed)


@dataclass(frozen=True)
class _Target:
    key: str
    x0: Array
    evaluate: Callable[[Array], dict[str, Array]]  # value -> (partial) cache
    objective: Callable[[Mapping[str, Array]], Any]  # full cache -> J
    #: per-element length scale of the step (h = h0 * scale); default max(1, |x|)
    scale: Array | None = None

    def step_scale(self) -> Array:
        if self.scale is not None:
            return self.scale
        return np.maximum(1.0, np.abs(np.real(self.x0)))


def _targets(case: Case, net: _Net, base: Mapping[str, Array], X: Array,
             params: Mapping[str, Array]) -> list[_Target]:
    """Every quantity backprop differentiates, with J as a function of it alone."""
    spec = case.spec
    L = spec.depth
    Y = np.asarray(case.Y, dtype=np.float64)
    targets: list[_Target] = []

    def with_param(name: str) -> Callable[[Array], dict[str, Array]]:
        return lambda v: net.full(X, {**params, name: v})

    def from_Z(layer: int) -> Callable[[Array], dict[str, Array]]:
        act = net.output if layer == L else net.hidden

        def run(Z: Array) -> dict[str, Array]:
            return {f"Z{layer}": Z, **net.tail(act(Z), layer)}
        return run

    def from_A(layer: int) -> Callable[[Array], dict[str, Array]]:
        return lambda A: net.tail(A, layer)

    def output_objective(cache: Mapping[str, Array]) -> Any:
        return net.loss_of_output(cache[f"A{L}"])  # the composed loss of A[L]

    for layer in range(1, L + 1):
        for name in (f"W{layer}", f"b{layer}"):
            targets.append(_Target(f"d{name}", params[name], with_param(name), net.loss))
    targets.append(_Target("dA0", X, lambda v: net.full(v, params), net.loss))
    for layer in range(1, L + 1):
        targets.append(_Target(f"dZ{layer}", base[f"Z{layer}"], from_Z(layer), net.loss))
        if layer < L:
            targets.append(_Target(f"dA{layer}", base[f"A{layer}"], from_A(layer), net.loss))
    if spec.loss_form == "probs":
        AL = base[f"A{L}"]
        targets.append(_Target(f"dA{L}", AL, from_A(L), output_objective,
                               _output_scale(HEADS[spec.head].loss, np.real(AL), Y)))
    return targets


def _output_scale(loss: str, a: Array, Y: Array) -> Array:
    """Step scale for A[L] of a composed loss: the distance to the log's singularity.

    ``log a`` has derivatives of order ``k! / a^k``, so a step of ``h0 * max(1, |a|)``
    would swamp a probability of 0.01. The scale is ``a`` where the loss has ``y log a``
    (``y != 0``), ``1 - a`` where BCE has ``(1 - y) log(1 - a)`` (``y != 1``), the smaller
    if both; otherwise 1. Relative truncation is then ``~ h0^2`` or ``h0^4`` as for any other
    element; the complex step is scaled the same way (it needs ``h << a``). A scale of 0 (an
    output that rounded to exactly 0 or 1 under a log) leaves the derivative of the composed
    loss undefined: NaN.
    """
    if loss not in ("bce", "ce"):
        return np.maximum(1.0, np.abs(a))
    scale = np.ones_like(a)
    scale = np.where(Y != 0, np.minimum(scale, np.abs(a)), scale)
    if loss == "bce":
        scale = np.where(Y != 1, np.minimum(scale, np.abs(1.0 - a)), scale)
    return scale


# -- finite differences of the reference's J ---------------------------------------------
def _reference_net(case: Case, Y: Array) -> tuple[_Net, Array, dict[str, Array]]:
    spec = case.spec
    act, head = spec.activation, spec.head
    X = np.asarray(case.X, dtype=np.float64)
    params = {k: np.asarray(v, dtype=np.float64) for k, v in case.parameters.items()}

    def full(X_: Array, p: Mapping[str, Array]) -> dict[str, Array]:
        return forward_propagation(X_, p, act, head)[1]

    net = _Net(
        full=full,
        hidden=ACTIVATION_FUNCS[act].forward,
        output=HEAD_FUNCS[head].forward,
        tail=lambda A, layer: forward_from(A, layer, params, act, head),
        loss=lambda cache: float(compute_loss(cache, Y, head)),
        loss_of_output=lambda AL: float(_finite_output_loss(AL, Y, head)),
    )
    return net, X, params


@dataclass
class FiniteDifference:
    """Finite-difference gradients, and where a stencil crossed a branch point.

    ``crossings[key]`` is a boolean array shaped like ``grads[key]``: True where some point
    of the stencil for that element lies on the other side of a branch point
    (`branch_signature`) than the unperturbed forward; there the finite difference does
    not estimate the derivative backprop computes.
    """

    grads: dict[str, Array]
    crossings: dict[str, Array]
    method: str
    h: float
    loss: float = field(default=float("nan"))

    def crossed(self) -> dict[str, list[tuple[int, ...]]]:
        """The elements whose stencil crossed a branch point, per key (empty if none)."""
        return {k: [tuple(int(i) for i in ix) for ix in np.argwhere(v)]
                for k, v in self.crossings.items() if v.any()}


def finite_difference(case: Case, *, method: str = "central",
                      h: float | None = None) -> FiniteDifference:
    """Finite-difference derivatives of the reference J, in float64, with branch bookkeeping.

    Args:
        case: the case; its arrays are promoted to float64 (finite differences in float32
            would measure rounding, not derivatives).
        method: ``"central"`` (O(h^2)) or ``"richardson"`` (O(h^4)).
        h: relative step ``h0``; the step for element ``x`` is ``h0 * max(1, |x|)``
            (for A[L] of a composed BCE/CE loss ``h0`` times the distance to 0 or 1, see
            `_output_scale`). Defaults to `DEFAULT_STEPS`.
    """
    if method not in STENCILS:
        raise ValueError(f"method must be one of {', '.join(STENCILS)}, not {method!r}")
    h0 = DEFAULT_STEPS[method] if h is None else float(h)
    if not h0 > 0:
        raise ValueError(f"step h must be positive, not {h!r}")
    spec = case.spec
    Y = np.asarray(case.Y, dtype=np.float64)
    net, X, params = _reference_net(case, Y)

    def signature(cache: Mapping[str, Array]) -> Array:
        return branch_signature(cache, Y, spec.activation, spec.head)

    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        base = net.full(X, params)
        base_sig = signature(base)
        grads: dict[str, Array] = {}
        crossings: dict[str, Array] = {}
        for t in _targets(case, net, base, X, params):
            grad = np.empty(t.x0.shape, dtype=np.float64)
            crossed = np.zeros(t.x0.shape, dtype=bool)
            scale = t.step_scale()
            for idx in np.ndindex(t.x0.shape):
                step = h0 * float(scale[idx])
                if step == 0.0:  # an output rounded to 0 or 1 under a log: undefined
                    grad[idx] = np.nan
                    continue
                total = 0.0
                for k, w in STENCILS[method]:
                    diff = 0.0
                    for sign in (1.0, -1.0):
                        x = t.x0.copy()
                        x[idx] += sign * k * step
                        cache = {**base, **t.evaluate(x)}
                        diff += sign * t.objective(cache)
                        crossed[idx] |= not np.array_equal(signature(cache), base_sig)
                    total += w * diff
                grad[idx] = total / step
            grads[t.key] = grad
            crossings[t.key] = crossed
        loss = net.loss(base)
    return FiniteDifference(grads=grads, crossings=crossings, method=method, h=h0, loss=loss)


def numerical_gradients(case: Case, *, method: str = "central",
                        h: float | None = None) -> dict[str, Array]:
    """Finite-difference derivatives of J, keyed and shaped like `backpropagation`.

    See `finite_difference` (which also reports stencils that crossed a branch point).
    """
    return finite_difference(case, method=method, h=h).grads


# -- a second, complex-safe definition of J ------------------------------------------------
def _c_sigmoid(z: Array) -> Array:
    return 1.0 / (1.0 + np.exp(-z))


def _c_relu(z: Array) -> Array:
    return np.where(np.real(z) > 0, z, 0.0 * z)


def _c_leaky_relu(z: Array) -> Array:
    return np.where(np.real(z) > 0, z, LEAKY_SLOPE * z)


def _c_identity(z: Array) -> Array:
    return z


def _c_softplus(z: Array) -> Array:
    return np.log(1.0 + np.exp(z))


def _c_elu(z: Array) -> Array:
    return np.where(np.real(z) > 0, z, ELU_ALPHA * (np.exp(z) - 1.0))


def _c_silu(z: Array) -> Array:
    return z * _c_sigmoid(z)


def _c_gelu_tanh(z: Array) -> Array:
    return 0.5 * z * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (z + 0.044715 * z ** 3)))


def _c_softmax(z: Array) -> Array:
    e = np.exp(z - np.real(z).max(axis=0, keepdims=True))  # a real shift keeps it analytic
    return e / e.sum(axis=0, keepdims=True)


def _c_logsumexp(z: Array) -> Array:
    mx = np.real(z).max(axis=0, keepdims=True)
    return mx + np.log(np.exp(z - mx).sum(axis=0, keepdims=True))


_C_HIDDEN: dict[str, Callable[[Array], Array]] = {
    "relu": _c_relu,
    "leaky_relu": _c_leaky_relu,
    "sigmoid": _c_sigmoid,
    "tanh": np.tanh,
    "identity": _c_identity,
    "softplus": _c_softplus,
    "elu": _c_elu,
    "silu": _c_silu,
    "gelu_tanh": _c_gelu_tanh,
}
assert tuple(_C_HIDDEN) == COMPLEX_STEP_ACTIVATIONS

_C_OUTPUT: dict[str, Callable[[Array], Array]] = {
    "identity": _c_identity,
    "sigmoid": _c_sigmoid,
    "softmax": _c_softmax,
    "tanh": np.tanh,
}


def _c_fused_loss(ZL: Array, AL: Array, Y: Array, head: str) -> Any:
    """J from Z[L]: BCE ``softplus(z) - y z``, CE ``logsumexp(z) - y . z``; else of A[L]."""
    m = Y.shape[1]
    loss = HEADS[head].loss
    if loss == "bce":
        return (_c_softplus(ZL) - Y * ZL).sum() / m
    if loss == "ce":
        return (Y * (_c_logsumexp(ZL) - ZL)).sum() / m
    return output_loss(AL, Y, head)  # mse, l1, huber: functions of A[L] only


def _check_complex_safe(activation: str) -> None:
    if activation not in _C_HIDDEN:
        raise NotImplementedError(
            f"complex step: activation {activation!r} is not complex-safe with NumPy"
            + (" (the exact GELU needs erf of a complex argument, which NumPy lacks; use"
               " 'gelu_tanh' or finite differences)" if activation == "gelu" else "")
            + f"; supported: {', '.join(COMPLEX_STEP_ACTIVATIONS)}"
        )


def _complex_net(case: Case, Y: Array) -> tuple[_Net, Array, dict[str, Array]]:
    spec = case.spec
    _check_complex_safe(spec.activation)
    L = spec.depth
    hidden = _C_HIDDEN[spec.activation]
    output = _C_OUTPUT[HEADS[spec.head].output]
    X = np.asarray(case.X, dtype=np.complex128)
    params = {k: np.asarray(v, dtype=np.complex128) for k, v in case.parameters.items()}

    def tail(A: Array, start: int, p: Mapping[str, Array] = params) -> dict[str, Array]:
        out = {f"A{start}": A}
        for layer in range(start + 1, L + 1):
            Z = p[f"W{layer}"] @ A + p[f"b{layer}"]
            A = output(Z) if layer == L else hidden(Z)
            out[f"Z{layer}"], out[f"A{layer}"] = Z, A
        return out

    def loss(cache: Mapping[str, Array]) -> Any:
        return _c_fused_loss(cache[f"Z{L}"], cache[f"A{L}"], Y, spec.head)

    net = _Net(
        full=lambda X_, p: tail(X_, 0, p),
        hidden=hidden,
        output=output,
        tail=tail,
        loss=loss,
        loss_of_output=lambda AL: _finite_output_loss(AL, Y, spec.head),
    )
    return net, X, params


def complex_safe_loss(case: Case) -> complex:
    """The complex-safe J at the case's values (its real part is J in float64).

    BCE and CE are evaluated from Z[L] in both loss forms (the value of J does not depend
    on the form, and ``log(1 - a)`` of a rounded ``a`` would lose it near saturation); only
    dJ/dA[L] uses the composed loss of A[L] (`output_loss`).
    """
    Y = np.asarray(case.Y, dtype=np.float64)
    net, X, params = _complex_net(case, Y)
    with np.errstate(over="ignore", under="ignore", divide="ignore"):
        return complex(net.loss(net.full(X, params)))


def complex_step_gradients(case: Case, *, h: float = COMPLEX_STEP_H) -> dict[str, Array]:
    """Derivatives of the complex-safe J by complex step: ``Im J(x + i h) / h``.

    The step is ``h * max(1, |x|)`` (for A[L] of a composed BCE/CE loss ``h`` times the
    distance to 0 or 1, see `_output_scale`); any tiny step works, the scaling only keeps
    ``h << |x|`` where the function has a singularity near 0.

    Accurate to rounding (no subtraction) for every smooth J; piecewise functions take
    their branch from the real part, which the imaginary step does not move, so the
    derivative there is the one-sided derivative of the branch the point is on.

    Raises:
        NotImplementedError: for activations outside `COMPLEX_STEP_ACTIVATIONS` (``gelu``).
    """
    Y = np.asarray(case.Y, dtype=np.float64)
    net, X, params = _complex_net(case, Y)
    grads: dict[str, Array] = {}
    with np.errstate(over="ignore", under="ignore", divide="ignore", invalid="ignore"):
        base = net.full(X, params)
        for t in _targets(case, net, base, X, params):
            grad = np.empty(t.x0.shape, dtype=np.float64)
            scale = t.step_scale()
            for idx in np.ndindex(t.x0.shape):
                step = h * float(scale[idx])
                if step == 0.0:  # an output rounded to 0 or 1 under a log: undefined
                    grad[idx] = np.nan
                    continue
                x = t.x0.copy()
                x[idx] += 1j * step
                grad[idx] = np.imag(t.objective({**base, **t.evaluate(x)})) / step
            grads[t.key] = grad
    return grads
