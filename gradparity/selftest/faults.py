"""Known backprop bugs, injected into a copy of the reference, to show that checks can fail.

Each fault is a bug that hand-written backprop really has. Most are written into
`faulty_backpropagation`, a deliberately separate copy of the reference's backprop loop
with the fault switched on at the line where learners make it; the others corrupt one
tensor of a finished `GradientSet`. The copy calls the reference's equations
(`gradparity.reference.mlp.backward_step`) on the inputs a fault changes.
`inject(name, case, gradients)` returns a new `GradientSet` (the original is untouched).
Some faults cannot show on some cases (the derivative of relu taken at A instead of Z is
the same function), so callers compare the result with the reference before counting a
detection; a fault whose code fails to run (``W @ dZ`` with a non-square W) raises, as
the learner's code would.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gradparity.core.gradients import GradientSet
from gradparity.reference.activations import ACTIVATION_FUNCS
from gradparity.reference.case import Case
from gradparity.reference.heads import HEAD_FUNCS
from gradparity.reference.mlp import backward_step, hidden_dZ

Array = np.ndarray

#: The corner fault ``wrong_derivative_large_z`` is wrong only where |Z| exceeds this.
LARGE_Z = 20.0


def faulty_backpropagation(case: Case, cache: dict[str, Array], fault: str | None
                           ) -> dict[str, Array]:
    """A copy of the reference's backprop loop, with ``fault`` (or none) switched on.

    Same keys and shapes as `gradparity.reference.mlp.backpropagation` (true partials).
    """
    spec = case.spec
    params, Y, m = case.parameters, case.Y, case.m
    L = spec.depth
    g = ACTIVATION_FUNCS[spec.activation]
    head = HEAD_FUNCS[spec.head]
    grads: dict[str, Array] = {}
    ZL, AL = cache[f"Z{L}"], cache[f"A{L}"]
    if spec.loss_form == "probs":
        grads[f"dA{L}"] = head.dA(ZL, AL, Y, m)
    dZ = head.dZ(ZL, AL, Y, m)
    if fault == "sign_flip":
        dZ = -dZ  # Y - A instead of A - Y
    for layer in range(L, 0, -1):
        if layer < L:
            z = cache[f"Z{layer}"]
            if fault == "wrong_activation_derivative":
                gp = g.forward(z)  # g(Z) where g'(Z) belongs
            elif fault == "derivative_at_A":
                gp = g.prime(cache[f"A{layer}"])  # g'(A) instead of g'(Z)
            elif fault == "kink_convention_flipped":
                gp = g.prime(z, at_kink=1.0)  # g'(0) = 1 while claiming the reference's
            else:
                gp = g.prime(z)
            if fault == "wrong_derivative_large_z":
                gp = np.where(np.abs(z) > LARGE_Z, 1 - gp, gp).astype(z.dtype)
            dZ = hidden_dZ(grads[f"dA{layer}"], gp)
        grads[f"dZ{layer}"] = dZ
        a_prev = cache[f"A{layer - 1}"]
        if fault == "off_by_one_layer":
            a_prev = cache[f"A{layer}"]  # A[l] where A[l-1] belongs
        W = params[f"W{layer}"]
        if fault == "transposed_W_in_dA":
            W = W.T  # dA[l-1] = W dZ: runs only where W is square
        step = backward_step(dZ, a_prev, W)
        dW, db = step["dW"], step["db"]
        grads[f"dW{layer}"] = dW * m if fault == "missing_1_over_m" else dW
        if fault == "wrong_axis_when_m_is_1" and m == 1:
            db = np.full_like(db, np.sum(dZ))  # the squeezed batch axis: summed over units
        grads[f"db{layer}"] = np.zeros_like(db) if fault == "dropped_bias_gradient" else db
        grads[f"dA{layer - 1}"] = step["dA_prev"]
    return grads


def _perturb_element(case: Case, g: GradientSet) -> None:
    """One element of dW[1] off by 1e-3 of the tensor's largest magnitude."""
    w = g.grads["dW1"]
    scale = float(np.max(np.abs(w))) or 1.0
    w.flat[w.size // 2] += w.dtype.type(1e-3 * scale)


def _transpose_dW(case: Case, g: GradientSet) -> None:
    """dW[1] returned transposed (A^T dZ instead of dZ A^T)."""
    g.grads["dW1"] = np.ascontiguousarray(g.grads["dW1"].T)


@dataclass(frozen=True)
class Fault:
    """A known bug. ``first(L)`` is the first key it corrupts in backprop order, when it
    has an effect; ``min_depth`` the depth it needs to be expressible at all."""

    name: str
    description: str
    first: Callable[[int], str]
    in_backprop: bool = True
    corrupt: Callable[[Case, GradientSet], None] | None = None
    min_depth: int = 1


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("missing_1_over_m", "dW = dZ A^T without the 1/m average (every layer)",
              lambda L: f"dW{L}"),
        Fault("transposed_W_in_dA", "dA[l-1] = W[l] dZ[l] instead of W[l]^T dZ[l]",
              lambda L: f"dA{L - 1}"),
        Fault("wrong_activation_derivative", "g(Z) used where g'(Z) belongs",
              lambda L: f"dZ{L - 1}", min_depth=2),
        Fault("derivative_at_A", "g' evaluated at A = g(Z) instead of at Z",
              lambda L: f"dZ{L - 1}", min_depth=2),
        Fault("sign_flip", "dZ[L] = Y - A instead of A - Y", lambda L: f"dZ{L}"),
        Fault("off_by_one_layer", "dW[l] = dZ[l] A[l]^T: the cache key one layer off",
              lambda L: f"dW{L}"),
        Fault("dropped_bias_gradient", "db left at zero", lambda L: f"db{L}"),
        Fault("perturbed_element", "one element of dW[1] off by 1e-3 of its scale",
              lambda L: "dW1", in_backprop=False, corrupt=_perturb_element),
        Fault("transposed_dW", "dW[1] returned transposed", lambda L: "dW1",
              in_backprop=False, corrupt=_transpose_dW),
    )
}


