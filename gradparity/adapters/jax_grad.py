"""JAX adapter: the case's MLP with jax.nn, jax.value_and_grad and jax.jit.

Idiomatic JAX, batch-major: ``z = a @ W.T + b`` with ``a`` of shape ``(m, n)``, activations
from ``jax.nn``, and J written the way a user writes it, summed and divided by ``m`` so
that ``J = (1/m) sum_i loss_i`` exactly as in the reference.

Intermediates use zero "probe" arrays added to every Z and A: the gradient of J with
respect to a zero probe is the gradient with respect to that quantity. One
``jax.value_and_grad(..., has_aux=True)`` returns J, the gradients of the parameters, of the
probes and of X (dA0), and the forward Z/A as aux. One ``jax.jit`` function per structure
(depth, activation, head, loss form, dtype, target kind) is kept and reused; XLA compiles
it once per distinct input shapes (layer sizes, batch), which no cache key can avoid: the
default suite has 291 such signatures among 296 cases.

Compiled executables persist between runs in JAX's compilation cache, in a folder the
user can move or turn off (`gradparity.adapters.jax_cache`).

Precision: float64 cases run inside ``with jax.enable_x64(True):`` and float32 cases inside
``with jax.enable_x64(False):``; the global configuration is never changed. Results whose
dtype is not the case's raise instead of being cast (no silent float64 -> float32).
"""

from __future__ import annotations

import functools
import threading
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
from gradparity.adapters.jax_cache import compilation_cache, stored_call, stored_value
from gradparity.core.gradients import GradientSet
from gradparity.core.spec import HUBER_DELTA, LEAKY_SLOPE

_INSTALL_HINT = "jax is not installed (pip install 'gradparity[jax]')"

#: (depth, activation, head, loss_form, dtype, target kind) -> jitted value_and_grad.
Structure = tuple[int, str, str, str, str, str]

_LOCK = threading.Lock()
_COMPILED: dict[Structure, Callable[..., Any]] = {}
_TRACES: dict[Structure, int] = {}


def jit_cache_info() -> dict[str, int]:
    """``{"structures": jitted functions cached, "traces": times any of them was traced}``.

    A structure is traced once per distinct input shapes; cases of the same structure
    and shapes reuse the compiled function (the trace count does not grow).
    """
    with _LOCK:
        return {"structures": len(_COMPILED), "traces": sum(_TRACES.values())}


def _import() -> tuple[Any, Any]:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as exc:
        raise RuntimeError(f"{_INSTALL_HINT}: {exc}") from exc
    return jax, jnp


def _activations(jax: Any) -> dict[str, Callable[[Any], Any]]:
    """Hidden activations, by spec name, from jax.nn (GELU form chosen explicitly)."""
    nn = jax.nn
    return {
        "relu": nn.relu,
        "leaky_relu": lambda z: nn.leaky_relu(z, LEAKY_SLOPE),
        "sigmoid": nn.sigmoid,
        "tanh": jax.numpy.tanh,
        "identity": nn.identity,
        "softplus": nn.softplus,
        "elu": nn.elu,
        "silu": nn.silu,
        "gelu": lambda z: nn.gelu(z, approximate=False),
        "gelu_tanh": lambda z: nn.gelu(z, approximate=True),
    }


def _outputs(jax: Any) -> dict[str, Callable[[Any], Any]]:
    """Output activations (A[L] from Z[L]), by head name; softmax over classes (axis=1)."""
    nn = jax.nn
    return {
        "linear_mse": nn.identity,
        "sigmoid_bce": nn.sigmoid,
        "softmax_ce": lambda z: nn.softmax(z, axis=1),
        "sigmoid_mse": nn.sigmoid,
        "tanh_mse": jax.numpy.tanh,
        "linear_l1": nn.identity,
        "linear_huber": nn.identity,
    }


_NOTES: dict[tuple[str, str], str] = {
    ("linear_mse", "logits"): "J = 0.5 * jnp.sum((Z - Y)**2) / m",
    ("sigmoid_bce", "logits"): "J = -jnp.sum(Y * log_sigmoid(Z) + (1 - Y) * log_sigmoid(-Z))"
    " / m",
    ("sigmoid_bce", "probs"): "A = jax.nn.sigmoid(Z); J = -jnp.sum(Y * jnp.log(A) + (1 - Y) *"
    " jnp.log1p(-A)) / m (naive composed form: inf/nan where A rounds to 0 or 1)",
    ("softmax_ce", "logits"): "J = -jnp.sum(take_along_axis(log_softmax(Z), labels)) / m "
    "(-jnp.sum(Y * log_softmax(Z)) / m for probability targets)",
    ("softmax_ce", "probs"): "A = jax.nn.softmax(Z); J = -jnp.sum(take_along_axis("
    "jnp.log(A), labels)) / m (-jnp.sum(Y * jnp.log(A)) / m for probability targets)",
    ("sigmoid_mse", "probs"): "A = jax.nn.sigmoid(Z); J = 0.5 * jnp.sum((A - Y)**2) / m",
    ("tanh_mse", "probs"): "A = jnp.tanh(Z); J = 0.5 * jnp.sum((A - Y)**2) / m",
    ("linear_l1", "logits"): "J = jnp.sum(jnp.abs(Z - Y)) / m",
    ("linear_huber", "logits"): "J = jnp.sum(where(|r| <= 1, 0.5 r**2, |r| - 0.5)) / m, "
    "r = Z - Y",
}


