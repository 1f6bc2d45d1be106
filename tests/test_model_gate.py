"""Your own model in the CI gate: `assert_grads_match`, the pytest marker and
``gradparity check --torch/--jax`` take a torch module (instance, class, factory) or a JAX
function as ``debug`` does, with the same findings."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

import gradparity.ci.assertions  # noqa: F401 - loaded before the inner sessions
from gradparity.ci.assertions import assert_grads_match, check_grads
from gradparity.cli import main
from gradparity.core.errors import UsageError

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
import gradparity.debug.jax_model  # noqa: E402,F401
import gradparity.debug.torch_session  # noqa: E402,F401

pytest_plugins = ["pytester"]

MODELS = Path(__file__).resolve().parent / "debug_cases" / "models"
sys.path.insert(0, str(MODELS))
import custom_backward as cb  # noqa: E402


def test_a_correct_model_passes_as_instance_class_factory_and_target(monkeypatch):
    table = assert_grads_match(cb.correct(), backends=[])
    assert set(table["backend"]) == {"user"} and (table["status"] == "pass").all()
    assert_grads_match(cb.relu_correct, backends=[], dtype="float64")
    assert_grads_match(cb.ReluNet, backends=[], dtype="float64")
    monkeypatch.chdir(MODELS)
    assert_grads_match("mnist_functional.py:Net", backends=[])


def test_a_wrong_backward_fails_with_the_debug_finding():
    with pytest.raises(AssertionError) as info:
        assert_grads_match(cb.wrong_sigmoid_at_output(), backends=[])
    text = str(info.value)
    assert text.startswith("torch model CustomNet vs reference: head softmax_ce (logits)")
    assert "First divergence: dZ2" in text
    assert "sigmoid'(A2) where sigmoid'(Z2) belongs" in text
    assert "def backward(ctx, grad_output):" in text
    assert "Also failing (not inherited): dZ1" in text


def test_the_models_own_data_is_used():
    x = torch.linspace(-1, 1, 15, dtype=torch.float64).reshape(3, 5)
    y = torch.tensor([0, 2, 1])
    r = check_grads(cb.correct(), backends=[], X=x, Y=y)
    assert r.ok
    assert r.table["batch"].iloc[0] == 3


def test_a_jax_function_with_a_wrong_custom_vjp_fails(monkeypatch):
    monkeypatch.chdir(MODELS)
    with pytest.raises(AssertionError, match="First divergence: dZ2"):
        assert_grads_match("jax_mlp.py:mlp_bad_softplus", backends=[])
    assert check_grads("jax_mlp.py:loss", backends=["torch"]).ok


def test_spec_only_options_are_refused():
    from gradparity.core.spec import Spec

    with pytest.raises(TypeError, match="loss: an option of a model check only"):
        check_grads(Spec((2, 3, 1)), backends=["reference"], loss="MSELoss")
    with pytest.raises(UsageError, match="colour: not an option of a model check"):
        check_grads(cb.correct(), backends=[], colour="red")


@pytest.mark.parametrize("target, code, text", [
    ("custom_backward.py:relu_correct", 0, "Gradients match."),
    ("custom_backward.py:wrong_bias_mean", 1, "First divergence: db2"),
    ("sequential_dropout.py:with_batchnorm", 2, ""),
])
def test_gradparity_check_torch(capsys, monkeypatch, target, code, text):
    monkeypatch.chdir(MODELS)
    assert main(["check", "--torch", target, "--backends", "none"]) == code
    out, err = capsys.readouterr()
    assert text in out
    if code == 2:
        assert err.count("\n") == 1 and "BatchNorm1d" in err


def test_gradparity_check_jax_and_usage(capsys, monkeypatch):
    monkeypatch.chdir(MODELS)
    assert main(["check", "--jax", "jax_mlp.py:mlp_bad_softplus", "--backends", "none"]) == 1
    assert "def bad_softplus_bwd(y, g):" in capsys.readouterr().out
    assert main(["check"]) == 2
    assert "give --baseline FILE, or your model" in capsys.readouterr().err
    assert main(["check", "--baseline", "b.jsonl", "--loss", "MSELoss"]) == 2


def test_the_marker_takes_models(pytester):
    pytester.makepyfile(test_models=f'''
import sys
import pytest
sys.path.insert(0, {str(MODELS)!r})
import custom_backward as cb


@pytest.mark.gradparity(model=[cb.correct, cb.wrong_relu_mask], backends=[])
def test_model(gradparity_check):
    gradparity_check()


@pytest.mark.gradparity(model={str(MODELS / "jax_column.py") + ":loss"!r}, backends=[],
                        batch=5)
def test_jax(gradparity_check):
    table = gradparity_check()
    assert table["batch"].iloc[0] == 5
''')
    r = pytester.runpytest("-p", "no:cacheprovider")
    r.assert_outcomes(passed=2, failed=1)
    text = r.stdout.str()
    assert "test_model[wrong_relu_mask]" in text
    assert "First divergence: dZ1" in text
    assert "dA1 itself: the factor relu'(Z1) is missing" in text


def test_the_default_backends_cross_check_the_other_framework():
    r = check_grads(cb.relu_correct())
    assert r.ok
    assert set(r.table["backend"]) == {"user", "jax"}
    assert np.isfinite(r.table["max_abs_err"].dropna()).all()
