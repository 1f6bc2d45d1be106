"""The pytest plugin (entry point pytest11), run in inner pytest sessions with pytester.

The frameworks are imported here, before any inner session: pytester runs sessions in this
process and drops modules they import first, and torch and jax cannot be imported twice.
"""

import json
import os
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import numpy as np
import pytest

import gradparity.assertions  # noqa: F401 - loaded before the inner sessions (see above)
from gradparity.assertions import assert_grads_match, check_grads
from gradparity.baseline import load_baseline
from gradparity.case import make_case
from gradparity.compare import compare_arrays
from gradparity.spec import Spec

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")
import gradparity.adapters.jax_grad  # noqa: E402,F401
import gradparity.adapters.torch_autograd  # noqa: E402,F401

pytest_plugins = ["pytester"]

ROOT = Path(__file__).resolve().parents[1]

CONFTEST = '''
import pytest

import gradparity.experiments.runner as runner
from gradparity.adapters.registry import get_backend


class Degraded:
    """torch with a known bug: dW[L] and db[L] without the 1/m average."""

    def __init__(self, name):
        self.name = name

    def available(self):
        return True

    def unavailable_reason(self):
        return ""

    def gradients(self, case):
        g = get_backend("torch").gradients(case)
        L = case.spec.depth
        for key in (f"dW{L}", f"db{L}"):
            g.grads[key] = g.grads[key] * case.dtype.type(case.m)
        return g

    def kink_conventions(self, dtype):
        return get_backend("torch").kink_conventions(dtype)

    def version(self):
        return None


@pytest.fixture
def degraded():
    return Degraded("degraded")


@pytest.fixture
def degraded_torch(monkeypatch):
    """The name "torch" resolves to the degraded torch (as run_specs resolves names)."""
    real = runner.get_backend
    monkeypatch.setattr(runner, "get_backend",
                        lambda name: Degraded("torch") if name == "torch" else real(name))
'''

SPEC = 'gp.Spec((3, 4, 4, 2), activation="tanh", dtype="float32")'
CASE_ID = "tanh-linear_mse.logits-f32-3x4x4x2-m8-s0-he-normal"

TESTS = f'''
import gradparity as gp
from gradparity.assertions import assert_grads_match

SPEC = {SPEC}


def test_unchanged_torch_passes():
    assert_grads_match(SPEC, ["torch"])


def test_degraded_backend_object(degraded):
    assert_grads_match(SPEC, [degraded])


def test_degraded_torch_by_name(degraded_torch):
    assert_grads_match(SPEC, "torch")


def test_fixture(gradparity_check):
    gradparity_check([SPEC, SPEC.replace(seed=1)], ["torch", "jax"])


def test_fixture_degraded(gradparity_check, degraded_torch):
    gradparity_check(SPEC, ["torch"])
'''


@pytest.fixture
def project(pytester):
    pytester.makeconftest(CONFTEST)
    return pytester


def test_entry_point_registers_options_and_marker(pytester):
    eps = {e.name: e.value for e in metadata.entry_points(group="pytest11")}
    assert eps.get("gradparity") == "gradparity.pytest_plugin"
    help_ = pytester.runpytest("--help")
    help_.stdout.fnmatch_lines(["*gradient parity (gradparity):*", "*--gradparity-baseline=FILE*",
                                "*--gradparity-update-baseline*", "*--gradparity-factor=F*",
                                "*gradparity_baseline (string):*"])
    markers = pytester.runpytest("--markers")
    markers.stdout.fnmatch_lines(["@pytest.mark.gradparity(*specs, backends=None, *"])


