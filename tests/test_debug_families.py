"""gradparity debug on learner code written in the common NumPy API families, unchanged.

For each family, tests/debug_families/<family>/ holds a correct program written the way
that family's learners write it (its names, caches, helpers, training code at import
time). The correct program passes with no flags; each one-line mutant below is localised
at the right quantity and line, with the right cause.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest

from gradparity.cli import main
from gradparity.core.errors import UsageError
from gradparity.debug.api import debug_code

ROOT = Path(__file__).resolve().parents[1]
FAMILIES = ROOT / "tests" / "debug_families"
NONE: tuple[str, ...] = ()

PROGRAMS = {
    "dlai_2layer": "planar_classifier.py",
    "dlai_deep": "deep_classifier.py",
    "nielsen": "network.py",
    "cs231n": "neural_net.py",
}


def _copy(tmp_path: Path, family: str) -> Path:
    dest = tmp_path / family
    shutil.copytree(FAMILIES / family, dest,
                    ignore=shutil.ignore_patterns("__pycache__"))
    return dest


def _mutate(tmp_path: Path, family: str, file: str, old: str, new: str) -> Path:
    folder = _copy(tmp_path, family)
    path = folder / file
    text = path.read_text()
    assert text.count(old) == 1, f"{old!r} must occur once in {file}"
    path.write_text(text.replace(old, new))
    return folder / PROGRAMS[family]


@pytest.mark.parametrize("family", sorted(PROGRAMS))
def test_correct_program_passes_unchanged_with_no_flags(family, tmp_path, capsys,
                                                        monkeypatch):
    folder = _copy(tmp_path, family)
    monkeypatch.chdir(folder)
    code = main(["debug", PROGRAMS[family], "--backends", "none"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "  api         " in out
    assert "Result: everything agrees. Exit 0." in out


# family -> name -> (file, old line, new line, first finding, text of the line `where`
#                    points at, diagnosis code, text the diagnosis contains)
MUTANTS: dict[str, dict[str, tuple[str, str, str, str, str, str, str]]] = {
    "dlai_2layer": {
        "sigmoid_formula_for_tanh": (
            "planar_classifier.py", "dZ1 = np.dot(W2.T, dZ2) * (1 - np.power(A1, 2))",
            "dZ1 = np.dot(W2.T, dZ2) * (A1 * (1 - A1))", "dZ1", "A1 * (1 - A1)",
            "other_a_form", "sigmoid's derivative formula applied to tanh's output"),
        "db_wrong_axis": (
            "planar_classifier.py", "db1 = (1 / m) * np.sum(dZ1, axis=1, keepdims=True)",
            "db1 = (1 / m) * np.sum(dZ1, axis=0, keepdims=True)", "db1", "axis=0",
            "wrong_axis_sum", "axis 0"),
        "sign_flip": (
            "planar_classifier.py", "dZ2 = A2 - Y", "dZ2 = Y - A2", "dZ2", "dZ2 = Y - A2",
            "sign_flip", "the negative of the true value"),
        "missing_1_over_m": (
            "planar_classifier.py", "dW2 = (1 / m) * np.dot(dZ2, A1.T)",
            "dW2 = np.dot(dZ2, A1.T)", "dW2", "dW2 = np.dot(dZ2, A1.T)", "missing_1_over_m",
            "m = 8 times"),
        "output_derivative_at_hidden_layer": (
            "planar_classifier.py", "dZ1 = np.dot(W2.T, dZ2) * (1 - np.power(A1, 2))",
            "dZ1 = np.dot(W2.T, dZ2) * (A2 * (1 - A2))", "dZ1", "A2 * (1 - A2)",
            "output_derivative_at_hidden", "output activation's derivative is applied at "
            "hidden layer 1"),
        "mse_cost_with_cross_entropy_backprop": (
            "planar_classifier.py",
            "    logprobs = np.multiply(np.log(A2), Y) + np.multiply(np.log(1 - A2), (1 - Y))\n"
            "    cost = -np.sum(logprobs) / m",
            "    cost = np.sum((A2 - Y) ** 2) / (2 * m)", "dZ2", "dZ2 = A2 - Y",
            "output_derivative_missing", "without the factor sigmoid'(Z2)"),
    },
    "dlai_deep": {
        "tanh_formula_in_sigmoid_backward": (
            "dnn_helpers.py", "dZ = dA * s * (1 - s)", "dZ = dA * (1 - s * s)", "dZ3",
            "dZ = dA * (1 - s * s)", "other_a_form",
            "tanh's derivative formula applied to sigmoid's output"),
        "relu_at_the_output_layer": (
            "deep_classifier.py",
            'linear_activation_backward(dAL, current_cache, activation="sigmoid")',
            'linear_activation_backward(dAL, current_cache, activation="relu")', "dZ3",
            "dZ = np.array(dA, copy=True)", "hidden_derivative_at_output",
            "relu'(Z3) where sigmoid'(Z3) belongs"),
        "missing_1_over_m_in_linear_backward": (
            "deep_classifier.py", "dW = 1. / m * np.dot(dZ, A_prev.T)",
            "dW = np.dot(dZ, A_prev.T)", "dW3", "dW = np.dot(dZ, A_prev.T)",
            "missing_1_over_m", "the 1/m average is missing"),
        "dAL_sign_flip": (
            "deep_classifier.py", "dAL = - (np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))",
            "dAL = (np.divide(Y, AL) - np.divide(1 - Y, 1 - AL))", "dA3", "dAL = (np.divide",
            "sign_flip", "the sign is flipped"),
        "mse_cost_with_cross_entropy_backprop": (
            "deep_classifier.py",
            "cost = (1. / m) * (-np.dot(Y, np.log(AL).T) - np.dot(1 - Y, np.log(1 - AL).T))",
            "cost = (1. / (2 * m)) * np.sum((AL - Y) ** 2)", "dA3", "dAL = - (np.divide",
            "wrong_loss_derivative", "the cross-entropy's derivative where the squared "
            "error's belongs"),
    },
    "nielsen": {
        "output_sigmoid_prime_missing": (
            "network.py",
            "delta = self.cost_derivative(activations[-1], y) * sigmoid_prime(zs[-1])",
            "delta = self.cost_derivative(activations[-1], y)", "dW3",
            "return (output_activations - y)", "output_derivative_missing",
            "without the factor sigmoid'(Z3)"),
        "sigmoid_prime_at_the_activation": (
            "network.py", "sp = sigmoid_prime(z)", "sp = sigmoid_prime(activations[-l])",
            "dW2", "return sigmoid(z) * (1 - sigmoid(z))", "derivative_at_A",
            "sigmoid'(A2) where sigmoid'(Z2) belongs"),
        "tanh_formula_in_sigmoid_prime": (
            "network.py", "return sigmoid(z) * (1 - sigmoid(z))", "return 1 - sigmoid(z) ** 2",
            "dW3", "return 1 - sigmoid(z) ** 2", "other_a_form",
            "tanh's derivative formula applied to sigmoid's output"),
        "cost_derivative_sign": (
            "network.py", "return (output_activations - y)", "return (y - output_activations)",
            "dW3", "return (y - output_activations)", "sign_flip", "the sign is flipped"),
        "off_by_one_activation": (
            "network.py", "nabla_w[-l] = np.dot(delta, activations[-l - 1].transpose())",
            "nabla_w[-l] = np.dot(delta, activations[-l].transpose())", "dW2",
            "activations[-l].transpose()", "off_by_one", "uses A2 where A1 belongs"),
    },
    "cs231n": {
        "transposed_dW1": (
            "neural_net.py", "grads['W1'] = X.T.dot(dhidden) + 2 * reg * W1",
            "grads['W1'] = dhidden.T.dot(X) + 2 * reg * W1.T", "dW1", "dhidden.T.dot(X)",
            "transpose", "shape (10, 4) where (4, 10), the shape of W1, belongs"),
        "dscores_not_averaged": (
            "neural_net.py", "        dscores /= N\n", "        dscores /= 1\n", "dW2",
            "dscores[np.arange(N), y] -= 1", "missing_1_over_m", "the 1/m average is missing"),
        "db1_wrong_axis": (
            "neural_net.py", "grads['b1'] = np.sum(dhidden, axis=0)",
            "grads['b1'] = np.sum(dhidden, axis=1)", "db1", "axis=1", "wrong_axis_sum",
            "summed over the units (axis=1)"),
        "loss_summed_not_averaged": (
            "neural_net.py", "loss = np.sum(correct_logprobs) / N",
            "loss = np.sum(correct_logprobs)", "dW2", "dscores /= N", "extra_1_over_m",
            "applied twice"),
    },
}

_CASES = [(f, n) for f in MUTANTS for n in MUTANTS[f]]


@pytest.mark.parametrize(("family", "name"), _CASES, ids=[f"{f}-{n}" for f, n in _CASES])
def test_one_line_mutant_is_localised_with_its_cause(family, name, tmp_path):
    file, old, new, first_key, line, code, text = MUTANTS[family][name]
    path = _mutate(tmp_path, family, file, old, new)
    r = debug_code(path, backends=NONE)
    report = r.report()
    assert r.notes["api"].startswith(FAMILY_TITLES[family]), report
    first = r.first
    assert first is not None and first.key == first_key, report
    assert first.location is not None and line in first.location.source, report
    assert first.diagnosis is not None and first.diagnosis.code.split("+")[0] == code, report
    assert text in first.diagnosis.text, report
    assert r.exit_code == 1


FAMILY_TITLES = {
    "dlai_2layer": "deeplearning.ai 2-layer",
    "dlai_deep": "deeplearning.ai L-layer",
    "nielsen": "Network class",
    "cs231n": "cs231n-style net",
}


def test_family_returning_only_dW_db_is_never_told_dZ_is_missing(tmp_path):
    r = debug_code(_copy(tmp_path, "cs231n") / "neural_net.py", backends=NONE)
    assert "missing" not in r.report()
    r = debug_code(_copy(tmp_path, "nielsen") / "network.py", backends=NONE)
    assert r.passed and "missing" not in r.report()


def test_deep_first_course_version_key_layout_passes(tmp_path):
    """The first version stores dA of layer l - 1 under "dA" + str(l) (no dA0)."""
    path = _mutate(tmp_path, "dlai_deep", "deep_classifier.py",
                   '    grads["dA" + str(L - 1)], grads["dW" + str(L)], grads["db" + str(L)] = \\'
                   '\n        linear_activation_backward(dAL, current_cache, activation="sigmoid")'
                   '\n    for l in reversed(range(L - 1)):\n        current_cache = caches[l]'
                   '\n        dA_prev_temp, dW_temp, db_temp = linear_activation_backward('
                   '\n            grads["dA" + str(l + 1)], current_cache, activation="relu")'
                   '\n        grads["dA" + str(l)] = dA_prev_temp',
                   '    grads["dA" + str(L)], grads["dW" + str(L)], grads["db" + str(L)] = \\'
                   '\n        linear_activation_backward(dAL, current_cache, activation="sigmoid")'
                   '\n    for l in reversed(range(L - 1)):\n        current_cache = caches[l]'
                   '\n        dA_prev_temp, dW_temp, db_temp = linear_activation_backward('
                   '\n            grads["dA" + str(l + 2)], current_cache, activation="relu")'
                   '\n        grads["dA" + str(l + 1)] = dA_prev_temp')
    r = debug_code(path, backends=NONE)
    assert r.passed, r.report()
    assert "holds dA of layer l - 1" in r.notes["keys"]
    assert r.convention.name == "per_example"
    assert {c.key for c in r.checks if c.status == "pass"} >= {"dA0", "dA1", "dA2", "dA3"}


def test_an_assert_that_fires_is_attributed_to_the_quantity_it_checks(tmp_path):
    path = _mutate(tmp_path, "dlai_deep", "deep_classifier.py",
                   "db = 1. / m * np.sum(dZ, axis=1, keepdims=True)",
                   "db = 1. / m * np.sum(dZ, axis=0, keepdims=True)")
    r = debug_code(path, backends=NONE)
    first = r.first
    assert first is not None and first.key == "db3" and first.status == "error", r.report()
    assert "AssertionError" in first.reason
    assert first.location.source == "assert db.shape == b.shape"
    assert first.diagnosis is not None and first.diagnosis.code == "wrong_axis_sum"
    assert [c.key for c in r.findings] == ["db3"]  # dW3 is "not computed", not "missing"


def test_where_names_the_callers_of_a_helper(tmp_path):
    path = _mutate(tmp_path, "dlai_deep", "dnn_helpers.py", "dZ = dA * s * (1 - s)",
                   "dZ = dA * (1 - s * s)")
    report = debug_code(path, backends=NONE).report()
    where = next(ln for ln in report.splitlines() if ln.startswith("  where      "))
    assert "dnn_helpers.py:" in where
    assert "called from " in report and "sigmoid_backward(dA, activation_cache)" in report


def test_cs231n_l2_term_gradient_is_checked_against_the_loss(tmp_path):
    path = _mutate(tmp_path, "cs231n", "neural_net.py",
                   "grads['W2'] = hidden.T.dot(dscores) + 2 * reg * W2",
                   "grads['W2'] = hidden.T.dot(dscores) + reg * W2")
    r = debug_code(path, backends=NONE)
    assert r.exit_code == 1 and not r.findings
    assert "the L2 term" in r.problems[0].text and "gets reg * W2" in r.problems[0].text
    assert "gradient is 2 * reg * W2" in r.problems[0].text
    assert "+ reg * W2" in r.problems[0].location.source


def test_api_can_be_forced_and_a_wrong_name_is_a_usage_error(tmp_path, capsys):
    folder = _copy(tmp_path, "dlai_2layer")
    r = debug_code(folder / "planar_classifier.py", api="dlai_2layer", backends=NONE)
    assert r.passed
    with pytest.raises(UsageError, match="--api='keras'"):
        debug_code(folder / "planar_classifier.py", api="keras")
    with pytest.raises(UsageError, match="--api=nielsen: your code has none"):
        debug_code(folder / "planar_classifier.py", api="nielsen")
    assert main(["debug", str(folder / "planar_classifier.py"), "--api", "keras"]) == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_code_of_no_known_family_is_a_usage_error(tmp_path):
    p = tmp_path / "other.py"
    p.write_text("def train(X, Y):\n    return 0\n")
    with pytest.raises(UsageError, match="no backprop of a known API"):
        debug_code(p)


def test_seed_files_still_take_the_seed_path():
    r = debug_code(ROOT / "examples" / "seed_backprop.py", backends=NONE)
    assert r.passed and r.notes["api"].startswith("the seed's")


def test_training_at_import_time_is_cut_off_and_definitions_kept(tmp_path, monkeypatch):
    from gradparity.debug.families import load

    folder = _copy(tmp_path, "dlai_2layer")
    p = folder / "planar_classifier.py"
    p.write_text(p.read_text() + "\nwhile True:\n    pass\n")
    monkeypatch.setattr(load, "IMPORT_TIME_LIMIT", 1.0)
    r = debug_code(p, backends=NONE)
    assert r.passed
    assert "ran longer than 1 s" in r.notes["import"]
    r = debug_code(p, backends=NONE, definitions_only=True)
    assert r.passed and "definitions only" in r.notes["import"]


def test_import_failing_on_missing_data_falls_back_to_definitions(tmp_path):
    folder = _copy(tmp_path, "nielsen")
    p = folder / "network.py"
    p.write_text(p.read_text().replace("training_data, test_data = load_blobs()",
                                       "training_data = np.load('mnist.npz')"))
    r = debug_code(p, backends=NONE)
    assert r.passed
    assert "only its definitions were imported" in r.notes["import"]


def test_learner_data_and_dtype_are_kept_and_dtype_drift_is_a_finding(tmp_path):
    rng = np.random.default_rng(3)
    X = rng.standard_normal((12, 16)).astype(np.float32)
    Y = (rng.random((1, 16)) > 0.5).astype(np.float32)
    np.savez(tmp_path / "data.npz", X=X, Y=Y)
    folder = _copy(tmp_path, "dlai_deep")
    r = debug_code(folder / "deep_classifier.py", data=tmp_path / "data.npz", backends=NONE)
    assert r.spec.dtype == "float32" and r.case.m == 16, r.report()
    assert np.array_equal(r.case.X, X)
    assert r.passed, r.report()
    path = _mutate(tmp_path / "drift", "dlai_deep", "dnn_helpers.py",
                   "    dZ = np.array(dA, copy=True)\n    dZ[Z <= 0] = 0\n",
                   "    dZ = dA * np.where(Z > 0, 1.0, 0.0)\n")
    r = debug_code(path, data=tmp_path / "data.npz", backends=NONE)
    assert r.exit_code == 1
    assert any("dtype drift" in p.text and "float64" in p.text for p in r.problems), r.report()
    drift = next(p for p in r.problems if "dtype drift" in p.text)
    assert "np.where(Z > 0, 1.0, 0.0)" in drift.location.source


def test_data_csv_and_npy_pair(tmp_path):
    from gradparity.debug.api import load_data

    rng = np.random.default_rng(0)
    X, Y = rng.standard_normal((2, 10)), (rng.random((1, 10)) > 0.5).astype(float)
    np.savetxt(tmp_path / "d.csv", np.vstack([X, Y]).T, delimiter=",")
    x, y = load_data(tmp_path / "d.csv")
    assert np.allclose(x, X) and np.allclose(y, Y)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "Y.npy", Y)
    x, y = load_data(f"{tmp_path / 'X.npy'},{tmp_path / 'Y.npy'}")
    assert np.array_equal(x, X) and np.array_equal(y, Y)
    with pytest.raises(UsageError, match="--data="):
        load_data(tmp_path / "nope.npz")


def test_a_wrong_network_guess_prints_the_flags_that_fix_it(tmp_path):
    """Only L_model_backward, with tanh hidden layers, and no forward to read them from."""
    folder = _copy(tmp_path, "dlai_deep")
    p = folder / "deep_classifier.py"
    text = p.read_text().replace('activation="relu")', 'activation="tanh")')
    relu = '    if activation == "relu":\n        dZ = relu_backward(dA, activation_cache)'
    tanh = '    if activation == "tanh":\n        dZ = dA * (1 - np.tanh(activation_cache) ** 2)'
    text = text.replace(relu, tanh)
    cut = text.index("def L_model_forward")
    end = text.index("def compute_cost")
    text = text[:cut] + text[end:]
    text = text[:text.index("rng = np.random.RandomState(0)")] + "layers_dims = [12, 7, 5, 1]\n"
    p.write_text(text)
    r = debug_code(p, backends=NONE)
    assert r.problems, r.report()
    hint = r.problems[0].text
    assert "setup is probably wrong" in hint
    assert "--activation tanh" in hint and "--sizes 12,7,5,1" in hint
    fixed = debug_code(p, backends=NONE, activation="tanh")
    assert fixed.passed, fixed.report()


def test_notebook_functions_and_instances(tmp_path):
    ns: dict = {}
    src = (FAMILIES / "nielsen" / "network.py").read_text()
    src = src[:src.index("training_data, test_data = load_blobs()")]
    exec(compile(src, str(tmp_path / "cell.py"), "exec"), ns)  # noqa: S102
    import gradparity

    net = ns["Network"]([3, 4, 2])
    r = gradparity.debug(net, backends=NONE)
    assert r.passed and r.spec.sizes == (3, 4, 2)
    assert "<pre>" in r._repr_html_()
    r = gradparity.debug(ns["Network"], sizes=(2, 3, 1), backends=NONE)
    assert r.passed


NOTEBOOK_CELLS = [
    "import numpy as np\nimport gradparity",
    (FAMILIES / "dlai_deep" / "dnn_helpers.py").read_text(),
    None,  # the deep network's functions, with a slip in linear_backward
    "layers_dims = [4, 5, 5, 1]",
    "r = gradparity.debug(L_model_backward, forward=L_model_forward, cost=compute_cost,\n"
    "                     backends=())\n"
    "print(r.first.key, '|', r.first.location.short, '|', r.first.location.source)",
    "r",
    None,  # the seed's backpropagation, with a sign slip
    "s = gradparity.debug(backpropagation, backends=())\n"
    "print(s.first.key, '|', s.first.location.short)",
]


def test_notebook_executed_with_nbclient(tmp_path):
    nbformat = pytest.importorskip("nbformat", reason="the notebook test needs nbformat "
                                   "(pip install 'gradparity[notebook]')")
    nbclient = pytest.importorskip("nbclient", reason="the notebook test needs nbclient")
    pytest.importorskip("ipykernel", reason="the notebook test needs ipykernel")
    deep = (FAMILIES / "dlai_deep" / "deep_classifier.py").read_text()
    deep = deep[deep.index("def initialize_parameters_deep"):deep.index("rng = np.random")]
    deep = deep.replace("dW = 1. / m * np.dot(dZ, A_prev.T)", "dW = np.dot(dZ, A_prev.T)")
    seed = (ROOT / "examples" / "seed_backprop.py").read_text()
    seed = seed.replace('grads["dZ" + str(L)] = cache["A" + str(L)] - Y',
                        'grads["dZ" + str(L)] = Y - cache["A" + str(L)]')
    cells = list(NOTEBOOK_CELLS)
    cells[2], cells[6] = deep, seed
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in cells]
    client = nbclient.NotebookClient(nb, timeout=120, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()
    printed = "".join(o.get("text", "") for o in nb.cells[4].outputs)
    key, where, source = (s.strip() for s in printed.split("|"))
    assert key == "dW3"
    line = deep.splitlines().index("    dW = np.dot(dZ, A_prev.T)") + 1
    assert where == f"cell [3], line {line}", printed
    assert source == "dW = np.dot(dZ, A_prev.T)"
    html = nb.cells[5].outputs[0]["data"]["text/html"]
    assert "First divergence: dW3" in html and "cell [3]" in html
    printed = "".join(o.get("text", "") for o in nb.cells[7].outputs)
    line = seed.splitlines().index('    grads["dZ" + str(L)] = Y - cache["A" + str(L)]') + 1
    assert printed.strip() == f"dZ3 | cell [7], line {line}", printed


def test_cs231n_package_module_with_relative_imports(tmp_path):
    """classifiers/fc_net.py imports ..layers: it is imported as part of its package;
    --backprop picks the class, whose dtype defaults to float32."""
    folder = _copy(tmp_path, "cs231n") / "course"
    fc_net = folder / "cs231n" / "classifiers" / "fc_net.py"
    r = debug_code(fc_net, backends=NONE)
    assert r.passed, r.report()
    assert "imported as part of its package" in r.notes["import"]
    r = debug_code(fc_net, backprop_name="FullyConnectedNet", sizes=(4, 6, 5, 3),
                   backends=NONE)
    assert r.passed, r.report()
    assert r.spec.dtype == "float32" and r.notes["activation"] == "inferred from your forward"
    text = fc_net.read_text()
    old = "grads['W%d' % i] += self.reg * self.params['W%d' % i]"
    fc_net.write_text(text.replace(old, old.replace("+= self.reg", "+= 2 * self.reg")))
    r = debug_code(fc_net, backprop_name="FullyConnectedNet", sizes=(4, 6, 5, 3),
                   backends=NONE)
    assert "grads['W1'] gets 2 * reg * W1" in r.problems[0].text, r.report()


def test_python2_code_is_read(tmp_path):
    folder = _copy(tmp_path, "nielsen") / "py2"
    r = debug_code(folder / "network_py2.py", backends=NONE)
    assert r.passed, r.report()
    assert "Python 2 print statements" in r.notes["import"]
    p = folder / "network_py2.py"
    text = p.read_text()
    p.write_text(text.replace("sp = sigmoid_prime(z)", "sp = sigmoid_prime(activations[-l])"))
    r = debug_code(p, backends=NONE)
    assert r.first.diagnosis.code == "derivative_at_A", r.report()


def test_missing_course_utility_module_is_supplied_and_said_so(tmp_path):
    folder = _copy(tmp_path, "dlai_deep")
    (folder / "dnn_helpers.py").unlink()
    p = folder / "deep_classifier.py"
    p.write_text(p.read_text().replace("from dnn_helpers import", "from dnn_utils_v2 import"))
    r = debug_code(p, backends=NONE)
    assert r.passed, r.report()
    assert "relu_backward, sigmoid, sigmoid_backward supplied by the harness" in r.notes["import"]


def test_deep_functions_as_staticmethods_of_a_class(tmp_path):
    """Some learners put the course's functions in a class as staticmethods, and import the
    activations with a star from a module that is not shipped."""
    import re
    import textwrap

    src = (FAMILIES / "dlai_deep" / "deep_classifier.py").read_text()
    body = src[src.index("def initialize_parameters_deep"):src.index("def L_layer_model")]
    body = re.sub(r"^def ", "@staticmethod\ndef ", body, flags=re.M)
    for n in ("linear_forward", "linear_activation_forward", "linear_backward",
              "linear_activation_backward"):
        body = re.sub(rf"(?<![\w.]){n}\(", f"NN.{n}(", body).replace(f"def NN.{n}(",
                                                                    f"def {n}(")
    p = tmp_path / "nn.py"
    p.write_text("import numpy as np\nfrom NN_activations import *\n\n\nclass NN(object):\n"
                 + textwrap.indent(body, "    ") + "\n\nlayers_dims = [5, 4, 3, 1]\n")
    r = debug_code(p, backends=NONE)
    assert r.passed, r.report()
    assert r.notes["api"].startswith("deeplearning.ai L-layer")
    assert r.spec.sizes == (5, 4, 3, 1)


def _nielsen_variant(tmp_path: Path, *replacements: tuple[str, str]) -> Path:
    src = (FAMILIES / "nielsen" / "network.py").read_text()
    src = src[:src.index("def vectorized_result")]
    for old, new in replacements:
        assert old in src, old
        src = src.replace(old, new)
    p = tmp_path / "network_variant.py"
    p.write_text(src)
    return p


def test_nielsen_one_dimensional_vectors(tmp_path):
    """Biases of shape (n,), x of shape (n0,), np.outer for nabla_w."""
    flat = (("self.biases = [np.random.randn(y, 1) for y in sizes[1:]]",
             "self.biases = [np.random.randn(y) for y in sizes[1:]]"),
            ("nabla_w[-1] = np.dot(delta, activations[-2].transpose())",
             "nabla_w[-1] = np.outer(delta, activations[-2])"),
            ("nabla_w[-l] = np.dot(delta, activations[-l - 1].transpose())",
             "nabla_w[-l] = np.outer(delta, activations[-l - 1])"))
    r = debug_code(_nielsen_variant(tmp_path, *flat), backends=NONE)
    assert r.passed, r.report()
    p = _nielsen_variant(tmp_path, *flat, ("sp = sigmoid_prime(z)",
                                           "sp = sigmoid_prime(activations[-l])"))
    r = debug_code(p, backends=NONE)
    assert r.first.key == "dW2" and r.first.diagnosis.code == "derivative_at_A", r.report()
    assert r.first.location.source == "return sigmoid(z) * (1 - sigmoid(z))"


COST_CLASSES = '''class QuadraticCost(object):

    @staticmethod
    def fn(a, y):
        return 0.5 * np.linalg.norm(a - y) ** 2

    @staticmethod
    def delta(z, a, y):
        return (a - y) * sigmoid_prime(z)


class CrossEntropyCost(object):

    @staticmethod
    def fn(a, y):
        return np.sum(np.nan_to_num(-y * np.log(a) - (1 - y) * np.log(1 - a)))

    @staticmethod
    def delta(z, a, y):
        return (a - y)


class Network(object):

    def __init__(self, sizes, cost=CrossEntropyCost):
        self.cost = cost'''


def test_nielsen_second_version_cost_classes(tmp_path):
    v2 = (("class Network(object):\n\n    def __init__(self, sizes):", COST_CLASSES),
          ("delta = self.cost_derivative(activations[-1], y) * sigmoid_prime(zs[-1])",
           "delta = (self.cost).delta(zs[-1], activations[-1], y)"))
    r = debug_code(_nielsen_variant(tmp_path, *v2), backends=NONE)
    assert r.passed, r.report()
    assert r.spec.head == "sigmoid_bce" and "CrossEntropyCost.fn" in r.notes["head"]
    p = _nielsen_variant(tmp_path, *v2, ("        return (a - y)\n",
                                         "        return (a - y) * sigmoid_prime(z)\n"))
    r = debug_code(p, backends=NONE)
    assert r.first.diagnosis.code == "output_derivative_extra", r.report()
    assert r.first.location.source == "return (a - y) * sigmoid_prime(z)"
    assert "CrossEntropyCost" not in r.first.location.source  # the line, inside the class


def test_cs231n_function_with_a_model_dict(tmp_path):
    folder = _copy(tmp_path, "cs231n") / "function"
    p = folder / "two_layer_function.py"
    r = debug_code(p, backends=NONE)
    assert r.passed, r.report()
    assert r.notes["sizes"] == "from model in your file"
    p.write_text(p.read_text().replace("grads['b1'] = np.sum(dhidden, axis=0)",
                                       "grads['b1'] = np.sum(dhidden, axis=1)"))
    r = debug_code(p, backends=NONE)
    assert r.first.key == "db1" and r.first.diagnosis.code == "wrong_axis_sum", r.report()
    assert "axis=1" in r.first.location.source


def test_sum_over_the_units_of_a_softmax_output_is_named_from_its_shape(tmp_path):
    """The softmax output's dZ sums to 0 over the units: only the shape tells the slip."""
    folder = _copy(tmp_path, "cs231n") / "function"
    p = folder / "two_layer_function.py"
    p.write_text(p.read_text().replace("grads['b2'] = np.sum(dscores, axis=0)",
                                       "grads['b2'] = np.sum(dscores, axis=1)"))
    r = debug_code(p, backends=NONE)
    assert r.first.key == "db2" and r.first.diagnosis.code == "wrong_axis_sum", r.report()
    assert r.first.reason == "grads['b2'] has shape (8,) where (3,), the shape of b2, belongs"


