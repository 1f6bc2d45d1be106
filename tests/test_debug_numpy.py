"""gradparity debug on hand-written NumPy backprops: each deliberately buggy file in
tests/debug_cases is localised to the right quantity and layer and given the right
diagnosis; the seed's published code passes; broken user code becomes findings, not a
crash of the harness."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from gradparity.core.errors import UsageError
from gradparity.debug import debug_numpy
from gradparity.experiments.tables import COLUMNS

ROOT = Path(__file__).resolve().parents[1]
CASES = ROOT / "tests" / "debug_cases"
SEED = ROOT / "examples" / "seed_backprop.py"
NO_FRAMEWORKS: tuple[str, ...] = ()


def _keys(checks):
    return [c.key for c in checks]


# file -> (options, convention, findings in order (the first is the first divergence),
#          diagnosis code of each finding, text the first diagnosis must contain,
#          source text of the line the first finding points to)
BUGGY = {
    "missing_1_over_m": (
        {}, "per_example", ["dW3", "dW2", "dW1"], "missing_1_over_m", "m = 8 times",
        'grads["dW" + str(L)] = np.dot('),
    "extra_1_over_m": (
        {}, "true_partial", ["dW3", "dW2", "dW1"], "extra_1_over_m", "applied twice",
        'grads["dW" + str(L)] = (1 / m) * np.dot('),
    "factor_2": (
        {"head": "linear_mse"}, "per_example", ["dZ3"], "factor_2", "without its 1/2",
        'grads["dZ" + str(L)] = 2 * ('),
    "sign_flip": (
        {}, "per_example", ["dZ3"], "sign_flip", "Y - A", 'grads["dZ" + str(L)] = Y -'),
    "transposed_dW": (
        {}, "per_example", ["dW3", "dW2", "dW1"], "transpose",
        "np.dot(A2, dZ3.T) where np.dot(dZ3, A2.T) belongs",
        'np.dot(cache["A" + str(L - 1)], grads["dZ" + str(L)].T)'),
    "wrong_axis_db": (
        {}, "per_example", ["db3", "db2", "db1"], "wrong_axis_sum", "axis 0",
        "axis=0, keepdims=True"),
    "lost_keepdims": (
        {}, "per_example", ["db3", "db2", "db1"], "lost_keepdims",
        "shape (1,) where (1, 1) belongs", 'np.sum(grads["dZ" + str(L)], axis=1)'),
    "off_by_one_A": (
        {}, "per_example", ["dW3", "dW2", "dW1"], "off_by_one", "uses A3 where A2 belongs",
        'cache["A" + str(L)].T'),
    "z_for_a": (
        {}, "per_example", ["dW3", "dW2"], "z_for_a", "uses Z2 (before the activation)",
        'cache["Z" + str(L - 1)].T'),
    "derivative_at_A": (
        {"activation": "sigmoid"}, "per_example", ["dZ2", "dZ1"], "derivative_at_A",
        "sigmoid'(A2) where sigmoid'(Z2) belongs", 'sigmoid(cache["A" + str(l)], deriv=True)'),
    "derivative_wrong_layer": (
        {}, "per_example", ["dZ2", "dZ1"], "derivative_wrong_layer",
        "tanh'(Z3) where tanh'(Z2) belongs", 'cache["Z" + str(l + 1)]'),
    "wrong_activation_derivative": (
        {}, "per_example", ["dZ2", "dZ1"], "wrong_activation_derivative",
        "sigmoid'(Z2) where tanh'(Z2) belongs", 'sigmoid(cache["Z" + str(l)], deriv=True)'),
    "activation_not_derivative": (
        {}, "per_example", ["dZ2", "dZ1"], "activation_not_derivative",
        "relu(Z2) where relu'(Z2) belongs", 'relu(cache["Z" + str(l)]))'),
    "a_form_at_z": (
        {}, "per_example", ["dZ2", "dZ1"], "a_form_at_z", "1 - Z2^2",
        'np.power(cache["Z" + str(l)], 2)'),
    "output_derivative_extra": (
        {}, "per_example", ["dZ3"], "output_derivative_extra",
        "A - Y already includes sigmoid's derivative", '* (1 - cache["A" + str(L)])'),
    "missing_bias_forward": (
        {}, "per_example", ["Z1", "Z2", "Z3"], "missing_bias", "without + b1",
        'np.dot(parameters["W" + str(l)], cache["A" + str(l - 1)])'),
    "course_style_dA_only": (
        {}, "per_example", ["db3", "db2", "db1"], "missing_1_over_m", "m = 8 times",
        "grads[\"dA\" + str(L - 1)], grads[\"dW\" + str(L)], grads[\"db\" + str(L)] ="),
    "only_dW_db_derivative_at_A": (
        {"activation": "tanh"}, "undetermined", ["dW2", "dW1"], "derivative_at_A",
        "tanh'(A2) where tanh'(Z2) belongs", 'grads["dW" + str(l)] = np.dot(dZ'),
}


@pytest.mark.parametrize("name", sorted(BUGGY))
def test_buggy_backprop_is_localised_and_diagnosed(name):
    options, convention, findings, code, text, line = BUGGY[name]
    r = debug_numpy(CASES / f"{name}.py", backends=NO_FRAMEWORKS, **options)
    assert r.convention.name == convention
    assert _keys(r.findings) == findings, r.report()
    first = r.first
    assert first is not None and first.key == findings[0]
    assert first.status == "fail"
    assert first.diagnosis is not None and first.diagnosis.code == code, r.report()
    assert text in first.diagnosis.text
    assert first.location is not None and line in first.location.source
    assert Path(first.location.file).name == f"{name}.py"
    # a loop bug repeats in every layer: the same diagnosis, not a different story
    for c in r.findings[1:]:
        assert c.diagnosis is not None and c.diagnosis.code == code, r.report()
    # everything else is a pass, inherited from a finding, or not reported
    for c in r.checks:
        assert c.status in ("pass", "inherited", "skipped", "fail"), (c.key, c.status)
        if c.status == "inherited":
            assert c.root in findings
    assert r.exit_code == 1
    assert f"First divergence: {findings[0]}" in r.report()


def test_inherited_quantities_are_marked_not_reported_as_bugs():
    r = debug_numpy(CASES / "derivative_at_A.py", backends=NO_FRAMEWORKS, activation="sigmoid")
    status = {c.key: (c.status, c.root) for c in r.checks}
    for k in ("dW2", "db2", "dA1"):
        assert status[k] == ("inherited", "dZ2")
    assert status["dZ1"][0] == "fail"  # the same mistake again in layer 1: its own finding
    assert status["dW1"] == ("inherited", "dZ1")
    assert status["dZ3"][0] == status["dW3"][0] == "pass"
    report = r.report()
    assert "inherited  dW2, db2, dA1 (they follow from your dZ2)" in report
    assert "dZ1 - same diagnosis as dZ2" in report


def test_a_single_output_bug_makes_everything_downstream_inherited():
    r = debug_numpy(CASES / "sign_flip.py", backends=NO_FRAMEWORKS)
    assert _keys(r.findings) == ["dZ3"]
    assert all(c.status == "inherited" and c.root == "dZ3" for c in r.checks[1:])


def test_wrong_activation_derivative_uses_the_activation_inferred_from_the_forward():
    r = debug_numpy(CASES / "wrong_activation_derivative.py", backends=NO_FRAMEWORKS)
    assert r.spec.activation == "tanh"
    assert r.notes["activation"] == "inferred from your forward"
    assert r.spec.head == "sigmoid_bce"


def test_unreported_intermediate_is_implied_by_the_diagnosis():
    r = debug_numpy(CASES / "only_dW_db_derivative_at_A.py", backends=NO_FRAMEWORKS,
                    activation="tanh")
    first = r.first
    assert first.key == "dW2" and first.diagnosis.hidden == "dZ2"
    dZ2 = r.check("dZ2")
    assert dZ2.status == "skipped" and dZ2.root == "dW2" and not dZ2.reported
    assert r.check("db2").status == "inherited"
    assert "not needed: your grads holds no dZ or dA" in r.convention.text


# -- the seed's code ------------------------------------------------------------------------
@pytest.mark.parametrize("options", [
    {},
    {"dtype": "float32"},
    {"batch": 1},
    {"batch": 2},
    {"head": "softmax_ce", "sizes": (4, 6, 6, 3)},
    {"head": "linear_mse", "sizes": (3, 7, 2)},
    {"head": "sigmoid_bce", "loss_form": "probs", "sizes": (5, 4, 3, 2, 2), "seed": 3},
    {"sizes": (2, 3)},
], ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items()) or "defaults")
def test_the_seed_code_passes(options):
    r = debug_numpy(SEED, backends=NO_FRAMEWORKS, **options)
    assert r.passed, r.report()
    assert r.exit_code == 0
    assert all(c.status == "pass" for c in r.checks)
    if r.spec.batch > 1:
        assert r.convention.name == "per_example"
        assert f"m = {r.spec.batch} times the true partials" in r.convention.text
    else:
        assert r.convention.name == "undetermined"


def test_the_seed_code_with_the_torch_and_jax_side_by_side():
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    r = debug_numpy(SEED)
    assert r.passed, r.report()
    assert [f.name for f in r.frameworks] == ["torch", "jax"]
    assert all(f.status == "ran" and not f.failing for f in r.frameworks)
    report = r.report()
    assert "reference = torch, jax on all 19 tensors" in report
    assert "Result: everything agrees. Exit 0." in report
    df = r.table()
    assert list(df.columns) == list(COLUMNS)
    assert set(df["backend"]) == {"user", "torch", "jax"}
    assert (df[df["backend"] == "user"]["status"] == "pass").all()


def test_the_seed_code_is_wrong_for_a_non_canonical_head():
    # dZ[L] = A - Y holds for sigmoid + cross-entropy, not for sigmoid + MSE
    r = debug_numpy(SEED, backends=NO_FRAMEWORKS, head="sigmoid_mse")
    assert r.first.key == "dZ3"
    assert r.first.diagnosis.code == "output_derivative_missing"


def test_true_partial_code_passes_and_is_named():
    def backprop(cache, Y, parameters):
        L, m = len(parameters) // 2, Y.shape[1]
        g = {f"dZ{L}": (cache[f"A{L}"] - Y) / m}
        for layer in range(L, 0, -1):
            if layer < L:
                g[f"dZ{layer}"] = g[f"dA{layer}"] * (cache[f"Z{layer}"] > 0)
            g[f"dW{layer}"] = g[f"dZ{layer}"] @ cache[f"A{layer - 1}"].T
            g[f"db{layer}"] = g[f"dZ{layer}"].sum(axis=1, keepdims=True)
            g[f"dA{layer - 1}"] = parameters[f"W{layer}"].T @ g[f"dZ{layer}"]
        return g

    r = debug_numpy(backprop, backends=NO_FRAMEWORKS)
    assert r.passed, r.report()
    assert r.convention.name == "true_partial"
    assert r.check("dA0").status == "pass"  # the optional dJ/dX is checked when present
    assert "backprop" in r.source


# -- robust to broken user code ---------------------------------------------------------------
def test_an_exception_is_a_finding_on_the_quantity_being_computed():
    r = debug_numpy(CASES / "raises_in_dA.py", backends=NO_FRAMEWORKS)
    first = r.first
    assert first.key == "dA2" and first.status == "error"
    assert "ValueError: shapes (5,5) and (1,8) not aligned" in first.reason
    assert first.location.line == 22
    assert first.location.source.startswith('grads["dA" + str(l)] = np.dot(parameters["W"')
    assert [c.status for c in r.checks[:3]] == ["pass"] * 3  # computed before: checked
    assert all(c.status == "skipped" and c.reason.startswith("not computed")
               for c in r.checks[4:])
    assert "raises_in_dA.py:22" in r.report()


def test_an_exception_in_a_helper_points_to_the_users_line_and_key():
    def backprop(cache, Y, parameters):
        grads = {"dZ2": cache["A2"] - Y}
        grads["dW2"] = grads["dZ2"] @ cache["A1"].T / Y.shape[1]
        grads["db2"] = grads["dZ2"].sum(axis=1, keepdims=True) / Y.shape[1]
        grads["dA1"] = parameters["W2"].T @ grads["dZ2"]
        grads["dZ1"] = grads["dA1"] * cache["Z9"]  # KeyError
        return grads

    r = debug_numpy(backprop, backends=NO_FRAMEWORKS, sizes=(3, 4, 1))
    first = r.first
    assert first.key == "dZ1" and first.status == "error"
    assert "KeyError: 'Z9'" in first.reason
    assert first.location.file == __file__
    assert 'cache["Z9"]' in first.location.source


def test_missing_key_nan_and_wrong_type_are_findings():
    r = debug_numpy(CASES / "missing_db.py", backends=NO_FRAMEWORKS)
    assert _keys(r.findings) == ["db2", "db1"]
    assert r.first.status == "error" and "db2 is missing from your grads" in r.first.reason

    r = debug_numpy(CASES / "nan_in_dZ.py", backends=NO_FRAMEWORKS)
    assert r.first.key == "dZ2" and "NaN or inf" in r.first.reason
    assert r.first.location is not None and "np.maximum(Z, 0) * 0" in r.first.location.source
    assert r.check("dW2").status == "inherited"  # NaN where dZ2 has NaN: follows from it

    def backprop(cache, Y, parameters):
        m = Y.shape[1]
        return {"dW1": "oops", "db1": np.sum(cache["A1"] - Y, axis=1, keepdims=True) / m}

    r = debug_numpy(backprop, backends=NO_FRAMEWORKS, sizes=(3, 1))
    assert r.check("dW1").status == "error" and "is a str, not a numeric array" in \
        r.check("dW1").reason
    assert r.check("db1").status == "pass"


def test_a_missing_return_is_a_problem_and_the_filled_dict_is_still_checked():
    r = debug_numpy(CASES / "no_return.py", backends=NO_FRAMEWORKS)
    assert len(r.problems) == 1 and "missing `return grads`?" in r.problems[0].text
    assert all(c.status == "pass" for c in r.checks)
    assert r.exit_code == 1
    df = r.table()
    assert ((df["quantity"] == "*") & (df["status"] == "error")).sum() == 1


def test_forward_problems_are_findings_and_backprop_still_runs():
    def forward(X, parameters):
        cache = {"A0": X, "Z1": parameters["W1"] @ X + parameters["b1"]}
        cache["A1"] = np.maximum(cache["Z1"], 0)
        raise RuntimeError("forgot layer 2")

    def backprop(cache, Y, parameters):
        m = Y.shape[1]
        dZ2 = cache["A2"] - Y
        dZ1 = (parameters["W2"].T @ dZ2) * (cache["Z1"] > 0)
        return {"dW2": dZ2 @ cache["A1"].T / m, "db2": dZ2.sum(1, keepdims=True) / m,
                "dW1": dZ1 @ cache["A0"].T / m, "db1": dZ1.sum(1, keepdims=True) / m}

    r = debug_numpy(backprop, forward=forward, backends=NO_FRAMEWORKS, sizes=(3, 4, 1))
    assert r.first.key == "Z2" and r.first.status == "error"
    assert "RuntimeError: forgot layer 2" in r.first.reason
    assert r.check("Z1").status == r.check("A1").status == "pass"
    assert "harness's cache" in r.notes["forward"]
    assert all(r.check(k).status == "pass" for k in ("dW2", "db2", "dW1", "db1"))


def test_in_place_edits_are_attributed_to_their_own_line():
    def backprop(cache, Y, parameters):
        m = Y.shape[1]
        grads = {"dZ2": cache["A2"] - Y}
        grads["dW2"] = grads["dZ2"] @ cache["A1"].T / m
        grads["db2"] = grads["dZ2"].sum(axis=1, keepdims=True) / m
        grads["dA1"] = parameters["W2"].T @ grads["dZ2"]
        grads["dZ1"] = grads["dA1"].copy()
        grads["dZ1"][cache["Z1"] <= 0] = 0.5  # the bug: should be 0
        grads["dW1"] = grads["dZ1"] @ cache["A0"].T / m
        grads["db1"] = grads["dZ1"].sum(axis=1, keepdims=True) / m
        return grads

    r = debug_numpy(backprop, backends=NO_FRAMEWORKS, sizes=(3, 4, 1))
    assert r.first.key == "dZ1"
    assert "= 0.5  # the bug" in r.first.location.source


def test_user_code_cannot_change_the_harness_arrays():
    def backprop(cache, Y, parameters):
        for v in (*cache.values(), Y, *parameters.values()):
            v *= 0  # in place, on what it was given
        return {}

    r = debug_numpy(backprop, backends=NO_FRAMEWORKS, sizes=(3, 2))
    assert _keys(r.findings) == ["dW1", "db1"]  # missing, not a crash
    again = debug_numpy(SEED, backends=NO_FRAMEWORKS, sizes=(3, 2))
    assert again.passed
    assert np.abs(r.case.X).sum() > 0 and np.abs(r.case.parameters["W1"]).sum() > 0


def test_extra_layers_in_grads_are_flagged():
    def backprop(cache, Y, parameters):
        m = Y.shape[1]
        dZ = cache["A1"] - Y
        return {"dW1": dZ @ cache["A0"].T / m, "db1": dZ.sum(1, keepdims=True) / m,
                "dW2": np.zeros((1, 1))}

    r = debug_numpy(backprop, backends=NO_FRAMEWORKS, sizes=(3, 1))
    assert not r.findings and len(r.problems) == 1
    assert "dW2" in r.problems[0].text and "off-by-one loop bound" in r.problems[0].text


def test_printed_output_is_captured_not_mixed_into_the_report(capsys):
    def backprop(cache, Y, parameters):
        print("debugging: m =", Y.shape[1])
        m = Y.shape[1]
        dZ = cache["A1"] - Y
        return {"dW1": dZ @ cache["A0"].T / m, "db1": dZ.sum(1, keepdims=True) / m}

    r = debug_numpy(backprop, backends=NO_FRAMEWORKS, sizes=(3, 1))
    assert capsys.readouterr().out == ""
    assert "debugging: m = 8" in r.user_output
    assert "| debugging: m = 8" in r.report()


# -- sizes and options ----------------------------------------------------------------------
def test_sizes_come_from_parameters_or_layer_dims_in_the_users_file(tmp_path):
    code = SEED.read_text()
    (tmp_path / "dims.py").write_text(code + "\nlayer_dims = [3, 6, 2]\n")
    r = debug_numpy(tmp_path / "dims.py", backends=NO_FRAMEWORKS)
    assert r.spec.sizes == (3, 6, 2) and r.notes["sizes"] == "from layer_dims in your file"
    assert r.passed

    (tmp_path / "params.py").write_text(
        code + "\nrng = np.random.default_rng(7)\n"
        "parameters = {'W1': rng.normal(size=(4, 2)), 'b1': np.zeros((4, 1)),\n"
        "              'W2': rng.normal(size=(1, 4)), 'b2': np.ones((1, 1))}\n")
    r = debug_numpy(tmp_path / "params.py", backends=NO_FRAMEWORKS)
    assert r.spec.sizes == (2, 4, 1) and r.passed
    assert np.array_equal(r.case.parameters["b2"], np.ones((1, 1)))

    params = {"W1": np.ones((4, 2)), "b1": np.zeros((4, 1)), "W2": np.ones((1, 4)),
              "b2": np.zeros((1, 1))}
    with pytest.raises(UsageError, match=r"sizes=2,5,1: the parameters .* give sizes 2,4,1"):
        debug_numpy(SEED, backends=NO_FRAMEWORKS, parameters=params, sizes=(2, 5, 1))
    bad = dict(params, W2=np.ones((1, 3)))
    with pytest.raises(UsageError, match=r"W2 has shape \(1, 3\) but layer 1 has 4 units"):
        debug_numpy(SEED, backends=NO_FRAMEWORKS, parameters=bad)


@pytest.mark.parametrize(("kwargs", "message"), [
    ({"activation": "swish"}, "activation='swish': expected one of relu"),
    ({"head": "hinge"}, "head='hinge': expected one of linear_mse"),
    ({"dtype": "float16"}, "dtype='float16': expected one of float32, float64"),
    ({"batch": 0}, "batch=0: expected an integer from 1"),
    ({"sizes": (3,)}, "sizes=[3]: expected a list of 2 to"),
    ({"backends": ("tensorflow",)}, "backends='tensorflow': expected torch, jax"),
    ({"rtol": -1.0}, "rtol=-1.0: expected a finite number >= 0"),
    ({"head": "softmax_ce", "sizes": (3, 1)}, "at least 2 outputs for head softmax_ce"),
])
def test_bad_options_are_usage_errors(kwargs, message):
    with pytest.raises(UsageError) as info:
        debug_numpy(SEED, **{"backends": NO_FRAMEWORKS, **kwargs})
    assert message in str(info.value) and "\n" not in str(info.value)


def test_unusable_files_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="no such file"):
        debug_numpy(tmp_path / "nope.py")
    (tmp_path / "syntax.py").write_text("import numpy as np\n\ndef backpropagation(:\n")
    with pytest.raises(UsageError, match=r"syntax.py:3: SyntaxError"):
        debug_numpy(tmp_path / "syntax.py")
    (tmp_path / "boom.py").write_text("x = 1\nraise ImportError('no module named tensorflow')\n")
    with pytest.raises(UsageError, match=r"boom.py:2: importing it raised ImportError"):
        debug_numpy(tmp_path / "boom.py")
    (tmp_path / "none.py").write_text("def forward(X, parameters):\n    return X, {}\n")
    with pytest.raises(UsageError, match=r"no function named backpropagation"):
        debug_numpy(tmp_path / "none.py")
    (tmp_path / "ng.py").write_text("def backpropagation(AL, Y, caches, extra):\n    pass\n")
    with pytest.raises(UsageError, match=r"backpropagation\(AL, Y, caches, extra\) does not "
                       r"take \(cache, Y, parameters\)"):
        debug_numpy(tmp_path / "ng.py")


def test_a_forward_with_another_signature_is_left_out_with_a_note(tmp_path):
    (tmp_path / "f.py").write_text(SEED.read_text() + "\n\ndef forward_propagation(X, "
                                   "parameters, activation):\n    raise AssertionError\n")
    r = debug_numpy(tmp_path / "f.py", backends=NO_FRAMEWORKS)
    assert r.passed and "does not take (X, parameters)" in r.notes["forward"]


def test_user_rows_fill_the_shared_table_schema():
    r = debug_numpy(CASES / "transposed_dW.py", backends=NO_FRAMEWORKS)
    df = r.table()
    assert list(df.columns) == list(COLUMNS)
    user = df[df["backend"] == "user"].set_index(df["quantity"] + df["layer"].astype(str))
    assert user.loc["dW3", "status"] == "fail"
    assert "diagnosis [transpose]" in user.loc["dW3", "reason"]
    assert "transposed_dW.py:" in user.loc["dW3", "reason"]
    assert user.loc["dZ3", "status"] == "pass"
    assert "divided by m = 8" in user.loc["dZ3", "reason"]
    assert user.loc["dW2", "shape"] == "5x5"  # square: a value mismatch, not a shape one


def test_another_derivative_at_an_exact_kink_is_a_convention_not_a_bug():
    def backprop(cache, Y, parameters):  # relu'(0) = 1: (Z >= 0)
        L, m = len(parameters) // 2, Y.shape[1]
        g = {f"dZ{L}": cache[f"A{L}"] - Y}
        for layer in range(L, 0, -1):
            if layer < L:
                g[f"dA{layer}"] = parameters[f"W{layer + 1}"].T @ g[f"dZ{layer + 1}"]
                g[f"dZ{layer}"] = g[f"dA{layer}"] * (cache[f"Z{layer}"] >= 0)
            g[f"dW{layer}"] = g[f"dZ{layer}"] @ cache[f"A{layer - 1}"].T / m
            g[f"db{layer}"] = g[f"dZ{layer}"].sum(1, keepdims=True) / m
        return g

    rng = np.random.default_rng(1)
    params = {"W1": rng.integers(-2, 3, (4, 3)) * 1.0, "b1": np.zeros((4, 1)),
              "W2": rng.normal(size=(1, 4)), "b2": np.zeros((1, 1))}
    X = rng.integers(-1, 2, (3, 6)) * 1.0
    X[:, 0] = 0.0  # an all-zero example: Z1 = 0 exactly there
    r = debug_numpy(backprop, parameters=params, X=X, backends=NO_FRAMEWORKS)
    assert r.spec.batch == 6 and r.passed and r.exit_code == 0
    dZ1 = r.check("dZ1")
    assert dZ1.status == "kink" and dZ1.diagnosis.code == "kink_convention"
    assert "relu'(0) = 1" in dZ1.reason and "exactly 0" in dZ1.reason
    assert r.check("dW1").status == "inherited" and r.check("dW1").root == "dZ1"
    assert "differ only by a convention" in r.report()


def test_a_forward_that_disagrees_with_the_head_is_found_first():
    # the file's forward ends in a sigmoid; with --head softmax_ce, A3 is the first divergence
    # and dZ3 = A3 - Y follows from it; the backprop's own bug is a separate finding
    r = debug_numpy(ROOT / "examples" / "buggy_backprop.py", backends=NO_FRAMEWORKS,
                    head="softmax_ce", sizes=(4, 5, 5, 3))
    assert r.first.key == "A3" and r.first.diagnosis.code == "wrong_activation"
    assert r.first.diagnosis.text == ("sigmoid(Z3) (the hidden activation) where softmax(Z3) "
                                      "belongs")
    assert r.check("dZ3").status == "inherited" and r.check("dZ3").root == "A3"
    assert r.check("dZ2").status == "fail"
    assert r.check("dZ2").diagnosis.code == "derivative_at_A"


def test_a_forward_that_returns_no_cache_is_one_problem_not_a_list_of_missing_keys(tmp_path):
    (tmp_path / "f.py").write_text(SEED.read_text() + "\n\ndef forward(X, parameters):\n"
                                   "    return parameters['W1'] @ X + parameters['b1']\n")
    r = debug_numpy(tmp_path / "f.py", backends=NO_FRAMEWORKS, sizes=(3, 2))
    assert [p.text for p in r.problems] == [
        "forward returned ndarray, not (AL, cache): the harness's forward builds the cache"]
    assert not r.findings  # the forward's keys are "not checked"; backprop ran on ours
    assert r.check("Z1").status == "skipped"
    assert all(r.check(k).status == "pass" for k in ("dZ1", "dW1", "db1"))
    assert r.exit_code == 1
