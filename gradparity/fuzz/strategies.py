"""hypothesis strategies for fuzz recipes (sizes, activations, heads and forms, dtypes,
init scales, and the kinds of data of `gradparity.fuzz.recipe`)."""

from __future__ import annotations

from hypothesis import strategies as st

from gradparity.core.spec import ACTIVATIONS, DTYPES, HEADS, head_forms
from gradparity.fuzz.recipe import (
    B_KINDS,
    INIT_SCALES,
    MAX_BATCH,
    MAX_DEPTH,
    MAX_WIDTH,
    OUT_KINDS,
    SPECIAL_VALUES,
    W_KINDS,
    X_KINDS,
    Y_KINDS,
    Recipe,
)

MAX_SPECIALS = 3


def _small_first(low: int, high: int) -> st.SearchStrategy[int]:
    """An integer in [low, high], half the time at most low + 3: the first counterexample
    met is then often small already (shrinking cannot trade a size for a magnitude)."""
    return st.one_of(st.integers(low, min(high, low + 3)), st.integers(low, high))


@st.composite
def recipes(draw: st.DrawFn) -> Recipe:
    """A `Recipe`; shrinks towards one layer, width 1, batch 1, seed 0, relu, linear_mse,
    float32 and the plainest kind of each data choice."""
    head, form = draw(st.sampled_from(head_forms()))
    depth = draw(_small_first(1, MAX_DEPTH))
    hidden = [draw(_small_first(1, MAX_WIDTH)) for _ in range(depth)]
    n_out = draw(_small_first(HEADS[head].min_outputs, MAX_WIDTH))
    sizes = (*hidden, n_out)
    names = ["X"] + [f"{p}{layer}" for layer in range(1, depth + 1) for p in ("W", "b")]
    specials = draw(st.lists(st.tuples(st.sampled_from(names), st.integers(0, 4095),
                                       st.sampled_from(SPECIAL_VALUES)),
                             max_size=MAX_SPECIALS))
    return Recipe(
        sizes=sizes,
        activation=draw(st.sampled_from(ACTIVATIONS)),
        head=head,
        loss_form=form,
        dtype=draw(st.sampled_from(DTYPES)),
        batch=draw(_small_first(1, MAX_BATCH)),
        seed=draw(st.integers(0, 2**16)),
        init_scale=draw(st.sampled_from(INIT_SCALES)),
        x_kind=draw(st.sampled_from(X_KINDS)),
        w_kind=draw(st.sampled_from(W_KINDS)),
        b_kind=draw(st.sampled_from(B_KINDS)),
        out_kind=draw(st.sampled_from(OUT_KINDS)),
        y_kind=draw(st.sampled_from(Y_KINDS)),
        specials=tuple(specials),
    )