def test_plugin_import_is_light():
    code = ("import sys, gradparity.pytest_plugin; "
            "print(','.join(m for m in ('torch', 'jax', 'jaxlib', 'pandas') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.stdout.strip() == ""


def test_degraded_backend_fails_with_the_documented_message_unchanged_passes(project):
    project.makepyfile(test_parity=TESTS)
    r = project.runpytest("-p", "no:cacheprovider")
    r.assert_outcomes(passed=2, failed=3)
    r.stdout.fnmatch_lines([
        "*test_degraded_backend_object*",
        f"E * AssertionError: degraded vs reference: layer 3, quantity dW (dW3), head "
        f"linear_mse (logits), float32, case {CASE_ID}",
        "E * Tensor-likes are not close!",
        "E * Mismatched elements: 8 / 8 (100.0%)",
        "E * Greatest absolute difference: * at index (*, *) (up to 1e-05 allowed)",
        "E * Greatest relative difference: 7 at index (*, *) (up to 1.3e-06 allowed)",
        "E * Worst element: index (*, *), actual *, expected *",
        "E * Verdict: fail: *",
        "E * Also failing for this case and backend: db3",
    ])
    r.stdout.fnmatch_lines([
        "*test_degraded_torch_by_name*",
        "E * AssertionError: torch vs reference: layer 3, quantity dW (dW3), head linear_mse*",
        "E * Tensor-likes are not close!",
    ])
    r.stdout.fnmatch_lines(["*test_fixture_degraded*",
                            "E * AssertionError: torch vs reference: layer 3, quantity dW*"])
    r.stdout.fnmatch_lines(["FAILED test_parity.py::test_degraded_backend_object - *",
                            "FAILED test_parity.py::test_degraded_torch_by_name - *",
                            "FAILED test_parity.py::test_fixture_degraded - *"])


def _numbers_masked(text):
    return re.sub(r"-?\d+(\.\d+)?(e[-+]?\d+)?", "#", text)


def test_message_layout_is_torch_testing_assert_close_s():
    spec = Spec((3, 4, 4, 2), activation="tanh", dtype="float32")

    class Scaled:
        name = "scaled"

        def available(self):
            return True

        def unavailable_reason(self):
            return ""

        def gradients(self, case):
            from gradparity.adapters.registry import get_backend
            g = get_backend("torch").gradients(case)
            g.grads["dW2"] = g.grads["dW2"] * np.float32(1.01)
            return g

        def kink_conventions(self, dtype):
            from gradparity.adapters.registry import get_backend
            return get_backend("torch").kink_conventions(dtype)

        def version(self):
            return None

    with pytest.raises(AssertionError) as info:
        assert_grads_match(spec, [Scaled()])
    ours = str(info.value).splitlines()
    assert ours[0] == (f"scaled vs reference: layer 2, quantity dW (dW2), head linear_mse "
                       f"(logits), float32, case {spec.case_id}")
    case = make_case(spec)
    from gradparity.reference.mlp import reference_gradients
    expected = reference_gradients(case).grads["dW2"]
    actual = Scaled().gradients(case).grads["dW2"]
    with pytest.raises(AssertionError) as t:
        torch.testing.assert_close(torch.from_numpy(actual), torch.from_numpy(expected))
    theirs = str(t.value).splitlines()
    assert [_numbers_masked(x) for x in ours[1:1 + len(theirs)]] == [
        _numbers_masked(x) for x in theirs]
    c = compare_arrays(actual, expected, rtol=1.3e-6, atol=1e-5)
    assert ours[1 + len(theirs)] == (f"Worst element: index {c.worst_index}, actual "
                                     f"{c.worst_value!r}, expected {c.worst_expected!r}")


MARKED = '''
import pytest
import gradparity as gp


@pytest.mark.gradparity(sizes=(3, 4, 2), activation=["relu", "tanh"],
                        dtype=["float32", "float64"], backends=["torch"])
def test_grid(gradparity_check, gradparity_spec):
    table = gradparity_check()
    assert set(table["case_id"]) == {gradparity_spec.case_id}
    assert set(table["backend"]) == {"torch"}


@pytest.mark.gradparity(gp.Spec((2, 3, 2), head="softmax_ce", loss_form="probs", batch=4),
                        backends=["torch", "jax"], rtol=1e-6, atol=1e-6)
def test_given_spec(gradparity_check):
    table = gradparity_check()
    assert set(table["rtol"]) == {1e-6}


@pytest.mark.gradparity(sizes=[(3, 4, 2)], head="sigmoid_bce", backends=["torch"])
def test_every_form_of_the_head(gradparity_check):
    gradparity_check()


@pytest.mark.gradparity(sizes=(3, 4, 4, 2), activation="tanh", dtype="float32")
def test_marked_degraded(gradparity_check, degraded):
    gradparity_check(backends=[degraded])
'''


def test_marker_parametrises_one_item_per_spec(project):
    project.makepyfile(test_marked=MARKED)
    r = project.runpytest("-v", "-p", "no:cacheprovider")
    r.assert_outcomes(passed=7, failed=1)
    r.stdout.fnmatch_lines([
        "*test_grid?relu-linear_mse.logits-f32-3x4x2-m8-s0-he-normal? PASSED*",
        "*test_grid?relu-linear_mse.logits-f64-3x4x2-m8-s0-he-normal? PASSED*",
        "*test_grid?tanh-linear_mse.logits-f32-3x4x2-m8-s0-he-normal? PASSED*",
        "*test_grid?tanh-linear_mse.logits-f64-3x4x2-m8-s0-he-normal? PASSED*",
        "*test_given_spec?relu-softmax_ce.probs-f64-2x3x2-m4-s0-he-normal? PASSED*",
        "*test_every_form_of_the_head?relu-sigmoid_bce.logits-*PASSED*",
        "*test_every_form_of_the_head?relu-sigmoid_bce.probs-*PASSED*",
        f"*test_marked_degraded?{CASE_ID}? FAILED*",
    ])
    r.stdout.fnmatch_lines(["E * AssertionError: degraded vs reference: layer 3, quantity dW*"])


def test_marker_misuse_is_a_collection_error(project):
    project.makepyfile(
        test_no_fixture="""
            import pytest

            @pytest.mark.gradparity(sizes=(3, 4, 2))
            def test_no_fixture():
                pass
        """,
        test_zero_width="""
            import pytest

            @pytest.mark.gradparity(sizes=(3, 0, 2))
            def test_zero_width(gradparity_check):
                pass
        """,
        test_unknown_field="""
            import pytest

            @pytest.mark.gradparity(sizes=(3, 2), colour="red")
            def test_unknown_field(gradparity_check):
                pass
        """)
    r = project.runpytest("-p", "no:cacheprovider")
    assert r.ret == pytest.ExitCode.INTERRUPTED  # collection errors stop the session
    r.stdout.fnmatch_lines([
        "test_no_fixture.py::test_no_fixture: @pytest.mark.gradparity needs the "
        "gradparity_check (or gradparity_spec) fixture"])
    r.stdout.fnmatch_lines([
        "test_zero_width.py::test_zero_width: @pytest.mark.gradparity: sizes[1]=0: expected "
        "an integer from 1 to 4096"])
    r.stdout.fnmatch_lines([
        "test_unknown_field.py::test_unknown_field: @pytest.mark.gradparity.colour='red': "
        "expected a spec field, one of *"])
    assert "Traceback" not in r.stdout.str()


BASELINED = f'''
import gradparity as gp

SPEC = {SPEC}


def test_two_cases(gradparity_check):
    gradparity_check([SPEC, SPEC.replace(activation="relu", dtype="float64")], ["torch", "jax"])
'''


def test_baseline_update_then_compare(project):
    project.makepyfile(test_base=BASELINED)
    path = project.path / "base.json"
    r = project.runpytest("-p", "no:cacheprovider", "--gradparity-baseline", str(path),
                          "--gradparity-update-baseline")
    r.assert_outcomes(passed=1)
    r.stdout.fnmatch_lines(["gradparity: writing baseline *base.json",
                            "*wrote baseline *base.json: 2 cases, * rows (2 cases from this "
                            "session)"])
    b = load_baseline(path)
    assert [c.case_id for c in b.cases] == [
        CASE_ID, "relu-linear_mse.logits-f64-3x4x4x2-m8-s0-he-normal"]
    assert {r.backend for r in b.rows} == {"torch", "jax"}
    assert b.source == "pytest --gradparity-update-baseline"

    r = project.runpytest("-p", "no:cacheprovider", "--gradparity-baseline", str(path))
    r.assert_outcomes(passed=1)
    r.stdout.fnmatch_lines(["gradparity: baseline *base.json (2 cases), factor 4"])

    # A baseline row deleted: the run has a tensor the baseline lacks.
    text = path.read_text()
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if f'["{CASE_ID}", "torch", "reference", 1, "dW"' in line:
            row = json.loads(line.strip().rstrip(","))
            assert row[5] == "pass" and row[7] > 0  # err_oracle_eps of torch's dW1
            del lines[i]
            break
    else:
        raise AssertionError("row not found")
    path.write_text("\n".join(lines) + "\n")
    r = project.runpytest("-p", "no:cacheprovider", "--gradparity-baseline", str(path))
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines([
        "E * AssertionError: Gradient agreement got worse than the baseline *base.json "
        "(1 new row; factor 4; before: the baseline, after: this run):",
        "E * kind *case_id *backend *tensor *metric *before *after *ratio *limit",
        f"E * new row *{CASE_ID} *torch *dW1 *- *- *pass",
    ])

    # Back to the saved file: the degraded torch is a parity failure first.
    path.write_text(text)
    project.makepyfile(test_base=BASELINED.replace("gradparity_check)",
                                                   "gradparity_check, degraded_torch)"))
    r = project.runpytest("-p", "no:cacheprovider", "--gradparity-baseline", str(path))
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["E * AssertionError: Gradients do not match: 2 case/backend "
                            "pairs in 2 case(s).",
                            "E * torch vs reference: layer 3, quantity dW (dW3)*"])

    # A case the baseline does not have.
    project.makepyfile(test_base=BASELINED.replace('SPEC.replace(activation="relu"',
                                                   'SPEC.replace(activation="gelu"'))
    r = project.runpytest("-p", "no:cacheprovider", "--gradparity-baseline", str(path))
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines(["E * AssertionError: not in the baseline *base.json: "
                            "gelu-linear_mse.logits-f64-3x4x4x2-m8-s0-he-normal (jax), *; "
                            "add them with --gradparity-update-baseline"])

    # Updating again merges: the old relu case stays, the gelu case is added.
    r = project.runpytest("-p", "no:cacheprovider", "--gradparity-baseline", str(path),
                          "--gradparity-update-baseline")
    r.assert_outcomes(passed=1)
    assert [c.case_id for c in load_baseline(path).cases] == [
        CASE_ID, "relu-linear_mse.logits-f64-3x4x4x2-m8-s0-he-normal",
        "gelu-linear_mse.logits-f64-3x4x4x2-m8-s0-he-normal"]

    # Other tolerances than the baseline's: the baseline does not apply.
    project.makepyfile(test_base=BASELINED.replace('["torch", "jax"])',
                                                   '["torch", "jax"], rtol=1e-3)'))
    r = project.runpytest("-p", "no:cacheprovider", "--gradparity-baseline", str(path))
    r.assert_outcomes(failed=1)
    r.stdout.fnmatch_lines([f"E * AssertionError: the baseline *base.json does not apply: "
                            f"{CASE_ID} was saved with rtol=1.3e-06, atol=1e-05, policy "
                            f"allclose; this check uses rtol=0.001, atol=1e-05, policy "
                            f"allclose (and 1 more); update it with "
                            f"--gradparity-update-baseline"])


