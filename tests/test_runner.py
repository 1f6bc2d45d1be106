"""The runner and the result folder: completeness, determinism, explained differences,
isolation of failures."""


import numpy as np
import pandas as pd
import pytest

import gradparity.experiments.runner as runner
from gradparity.adapters.registry import get_backend
from gradparity.core.gradients import backprop_order
from gradparity.core.spec import ACTIVATIONS, Spec, head_forms
from gradparity.experiments.report import write_results
from gradparity.experiments.suites import SUITES, default_suite
from gradparity.experiments.tables import COLUMNS
from gradparity.selftest.faults import inject

torch = pytest.importorskip("torch")
jax = pytest.importorskip("jax")


def test_default_suite_covers_every_axis():
    specs = default_suite()
    assert {(s.head, s.loss_form) for s in specs} == set(head_forms())
    assert {s.activation for s in specs} == set(ACTIVATIONS)
    assert {s.dtype for s in specs} == {"float32", "float64"}
    assert {s.depth for s in specs} == {1, 2, 3, 4}
    assert {s.regime for s in specs} == {"normal", "kinks", "saturated"}
    assert len({s.sizes[1] for s in specs if s.depth > 1}) >= 2
    assert len({s.batch for s in specs}) >= 2


@pytest.fixture(scope="module")
def quick_table():
    return runner.run_specs(SUITES["quick"][0]())


def test_table_has_every_layer_quantity_backend_row(quick_table):
    df = quick_table
    assert list(df.columns) == list(COLUMNS)
    for spec in SUITES["quick"][0]():
        expected = set(backprop_order(spec.depth, with_output_dA=spec.loss_form == "probs"))
        for backend in ("torch", "jax"):
            rows = df[(df["case_id"] == spec.case_id) & (df["backend"] == backend)]
            got = {(int(r.layer), r.quantity) for r in rows.itertuples()}
            assert got == expected, (spec.case_id, backend)
    assert set(df["status"]) <= {"pass", "kink", "saturation", "rounding"}


def test_same_run_twice_gives_identical_files(tmp_path):
    specs = SUITES["quick"][0]()[:6]
    a = write_results(runner.run_specs(specs), tmp_path / "a", name="x")
    b = write_results(runner.run_specs(specs), tmp_path / "b", name="x")
    for name in ("table.csv", "table.parquet", "summary.md", "environment.json",
                 "pass_rates.csv", "worst_per_case.csv"):
        assert (a / name).read_bytes() == (b / name).read_bytes(), name
    back = pd.read_csv(a / "table.csv")
    assert len(back) > 0 and list(back.columns) == list(COLUMNS)


def test_kink_rows_name_the_differing_conventions():
    spec = Spec((5, 8, 8, 2), activation="leaky_relu", head="linear_l1", dtype="float64",
                batch=16, seed=7, regime="kinks")
    df = runner.run_specs([spec])
    jax_rows = df[df["backend"] == "jax"]
    kinks = jax_rows[jax_rows["status"] == "kink"]
    assert len(kinks) > 0
    assert "leaky_relu'(0): reference 0.01, jax 1" in kinks["reason"].iloc[0]
    assert "|r|'(0): reference 0, jax 1" in kinks["reason"].iloc[0]
    torch_rows = df[df["backend"] == "torch"]
    assert set(torch_rows["status"]) == {"pass"}  # torch shares the reference's convention


def test_relu_kinks_same_convention_pass():
    spec = Spec((5, 8, 8, 2), activation="relu", head="linear_mse", batch=16, seed=7,
                regime="kinks")
    df = runner.run_specs([spec])
    assert set(df["status"]) == {"pass"}


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_composed_saturation_is_labelled_and_logits_form_stays_exact(dtype):
    probs = Spec((5, 8, 2), activation="tanh", head="sigmoid_bce", loss_form="probs",
                 dtype=dtype, batch=16, seed=11, regime="saturated")
    df = runner.run_specs([probs, probs.replace(loss_form="logits")])
    composed = df[df["loss_form"] == "probs"]
    assert (composed["status"] == "saturation").sum() > 0
    assert "saturates" in composed[composed["status"] == "saturation"]["reason"].iloc[0]
    assert set(df[df["loss_form"] == "logits"]["status"]) == {"pass"}