def _loss(jax: Any, head: str, form: str, z: Any, a: Any, y: Any, labels: Any | None,
          m: int) -> Any:
    """J = (1/m) sum_i loss_i from Z[L] (logits forms) or A[L] (probs forms)."""
    jnp, nn = jax.numpy, jax.nn
    if head == "linear_mse":
        return 0.5 * jnp.sum((z - y) ** 2) / m
    if head == "sigmoid_bce":
        if form == "logits":
            return -jnp.sum(y * nn.log_sigmoid(z) + (1 - y) * nn.log_sigmoid(-z)) / m
        return -jnp.sum(y * jnp.log(a) + (1 - y) * jnp.log1p(-a)) / m
    if head == "softmax_ce":
        logp = nn.log_softmax(z, axis=1) if form == "logits" else jnp.log(a)
        if labels is not None:
            return -jnp.sum(jnp.take_along_axis(logp, labels[:, None], axis=1)) / m
        return -jnp.sum(y * logp) / m
    if head in ("sigmoid_mse", "tanh_mse"):
        return 0.5 * jnp.sum((a - y) ** 2) / m
    if head == "linear_l1":
        return jnp.sum(jnp.abs(z - y)) / m
    if head == "linear_huber":
        r = jnp.abs(z - y)
        d = HUBER_DELTA
        return jnp.sum(jnp.where(r <= d, 0.5 * r * r, d * (r - 0.5 * d))) / m
    raise ValueError(f"head={head!r}: no jax loss for it")


def _objective(structure: Structure, *, count_traces: bool = True,
               remat: bool = False) -> Callable[..., Any]:
    """``J(params, z_probes, a_probes, x, y, labels) -> (loss, (Zs, As))`` for one
    structure: J of the batch in ``x`` (``(m, n0)``) with zero probes added to every Z and
    A. With ``count_traces``, each call is counted (it runs at trace time only under jit);
    with ``remat``, every layer runs under ``jax.checkpoint`` (recomputed in the backward
    pass instead of stored)."""
    jax, _ = _import()
    depth, activation, head, form, _dtype, target_kind = structure
    act = _activations(jax)[activation]
    out = _outputs(jax)[head]

    def step(i: int, W: Any, b: Any, a: Any, z_probe: Any, a_probe: Any) -> tuple[Any, Any]:
        z = a @ W.T + b + z_probe
        if i < depth - 1:
            return z, act(z) + a_probe
        if form == "probs":
            return z, out(z) + a_probe
        return z, out(z)  # fused loss: A[L] is reported, J does not see it

    steps = [functools.partial(step, i) for i in range(depth)]
    if remat:
        steps = [jax.checkpoint(s) for s in steps]

    def J(params, z_probes, a_probes, x, y, labels):
        if count_traces:
            with _LOCK:  # runs at trace time only: counts (re)traces of this structure
                _TRACES[structure] = _TRACES.get(structure, 0) + 1
        m = x.shape[0]
        a = x
        Zs, As = [], []
        for i, (W, b) in enumerate(params):
            probe = a_probes[i] if i < len(a_probes) else None
            z, a = steps[i](W, b, a, z_probes[i], probe)
            Zs.append(z)
            As.append(a)
        lab = labels if target_kind == "labels" else None
        return _loss(jax, head, form, Zs[-1], As[-1], y, lab, m), (Zs, As)

    return J


def _build(structure: Structure) -> Callable[..., Any]:
    """The jitted ``value_and_grad`` of J for one structure."""
    jax, _ = _import()
    return jax.jit(jax.value_and_grad(_objective(structure), argnums=(0, 1, 2, 3),
                                      has_aux=True))


def _compiled(structure: Structure) -> Callable[..., Any]:
    with _LOCK:
        fn = _COMPILED.get(structure)
    if fn is None:
        fn = _build(structure)
        with _LOCK:
            fn = _COMPILED.setdefault(structure, fn)
    return fn


