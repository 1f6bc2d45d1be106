"""Hostile input: NaN and inf, bad suite files, corrupted baselines. No silent pass, one
line and exit 2 for what cannot be used, nothing written."""

import json
import math
from dataclasses import replace

import numpy as np
import pytest

import gradparity as gp
from gradparity.adapters.registry import get_backend
from gradparity.ci.assertions import assert_grads_match, check_grads
from gradparity.ci.baseline import BaselineError, dumps, load_baseline, loads
from gradparity.cli import main
from gradparity.core.gradients import GradientSet
from gradparity.experiments.runner import evaluate_case
from gradparity.judge.policy import CalibratedRule
from gradparity.judge.tolerances import resolve_tolerances
from gradparity.judge.verdict import judge
from gradparity.reference.oracle import oracle_gradients

SPEC = gp.Spec((3, 4, 2), activation="tanh", head="linear_mse", batch=4, seed=1)


# -- NaN and inf --------------------------------------------------------------------------
def test_the_calibrated_rule_never_accepts_an_infinite_or_nan_error():
    rule = CalibratedRule()
    assert not rule.passes(math.inf, math.inf)
    assert not rule.passes(1.0, math.inf)
    assert not rule.passes(math.nan, 0.0)
    assert not rule.passes(math.inf, 0.0)
    assert rule.passes(1.0, 0.0)


@pytest.mark.parametrize("where", ["X", "Y", "W1", "b2"])
def test_a_case_with_non_finite_inputs_is_an_error_never_a_pass(where):
    case = gp.make_case(SPEC)
    if where in ("X", "Y"):
        arr = getattr(case, where).copy()
        arr[0, 1] = np.nan
        case = replace(case, **{where: arr})
    else:
        params = {k: v.copy() for k, v in case.parameters.items()}
        params[where][0, 0] = np.inf
        case = replace(case, parameters=params)
    result = check_grads(case, ["reference"])
    assert not result.ok
    rows = result.table
    assert set(rows["status"]) == {"error"}
    assert set(rows["reason_code"]) == {"invalid_case"}
    assert f"{where} holds" in rows["reason"].iloc[0]
    with pytest.raises(AssertionError, match="invalid case"):
        assert_grads_match(case, ["reference"])


def test_a_case_whose_reference_overflows_is_an_error():
    case = gp.make_case(SPEC.replace(activation="identity"))
    params = {k: v.copy() for k, v in case.parameters.items()}
    params["W1"] = params["W1"] * 1e300  # finite inputs, an infinite forward
    r = evaluate_case(replace(case, parameters=params), [get_backend("reference")],
                      tolerances=resolve_tolerances())
    assert [b.status for b in r.backends] == ["error"]
    assert "the reference's loss holds 1 inf" in r.backends[0].reason
    assert [row["reason_code"] for row in r.rows] == ["invalid_case"]


def _with(gs: GradientSet, key: str, value: float) -> GradientSet:
    grads = {k: v.copy() for k, v in gs.grads.items()}
    grads[key][0, 0] = value
    return replace(gs, grads=grads)


@pytest.mark.parametrize("policy", ["allclose", "calibrated"])
def test_finite_where_the_reference_is_nan_fails_with_reason_nonfinite(policy):
    case = gp.make_case(SPEC)
    ref = gp.reference_gradients(case)
    nan_ref = _with(ref, "dW1", np.nan)       # the reference is NaN there, the oracle not
    backend = _with(ref, "dW1", 0.0)
    rows = judge(case, backend, nan_ref, tolerance=gp.DEFAULT_TOLERANCES["float64"],
                 oracle=oracle_gradients(case), policy=policy)
    v = next(v for v in rows if v.key == "dW1")
    assert v.status == "fail" and v.reason_code == "nonfinite"
    assert "finite values where the reference is NaN or inf" in v.reason
    assert "accepts" not in v.reason


@pytest.mark.parametrize("policy", ["allclose", "calibrated"])
def test_nan_where_the_reference_is_finite_fails_with_reason_nonfinite(policy):
    case = gp.make_case(SPEC)
    ref = gp.reference_gradients(case)
    rows = judge(case, _with(ref, "db2", np.nan), ref,
                 tolerance=gp.DEFAULT_TOLERANCES["float64"], oracle=oracle_gradients(case),
                 policy=policy)
    v = next(v for v in rows if v.key == "db2")
    assert (v.status, v.reason_code) == ("fail", "nonfinite")