def test_custom_arrays_are_their_own_case(project):
    project.makepyfile(test_model='''
        import numpy as np
        import gradparity as gp
        from dataclasses import replace

        def test_my_weights(gradparity_check):
            case = gp.make_case(gp.Spec((3, 5, 2), activation="silu", dtype="float64"))
            mine = dict(case.parameters, W1=np.full((5, 3), 0.25))
            gradparity_check(replace(case, parameters=mine), ["torch"])
    ''')
    path = project.path / "model.json"
    r = project.runpytest("-p", "no:cacheprovider", "--gradparity-baseline", str(path),
                          "--gradparity-update-baseline")
    r.assert_outcomes(passed=1)
    (case,) = load_baseline(path).cases
    assert case.case_id.startswith("silu-linear_mse.logits-f64-3x5x2-m8-s0-he-normal-arrays")
    assert case.rerun is False
    r = project.runpytest("-p", "no:cacheprovider", "--gradparity-baseline", str(path))
    r.assert_outcomes(passed=1)


@pytest.mark.parametrize(("args", "message"), [
    (["--gradparity-update-baseline"],
     "--gradparity-update-baseline needs --gradparity-baseline FILE*"),
    (["--gradparity-baseline", "absent.json"],
     "*baseline 'absent.json': no such file; create it with --gradparity-update-baseline"),
    (["--gradparity-baseline", "bad.json"],
     "*baseline 'bad.json': invalid JSON at line 1 column 1: *"),
    (["--gradparity-baseline", "bad.json", "--gradparity-update-baseline"],
     "*baseline 'bad.json': invalid JSON *; delete it to start afresh"),
    (["--gradparity-factor", "0.5"], "*--gradparity-factor=0.5: expected a finite number >= 1"),
])
def test_bad_options_are_usage_errors(pytester, args, message):
    pytester.path.joinpath("bad.json").write_text("not json\n")
    pytester.makepyfile("def test_x():\n    pass\n")
    r = pytester.runpytest(*args)
    assert r.ret == pytest.ExitCode.USAGE_ERROR
    r.stderr.fnmatch_lines([f"ERROR: {message}"])


