"""More ways JAX computes a gradient: eager (no jit), forward mode, rematerialised backward
and per-example ``vmap(grad)``, each a backend with the protocol of
`gradparity.adapters.base`.

They share `gradparity.adapters.jax_grad`'s objective (jax.nn activations, J summed and
divided by m, zero probes on every Z and A) and its conversion to the reference's layout;
only the transform differs:

* ``jax.eager``: ``jax.value_and_grad(J)`` without ``jax.jit`` (op by op);
* ``jax.fwd``: ``jax.jit(jax.jacfwd(J))``: forward mode, one tangent per element of every
  input, so every gradient element is a directional derivative along a basis vector;
* ``jax.checkpoint``: every layer wrapped in ``jax.checkpoint`` (its forward is recomputed
  during the backward pass instead of stored), under ``jax.jit(jax.value_and_grad)``;
* ``jax.vmap``: ``jax.jit(jax.vmap(jax.value_and_grad(loss_i)))``, per-example gradients
  of each example's own loss, turned into J's true partials by
  `gradparity.adapters.base.batch_from_per_example`.

Each backend measures its derivative at the kinks through its own transform. One jitted
function per (backend, structure) is kept, as for ``jax``.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from gradparity.adapters.base import PER_EXAMPLE_MODES, batch_from_per_example, check_jacfwd
from gradparity.adapters.jax_grad import JaxBackend, Structure, _import, _objective
from gradparity.core.gradients import GradientSet


class _Cached(JaxBackend):
    """A JAX backend whose transform of J is built once per structure."""

    #: Whole networks only: ``jax``'s one-layer ``jax.vjp`` is not this backend's path, so
    #: ``--layer-own`` rows say so instead of borrowing it.
    layer_gradients = None

    def __init__(self) -> None:
        super().__init__()
        self._fns: dict[Structure, Callable[..., Any]] = {}
        self._lock = threading.Lock()

    def _build(self, jax: Any, J: Callable[..., Any]) -> Callable[..., Any]:
        raise NotImplementedError

    def _function(self, structure: Structure) -> Callable[..., Any]:
        with self._lock:
            fn = self._fns.get(structure)
            if fn is None:
                jax, _ = _import()
                J = _objective(structure, count_traces=False,
                               remat=self.name == "jax.checkpoint")
                fn = self._fns[structure] = self._build(jax, J)
        return fn


class JaxEagerBackend(_Cached):
    """``jax.value_and_grad(J)`` run op by op, without ``jax.jit``."""

    name = "jax.eager"
    _how = "jax.value_and_grad, eager (no jit)"

    def _build(self, jax: Any, J: Callable[..., Any]) -> Callable[..., Any]:
        return jax.value_and_grad(J, argnums=(0, 1, 2, 3), has_aux=True)


class JaxCheckpointBackend(_Cached):
    """Every layer under ``jax.checkpoint``: the backward pass recomputes its forward."""

    name = "jax.checkpoint"
    _how = "jax.jit(jax.value_and_grad) with every layer under jax.checkpoint (rematerialised)"

    def _build(self, jax: Any, J: Callable[..., Any]) -> Callable[..., Any]:
        return jax.jit(jax.value_and_grad(J, argnums=(0, 1, 2, 3), has_aux=True))

    def _derivative(self, jax: Any, f: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return jax.grad(jax.checkpoint(f))


class JaxForwardBackend(_Cached):
    """Forward mode: ``jax.jit(jax.jacfwd(J))`` (one tangent per input element)."""

    name = "jax.fwd"
    row_mode = "jacfwd"
    ad_mode = "forward"
    _how = ("forward mode: jax.jit(jax.jacfwd(J)), every gradient element a directional "
            "derivative along a basis vector")

    def gradients(self, case) -> GradientSet:
        check_jacfwd(case.spec, self.name)
        return super().gradients(case)

    def _build(self, jax: Any, J: Callable[..., Any]) -> Callable[..., Any]:
        def with_loss(*args):
            loss, aux = J(*args)
            return loss, (loss, aux)

        jac = jax.jacfwd(with_loss, argnums=(0, 1, 2, 3), has_aux=True)

        def fn(*args):
            g, value = jac(*args)
            return value, g
        return jax.jit(fn)

    def _derivative(self, jax: Any, f: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return jax.jacfwd(f)


class JaxVmapBackend(_Cached):
    """Per-example gradients ``vmap(value_and_grad(loss_i))``, turned into J's partials."""

    name = "jax.vmap"
    row_mode = PER_EXAMPLE_MODES
    _how = ("per-example gradients jax.jit(jax.vmap(jax.value_and_grad(loss_i))); dW, db "
            "their mean over the batch; per-example dZ, dA (m x the true partial) divided "
            "by m")

    def _build(self, jax: Any, J: Callable[..., Any]) -> Callable[..., Any]:
        def J1(params, z_probes, a_probes, x, y, labels):
            return J(params, [p[None] for p in z_probes], [p[None] for p in a_probes],
                     x[None], y[None], None if labels is None else labels[None])

        g = jax.value_and_grad(J1, argnums=(0, 1, 2, 3), has_aux=True)
        return jax.jit(jax.vmap(g, in_axes=(None, 0, 0, 0, 0, 0)))

    def _derivative(self, jax: Any, f: Callable[[Any], Any]) -> Callable[[Any], Any]:
        return lambda x: jax.vmap(jax.grad(f))(x[None])[0]

    def per_example(self, case) -> tuple[dict[str, Any], GradientSet]:
        """Per-example gradients in the reference's layout (``dWl`` ``(m, n_l, n_{l-1})``,
        ``dbl`` ``(m, n_l, 1)``, ``dZl``/``dAl`` ``(n_l, m)``, each example's gradient of
        its own loss) and the GradientSet of forward values (loss: mean of the losses)."""
        ((loss, (Zs, As)), grads), structure = self._run(case)
        shell = self._gradient_set(case, loss.mean(dtype=loss.dtype),
                                   [z[:, 0, :] for z in Zs], [a[:, 0, :] for a in As],
                                   grads, structure)
        return dict(shell.grads), shell

    def gradients(self, case) -> GradientSet:
        per, shell = self.per_example(case)
        shell.grads = batch_from_per_example(per, case.m)
        return shell


__all__ = ["JaxCheckpointBackend", "JaxEagerBackend", "JaxForwardBackend", "JaxVmapBackend"]