def test_seed_code_in_float32_returning_float64_is_a_dtype_finding(tmp_path):
    """The seed's relu'(Z) is np.where(Z > 0, 1.0, 0.0): float64, whatever Z is."""
    rng = np.random.default_rng(1)
    np.savez(tmp_path / "d.npz", X=rng.standard_normal((4, 8)).astype(np.float32),
             Y=(rng.random((1, 8)) > 0.5).astype(np.float32))
    seed = ROOT / "examples" / "seed_backprop.py"
    r = debug_code(seed, data=tmp_path / "d.npz", backends=NONE)
    assert r.spec.dtype == "float32" and r.exit_code == 1
    drift = [q for q in r.problems if "dtype drift" in q.text]
    assert drift and "float64" in drift[0].text, r.report()
    assert "np.where(Z > 0, 1.0, 0.0)" in drift[0].location.source
    assert debug_code(seed, backends=NONE).passed  # float64: nothing drifts


def test_input_and_output_widths_from_the_learners_data_at_import(tmp_path):
    folder = _copy(tmp_path, "dlai_2layer")
    p = folder / "planar_classifier.py"
    text = p.read_text().replace("    X = np.zeros((m, D))", "    X = np.zeros((m, 3))")
    text = text.replace("X[ix] = np.c_[r * np.sin(t), r * np.cos(t)]",
                        "X[ix] = np.c_[r * np.sin(t), r * np.cos(t), t]")
    p.write_text(text.replace("n_h=4, num_iterations=2000", "n_h=5, num_iterations=20"))
    r = debug_code(p, backends=NONE)
    assert r.passed and r.spec.sizes == (3, 5, 1), r.report()
    assert "n0 = 3, nL = 1 from your X and Y" in r.notes["sizes"]