def test_ini_option_names_the_baseline(project):
    project.makeini("[pytest]\ngradparity_baseline = gp/base.json\n")
    project.makepyfile(test_base=BASELINED)
    r = project.runpytest("-p", "no:cacheprovider", "--gradparity-update-baseline")
    r.assert_outcomes(passed=1)
    assert (project.path / "gp" / "base.json").is_file()


def test_check_grads_table_is_run_specs_table():
    """The assertion judges exactly as `gradparity run` does (same rows, same columns)."""
    from gradparity.experiments.runner import run_specs

    specs = [Spec((3, 4, 2), activation="leaky_relu", head="linear_l1", dtype="float32",
                  batch=16, seed=7, regime="kinks"),
             Spec((3, 4, 2), activation="tanh", head="sigmoid_bce", loss_form="probs",
                  dtype="float64", batch=16, seed=11, regime="saturated")]
    ours = check_grads(specs, ["torch", "jax"]).table
    theirs = run_specs(specs, backends=["torch", "jax"])
    import pandas as pd

    pd.testing.assert_frame_equal(ours, theirs)


def test_assertion_arguments_are_checked():
    spec = Spec((2, 2))
    with pytest.raises(TypeError, match="expected a Spec, a list of Specs or a Case"):
        assert_grads_match("not a spec")
    with pytest.raises(ValueError, match="'reference' given twice"):
        assert_grads_match(spec, ["reference", "reference"])
    with pytest.raises(Exception, match="backends='tensorflow'"):
        assert_grads_match(spec, ["tensorflow"])
    with pytest.raises(TypeError, match="positional arguments"):
        assert_grads_match(spec, ["reference"], 1e-3)  # tolerances are keyword-only
    table = assert_grads_match(spec, ["reference"], rtol=0.0, atol=0.0)
    assert set(table["status"]) == {"pass"}