#: Faults that show only in corners of the input space, for the search (`gradparity.fuzz`)
#: to find: not part of the self-test's table, which runs fixed suites.
CORNER_FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("wrong_derivative_large_z", f"1 - g'(Z) where |Z| > {LARGE_Z:g} (hidden layers)",
              lambda L: f"dZ{L - 1}", min_depth=2),
        Fault("wrong_axis_when_m_is_1", "db summed over the units when the batch has one "
              "example (a squeezed batch axis)", lambda L: f"db{L}"),
        Fault("kink_convention_flipped", "g'(0) = 1 at relu/leaky_relu kinks, while the "
              "backend claims the reference's convention", lambda L: f"dZ{L - 1}",
              min_depth=2),
    )
}
ALL_FAULTS: dict[str, Fault] = {**FAULTS, **CORNER_FAULTS}


def inject(name: str, case: Case, gradients: GradientSet) -> GradientSet:
    """A copy of ``gradients`` with fault ``name``: backprop faults re-run the faulty copy
    of backprop on ``gradients``' forward values; the others corrupt one tensor."""
    fault = ALL_FAULTS[name]
    out = GradientSet(backend=f"{gradients.backend}+{name}",
                      loss=np.array(gradients.loss, copy=True),
                      forward={k: v.copy() for k, v in gradients.forward.items()},
                      grads={k: v.copy() for k, v in gradients.grads.items()},
                      notes=gradients.notes)
    if fault.in_backprop:
        with np.errstate(all="ignore"):
            out.grads = faulty_backpropagation(case, out.forward, name)
    else:
        assert fault.corrupt is not None
        fault.corrupt(case, out)
    return out


@dataclass(frozen=True)
class WrapperFault:
    """A bug in the code that turns a backend's raw result into J's true partials: the
    per-example backends' (``torch.vmap``, ``jax.vmap``) call of
    `gradparity.adapters.base.batch_from_per_example` with one step left out."""

    name: str
    description: str
    first: Callable[[int, bool], str]  # (depth, composed head) -> first key corrupted
    divide: bool = True
    mean: bool = True


WRAPPER_FAULTS: dict[str, WrapperFault] = {
    f.name: f
    for f in (
        WrapperFault("per_example_not_divided_by_m",
                     "per-example dZ, dA kept as they are (m x the true partial)",
                     lambda L, probs: f"dA{L}" if probs else f"dZ{L}", divide=False),
        WrapperFault("per_example_summed", "per-example dW, db summed, not averaged",
                     lambda L, probs: f"dW{L}", mean=False),
    )
}


def inject_wrapper(name: str, per_example: dict[str, Array], shell: GradientSet,
                   m: int) -> GradientSet:
    """The GradientSet a per-example backend would return with wrapper fault ``name``:
    ``per_example`` and ``shell`` as its ``per_example(case)`` gives them."""
    from gradparity.adapters.base import batch_from_per_example

    fault = WRAPPER_FAULTS[name]
    return GradientSet(backend=f"{shell.backend}+{name}", loss=shell.loss,
                       forward=dict(shell.forward),
                       grads=batch_from_per_example(per_example, m, divide=fault.divide,
                                                    mean=fault.mean),
                       notes=shell.notes)