def test_seed_file_with_a_guessed_activation_prints_the_flags(tmp_path):
    seed = (ROOT / "examples" / "seed_backprop.py").read_text()
    p = tmp_path / "tanh_seed.py"
    p.write_text(seed.replace("return np.where(Z > 0, 1.0, 0.0)", "return 1 - np.tanh(Z) ** 2")
                 .replace("return np.maximum(0, Z)", "return np.tanh(Z)"))
    r = debug_code(p, backends=NONE)
    assert "Try: --sizes 4,5,5,1 --activation tanh --head sigmoid_bce" in r.problems[0].text
    assert debug_code(p, activation="tanh", backends=NONE).passed


def test_exported_notebook_with_magic_lines(tmp_path):
    folder = _copy(tmp_path, "dlai_2layer")
    p = folder / "planar_classifier.py"
    p.write_text("%matplotlib inline\n!pip list\n" + p.read_text())
    r = debug_code(p, backends=NONE)
    assert r.passed, r.report()
    assert "IPython % or ! lines" in r.notes["import"]


# family -> (file, old, new, first finding, its status, text of the error or problem)
BROKEN = {
    "deep_returns_none": ("dlai_deep", "deep_classifier.py", "    return grads\n\n\ndef update",
                          "    return None\n\n\ndef update", None, None,
                          "missing `return grads`?"),
    "deep_forward_returns_AL_only": ("dlai_deep", "deep_classifier.py",
                                     "    return AL, caches", "    return AL", None, None,
                                     "not (AL, caches)"),
    "two_layer_grads_without_db2": ("dlai_2layer", "planar_classifier.py", '"db2": db2}', "}",
                                    "db2", "error", "db2 is missing from your grads"),
    "nielsen_raises_in_layer_2": ("nielsen", "network.py", "            sp = sigmoid_prime(z)",
                                  "            sp = sigmoid_prime(z)\n"
                                  "            raise RuntimeError('x')", "dW2", "error",
                                  "your backprop raised RuntimeError: x"),
    "cs231n_assert_after_layer_2": ("cs231n", "neural_net.py",
                                    "        dhidden[hidden <= 0] = 0",
                                    "        dhidden[hidden <= 0] = 0\n"
                                    "        assert dhidden.shape == (1, 2)", "dW1", "error",
                                    "your loss raised AssertionError"),
    "cs231n_nan": ("cs231n", "neural_net.py", "        dscores /= N", "        dscores /= 0",
                   "dW2", "fail", "NaN or inf"),
}


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_broken_learner_code_is_a_finding_not_a_crash(name, tmp_path):
    family, file, old, new, key, status, text = BROKEN[name]
    r = debug_code(_mutate(tmp_path, family, file, old, new), backends=NONE)
    assert r.exit_code == 1
    if key is None:
        assert text in r.problems[0].text, r.report()
        return
    assert r.first.key == key and r.first.status == status, r.report()
    assert text in (r.first.reason + (r.first.diagnosis.text if r.first.diagnosis else ""))
    assert not any("setup is probably wrong" in p.text for p in r.problems)
    assert [c.key for c in r.findings][:1] == [key]


