"""``gradparity fuzz``: the search finds injected faults (also ones that show only in
corners), shrinks them to small cases, writes them as ``[[case]]`` suites that reproduce
them, keeps hypothesis's database in the result folder, and stays quiet on an unmodified
backend."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("hypothesis")

from gradparity.cli import main  # noqa: E402
from gradparity.core.errors import SpecError  # noqa: E402
from gradparity.core.spec import Spec  # noqa: E402
from gradparity.experiments.runner import run_specs  # noqa: E402
from gradparity.experiments.toml_suite import dumps_cases, load_suite_file  # noqa: E402
from gradparity.fuzz.faulty import FaultyBackend  # noqa: E402
from gradparity.fuzz.recipe import Recipe, build_spec  # noqa: E402
from gradparity.fuzz.report import hidden_units  # noqa: E402
from gradparity.fuzz.search import FileExampleDatabase, search  # noqa: E402
from gradparity.judge.tolerances import resolve_tolerances  # noqa: E402
from gradparity.reference.case import make_case  # noqa: E402

TOL = resolve_tolerances()
PARAMS = {"W1": [[1.0, 0.0], [0.5, -1.0], [0.0, 2.0]], "b1": [[0.0], [0.0], [0.0]],
          "W2": [[1.0, -1.0, 0.5], [0.0, 1.0, 1.0]], "b2": [[0.0], [5e-324]]}


def test_explicit_parameters_round_trip_through_toml(tmp_path):
    spec = Spec((2, 3, 2), head="softmax_ce", batch=2, dtype="float32",
                inputs=[[1e-40, -0.0], [1e30, 0.10000000149011612]], targets=[[0, 1]],
                parameters=PARAMS)
    f = tmp_path / "s.toml"
    f.write_text(dumps_cases([spec], name="s", comments=["a\ncomment"]))
    again = load_suite_file(f).specs[0]
    assert again == spec and again.case_id == spec.case_id
    case = make_case(again)
    assert case.parameters["W2"].tolist() == PARAMS["W2"]
    assert case.parameters["W2"].dtype == "float32"
    # the parameters are part of the case's identity
    other = dict(PARAMS, b1=[[0.0], [0.0], [1.0]])
    assert spec.replace(parameters=other).case_id != spec.case_id


@pytest.mark.parametrize(("params", "field"), [
    ({k: v for k, v in PARAMS.items() if k != "b2"}, "parameters.b2"),
    (dict(PARAMS, W3=[[1.0]]), "parameters.W3"),
    (dict(PARAMS, W1=[[1.0, 0.0]]), "parameters.W1"),
    (dict(PARAMS, b1=[[0.0], [float("inf")], [0.0]]), "parameters.b1[1][0]"),
])
def test_bad_parameters_name_the_field(params, field):
    with pytest.raises(SpecError) as e:
        Spec((2, 3, 2), batch=2, parameters=params)
    assert e.value.field == field


def test_recipe_builds_values_of_its_dtype():
    r = Recipe((3, 4, 3), "relu", "softmax_ce", "probs", "float32", 5, x_kind="subnormal",
               y_kind="soft", specials=(("W1", 7, 1e30),))
    case = make_case(build_spec(r))
    assert case.X.dtype == "float32" and 0 < abs(case.X).max() < 1.2e-38  # subnormal
    assert case.parameters["W1"].flat[7] == np.float32(1e30)  # the special element
    assert abs(case.Y.sum(axis=0) - 1).max() < 1e-6


# fault -> budget: the fault is found within it, shrunk to <= 2 hidden units and batch <= 2
FAULTS = {"derivative_at_A": 60, "wrong_axis_when_m_is_1": 60}


@pytest.mark.parametrize("fault", sorted(FAULTS))
def test_search_finds_and_shrinks_a_fault(fault, tmp_path):
    backend = FaultyBackend(fault)
    result = search([backend], budget=FAULTS[fault], seed=0, tolerances=TOL)
    fails = [c for c in result.counterexamples if c.status == "fail"]
    assert fails, fault
    for c in fails:
        assert hidden_units(c.spec) <= 2 and c.spec.batch <= 2, c.spec
    if fault == "wrong_axis_when_m_is_1":
        assert all(c.spec.batch == 1 for c in fails)
    # the written suite reproduces the failure without the search
    f = tmp_path / "c.toml"
    f.write_text(dumps_cases([c.spec for c in fails], name="c"))
    table = run_specs(load_suite_file(f).specs, backends=[backend, "reference"],
                      tolerances=TOL)
    mine = table[table["backend"] == backend.name]
    assert (mine.groupby("case_id")["status"].apply(lambda s: (s == "fail").any())).all()
    assert (table[table["backend"] == "reference"]["status"] == "pass").all()


def test_no_counterexample_on_the_unmodified_reference():
    from gradparity.adapters.registry import get_backend

    result = search([get_backend("reference")], budget=12, seed=1, tolerances=TOL)
    assert result.counterexamples == [] and result.examples >= 12


def test_cli_writes_a_result_folder_and_replays_its_database(tmp_path, capsys):
    out = tmp_path / "fz"
    args = ["fuzz", "--budget", "30", "--backends", "reference+dropped_bias_gradient",
            "--out", str(out), "-q"]
    assert main(args) == 1
    text = capsys.readouterr().out
    assert "| reference+dropped_bias_gradient | fail | mismatch | 1 |" in text
    assert {p.name for p in out.iterdir()} >= {"counterexamples.toml", "counterexamples.csv",
                                               "table.csv", "summary.md", "examples.json"}
    db = FileExampleDatabase.load(out / "examples.json")
    assert db.data, "the example database is saved in the result folder"
    csv = (out / "counterexamples.csv").read_text()
    # a rerun replays the saved counterexample first: found at the first case
    assert main(args) == 1
    import pandas as pd

    again = pd.read_csv(out / "counterexamples.csv")
    assert again["found_at_example"].tolist() == [1], (csv, again)


def test_cli_exit_0_when_nothing_is_found(tmp_path):
    assert main(["fuzz", "--budget", "5", "--backends", "reference", "--out",
                 str(tmp_path / "q"), "-q"]) == 0


@pytest.mark.parametrize(("args", "message"), [
    (["--budget", "0"], "--budget=0: expected a number of cases >= 1"),
    (["--backends", "reference+nope"], "--backends='reference+nope': expected one of"),
    (["--policy", "loose"], "--policy='loose': expected one of"),
    (["--workers", "0"], "--workers=0: expected a number of workers >= 1"),
    (["--workers", "2", "--dask", "tcp://x:1"], "expected one of them"),
])
def test_bad_options_are_one_line_errors(args, message, tmp_path, capsys):
    out = tmp_path / "never"
    assert main(["fuzz", "--out", str(out), *args]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and not out.exists()


@pytest.mark.parametrize(("command", "extra"), [
    (["fuzz", "--budget", "1"], "gradparity[fuzz]"),
    (["run", "quick", "--workers", "2"], "gradparity[distributed]"),
    (["fuzz", "--budget", "1", "--workers", "2"], "gradparity[distributed]"),
])
def test_missing_extras_name_the_extra(command, extra, monkeypatch, tmp_path, capsys):
    """Without hypothesis (first case) or dask (the others), a one-line error names the
    extra to install, exit 2, nothing written."""
    import gradparity.adapters.base as base

    missing = "hypothesis" if extra.endswith("[fuzz]") else "distributed"
    monkeypatch.setattr(base, "modules_found", lambda *m: missing not in m)
    assert main([*command, "--out", str(tmp_path / "o")]) == 2
    err = capsys.readouterr().err
    assert extra in err and err.count("\n") == 1
    assert not (tmp_path / "o").exists()
