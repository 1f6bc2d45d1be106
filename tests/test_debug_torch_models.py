"""``gradparity debug --torch`` on models written as PyTorch code is written: subclasses with
functional or module activations, Sequential with Flatten/Dropout, custom autograd.Function
layers (a correct backward and three wrong ones), each end to end through the CLI."""

from __future__ import annotations

from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from gradparity.cli import main  # noqa: E402
from gradparity.core.errors import UsageError  # noqa: E402
from gradparity.debug import debug_torch  # noqa: E402

MODELS = Path(__file__).resolve().parent / "debug_cases" / "models"


def cli(capsys, monkeypatch, target: str, *extra: str) -> tuple[int, str, str]:
    monkeypatch.chdir(MODELS)
    code = main(["debug", "--torch", target, "--backends", "none", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_subclass_with_functional_activations_and_log_softmax(capsys, monkeypatch):
    code, out, err = cli(capsys, monkeypatch, "mnist_functional.py:Net")
    assert code == 0, out + err
    assert ("recovered   Linear(784, 64) -> relu -> Linear(64, 32) -> relu -> Linear(32, 10) "
            "-> log_softmax -> head softmax_ce") in out
    assert "line 30: loss = F.nll_loss(output, target)" in out
    assert "float32, m = 8 examples" in out
    assert "Result: everything agrees. Exit 0." in out


def test_subclass_with_module_activations_and_mse_mean_scaling(capsys, monkeypatch):
    code, out, err = cli(capsys, monkeypatch, "regressor_modules.py:Regressor")
    assert code == 0, out + err
    assert "Linear(6, 20) -> tanh -> Linear(20, 20) -> tanh -> Linear(20, 3) -> head " \
        "linear_mse" in out
    assert "nn.MSELoss(reduction='mean') = J x 2/n_out = 0.666667 x the seed's J" in out
    code, out, _ = cli(capsys, monkeypatch, "regressor_modules.py:model", "--loss",
                       "MSELoss(reduction='sum')")
    assert code == 0 and "= J x 2m = 16 x the seed's J" in out


def test_the_scaling_is_applied_not_just_named(monkeypatch):
    monkeypatch.chdir(MODELS)
    from gradparity.debug.torch_session import import_target

    model, label, module = import_target("regressor_modules.py:model")
    mean = debug_torch(model, backends=(), module=module)
    plain = debug_torch(model, backends=(), head="linear_mse")
    assert mean.passed and plain.passed
    assert mean.convention.factor == pytest.approx(2 / 3)
    for k in ("dW1", "dZ2", "dA0"):
        c_mean, c_plain = mean.check(k), plain.check(k)
        assert c_mean.status == c_plain.status == "pass"


def test_sequential_with_flatten_and_dropout_in_train_mode(capsys, monkeypatch):
    code, out, err = cli(capsys, monkeypatch, "sequential_dropout.py:build")
    assert code == 0, out + err
    assert "Dropout held as the identity ([3], [6])" in out
    assert "it was in train() mode: checked in eval() mode (Dropout off)" in out
    assert "from your file (loss_fn): nn.CrossEntropyLoss(reduction='mean')" in out


def test_batchnorm_is_refused_in_one_line(capsys, monkeypatch):
    code, out, err = cli(capsys, monkeypatch, "sequential_dropout.py:with_batchnorm")
    assert code == 2 and out == ""
    assert err.count("\n") == 1 and "Traceback" not in err
    assert "module [2] BatchNorm1d(32, " in err and "a normalisation layer" in err


def test_correct_custom_backwards_pass(capsys, monkeypatch):
    code, out, err = cli(capsys, monkeypatch, "custom_backward.py:correct")
    assert code == 0, out + err
    assert "Linear(5, 8) [custom LinearFunction] -> sigmoid [custom SigmoidFunction]" in out
    code, out, err = cli(capsys, monkeypatch, "custom_backward.py:relu_correct")
    assert code == 0, out + err


@pytest.mark.parametrize("factory, first, code, line, also", [
    ("wrong_bias_mean", "db2", "extra_1_over_m", "def backward(ctx, grad_output):", ["db1"]),
    ("wrong_sigmoid_at_output", "dZ2", "derivative_at_A", "def backward(ctx, grad_output):",
     ["dZ1"]),
    ("wrong_relu_mask", "dZ1", "missing_derivative", "def backward(ctx, grad_output):", []),
])
def test_a_wrong_custom_backward_is_named_at_its_layer(capsys, monkeypatch, factory, first,
                                                       code, line, also):
    exit_code, out, err = cli(capsys, monkeypatch, f"custom_backward.py:{factory}")
    assert exit_code == 1, out + err
    assert f"First divergence: {first}" in out
    assert f"[{code}]" in out
    assert line in out
    from gradparity.debug.torch_session import import_target

    model, label, module = import_target(f"custom_backward.py:{factory}")
    r = debug_torch(model, backends=(), module=module, label=label)
    assert r.first.key == first and r.first.diagnosis.code == code
    assert [c.key for c in r.findings] == [first, *also]
    assert r.first.location.file.endswith("custom_backward.py")
    assert ".backward" in r.first.reason


def test_the_model_and_its_gradients_are_untouched():
    import sys

    sys.path.insert(0, str(MODELS))
    import custom_backward as cb

    model = cb.correct()
    before = [p.detach().clone() for p in model.parameters()]
    model.train()
    r = debug_torch(model, backends=())
    assert r.passed
    assert model.training
    assert all(torch.equal(a, b) for a, b in zip(before, model.parameters(), strict=True))
    assert all(p.grad is None for p in model.parameters())
    assert torch.autograd.Function.apply.__func__ is not None


@pytest.mark.parametrize("name, text", [
    ("F.relu", "torch.nn.functional.relu(self.fc1(x))"),
    ("torch.relu", "torch.relu(self.fc1(x))"),
    ("x.clamp", "self.fc1(x).clamp(min=0)"),
    ("maximum", "torch.maximum(self.fc1(x), torch.tensor(0.0, dtype=x.dtype))"),
    ("leaky", "torch.nn.functional.leaky_relu(self.fc1(x), 0.01)"),
    ("gelu", "torch.nn.functional.gelu(self.fc1(x), approximate='tanh')"),
    ("elu", "torch.nn.functional.elu(self.fc1(x))"),
    ("silu", "torch.nn.functional.silu(self.fc1(x))"),
    ("softplus", "torch.nn.functional.softplus(self.fc1(x))"),
    ("sigmoid", "torch.sigmoid(self.fc1(x))"),
    ("tanh", "self.fc1(x).tanh()"),
    ("inplace", "torch.nn.functional.relu(self.fc1(x), inplace=True)"),
])
def test_functional_activations_are_recognised(tmp_path, name, text):
    src = f'''
import torch
from torch import nn


class M(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(3)
        self.fc1 = nn.Linear(4, 6)
        self.fc2 = nn.Linear(6, 2)

    def forward(self, x):
        h = {text}
        return torch.sigmoid(self.fc2(h))
'''
    f = tmp_path / "m.py"
    f.write_text(src)
    from gradparity.debug.torch_session import import_target

    model, label, module = import_target(f"{f}:M")
    r = debug_torch(model, backends=(), module=module, dtype="float64")
    expected = {"F.relu": "relu", "torch.relu": "relu", "x.clamp": "relu", "maximum": "relu",
                "leaky": "leaky_relu", "gelu": "gelu_tanh", "elu": "elu", "silu": "silu",
                "softplus": "softplus", "sigmoid": "sigmoid", "tanh": "tanh",
                "inplace": "relu"}[name]
    assert r.spec.activation == expected
    assert r.spec.head == "sigmoid_bce" and r.spec.loss_form == "probs"
    assert r.passed, r.report()


def test_a_factory_needing_arguments_is_a_usage_error(tmp_path):
    f = tmp_path / "m.py"
    f.write_text("from torch import nn\n\ndef make(width):\n    return nn.Linear(3, width)\n")
    from gradparity.debug.torch_session import import_target

    obj, label, _ = import_target(f"{f}:make")
    with pytest.raises(UsageError, match="calling make\\(\\) raised TypeError"):
        debug_torch(obj, label=label)


CONSTRUCTOR_ARGS = '''
import torch.nn as nn

input_size, hidden_size, num_classes = 12, 7, 3


class NeuralNet(nn.Module):
    def __init__(self, input_size, hidden_size, num_classes):
        super().__init__()
        self.fc1 = nn.Linear(input_size, hidden_size)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(hidden_size, num_classes)

    def forward(self, x):
        return self.fc2(self.relu(self.fc1(x)))


class Other(nn.Module):
    def __init__(self, width):
        super().__init__()
        self.fc = nn.Linear(4, width)

    def forward(self, x):
        return self.fc(x)


other = Other(2)
criterion = nn.BCELoss()  # for another model of the file: does not fit logits
'''


def test_a_class_is_built_as_the_file_builds_it(tmp_path, capsys, monkeypatch):
    (tmp_path / "net.py").write_text(CONSTRUCTOR_ARGS)
    monkeypatch.chdir(tmp_path)
    assert main(["debug", "--torch", "net.py:NeuralNet", "--backends", "none"]) == 0
    out = capsys.readouterr().out
    assert "Linear(12, 7) -> relu -> Linear(7, 3) -> head softmax_ce" in out
    assert ("default for logits (3 outputs) (--loss to change); nn.BCELoss(reduction='mean') "
            "in your file does not fit") in out
    assert main(["debug", "--torch", "net.py:Other", "--backends", "none"]) == 0
    assert "Linear(4, 2) -> head softmax_ce" in capsys.readouterr().out
    assert main(["debug", "--torch", "net.py:NeuralNet", "--loss", "criterion"]) == 2
    assert "logits (3 outputs) with nn.BCELoss(reduction='mean') is no gradparity head" in \
        capsys.readouterr().err


SIDE_COMPUTATIONS = '''
import torch
from torch import nn
import torch.nn.functional as F


class Logged(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 10)
        self.fc2 = nn.Linear(10, 3)

    def forward(self, x):
        h = F.relu(self.fc1(x))
        self.last_mean = h.mean()
        assert not torch.isnan(h).any()
        print("hidden", tuple(h.shape))
        return self.fc2(h)


class Scaled(nn.Module):
    def __init__(self):
        super().__init__()
        self.fc1 = nn.Linear(6, 10)
        self.fc2 = nn.Linear(10, 3)

    def forward(self, x):
        h = F.relu(self.fc1(x)) * 2.0
        return self.fc2(h)
'''


def test_side_computations_are_not_layers_but_changes_on_the_path_are(tmp_path, capsys,
                                                                       monkeypatch):
    (tmp_path / "side.py").write_text(SIDE_COMPUTATIONS)
    monkeypatch.chdir(tmp_path)
    assert main(["debug", "--torch", "side.py:Logged", "--backends", "none"]) == 0
    out = capsys.readouterr().out
    assert "Linear(6, 10) -> relu -> Linear(10, 3) -> head softmax_ce" in out
    assert "Your code printed 1 line:\n  | hidden (8, 10)" in out
    assert not out.startswith("hidden")
    assert main(["debug", "--torch", "side.py:Scaled", "--backends", "none"]) == 2
    err = capsys.readouterr().err
    assert "mul on the path from input to output at side.py:28 (h = F.relu(self.fc1(x)) * " \
        "2.0) is not supported" in err


FROM_SCRATCH = '''
import torch
from torch import nn


class Scratch(nn.Module):
    def __init__(self, n_in=6, n_hidden=10, n_out=3):
        super().__init__()
        torch.manual_seed(0)
        self.W1 = nn.Parameter(torch.randn(n_in, n_hidden) * 0.3)
        self.b1 = nn.Parameter(torch.zeros(n_hidden))
        self.W2 = nn.Parameter(torch.randn(n_hidden, n_out) * 0.3)
        self.b2 = nn.Parameter(torch.zeros(n_out))

    def forward(self, x):
        h = torch.sigmoid(x @ self.W1 + self.b1)
        return torch.softmax(h @ self.W2 + self.b2, dim=1)


class NoBias(nn.Module):
    def __init__(self):
        super().__init__()
        self.W1 = nn.Parameter(torch.randn(6, 4))

    def forward(self, x):
        return x @ self.W1
'''


def test_a_linear_layer_written_as_x_at_w_plus_b(tmp_path, capsys, monkeypatch):
    (tmp_path / "scratch.py").write_text(FROM_SCRATCH)
    monkeypatch.chdir(tmp_path)
    from gradparity.debug.torch_session import import_target

    model, label, module = import_target("scratch.py:Scratch")
    r = debug_torch(model, backends=(), dtype="float64", module=module, label=label)
    assert r.passed, r.report()
    np_w1 = r.case.parameters["W1"]
    assert np_w1.shape == (10, 6)  # column-major: W1 transposed
    assert r.notes["network"] == ("Linear(6, 10) -> sigmoid -> Linear(10, 3) -> softmax -> "
                                  "head softmax_ce (probs)")
    assert main(["debug", "--torch", "scratch.py:NoBias"]) == 2
    assert "x @ W1 without a bias parameter added" in capsys.readouterr().err


def test_module_attr_form_and_layers_defined_out_of_order(tmp_path, capsys, monkeypatch):
    code, out, err = cli(capsys, monkeypatch, "custom_backward:relu_correct")
    assert code == 0, out + err
    (tmp_path / "reordered.py").write_text(
        "import torch.nn as nn\nimport torch.nn.functional as F\n\n\n"
        "class Reordered(nn.Module):\n    def __init__(self):\n        super().__init__()\n"
        "        self.out = nn.Linear(16, 2)\n        self.fc1 = nn.Linear(9, 16)\n\n"
        "    def forward(self, x):\n        return self.out(F.relu(self.fc1(x)))\n")
    monkeypatch.chdir(tmp_path)
    assert main(["debug", "--torch", "reordered.py:Reordered", "--backends", "none"]) == 0
    assert "Linear(9, 16) -> relu -> Linear(16, 2) -> head softmax_ce" in \
        capsys.readouterr().out