def test_backprop_flag_naming_a_family_function_uses_the_family(tmp_path, capsys):
    folder = _copy(tmp_path, "dlai_deep")
    code = main(["debug", str(folder / "deep_classifier.py"), "--backprop", "L_model_backward",
                 "--backends", "none"])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "deeplearning.ai L-layer" in out


def test_every_constant_factor_diagnosis_reads_as_a_sentence():
    from gradparity.debug.diagnose import _scales

    for m in (2, 8):
        for _factor, _code, text, short in _scales(m):
            sentence = f"dZ3 is {text}"
            assert " is the sign is " not in sentence and " is is " not in sentence
            assert text.split(":")[0].endswith(("value", "value)")), text
            assert not short.endswith(("too small", "too large")), short


def test_large_learner_data_uses_its_first_examples(tmp_path):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((2, 300))
    np.savez(tmp_path / "big.npz", X=X, Y=(X[:1] > 0).astype(float))
    p = _copy(tmp_path, "dlai_2layer") / "planar_classifier.py"
    r = debug_code(p, data=tmp_path / "big.npz", backends=NONE)
    assert r.passed and r.case.m == 256 and np.array_equal(r.case.X, X[:, :256])
    assert "the first 256 of your 300 examples" in r.notes["data"]
    assert debug_code(p, data=tmp_path / "big.npz", batch=12, backends=NONE).case.m == 12


