"""A recipe: the few choices that make one fuzz case, and the case they make.

The search draws a `Recipe` (sizes, activation, head and form, dtype, batch, seed, an
init scale and the kinds of data that stress the numerics), and `build_spec` turns it
into a `Spec` whose inputs, targets and parameters are all explicit. Shrinking a recipe
(smaller sizes, seed 0, the first kind of each list) shrinks the case; the explicit arrays
make the shrunk case a self-contained ``[[case]]`` that reruns without the search.

Every list of kinds starts with the plainest one, towards which hypothesis shrinks.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from gradparity.core.spec import HEADS, Spec
from gradparity.reference.case import SATURATED_LOGIT
from gradparity.reference.mlp import forward_propagation

#: Inputs: N(0, 1); all zero (exact zeros in Z with a zero bias); small integers (exact
#: dyadic arithmetic, ties) with an all-zero first example; huge (|Z| in the thousands);
#: tiny; subnormal in the dtype (JAX on CPU flushes float32 subnormals to zero).
X_KINDS: tuple[str, ...] = ("normal", "zeros", "integers", "huge", "tiny", "subnormal")
#: Weights: N(0, scale); halves (-1, -0.5, 0, 0.5, 1: exact products); rank one
#: (rank-deficient W); all zero.
W_KINDS: tuple[str, ...] = ("normal", "halves", "rank_one", "zero")
B_KINDS: tuple[str, ...] = ("normal", "zero")
#: The output layer: as drawn; rescaled to |Z[L]| = 50 (saturated sigmoid/softmax);
#: every unit the same (ties in softmax).
OUT_KINDS: tuple[str, ...] = ("normal", "saturated", "ties")
#: Targets: the head's natural kind (one-hot, 0/1 labels, N(0, 1)); soft (probability
#: columns, labels in [0, 1]); equal to the network's output (zero residuals: the L1 kink).
Y_KINDS: tuple[str, ...] = ("natural", "soft", "output")
#: Multipliers of the He scale sqrt(2 / n_in) of the weights.
INIT_SCALES: tuple[float, ...] = (1.0, 1e-3, 10.0, 100.0)
#: Values a special element may take: kinks, signed zero, the extremes of the dtype.
SPECIAL_VALUES: tuple[float, ...] = (0.0, -0.0, 1.0, 20.5, -20.5, 1e-30, 1e30, -1e30)

MAX_DEPTH, MAX_WIDTH, MAX_BATCH = 6, 64, 64

_HUGE, _TINY = 1e4, 1e-20
_SUBNORMAL = {"float32": 1e-40, "float64": 1e-310}


@dataclass(frozen=True)
class Recipe:
    """The choices of one fuzz case (see the module's lists of kinds).

    ``specials`` are ``(array, flat index, value)`` overrides applied last: ``array`` is
    ``"X"`` or a parameter name, the index is taken modulo the array's size.
    """

    sizes: tuple[int, ...]
    activation: str
    head: str
    loss_form: str
    dtype: str
    batch: int
    seed: int = 0
    init_scale: float = 1.0
    x_kind: str = "normal"
    w_kind: str = "normal"
    b_kind: str = "normal"
    out_kind: str = "normal"
    y_kind: str = "natural"
    specials: tuple[tuple[str, int, float], ...] = ()

    def describe(self) -> str:
        """The non-default choices, for the counterexample's comment."""
        parts = [f"x={self.x_kind}", f"w={self.w_kind}", f"b={self.b_kind}",
                 f"out={self.out_kind}", f"y={self.y_kind}", f"init_scale={self.init_scale:g}",
                 f"seed={self.seed}"]
        parts += [f"{a}[{i}]={v!r}" for a, i, v in self.specials]
        return ", ".join(parts)


def _round(a: np.ndarray, dtype: str) -> np.ndarray:
    """Values representable in ``dtype``, as float64 (what the explicit arrays hold)."""
    with np.errstate(over="ignore"):
        return np.asarray(a, dtype=np.float64).astype(dtype).astype(np.float64)


def _inputs(r: Recipe, rng: np.random.Generator) -> np.ndarray:
    shape = (r.sizes[0], r.batch)
    if r.x_kind == "zeros":
        return np.zeros(shape)
    if r.x_kind == "integers":  # with an all-zero example, as in the kinks regime
        x = rng.integers(-2, 3, size=shape).astype(np.float64)
        x[:, 0] = 0.0
        return x
    x = rng.standard_normal(shape)
    scale = {"normal": 1.0, "huge": _HUGE, "tiny": _TINY,
             "subnormal": _SUBNORMAL[r.dtype]}[r.x_kind]
    return x * scale


def _parameters(r: Recipe, rng: np.random.Generator) -> dict[str, np.ndarray]:
    params: dict[str, np.ndarray] = {}
    for layer in range(1, len(r.sizes)):
        n_in, n_out = r.sizes[layer - 1], r.sizes[layer]
        scale = r.init_scale * float(np.sqrt(2.0 / n_in))
        if r.w_kind == "halves":
            W = rng.integers(-2, 3, size=(n_out, n_in)) * 0.5
        elif r.w_kind == "rank_one":
            W = np.outer(rng.standard_normal(n_out), rng.standard_normal(n_in)) * scale
        elif r.w_kind == "zero":
            W = np.zeros((n_out, n_in))
        else:
            W = rng.standard_normal((n_out, n_in)) * scale
        b = (np.zeros((n_out, 1)) if r.b_kind == "zero"
             else rng.standard_normal((n_out, 1)) * 0.1)
        params[f"W{layer}"], params[f"b{layer}"] = W, b
    return params


def _apply_specials(r: Recipe, arrays: dict[str, np.ndarray]) -> None:
    for name, index, value in r.specials:
        if name in arrays:
            a = arrays[name]
            a.flat[index % a.size] = value


def _targets(r: Recipe, rng: np.random.Generator, output: np.ndarray) -> np.ndarray:
    n_out, m = r.sizes[-1], r.batch
    kind = HEADS[r.head].targets
    if r.y_kind == "output":
        return output
    if kind == "onehot":
        if r.y_kind == "soft":
            e = np.exp(rng.standard_normal((n_out, m)))
            return e / e.sum(axis=0, keepdims=True)
        return rng.integers(0, n_out, size=(1, m)).astype(np.float64)  # class indices
    if kind == "binary":
        if r.y_kind == "soft":
            return rng.uniform(0.0, 1.0, size=(n_out, m))
        return rng.integers(0, 2, size=(n_out, m)).astype(np.float64)
    return rng.standard_normal((n_out, m))


def build_spec(r: Recipe) -> Spec:
    """The spec of a recipe, with explicit inputs, targets and parameters (values
    representable in its dtype, so that the case holds exactly these numbers).

    Raises:
        SpecError: the recipe names something a spec cannot hold.
    """
    rng = np.random.default_rng(r.seed)
    arrays = {"X": _inputs(r, rng), **_parameters(r, rng)}
    _apply_specials(r, arrays)
    arrays = {k: _round(v, r.dtype) for k, v in arrays.items()}
    L = len(r.sizes) - 1
    params = {k: v for k, v in arrays.items() if k != "X"}
    if r.out_kind == "ties":
        params[f"W{L}"][:] = params[f"W{L}"][0]
        params[f"b{L}"][:] = params[f"b{L}"][0]
    with np.errstate(all="ignore"):
        if r.out_kind == "saturated":
            _, cache = forward_propagation(arrays["X"], params, r.activation, "linear_mse")
            peak = float(np.max(np.abs(cache[f"Z{L}"])))
            if np.isfinite(peak) and peak > 0:
                s = SATURATED_LOGIT / peak
                params[f"W{L}"] = _round(params[f"W{L}"] * s, r.dtype)
                params[f"b{L}"] = _round(params[f"b{L}"] * s, r.dtype)
        out, _ = forward_propagation(arrays["X"], params, r.activation, r.head)
    Y = _round(np.nan_to_num(_targets(r, rng, out), nan=0.0, posinf=0.0, neginf=0.0),
               r.dtype)
    kind = HEADS[r.head].targets
    if kind == "binary":
        Y = np.clip(Y, 0.0, 1.0)
    if kind == "onehot" and Y.shape[0] > 1:  # probability columns summing to 1 in float64
        Y = np.clip(Y, 0.0, 1.0)
        Y[:, Y.sum(axis=0) == 0] = 1.0 / Y.shape[0]
        Y = Y / Y.sum(axis=0, keepdims=True)
        top = np.argmax(Y, axis=0)
        cols = np.arange(Y.shape[1])
        Y[top, cols] = 0.0
        Y[top, cols] = 1.0 - Y.sum(axis=0)
    return Spec(r.sizes, activation=r.activation, head=r.head, loss_form=r.loss_form,
                dtype=r.dtype, batch=r.batch, seed=0, regime="normal",
                inputs=arrays["X"].tolist(), targets=Y.tolist(),
                parameters={k: v.tolist() for k, v in params.items()})
