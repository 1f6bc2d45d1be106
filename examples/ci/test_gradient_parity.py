"""Gradient-parity tests with the gradparity pytest plugin.

    python -m pytest examples/ci --gradparity-baseline examples/ci/gradparity-baseline.json

fails when a backend disagrees with the NumPy reference, and when a tensor's error grew
beyond 4x its baseline value (or its floor). After an intended change (a new torch or jax,
new cases), refresh the baseline by adding --gradparity-update-baseline and commit it.
"""

from dataclasses import replace

import numpy as np
import pytest

import gradparity as gp
from gradparity.ci.assertions import assert_grads_match


# One test item per spec: lists are axes of a cartesian product, as in a TOML [[sweep]].
@pytest.mark.gradparity(sizes=[(4, 16, 3), (4, 16, 16, 3)], activation=["relu", "gelu", "tanh"],
                        head="softmax_ce", dtype="float32", batch=8)
def test_classifier(gradparity_check):
    gradparity_check()  # this item's spec, on torch and jax


@pytest.mark.gradparity(sizes=(6, 32, 1), activation="silu", head="linear_huber",
                        dtype=["float32", "float64"], backends=["torch"])
def test_regressor_on_torch(gradparity_check):
    gradparity_check()


def test_my_own_weights(gradparity_check):
    """Your parameters and data: a Case whose arrays you replace."""
    case = gp.make_case(gp.Spec((3, 8, 2), activation="tanh", head="sigmoid_bce",
                                loss_form="probs", dtype="float64", batch=4))
    rng = np.random.default_rng(2024)
    weights = {k: rng.uniform(-1.0, 1.0, v.shape) for k, v in case.parameters.items()}
    gradparity_check(replace(case, parameters=weights))


def test_plain_assertion():
    """No fixture, no baseline: parity only, with your own tolerances."""
    assert_grads_match(gp.Spec((2, 4, 2), activation="elu", dtype="float64"), ["torch", "jax"],
                       rtol=1e-9, atol=1e-12)
