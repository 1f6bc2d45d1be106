"""`make_case`: the deterministic arrays of a spec, identical bits for every backend.

Everything is drawn in float64 from ``numpy.random.default_rng(spec.seed)`` and cast once
to the spec's dtype, so every backend starts from the same bits.

Regimes:
* ``normal``: X ~ N(0, 1); W ~ N(0, scale) by ``init``; b ~ N(0, 0.1^2).
* ``kinks``: small integers and halves for X and W, b = 0 and a zero example, so that
  pre-activations hit exact zeros (relu/leaky_relu kinks). With relu or identity hidden
  layers every product and sum is exact in both dtypes; for regression heads the targets
  of half the examples equal the output (zero residuals: the L1 kink). With other
  activations only the all-zero example is exact (when g(0) = 0), so only its targets are
  set equal to the output: a residual that is zero in one backend and a rounding error in
  another would be no kink at all.
* ``saturated``: the last layer is rescaled so output logits reach |Z[L]| ~ 50: sigmoid and
  softmax outputs round to exactly 0 or 1, the territory of composed-loss traps.
"""

from __future__ import annotations

import hashlib
import threading
import weakref
from dataclasses import dataclass
from typing import Any

import numpy as np

from gradparity.core.spec import HEADS, Spec

Array = np.ndarray

SATURATED_LOGIT = 50.0
#: Hidden activations computed exactly on dyadic data (every example of a kinks case).
EXACT_ACTIVATIONS = frozenset({"relu", "identity"})
#: Activations with g(0) = 0: the all-zero example of a kinks case is exactly 0 throughout.
ZERO_AT_ZERO = frozenset({"leaky_relu", "tanh", "elu", "silu", "gelu", "gelu_tanh"})


@dataclass(frozen=True)
class Case:
    """The arrays of one spec.

    Attributes:
        spec: the spec these arrays come from.
        X: inputs, ``(n0, m)``.
        Y: targets, ``(nL, m)`` (one-hot columns for ``softmax_ce``).
        parameters: ``{"W1": (n1, n0), "b1": (n1, 1), ...}``.
        labels: class indices ``(m,)`` for one-hot targets, else ``None``.
    """

    spec: Spec
    X: Array
    Y: Array
    parameters: dict[str, Array]
    labels: Array | None

    @property
    def dtype(self) -> np.dtype:
        return np.dtype(self.spec.dtype)

    @property
    def m(self) -> int:
        return self.spec.batch

    def astype(self, dtype: np.dtype | type | str) -> Case:
        """The same values in another (wider) dtype, e.g. for a higher-precision oracle.
        The spec keeps its working dtype: only the arrays change."""
        dt = np.dtype(dtype)
        return Case(spec=self.spec, X=self.X.astype(dt), Y=self.Y.astype(dt),
                    parameters={k: v.astype(dt) for k, v in self.parameters.items()},
                    labels=self.labels)


def _init_scale(spec: Spec, n_in: int, n_out: int) -> float:
    if spec.init == "he":
        return float(np.sqrt(2.0 / n_in))
    if spec.init == "xavier":
        return float(np.sqrt(2.0 / (n_in + n_out)))
    return 1.0


def _draw_parameters(spec: Spec, rng: np.random.Generator) -> dict[str, Array]:
    params: dict[str, Array] = {}
    for layer in range(1, spec.depth + 1):
        n_in, n_out = spec.sizes[layer - 1], spec.sizes[layer]
        if spec.regime == "kinks":
            params[f"W{layer}"] = rng.integers(-2, 3, size=(n_out, n_in)) * 0.5
            params[f"b{layer}"] = np.zeros((n_out, 1))
        else:
            params[f"W{layer}"] = rng.standard_normal((n_out, n_in)) * _init_scale(
                spec, n_in, n_out
            )
            params[f"b{layer}"] = rng.standard_normal((n_out, 1)) * 0.1
    return params


def _draw_inputs(spec: Spec, rng: np.random.Generator) -> Array:
    n0, m = spec.sizes[0], spec.batch
    if spec.regime == "kinks":
        X = rng.integers(-2, 3, size=(n0, m)).astype(np.float64)
        X[:, 0] = 0.0  # an all-zero example: Z = 0 exactly in every layer (b = 0)
        return X
    return rng.standard_normal((n0, m))


def _draw_targets(spec: Spec, rng: np.random.Generator) -> Array:
    n_out, m = spec.sizes[-1], spec.batch
    kind = HEADS[spec.head].targets
    if kind == "binary":
        return rng.integers(0, 2, size=(n_out, m)).astype(np.float64)
    if kind == "onehot":
        return np.eye(n_out)[:, rng.integers(0, n_out, size=m)]
    if spec.regime == "kinks":
        return rng.integers(-2, 3, size=(n_out, m)) * 0.5
    return rng.standard_normal((n_out, m))


def _output_logits(spec: Spec, params: dict[str, Array], X: Array) -> Array:
    from gradparity.reference.mlp import forward_propagation

    _, cache = forward_propagation(X, params, spec.activation, "linear_mse")
    return cache[f"Z{spec.depth}"]