def test_functions_found_by_role_under_other_names(tmp_path):
    folder = _copy(tmp_path, "dlai_2layer")
    p = folder / "planar_classifier.py"
    text = p.read_text().replace("backward_propagation", "back_prop")
    p.write_text(text.replace("forward_propagation", "forward_prop")
                 .replace("compute_cost", "cost_fn"))
    r = debug_code(p, backends=NONE)
    assert r.passed and r.notes["api"].startswith("deeplearning.ai 2-layer"), r.report()
    assert "cost_fn" in r.notes["head"]
    folder = _copy(tmp_path / "deep", "dlai_deep")
    p = folder / "deep_classifier.py"
    p.write_text(p.read_text().replace("L_model_backward", "l_model_backward"))
    r = debug_code(p, backends=NONE)
    assert r.passed and r.notes["api"].startswith("deeplearning.ai L-layer"), r.report()


def test_three_layer_course_variant_tuple_cache_lowercase_keys(tmp_path):
    folder = _copy(tmp_path, "dlai_2layer") / "three_layer"
    p = folder / "reg_model.py"
    r = debug_code(p, backends=NONE)
    assert r.passed, r.report()
    assert r.spec.sizes == (2, 4, 4, 1) and "reads W1 to W3" in r.notes["sizes"]
    assert r.convention.name == "true_partial"
    text = p.read_text()
    p.write_text(text.replace("dW3 = np.dot(dz3, a2.T)", "dW3 = 1./m * np.dot(dz3, a2.T)"))
    r = debug_code(p, backends=NONE)
    assert r.first.key == "dW3" and r.first.diagnosis.code == "extra_1_over_m", r.report()
    assert r.first.location.source == "dW3 = 1./m * np.dot(dz3, a2.T)"


