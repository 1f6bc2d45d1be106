"""`GradientSet`: what every backend returns for one case, in the reference's layout.

Keys follow the seed document. Forward: ``A0`` (= X), ``Z1``, ``A1``, ..., ``ZL``, ``AL``,
each of shape ``(n_l, m)``. Gradients are *true partial derivatives* of
``J = (1/m) sum_i loss_i``: ``dZl`` and ``dAl`` of shape ``(n_l, m)``, ``dWl`` of shape
``(n_l, n_{l-1})``, ``dbl`` of shape ``(n_l, 1)``; ``dA0`` is the gradient w.r.t. X.
``dAL`` is present only for composed (``probs``) heads, where the loss is a function of
A[L]; for fused (``logits``) heads the loss never sees A[L].
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class GradientSet:
    """Loss, forward values and gradients of one backend on one case.

    Attributes:
        backend: backend name (``"reference"``, ``"torch"``, ``"jax"``, ...).
        loss: the scalar J, as a 0-d array in the working dtype.
        forward: ``{"A0", "Z1", "A1", ...}`` arrays of shape ``(n_l, m)``.
        grads: ``{"dZl", "dWl", "dbl", "dAl"}`` arrays in the shapes above.
        notes: how the backend built J and its intermediates (for reports).
    """

    backend: str
    loss: np.ndarray
    forward: dict[str, np.ndarray]
    grads: dict[str, np.ndarray]
    notes: str = ""
    meta: dict[str, object] = field(default_factory=dict)

    def get(self, layer: int, quantity: str) -> np.ndarray | None:
        """The array for ``quantity`` (``loss``, ``Z``, ``A``, ``dZ``, ``dW``, ``db``, ``dA``)."""
        if quantity == "loss":
            return self.loss
        if quantity in ("Z", "A"):
            return self.forward.get(f"{quantity}{layer}")
        return self.grads.get(f"{quantity}{layer}")


def backprop_order(depth: int, *, with_output_dA: bool) -> list[tuple[int, str]]:
    """(layer, quantity) pairs in the order backprop computes them.

    Forward values first (Z1, A1, ..., ZL, AL), then the loss, then from the output back:
    ``[dAL,] dZL, dWL, dbL, dA(L-1), dZ(L-1), ..., dW1, db1, dA0``.
    """
    order: list[tuple[int, str]] = []
    for layer in range(1, depth + 1):
        order += [(layer, "Z"), (layer, "A")]
    order.append((depth, "loss"))
    if with_output_dA:
        order.append((depth, "dA"))
    for layer in range(depth, 0, -1):
        order += [(layer, "dZ"), (layer, "dW"), (layer, "db"), (layer - 1, "dA")]
    return order