# -- suite files --------------------------------------------------------------------------
BAD_SUITES = {
    "non_utf8": (b'[[case]]\nsizes = [3, 2]\n# caf\xe9\n', "not UTF-8 text (byte 0xe9"),
    "nested_head": (b'[[sweep]]\nsizes = [3, 2]\nhead = [["softmax_ce"]]\n',
                    "sweep[0].head=[['softmax_ce']]: expected a string or a list of strings"),
    "table_head": (b'[[sweep]]\nsizes = [3, 2]\nhead = {x = 1}\n',
                   "sweep[0].head={'x': 1}: expected a string or a list of strings"),
    "huge_seed": (b'[[case]]\nsizes = [3, 2]\nseed = 100000000000000000\n'
                  b'[[sweep]]\nsizes = [3, 2]\nseed = [1, 9223372036854775807]\n'
                  b'[[case]]\nsizes = [3, 3]\nseed = 9223372036854775808\n',
                  "seed=9223372036854775808: expected a non-negative integer below 2**63"),
    "bool_inputs": (b'[[case]]\nsizes = [1, 1]\nbatch = 2\ninputs = [[true, false]]\n',
                    "case[0]: inputs[0][0]=True: expected a number"),
    "string_rows": (b'[[case]]\nsizes = [2, 1]\nbatch = 1\ninputs = ["1", "2"]\n',
                    "case[0]: inputs=['1', '2']: expected a matrix"),
    "table_description": (b'description = {a = 1}\n[[case]]\nsizes = [3, 2]\n',
                          "description={'a': 1}: expected a string"),
    "bool_batch": (b'[[sweep]]\nsizes = [3, 2]\nbatch = [4, true]\n',
                   "sweep[0].batch=[4, True]: expected an integer or a list of integers"),
    "list_dtype_in_case": (b'[[case]]\nsizes = [3, 2]\ndtype = ["float32"]\n',
                           "case[0].dtype=['float32']: expected a string"),
    "sizes_string": (b'[[sweep]]\nsizes = "3,2"\n', "sweep[0].sizes='3,2': expected a list"),
    "bool_seed": (b'[[case]]\nsizes = [3, 2]\nseed = true\n', "case[0].seed=True"),
    "backend_unknown": (b'backends = ["tensorflow"]\n[[case]]\nsizes = [3, 2]\n',
                        "backends='tensorflow': expected one of"),
    "folder": (None, "is a folder, expected a TOML file"),
}


@pytest.mark.parametrize("name", sorted(BAD_SUITES))
def test_a_bad_suite_file_is_one_line_exit_2_and_nothing_written(tmp_path, capsys,
                                                                  monkeypatch, name):
    data, expected = BAD_SUITES[name]
    monkeypatch.chdir(tmp_path)
    suite = tmp_path / "bad.toml"
    if data is None:
        suite.mkdir()
    else:
        suite.write_bytes(data)
    code = main(["run", str(suite), "--backends", "reference", "--out", "R", "-q"])
    err = capsys.readouterr().err
    assert code == 2, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert expected in err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.toml"]


def test_the_largest_seed_runs_and_lands_in_the_table(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text('[[case]]\nsizes = [3, 2]\nseed = 9223372036854775807\n')
    assert main(["run", "s.toml", "--backends", "reference", "--out", "R", "-q"]) == 0
    text = (tmp_path / "R" / "table.csv").read_text()
    assert "9223372036854775807" in text


# -- baselines ----------------------------------------------------------------------------
def _baseline_of(specs):
    from gradparity.ci.baseline import Baseline, rows_from_table

    result = check_grads(specs, ["reference"])
    return Baseline(cases=list(result.cases), rows=rows_from_table(result.table),
                    environment={}, source="test")


def _edit(text: str, edit) -> str:
    data = json.loads(text)
    edit(data)
    return json.dumps(data)


def _set_all(data, columns, value):
    cols = data["row_columns"]
    for r in data["rows"]:
        for c in columns:
            r[cols.index(c)] = value


CORRUPTIONS = {
    "metrics_nan": (lambda d: _set_all(d, ["err_oracle_eps", "worst_oracle_eps"], "nan"),
                    "rows[0].err_oracle_eps='nan': expected a finite number >= 0 or null"),
    "reference_error_nan": (lambda d: _set_all(d, ["ref_err_oracle_eps"], "nan"),
                            "rows[0].ref_err_oracle_eps='nan': expected a finite number >= 0"),
    "infinite_error_on_a_pass": (lambda d: _set_all(d, ["worst_oracle_eps"], "inf"),
                                 "rows[0].worst_oracle_eps='inf': expected a finite number "
                                 ">= 0 or null"),
    "negative_metric": (lambda d: _set_all(d, ["norm_err_eps"], -1.0),
                        "rows[0].norm_err_eps=-1.0: expected a finite number >= 0"),
    "status_banana": (lambda d: d["rows"][3].__setitem__(d["row_columns"].index("status"),
                                                         "banana"),
                      "rows[3].status='banana': expected one of pass, "),
    "backend_dropped_from_case": (
        lambda d: d["cases"][0].__setitem__("backends", ["torch"]),
        "rows[0].backend='reference': not among the backends of its case (torch)"),
    "backend_added_to_case": (
        lambda d: d["cases"][1].__setitem__("backends", ["reference", "jax"]),
        "cases[1].backends: 'jax' has no rows"),
}


@pytest.mark.parametrize("name", sorted(CORRUPTIONS))
def test_a_corrupted_baseline_is_refused_with_one_line_naming_row_and_field(tmp_path, capsys,
                                                                            name):
    edit, expected = CORRUPTIONS[name]
    good = dumps(_baseline_of([SPEC, SPEC.replace(seed=2)]))
    loads(good)  # the uncorrupted file is fine
    bad = tmp_path / "b.json"
    bad.write_text(_edit(good, edit))
    with pytest.raises(BaselineError) as info:
        load_baseline(bad)
    assert expected in str(info.value) and "\n" not in str(info.value)
    out = tmp_path / "out"
    code = main(["check", "--baseline", str(bad), "--out", str(out), "-q"])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and err.count("\n") == 1
    assert not out.exists()


def test_the_committed_baselines_load():
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    assert len(load_baseline(root / "results" / "baseline.json").rows) > 8000
    load_baseline(root / "examples" / "ci" / "gradparity-baseline.json")