def _targets_from_spec(spec: Spec) -> Array:
    assert spec.targets is not None
    Y = np.array(spec.targets, dtype=np.float64)
    if HEADS[spec.head].targets == "onehot" and Y.shape[0] == 1 and spec.sizes[-1] > 1:
        return np.eye(spec.sizes[-1])[:, Y[0].astype(int)]
    return Y


def make_case(spec: Spec) -> Case:
    """Draw (or take from the spec) X, Y and parameters; cast once to ``spec.dtype``."""
    rng = np.random.default_rng(spec.seed)
    params = _draw_parameters(spec, rng)
    for name, rows in spec.parameter_arrays.items():  # explicit parameters, as given
        params[name] = np.array(rows, dtype=np.float64)
    X = np.array(spec.inputs, dtype=np.float64) if spec.inputs is not None else (
        _draw_inputs(spec, rng))
    Y = _targets_from_spec(spec) if spec.targets is not None else _draw_targets(spec, rng)

    L = spec.depth
    if spec.regime == "saturated" and spec.parameters is None:
        ZL = _output_logits(spec, params, X)
        scale = SATURATED_LOGIT / max(float(np.max(np.abs(ZL))), 1e-12)
        params[f"W{L}"] = params[f"W{L}"] * scale
        params[f"b{L}"] = params[f"b{L}"] * scale
    if spec.regime == "kinks" and spec.targets is None and HEADS[spec.head].targets == "real":
        ZL = _output_logits(spec, params, X)
        if spec.activation in EXACT_ACTIVATIONS:
            Y[:, ::2] = ZL[:, ::2]
        elif spec.activation in ZERO_AT_ZERO:
            Y[:, 0] = ZL[:, 0]  # the all-zero example: every layer is exactly 0

    dtype = np.dtype(spec.dtype)
    labels = None
    if HEADS[spec.head].targets == "onehot" and np.all((Y == 0) | (Y == 1)):
        labels = np.argmax(Y, axis=0).astype(np.int64)
    cast = {k: np.ascontiguousarray(v, dtype=dtype) for k, v in params.items()}
    return Case(spec=spec, X=np.ascontiguousarray(X, dtype=dtype),
                Y=np.ascontiguousarray(Y, dtype=dtype), parameters=cast, labels=labels)


def _arrays_digest(case: Case) -> str:
    h = hashlib.sha256()
    for name in ("X", "Y"):
        a = getattr(case, name)
        h.update(f"{name}{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    for k in sorted(case.parameters):
        a = case.parameters[k]
        h.update(f"{k}{a.dtype}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:8]


def _bits(x: Array) -> Array:
    """The bytes of ``x`` in C order, as unsigned integers of its item size where there
    is one (one comparison per element), else as bytes."""
    flat = np.ascontiguousarray(x).reshape(-1)
    size = x.dtype.itemsize
    return flat.view(f"u{size}" if size in (1, 2, 4, 8) else np.uint8)


def _same_arrays(a: Case, b: Case) -> bool:
    def same(x: Any, y: Any) -> bool:  # the same bits: NaN payloads and -0.0 included
        x, y = np.asarray(x), np.asarray(y)
        return (x.dtype == y.dtype and x.shape == y.shape
                and bool(np.array_equal(_bits(x), _bits(y))))

    return (same(a.X, b.X) and same(a.Y, b.Y) and a.parameters.keys() == b.parameters.keys()
            and all(same(a.parameters[k], b.parameters[k]) for k in a.parameters))


#: The spec's own arrays of the Cases `case_identity` checked last (at most `_KEEP`): a
#: Case judged again is compared with them instead of drawing them again. Private copies,
#: never handed out, so the comparison stays exact however the caller changes its arrays
#: in between. Entries whose Case is gone are dropped at the next check; no weak-reference
#: callback does it, as one can run inside a garbage collection that starts while this
#: thread holds the lock.
_KEEP = 2
_CHECKED: list[tuple[weakref.ref[Case], Case]] = []
_CHECKED_LOCK = threading.Lock()


def _own_arrays(item: Case) -> Case:
    """``make_case(item.spec)``, drawn once for a Case checked again while it lives."""
    with _CHECKED_LOCK:
        _CHECKED[:] = [entry for entry in _CHECKED if entry[0]() is not None]
        for ref, own in _CHECKED:
            if ref() is item and own.spec is item.spec:
                return own
    own = make_case(item.spec)
    try:
        ref = weakref.ref(item)
    except TypeError:  # not a Case of ours (no weak references): nothing kept
        return own
    with _CHECKED_LOCK:
        _CHECKED[:] = [(ref, own), *(e for e in _CHECKED if e[0]() is not None)][:_KEEP]
    return own


def case_identity(item: Spec | Case) -> tuple[Case, str, bool]:
    """(case, case_id, rerun): a Case whose arrays are not its spec's own gets the id
    ``<spec case_id>-arrays<digest>`` and cannot be rebuilt from the spec."""
    if isinstance(item, Spec):
        return make_case(item), item.case_id, True
    try:
        own = _own_arrays(item)
    except Exception:  # noqa: BLE001 - the spec cannot rebuild the arrays: custom
        own = None
    if own is not None and _same_arrays(item, own):
        return item, item.spec.case_id, True
    return item, f"{item.spec.case_id}-arrays{_arrays_digest(item)}", False
