"""Known faults, injected into a copy of a `GradientSet`, to show that checks can fail.

Each fault is the kind of bug a hand-written backprop really has. `inject(name, case,
gradients)` returns a new `GradientSet`; the original is untouched. ``first`` in
`Fault` names the first quantity (in backprop order) the fault corrupts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from gradparity.case import Case
from gradparity.gradients import GradientSet
from gradparity.reference.activations import ACTIVATION_FUNCS
from gradparity.reference.mlp import backpropagation

Array = np.ndarray


def _copy(g: GradientSet, backend: str) -> GradientSet:
    return GradientSet(backend=backend, loss=np.array(g.loss, copy=True),
                       forward={k: v.copy() for k, v in g.forward.items()},
                       grads={k: v.copy() for k, v in g.grads.items()}, notes=g.notes)


def _rebackprop(case: Case, g: GradientSet, prime: Callable[[Array], Array]) -> dict:
    spec = case.spec
    return backpropagation(g.forward, case.Y, case.parameters, spec.activation, spec.head,
                           prime=prime, with_output_dA=spec.loss_form == "probs")


def missing_1_over_m(case: Case, g: GradientSet) -> None:
    """dW[L] and db[L] without the 1/m average (m times too large)."""
    L = case.spec.depth
    g.grads[f"dW{L}"] *= case.m
    g.grads[f"db{L}"] *= case.m


def transposed_dW(case: Case, g: GradientSet) -> None:
    """dW[1] returned transposed (A^T dZ instead of dZ A^T)."""
    g.grads["dW1"] = np.ascontiguousarray(g.grads["dW1"].T)


def wrong_activation_derivative(case: Case, g: GradientSet) -> None:
    """Hidden layers use g(Z) where g'(Z) belongs (needs depth >= 2)."""
    g.grads.update(_rebackprop(case, g, ACTIVATION_FUNCS[case.spec.activation].forward))


def derivative_at_A(case: Case, g: GradientSet) -> None:
    """Hidden layers evaluate g' at A = g(Z) instead of at Z (needs depth >= 2)."""
    act = ACTIVATION_FUNCS[case.spec.activation]
    g.grads.update(_rebackprop(case, g, lambda z: act.prime(act.forward(z))))


def sign_flip(case: Case, g: GradientSet) -> None:
    """db[1] with the wrong sign."""
    g.grads["db1"] = -g.grads["db1"]


def perturbed_element(case: Case, g: GradientSet) -> None:
    """One element of dW[1] off by 1e-3 of the tensor's scale."""
    w = g.grads["dW1"]
    scale = float(np.max(np.abs(w))) or 1.0
    w.flat[w.size // 2] += w.dtype.type(1e-3 * scale)


@dataclass(frozen=True)
class Fault:
    name: str
    apply: Callable[[Case, GradientSet], None]
    first: Callable[[int], str]  # depth -> first corrupted key
    min_depth: int = 1


FAULTS: dict[str, Fault] = {
    f.name: f
    for f in (
        Fault("missing_1_over_m", missing_1_over_m, lambda L: f"dW{L}"),
        Fault("transposed_dW", transposed_dW, lambda L: "dW1"),
        Fault("wrong_activation_derivative", wrong_activation_derivative,
              lambda L: f"dZ{L - 1}", min_depth=2),
        Fault("derivative_at_A", derivative_at_A, lambda L: f"dZ{L - 1}", min_depth=2),
        Fault("sign_flip", sign_flip, lambda L: "db1"),
        Fault("perturbed_element", perturbed_element, lambda L: "dW1"),
    )
}


def inject(name: str, case: Case, gradients: GradientSet) -> GradientSet:
    """A copy of ``gradients`` with fault ``name`` applied."""
    fault = FAULTS[name]
    out = _copy(gradients, f"{gradients.backend}+{name}")
    fault.apply(case, out)
    return out
