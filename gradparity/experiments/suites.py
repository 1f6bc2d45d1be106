"""Built-in suites: named, deterministic lists of specs.

``default`` covers every head and loss form, every activation, float32 and float64,
depths 1-4, two widths, two batch sizes, and the three input regimes, without the full
cartesian product (which would be ~9,000 cases): each block varies a few axes at a time.
"""

from __future__ import annotations

from collections.abc import Callable
from itertools import product

from gradparity.core.spec import ACTIVATIONS, DTYPES, Spec, head_forms

N_IN = 5
WIDTHS = (8, 32)
BATCHES = (4, 16)


def _sizes(depth: int, width: int, n_out: int) -> tuple[int, ...]:
    return (N_IN, *([width] * (depth - 1)), n_out)


def _n_out(head: str) -> int:
    return 3 if head == "softmax_ce" else 2


def core_block() -> list[Spec]:
    """Every activation x every head/form x both dtypes; depth 2, width 8, batch 4."""
    return [
        Spec(_sizes(2, WIDTHS[0], _n_out(h)), activation=a, head=h, loss_form=f, dtype=d,
             batch=BATCHES[0], seed=0)
        for (h, f), a, d in product(head_forms(), ACTIVATIONS, DTYPES)
    ]


def shape_block() -> list[Spec]:
    """Depths 1-4 x widths x batches x dtypes, rotating activation and head so every
    activation and head meets several depths."""
    hf = head_forms()
    specs = []
    for i, (depth, width, batch, d) in enumerate(product((1, 2, 3, 4), WIDTHS, BATCHES, DTYPES)):
        h, f = hf[i % len(hf)]
        a = ACTIVATIONS[(i * 3) % len(ACTIVATIONS)]
        specs.append(Spec(_sizes(depth, width, _n_out(h)), activation=a, head=h, loss_form=f,
                          dtype=d, batch=batch, seed=1 + i, init="xavier" if i % 2 else "he"))
    return specs


def kinks_block() -> list[Spec]:
    """Exact zeros in Z (and zero L1 residuals): every activation x a few heads."""
    heads = [("linear_mse", "logits"), ("linear_l1", "logits"), ("softmax_ce", "logits")]
    return [
        Spec(_sizes(3, WIDTHS[0], _n_out(h)), activation=a, head=h, loss_form=f, dtype=d,
             batch=BATCHES[1], seed=7, regime="kinks")
        for (h, f), a, d in product(heads, ACTIVATIONS, DTYPES)
    ]


def saturated_block() -> list[Spec]:
    """Large output logits for every bounded head, both forms, both dtypes."""
    heads = [(h, f) for h, f in head_forms() if h in
             ("sigmoid_bce", "softmax_ce", "sigmoid_mse", "tanh_mse")]
    return [
        Spec(_sizes(2, WIDTHS[0], _n_out(h)), activation=a, head=h, loss_form=f, dtype=d,
             batch=BATCHES[1], seed=11, regime="saturated")
        for (h, f), a, d in product(heads, ("tanh", "relu"), DTYPES)
    ]


def default_suite() -> list[Spec]:
    return core_block() + shape_block() + kinks_block() + saturated_block()


def quick_suite() -> list[Spec]:
    """A fast smoke run: every head/form once, both dtypes, one kink and one saturation."""
    acts = ("relu", "tanh", "gelu", "leaky_relu")
    specs = [
        Spec(_sizes(2, 8, _n_out(h)), activation=acts[i % len(acts)], head=h, loss_form=f,
             dtype=d, batch=4, seed=i)
        for i, ((h, f), d) in enumerate(product(head_forms(), DTYPES))
    ]
    specs.append(Spec(_sizes(3, 8, 2), activation="leaky_relu", head="linear_l1",
                      dtype="float32", batch=16, seed=7, regime="kinks"))
    specs.append(Spec(_sizes(2, 8, 2), activation="tanh", head="sigmoid_bce",
                      loss_form="probs", dtype="float32", batch=16, seed=11,
                      regime="saturated"))
    return specs


SUITES: dict[str, tuple[Callable[[], list[Spec]], str]] = {
    "default": (default_suite, "every head/form, activation, dtype, depth 1-4, two widths "
                "and batches, regimes normal/kinks/saturated"),
    "quick": (quick_suite, "one case per head/form and dtype, plus a kink and a "
              "saturation case"),
    "core": (core_block, "every activation x head/form x dtype at depth 2"),
    "shapes": (shape_block, "depths 1-4 x widths x batches x dtypes"),
    "kinks": (kinks_block, "exact zeros at relu/leaky_relu/L1 kinks"),
    "saturated": (saturated_block, "output logits ~50: composed-loss saturation"),
}
