"""``gradparity debug --torch``: a user's nn.Sequential, its own autograd, per layer."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from gradparity.cli import main  # noqa: E402
from gradparity.core.errors import UsageError  # noqa: E402
from gradparity.debug import debug_torch  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests" / "debug_cases"))
import torch_models as tm  # noqa: E402


def test_the_example_model_agrees_with_the_reference_and_jax(capsys, monkeypatch):
    pytest.importorskip("jax")
    monkeypatch.chdir(ROOT)
    assert main(["debug", "--torch", "examples/torch_model.py:model"]) == 0
    out = capsys.readouterr().out
    assert "network     4-16-8-3, gelu_tanh hidden layers, head softmax_ce (logits)" in out
    assert "reference = jax on all 19 tensors" in out
    assert "yours vs jax" in out
    assert "Result: everything agrees. Exit 0." in out


def test_weights_come_from_the_module_and_the_module_is_untouched():
    model = tm.good()
    before = [p.detach().clone() for p in model.parameters()]
    r = debug_torch(model, backends=())
    assert r.passed, r.report()
    assert r.spec.sizes == (3, 6, 6, 1) and r.spec.activation == "tanh"
    assert r.spec.head == "sigmoid_bce" and r.spec.dtype == "float64"
    np.testing.assert_array_equal(r.case.parameters["W2"], model[2].weight.detach().numpy())
    np.testing.assert_array_equal(r.case.parameters["b3"][:, 0], model[4].bias.detach().numpy())
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters())


def test_a_custom_activation_with_a_wrong_backward_is_localised():
    r = debug_torch(tm.sigmoid_at_output(), backends=())
    assert r.first.key == "dZ2"
    assert r.first.diagnosis.code == "derivative_at_A"
    assert r.first.location.source == "def backward(ctx, grad):"
    assert r.first.location.line == 26
    assert "_SigmoidDerivativeAtOutput.backward" in r.first.reason
    assert [c.key for c in r.findings] == ["dZ2", "dZ1"]
    assert r.check("dW2").status == "inherited"


def test_a_custom_linear_with_a_doubled_weight_gradient_is_a_factor_2():
    r = debug_torch(tm.doubled_weight_grad(), backends=())
    assert [c.key for c in r.findings] == ["dW2"]
    assert r.first.diagnosis.code == "factor_2"
    assert r.first.location.source == "def backward(ctx, grad):"
    assert r.first.location.line == 44


def test_an_exception_in_a_custom_backward_is_a_finding_with_the_users_line():
    r = debug_torch(tm.backward_raises(), backends=())
    assert r.first.key == "dZ1" and r.first.status == "error"
    assert "RuntimeError: mat1 and mat2 shapes cannot be multiplied" in r.first.reason
    assert "@ torch.ones(3, 3)" in r.first.location.source
    assert all(r.check(k).status == "pass" for k in ("dZ2", "dW2", "db2", "dA1"))
    assert r.check("dW1").status == "skipped"


def test_nested_sequentials_float32_and_dtype_override():
    r = debug_torch(tm.nested, backends=())
    assert r.passed and r.spec.activation == "leaky_relu" and r.spec.dtype == "float32"
    r = debug_torch(tm.nested, backends=(), dtype="float64", head="linear_mse")
    assert r.passed and r.spec.dtype == "float64"
    assert tm.nested[0][0].weight.dtype == torch.float32  # converted a copy only


def test_user_vs_jax_rows_are_in_the_table():
    pytest.importorskip("jax")
    r = debug_torch(tm.good(), head="linear_mse")
    df = r.table()
    vs = df[df["against"] == "jax"]
    assert len(vs) == len(r.checks) and (vs["status"] == "pass").all()
    assert set(df["backend"]) == {"user", "jax"}


@pytest.mark.parametrize("name", sorted(tm.unsupported))
def test_unsupported_modules_are_one_line_usage_errors(name):
    model, message = tm.unsupported[name]
    loss = torch.nn.CrossEntropyLoss() if name == "softmax_then_ce" else None
    with pytest.raises(UsageError) as info:
        debug_torch(model, label=name, loss=loss)
    assert message in str(info.value), str(info.value)
    assert "\n" not in str(info.value)


def test_unsupported_module_on_the_command_line_exits_2(capsys, monkeypatch):
    monkeypatch.chdir(ROOT)
    code = main(["debug", "--torch", "tests/debug_cases/torch_models.py:relu_at_output"])
    assert code == 2
    err = capsys.readouterr().err
    assert "nn.ReLU at [3] after the last Linear: no head applies it" in err
    assert err.count("\n") == 1
