"""Spec validation: every bad field is a one-line SpecError naming field, value, expectation."""

import numpy as np
import pytest

from gradparity.core.errors import SpecError
from gradparity.core.spec import Spec
from gradparity.reference.case import make_case


@pytest.mark.parametrize(
    ("kwargs", "field", "expected"),
    [
        ({"sizes": (3, 4, 2), "activation": "swish"}, "activation", "one of relu"),
        ({"sizes": (3, 0, 2)}, "sizes[1]", "an integer from 1"),
        ({"sizes": (3,)}, "sizes", "list of 2 to"),
        ({"sizes": "3,4"}, "sizes", "a list"),
        ({"sizes": (3, 4, 1), "head": "softmax_ce"}, "sizes[-1]", "at least 2 outputs"),
        ({"sizes": (3, 2), "head": "linear_mse", "loss_form": "probs"}, "loss_form", "logits"),
        ({"sizes": (3, 2), "dtype": "float16"}, "dtype", "float32"),
        ({"sizes": (3, 2), "batch": 0}, "batch", "an integer from 1"),
        ({"sizes": (3, 2), "seed": -1}, "seed", "non-negative"),
        ({"sizes": (3, 2), "regime": "wild"}, "regime", "normal"),
        ({"sizes": (2, 3), "head": "softmax_ce", "batch": 2, "targets": [[0, 3]]},
         "targets[0][1]", "class index in [0, 3)"),
        ({"sizes": (2, 1), "head": "sigmoid_bce", "batch": 2, "targets": [[0, 2]]},
         "targets[0][1]", "label in [0, 1]"),
        ({"sizes": (2, 1), "batch": 2, "inputs": [[0.0, float("nan")], [1.0, 2.0]]},
         "inputs[0][1]", "a finite number"),
        ({"sizes": (2, 1), "batch": 2, "inputs": [[0.0, 1.0]]}, "inputs", "shape (n0, m)"),
    ],
)
def test_bad_specs_name_field_value_and_expectation(kwargs, field, expected):
    with pytest.raises(SpecError) as info:
        Spec(**kwargs)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(f"{field}=")
    assert expected in msg


def test_loss_form_defaults_to_the_heads_first_form():
    assert Spec((2, 2), head="sigmoid_bce").loss_form == "logits"
    assert Spec((2, 2), head="tanh_mse").loss_form == "probs"


def test_case_is_deterministic_and_cast_once():
    s = Spec((3, 4, 2), dtype="float32", seed=5)
    a, b = make_case(s), make_case(s)
    for k in a.parameters:
        assert a.parameters[k].dtype == np.float32
        np.testing.assert_array_equal(a.parameters[k], b.parameters[k])
    d64 = make_case(s.replace(dtype="float64"))
    np.testing.assert_array_equal(a.X, d64.X.astype(np.float32))


def test_case_ids_are_unique_per_field():
    base = Spec((3, 4, 2))
    variants = [base, base.replace(seed=1), base.replace(dtype="float32"),
                base.replace(regime="kinks"), base.replace(init="xavier"),
                base.replace(batch=9), base.replace(activation="tanh")]
    assert len({v.case_id for v in variants}) == len(variants)


def test_kinks_regime_has_exact_zeros_and_saturated_has_large_logits():
    from gradparity.reference.mlp import reference_gradients

    k = make_case(Spec((5, 8, 8, 2), regime="kinks", batch=16, head="linear_l1"))
    g = reference_gradients(k)
    assert (g.forward["Z1"] == 0).sum() > 0
    assert (g.forward["Z3"] - k.Y == 0).sum() > 0  # zero L1 residuals
    s = make_case(Spec((5, 8, 2), regime="saturated", head="sigmoid_bce", dtype="float32"))
    gs = reference_gradients(s)
    assert np.abs(gs.forward["Z2"]).max() == pytest.approx(50.0, rel=1e-5)
    assert ((gs.forward["A2"] == 1) | (gs.forward["A2"] == 0)).any()


def test_explicit_data_overrides_draws():
    s = Spec((2, 3), head="softmax_ce", batch=2, inputs=[[1, 2], [3, 4]], targets=[[2, 0]])
    c = make_case(s)
    np.testing.assert_array_equal(c.X, [[1, 2], [3, 4]])
    np.testing.assert_array_equal(c.Y, [[0, 1], [0, 0], [1, 0]])
    assert list(c.labels) == [2, 0]
    assert "data" in s.case_id


@pytest.mark.parametrize("field", ["activation", "head", "loss_form", "dtype", "init",
                                   "regime"])
@pytest.mark.parametrize("value", [["relu"], 3, None, {"a": 1}])
def test_choice_fields_reject_non_strings_with_a_message(field, value):
    if field == "loss_form" and value is None:
        return  # None picks the head's default form
    with pytest.raises(SpecError, match=f"^{field}="):
        Spec((2, 3, 2), **{field: value})