class _Fake:
    def __init__(self, name, *, available=True, fault=None, raises=None):
        self.name = name
        self._available = available
        self._fault = fault
        self._raises = raises

    def available(self):
        return self._available

    def unavailable_reason(self):
        return "fakeframework is not installed (pip install fakeframework)"

    def gradients(self, case):
        if self._raises:
            raise self._raises
        g = get_backend("reference").gradients(case)
        return inject(self._fault, case, g) if self._fault else g

    def kink_conventions(self, dtype):
        return get_backend("reference").kink_conventions(dtype)

    def version(self):
        return None


@pytest.fixture
def fakes(monkeypatch):
    table = {
        "broken": _Fake("broken", raises=RuntimeError("device lost")),
        "missing": _Fake("missing", available=False),
        "degraded": _Fake("degraded", fault="missing_1_over_m"),
    }
    real = runner.get_backend
    monkeypatch.setattr(runner, "get_backend",
                        lambda name: table[name] if name in table else real(name))
    return table


def test_errors_and_missing_frameworks_are_rows_and_the_sweep_goes_on(fakes):
    specs = [Spec((3, 4, 2), seed=s) for s in range(3)]
    df = runner.run_specs(specs, backends=["broken", "missing", "torch"])
    broken = df[df["backend"] == "broken"]
    assert list(broken["status"]) == ["error"] * 3
    assert broken["reason"].iloc[0] == "RuntimeError: device lost"
    missing = df[df["backend"] == "missing"]
    assert list(missing["status"]) == ["skipped"] * 3
    assert "not installed" in missing["reason"].iloc[0]
    assert set(df[df["backend"] == "torch"]["status"]) == {"pass"}


def test_degraded_backend_fails_at_the_named_layer_and_quantity(fakes):
    spec = Spec((3, 4, 4, 2), activation="tanh", dtype="float32")
    df = runner.run_specs([spec], backends=["degraded"])
    fails = df[df["status"] == "fail"]
    assert [(int(r.layer), r.quantity) for r in fails.itertuples()] == [
        (3, "dW"), (2, "dW"), (1, "dW")]
    assert np.isclose(fails["max_rel_err"].iloc[0], spec.batch - 1)
    assert "x m: per-example" in fails["reason"].iloc[0]


def test_run_specs_takes_cases_and_backend_objects(fakes):
    """`run_specs` and `check_grads` share `evaluate_case`: a Case with arrays of its own
    gets the ``-arrays<digest>`` id, and backend objects stand beside names."""
    import dataclasses

    from gradparity.ci.assertions import check_grads
    from gradparity.reference.case import make_case

    spec = Spec((3, 4, 2), seed=5)
    case = make_case(spec)
    custom = dataclasses.replace(case, parameters={k: 2 * v for k, v in case.parameters.items()})
    backends = [get_backend("reference"), fakes["broken"]]
    df = runner.run_specs([spec, custom], backends=backends)
    ids = list(dict.fromkeys(df["case_id"]))
    assert ids[0] == spec.case_id and ids[1].startswith(spec.case_id + "-arrays")
    assert set(df[df["backend"] == "reference"]["status"]) == {"pass"}
    assert list(df[df["backend"] == "broken"]["status"]) == ["error", "error"]
    result = check_grads([spec, custom], backends)
    pd.testing.assert_frame_equal(df, result.table)
    assert [(p.case_id, p.backend, p.status) for p in result.problems] == [
        (ids[0], "broken", "error"), (ids[1], "broken", "error")]
