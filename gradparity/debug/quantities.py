"""The quantities a debug session walks, their names and their order.

Keys follow the seed: ``Z1, A1, ...`` (forward cache) and ``dZ1, dW1, db1, dA1, ...``
(gradients). The walk goes in the order the code computes them: the forward values first
(when the user's forward runs), then backprop from the output:
``[dA(L),] dZ(L), dW(L), db(L), dA(L-1), dZ(L-1), ..., dW1, db1[, dA0]``.
"""

from __future__ import annotations

import re

_KEY = re.compile(r"^(dZ|dW|db|dA|Z|A)(\d+)$")

#: Quantities carried per example by the seed's code (m times the true partial).
PER_EXAMPLE_QUANTITIES = frozenset({"dZ", "dA"})


def key(quantity: str, layer: int) -> str:
    return f"{quantity}{layer}"


def split(k: str) -> tuple[str, int]:
    """``"dW2"`` -> ``("dW", 2)``."""
    m = _KEY.match(k)
    if m is None:
        raise ValueError(f"not a quantity key: {k!r}")
    return m.group(1), int(m.group(2))


def walk_order(depth: int, *, forward: bool, output_dA: bool, input_dA: bool) -> list[str]:
    """Keys in the order the code computes them (see the module doc)."""
    order: list[str] = []
    if forward:
        for layer in range(1, depth + 1):
            order += [key("Z", layer), key("A", layer)]
    if output_dA:
        order.append(key("dA", depth))
    for layer in range(depth, 0, -1):
        order += [key("dZ", layer), key("dW", layer), key("db", layer)]
        if layer > 1 or input_dA:
            order.append(key("dA", layer - 1))
    return order


def sort_keys(keys, order: list[str]) -> list[str]:
    pos = {k: i for i, k in enumerate(order)}
    return sorted(keys, key=lambda k: pos.get(k, len(order)))