class JaxBackend:
    """``jax.jit(jax.value_and_grad(J))`` with jax.nn activations; x64 scoped per case.

    The other JAX backends (`gradparity.adapters.jax_modes`) subclass it and change the
    transform (`_function`), the derivative used at the kinks (`_derivative`) and, for
    per-example gradients, how the result becomes J's true partials.
    """

    name = "jax"
    #: The table's ``mode`` column for this backend's rows (a str, or per quantity).
    row_mode: str | dict[str, str] = "end_to_end"
    #: ``meta["ad_mode"]`` of its GradientSets: ``reverse`` or ``forward`` (the judge
    #: explains forward mode's spread of non-finite tangents on saturated cases).
    ad_mode = "reverse"
    _how = "jax.jit(jax.value_and_grad)"

    def __init__(self) -> None:
        self._kinks: dict[str, dict[str, float]] = {}

    # -- availability ----------------------------------------------------------------
    def available(self) -> bool:
        return modules_found("jax", "jaxlib")

    def unavailable_reason(self) -> str:
        return "" if self.available() else _INSTALL_HINT

    def version(self) -> str | None:
        return dist_version("jax")

    # -- the transform ---------------------------------------------------------------
    def _function(self, structure: Structure) -> Callable[..., Any]:
        """``fn(params, z_probes, a_probes, x, y, labels) -> ((loss, (Zs, As)), grads of
        the first four arguments)``."""
        return _compiled(structure)

    def _derivative(self, jax: Any, f: Callable[[Any], Any]) -> Callable[[Any], Any]:
        """The derivative of a scalar ``f`` by this backend's transform (kink conventions)."""
        return jax.grad(f)

    # -- kinks -----------------------------------------------------------------------
    def kink_conventions(self, dtype: str) -> dict[str, float]:
        """relu'(0), leaky_relu'(0) and |r|'(0) as this backend's transform computes them
        in ``dtype``."""
        if dtype not in self._kinks:
            jax, _ = _import()
            with jax.enable_x64(dtype == "float64"):
                self._kinks[dtype] = stored_value(jax, f"kinks:{self.name}", (dtype,),
                                                  lambda: self._probe_kinks(jax, dtype))
        return dict(self._kinks[dtype])

    def _probe_kinks(self, jax: Any, dtype: str) -> dict[str, float]:
        """`kink_conventions` measured: each derivative at 0 by this backend's transform."""
        jnp = jax.numpy
        acts = _activations(jax)
        out: dict[str, float] = {}
        with compilation_cache(jax):
            x = jnp.zeros((1, 1), dtype=dtype)
            for key in KINK_KEYS:
                if key == "linear_l1":
                    def f(v):
                        return _loss(jax, "linear_l1", "logits", v, v, jnp.zeros_like(v),
                                     None, 1)
                else:
                    def f(v, g=acts[key]):
                        return jnp.sum(g(v))
                g = np.asarray(self._derivative(jax, f)(x))
                if g.dtype != np.dtype(dtype):
                    raise RuntimeError(f"{self.name}: kink derivative came back as "
                                       f"{g.dtype}")
                out[key] = kink_value(g)
        return out

    # -- gradients -------------------------------------------------------------------
    def _run(self, case) -> tuple[Any, Structure]:
        """The transform's raw result on ``case`` (NumPy arrays) and its structure."""
        jax, _ = _import()
        spec = case.spec
        L, form, dtype = spec.depth, spec.loss_form, case.dtype
        if spec.head == "softmax_ce":
            target_kind = "labels" if case.labels is not None else "probs"
        else:
            target_kind = "values"
        structure: Structure = (L, spec.activation, spec.head, form, spec.dtype, target_kind)
        n_a_probes = L - 1 + (form == "probs")

        with jax.enable_x64(spec.dtype == "float64"):
            fn = self._function(structure)

            def arr(a: np.ndarray) -> np.ndarray:
                # NumPy arrays: the call moves them all to the device at once (a
                # jnp.asarray for each cost about 1.5 ms a case); same avals, same program
                return np.ascontiguousarray(a, dtype=dtype)

            m = case.m
            params = [(arr(case.parameters[f"W{i}"]), arr(case.parameters[f"b{i}"][:, 0]))
                      for i in range(1, L + 1)]
            # zeros made by NumPy and copied in: jnp.zeros would run (and compile, per
            # shape) an XLA program of its own for each probe
            z_probes = [arr(np.zeros((m, n), dtype=dtype)) for n in spec.sizes[1:]]
            a_probes = [arr(np.zeros((m, n), dtype=dtype))
                        for n in spec.sizes[1:1 + n_a_probes]]
            x = arr(case.X.T)
            y = arr(case.Y.T)
            labels = (np.ascontiguousarray(case.labels, dtype=np.int32)
                      if target_kind == "labels" else None)
            raw = stored_call(jax, fn, self.name, structure,
                              (params, z_probes, a_probes, x, y, labels))
        return raw, structure

    def gradients(self, case) -> GradientSet:
        ((loss, (Zs, As)), grads), structure = self._run(case)
        return self._gradient_set(case, loss, Zs, As, grads, structure)

    def _gradient_set(self, case, loss: Any, Zs: Any, As: Any, grads: Any,
                      structure: Structure) -> GradientSet:
        """The GradientSet of a raw result: batch-major arrays transposed to the
        reference's layout (a leading axis over examples is kept)."""
        jax, _ = _import()
        spec = case.spec
        L, form, dtype = spec.depth, spec.loss_form, case.dtype
        g_params, g_z, g_a, g_x = grads

        def np_(v: Any, what: str, transpose: bool = True) -> np.ndarray:
            return as_numpy(v, dtype, what=what, backend=self.name, transpose=transpose)

        forward = {"A0": np.array(case.X, dtype=dtype, copy=True)}
        out: dict[str, np.ndarray] = {}
        for i in range(L):
            forward[f"Z{i + 1}"] = np_(Zs[i], f"Z{i + 1}")
            forward[f"A{i + 1}"] = np_(As[i], f"A{i + 1}")
        if form == "probs":
            out[f"dA{L}"] = np_(g_a[L - 1], f"dA{L}")
        for layer in range(L, 0, -1):
            dW, db = g_params[layer - 1]
            out[f"dZ{layer}"] = np_(g_z[layer - 1], f"dZ{layer}")
            out[f"dW{layer}"] = np_(dW, f"dW{layer}", transpose=False)
            out[f"db{layer}"] = np_(db, f"db{layer}", transpose=False)[..., None]
            out[f"dA{layer - 1}"] = (np_(g_x, "dA0") if layer == 1
                                     else np_(g_a[layer - 2], f"dA{layer - 1}"))
        return GradientSet(
            backend=self.name,
            loss=np_(loss, "loss", transpose=False),
            forward=forward,
            grads=out,
            notes=_NOTES[(spec.head, form)]
            + f"; {self._how}; dZ, dA via zero probes, dA0 = grad w.r.t. X; "
            + ("x64 enabled for this call" if spec.dtype == "float64" else "x64 off"),
            meta={"version": jax.__version__, "structure": structure,
                  "ad_mode": self.ad_mode},
        )

    # -- one layer on its own ---------------------------------------------------------
    def layer_gradients(self, case, layer: int, a_prev: np.ndarray, dA_out: np.ndarray
                        ) -> dict[str, np.ndarray]:
        """A hidden layer fed the reference's upstream values: ``jax.vjp`` of the layer at
        ``a_prev`` (A[l-1]) with cotangent ``dA_out`` (dJ/dA[l]); dZ through a zero probe.
        Keys as `reference.mlp.layer_step`."""
        jax, jnp = _import()
        spec = case.spec
        dtype = case.dtype
        act = _activations(jax)[spec.activation]
        with compilation_cache(jax), jax.enable_x64(spec.dtype == "float64"):
            def arr(a: np.ndarray) -> np.ndarray:
                # NumPy arrays: the call moves them all to the device at once (a
                # jnp.asarray for each cost about 1.5 ms a case); same avals, same program
                return np.ascontiguousarray(a, dtype=dtype)

            W = arr(case.parameters[f"W{layer}"])
            b = arr(case.parameters[f"b{layer}"][:, 0])
            x = arr(a_prev.T)
            probe = jnp.asarray(np.zeros((case.m, spec.sizes[layer]), dtype=dtype))

            def f(W, b, x, probe):
                z = x @ W.T + b + probe
                return act(z), z

            (a, z), vjp = jax.vjp(f, W, b, x, probe)
            dW, db, dx, dz = vjp((arr(dA_out.T), arr(np.zeros(z.shape, dtype=dtype))))
            a, z, dW, db, dx, dz = jax.device_get((a, z, dW, db, dx, dz))

        def np_(v: Any, what: str, transpose: bool = True) -> np.ndarray:
            return as_numpy(v, dtype, what=what, backend=self.name, transpose=transpose)

        return {"Z": np_(z, "Z"), "A": np_(a, "A"), "dZ": np_(dz, "dZ"),
                "dW": np_(dW, "dW", transpose=False),
                "db": np_(db, "db", transpose=False)[:, None], "dA_prev": np_(dx, "dA_prev")}
