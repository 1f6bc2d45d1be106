"""Property-based fuzzing of every input a user controls: suite files, marker arguments,
baselines and backprop files. Invariants: the exit code is 0, 1 or 2; a 2 is one line with
no traceback and writes nothing; nothing hangs past the timeout; nothing that cannot be
judged passes.

The default profile keeps the whole file under a minute on two cores. A longer run:
``GRADPARITY_FUZZ=nightly python -m pytest tests/test_fuzz.py`` (ten times the examples).
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from gradparity.ci.baseline import Baseline, BaselineError, dumps, loads, rows_from_table
from gradparity.ci.pytest_plugin import marker_options, marker_specs
from gradparity.cli import main
from gradparity.core.errors import UsageError
from gradparity.core.spec import Spec
from gradparity.experiments.toml_suite import load_suite_file

ROOT = Path(__file__).resolve().parents[1]
SCALE = 10 if os.environ.get("GRADPARITY_FUZZ") == "nightly" else 1


def fuzz(n: int):
    """Hypothesis settings: ``n`` examples (times 10 under the nightly profile), no
    per-example deadline (the machine is shared; the hang invariant is checked on its
    own), no database (a fresh run explores afresh)."""
    return settings(max_examples=n * SCALE, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def _one_line_error(code: int, err: str) -> None:
    assert code == 2
    assert err.count("\n") == 1, err
    assert "Traceback" not in err and err.startswith("gradparity: error: "), err


# -- values of every type, in TOML ----------------------------------------------------------
scalars = st.one_of(
    st.integers(min_value=-3, max_value=6),
    st.integers(min_value=-2**70, max_value=2**70),
    st.floats(allow_nan=True, allow_infinity=True),
    st.booleans(),
    st.sampled_from(["relu", "gelu", "softmax_ce", "sigmoid_bce", "linear_mse", "probs",
                     "logits", "float32", "float64", "he", "kinks", "saturated", "", "x"]),
)
values = st.recursive(scalars, lambda inner: st.one_of(
    st.lists(inner, max_size=4),
    st.dictionaries(st.sampled_from(["a", "x", "rtol"]), inner, max_size=2)), max_leaves=8)


def toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(v)
    if isinstance(v, float):
        if math.isnan(v):
            return "nan"
        if math.isinf(v):
            return "inf" if v > 0 else "-inf"
        return repr(v)
    if isinstance(v, str):
        return json.dumps(v)
    if isinstance(v, list):
        return "[" + ", ".join(toml_value(x) for x in v) + "]"
    return "{" + ", ".join(f"{k} = {toml_value(x)}" for k, x in v.items()) + "}"


FIELDS = ("sizes", "activation", "head", "loss_form", "dtype", "batch", "seed", "init",
          "regime", "inputs", "targets", "width")
small_sizes = st.lists(st.integers(min_value=1, max_value=4), min_size=2, max_size=3)
field_values = {
    "sizes": st.one_of(small_sizes, st.lists(small_sizes, min_size=1, max_size=2), values),
    "batch": st.one_of(st.integers(min_value=1, max_value=4), values),
    "inputs": st.one_of(st.lists(st.lists(st.floats(), min_size=1, max_size=3), max_size=3),
                        values),
}


@st.composite
def suite_texts(draw) -> bytes:
    lines = []
    for key in draw(st.lists(st.sampled_from(["name", "description", "backends",
                                              "tolerances"]), unique=True, max_size=2)):
        if key == "backends":
            v = draw(st.one_of(st.just(["reference"]), values))
        else:
            v = draw(st.one_of(st.just("ok-name"), values))
        lines.append(f"{key} = {toml_value(v)}")
    for _ in range(draw(st.integers(min_value=1, max_value=2))):
        lines.append(f"[[{draw(st.sampled_from(['sweep', 'case']))}]]")
        lines.append(f"sizes = {toml_value(draw(field_values['sizes']))}")
        for key in draw(st.lists(st.sampled_from(FIELDS[1:]), unique=True, max_size=3)):
            lines.append(f"{key} = {toml_value(draw(field_values.get(key, values)))}")
    data = ("\n".join(lines) + "\n").encode()
    if draw(st.integers(min_value=0, max_value=9)) == 0:
        at = draw(st.integers(min_value=0, max_value=len(data)))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xe9", b"\x00", b"["])) + data[at:]
    return data


@fuzz(40)
@given(text=suite_texts())
def test_fuzz_suite_files_load_or_fail_with_one_line(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("suite") / "s.toml"
    path.write_bytes(text)
    try:
        suite = load_suite_file(path)
    except UsageError as e:
        assert "\n" not in str(e)
        return
    for spec in suite.specs:  # what loads is valid: the run can use it as it is
        assert isinstance(spec, Spec) and isinstance(spec.seed, int) and spec.seed < 2**63
        assert all(isinstance(n, int) and not isinstance(n, bool) for n in spec.sizes)
        if spec.inputs is not None:
            assert all(math.isfinite(v) for row in spec.inputs for v in row)
    assert isinstance(suite.description, str) and isinstance(suite.name, str)


@fuzz(12)
@given(text=suite_texts())
def test_fuzz_suite_files_through_the_command_line(tmp_path_factory, text):
    folder = tmp_path_factory.mktemp("run")
    (folder / "s.toml").write_bytes(text)
    out = folder / "R"
    old = os.getcwd()
    os.chdir(folder)
    try:
        from contextlib import redirect_stderr, redirect_stdout
        from io import StringIO

        err, so = StringIO(), StringIO()
        with redirect_stderr(err), redirect_stdout(so):
            code = main(["run", "s.toml", "--backends", "reference", "--out", str(out), "-q"])
    finally:
        os.chdir(old)
    assert code in (0, 1, 2)
    if code == 2:
        _one_line_error(code, err.getvalue())
        assert sorted(p.name for p in folder.iterdir()) == ["s.toml"]
    else:
        assert (out / "table.csv").is_file()
        import pandas as pd

        table = pd.read_csv(out / "table.csv")
        assert (table["status"] == "pass").any() or code == 1


# -- marker arguments -----------------------------------------------------------------------
@fuzz(60)
@given(fields=st.dictionaries(st.sampled_from(FIELDS), values, max_size=4),
       sizes=field_values["sizes"],
       options=st.dictionaries(st.sampled_from(["backends", "rtol", "atol", "policy"]),
                               st.one_of(values, st.just(["reference"]),
                                         st.just("calibrated")), max_size=2))
def test_fuzz_marker_arguments_give_specs_or_one_line(fields, sizes, options):
    fields = dict(fields, sizes=sizes)
    try:
        marker_options(options)
        specs = marker_specs([], fields)
    except UsageError as e:
        assert "\n" not in str(e) and str(e).startswith("@pytest.mark.gradparity")
        return
    assert specs and all(isinstance(s, Spec) for s in specs)


# -- baselines ------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def baseline_text() -> str:
    from gradparity.ci.assertions import check_grads

    specs = [Spec((2, 3, 2), activation="tanh", batch=2, seed=s) for s in (0, 1)]
    result = check_grads(specs, ["reference"])
    return dumps(Baseline(cases=list(result.cases),
                          rows=rows_from_table(result.table),
                          environment={}, source="fuzz"))


json_values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-5, max_value=2**64),
    st.floats(allow_nan=False, allow_infinity=False),
    st.sampled_from(["nan", "inf", "-inf", "banana", "pass", "fail", "jax", "reference",
                     "", "*"]),
    st.lists(st.sampled_from(["reference", "torch", 1]), max_size=2), st.just({}))


@fuzz(40)
@given(edits=st.lists(st.tuples(st.sampled_from(["row", "case", "top"]),
                                st.integers(min_value=0, max_value=40),
                                st.integers(min_value=0, max_value=10), json_values),
                      min_size=1, max_size=3))
def test_fuzz_baselines_load_valid_or_fail_with_one_line(baseline_text, tmp_path_factory,
                                                         edits):
    data = json.loads(baseline_text)
    for where, i, j, v in edits:  # edits of what an earlier edit replaced are left out
        rows, cases = data.get("rows"), data.get("cases")
        if where == "row" and isinstance(rows, list) and rows and isinstance(
                rows[i % len(rows)], list):
            row = rows[i % len(rows)]
            row[j % len(row)] = v
        elif where == "case" and isinstance(cases, list) and cases and isinstance(
                cases[i % len(cases)], dict):
            case = cases[i % len(cases)]
            case[sorted(case)[j % len(case)]] = v
        elif where == "top":
            data[sorted(data)[j % len(data)]] = v
    text = json.dumps(data)
    try:
        b = loads(text)
    except BaselineError as e:
        assert "\n" not in str(e)
        code_expected = 2
    else:  # what loads cannot switch the gate off
        from gradparity.judge.status import STATUSES

        for r in b.rows:
            assert r.status in STATUSES
            metrics = r[7:]
            assert all(m is None or (not math.isnan(m) and m >= 0) for m in metrics)
            assert r.status != "pass" or all(m is None or math.isfinite(m) for m in metrics)
        assert {(r.case_id, r.backend) for r in b.rows} == {(c.case_id, x) for c in b.cases
                                                            for x in c.backends}
        code_expected = None
    folder = tmp_path_factory.mktemp("check")
    path = folder / "b.json"
    path.write_text(text)
    from contextlib import redirect_stderr, redirect_stdout
    from io import StringIO

    err = StringIO()
    with redirect_stderr(err), redirect_stdout(StringIO()):
        code = main(["check", "--baseline", str(path), "--out", str(folder / "out"), "-q"])
    assert code in (0, 1, 2)
    if code_expected == 2 or code == 2:
        _one_line_error(code, err.getvalue())
        assert not (folder / "out").exists()


# -- backprop files -------------------------------------------------------------------------
SEED_TEXT = (ROOT / "examples" / "seed_backprop.py").read_text()
# (snippet placed before "return grads", does it break the result?)
SNIPPETS = {
    "nothing": ("pass", False),
    "print": ("print('hello ' * 1000)", False),
    "nan": ('grads["dW1"] = grads["dW1"] * np.nan', True),
    "inf_one": ('grads["db2"][0, 0] = np.inf', True),
    "int_cast": ('grads["dW2"] = grads["dW2"].astype(int)', True),
    "float32": ('grads["dZ1"] = grads["dZ1"].astype(np.float32)', True),
    "shape": ('grads["dW1"] = grads["dW1"].T', True),
    "list": ('grads["db1"] = grads["db1"].tolist()', False),  # array-like: accepted
    "string": ('grads["dW2"] = "oops"', True),
    "drop": ('del grads["dW1"]', True),
    "none": ("grads = None", True),
    "raise": ("raise ValueError('broken')", True),
    "sys_exit_0": ("import sys; sys.exit(0)", True),
    "os_exit_0": ("import os; os._exit(0)", True),
    "os_exit_3": ("import os; os._exit(3)", True),
    "input": ("input()", True),
    "chdir": ("import os; os.chdir('/')", False),
    "hang": ("while True:\n        pass", True),
    "scale": ('grads["dW1"] = 2 * grads["dW1"]', True),
    "recursion": ("def f(): return f()\n    f()", True),
}
TIMEOUT = 6
#: A hang costs the whole timeout: only the nightly profile draws it (tests/
#: test_debug_isolation.py checks it every time).
DRAWN = sorted(n for n in SNIPPETS if SCALE > 1 or n != "hang")


@fuzz(4)
@given(names=st.lists(st.sampled_from(DRAWN), min_size=1, max_size=2, unique=True))
def test_fuzz_user_backprop_files_never_pass_silently_or_hang(tmp_path_factory, names):
    folder = tmp_path_factory.mktemp("user")
    body = "\n".join(f"    {SNIPPETS[n][0]}" for n in names)
    (folder / "mine.py").write_text(SEED_TEXT.replace("    return grads",
                                                      body + "\n    return grads"))
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "gradparity", "debug", "mine.py", "--backends",
                        "none", "--timeout", str(TIMEOUT), "--out", "o"], cwd=folder,
                       capture_output=True, text=True, timeout=TIMEOUT + 120,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)))
    took = time.monotonic() - start
    assert r.returncode in (0, 1, 2), r.stderr
    assert "Traceback" not in r.stderr and "Traceback" not in r.stdout
    breaks = any(SNIPPETS[n][1] for n in names)
    if breaks:
        assert r.returncode != 0, (names, r.stdout[-3000:])
    if r.returncode == 2:
        _one_line_error(r.returncode, r.stderr)
        assert r.stdout == "" and not (folder / "o").exists()
    else:
        assert (folder / "o" / "table.csv").is_file()
    if "hang" not in names:
        assert took < TIMEOUT + 60  # start-up on a busy machine, never the timeout