def test_missing_framework_fails_with_the_install_hint():
    class Missing:
        name = "fakeframework"

        def available(self):
            return False

        def unavailable_reason(self):
            return "fakeframework is not installed (pip install fakeframework)"

        def gradients(self, case):
            raise AssertionError("not called")

        def kink_conventions(self, dtype):
            return {}

        def version(self):
            return None

    with pytest.raises(AssertionError) as info:
        assert_grads_match(Spec((2, 2)), [Missing()])
    assert str(info.value) == (
        "fakeframework vs reference: head linear_mse (logits), float64, case "
        "relu-linear_mse.logits-f64-2x2-m8-s0-he-normal: skipped: fakeframework is not "
        "installed (pip install fakeframework)")


EXAMPLE = ROOT / "examples" / "ci"


def test_example_tests_pass_against_their_committed_baseline(pytester):
    pytester.path.joinpath("test_gradient_parity.py").write_text(
        (EXAMPLE / "test_gradient_parity.py").read_text())
    pytester.path.joinpath("base.json").write_text(
        (EXAMPLE / "gradparity-baseline.json").read_text())
    r = pytester.runpytest("-p", "no:cacheprovider", "--gradparity-baseline", "base.json")
    r.assert_outcomes(passed=16)
    r.stdout.fnmatch_lines(["gradparity: baseline base.json (15 cases), factor 4"])


def test_example_workflow_installs_pinned_and_runs_both_gates():
    text = (EXAMPLE / "gradient-parity.yml").read_text()
    runs = re.findall(r"^ +run: (.+)$", text, flags=re.MULTILINE)
    assert runs == [
        "python -m pip install -c constraints.txt -e '.[all,test]'",
        "python -m pytest examples/ci -ra --gradparity-baseline "
        "examples/ci/gradparity-baseline.json",
        "gradparity check --baseline results/baseline.json -q --out parity-results",
    ]
    for path in ("constraints.txt", "results/baseline.json",
                 "examples/ci/gradparity-baseline.json", "examples/ci/test_gradient_parity.py"):
        assert (ROOT / path).is_file(), path