def test_gradient_checking_variant_forward_returns_cost_and_cache(tmp_path):
    """forward_propagation_n(X, Y, parameters) -> (cost, cache) and
    backward_propagation_n(X, Y, cache), with a stray factor 2 in dW2."""
    src = (FAMILIES / "dlai_2layer" / "three_layer" / "reg_model.py").read_text()
    src = src.replace("def forward_propagation(X, parameters):",
                      "def forward_propagation_n(X, Y, parameters):")
    src = src.replace("    cache = (z1, a1, W1, b1, z2, a2, W2, b2, z3, a3, W3, b3)\n"
                      "    return a3, cache",
                      "    logprobs = np.multiply(-np.log(a3), Y)"
                      " + np.multiply(-np.log(1 - a3), 1 - Y)\n"
                      "    cost = 1. / X.shape[1] * np.sum(logprobs)\n"
                      "    cache = (z1, a1, W1, b1, z2, a2, W2, b2, z3, a3, W3, b3)\n"
                      "    return cost, cache")
    src = src.replace("def backward_propagation(X, Y, cache):",
                      "def backward_propagation_n(X, Y, cache):")
    p = tmp_path / "gc.py"
    p.write_text(src)
    r = debug_code(p, backends=NONE)
    assert r.passed, r.report()
    assert "forward_propagation_n" in r.notes["head"] and "forward_propagation_n" in r.notes[
        "forward"]
    p.write_text(src.replace("dW2 = np.dot(dz2, a1.T)", "dW2 = np.dot(dz2, a1.T) * 2"))
    r = debug_code(p, backends=NONE)
    assert r.first.key == "dW2" and r.first.diagnosis.code == "factor_2", r.report()
