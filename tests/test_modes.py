"""The other gradient paths of each framework as backends: torch.func, forward mode,
torch.compile, jax eager, jax.checkpoint and per-example vmap(grad)."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from gradparity.adapters.base import PER_EXAMPLE_MODES, batch_from_per_example
from gradparity.adapters.registry import (
    BACKENDS,
    DEFAULT_BACKENDS,
    DESCRIPTIONS,
    available_backends,
    get_backend,
)
from gradparity.core.spec import Spec
from gradparity.reference.case import make_case
from gradparity.reference.mlp import REFERENCE_KINKS

pytest.importorskip("torch")
pytest.importorskip("jax")

from gradparity.experiments.runner import run_specs  # noqa: E402

NEW = ["torch.func", "torch.fwd", "torch.vmap", "jax.eager", "jax.fwd", "jax.checkpoint",
       "jax.vmap"]
SPECS = [
    # exact zeros at leaky_relu's kink (jax: leaky_relu'(0) = 1); float32 MSE (its 1/2
    # under forward mode)
    Spec((3, 4, 2), activation="leaky_relu", head="linear_mse", dtype="float32", batch=4,
         seed=7, regime="kinks"),
    # composed sigmoid + BCE saturating (J is nan in JAX)
    Spec((3, 4, 2), activation="tanh", head="sigmoid_bce", loss_form="probs",
         dtype="float64", batch=4, seed=11, regime="saturated"),
    # softmax with labels, depth 3 (per-example gradients only)
    Spec((3, 4, 4, 3), activation="gelu", head="softmax_ce", dtype="float64", batch=4,
         seed=2),
]
EXPLAINED_OR_PASS = {"pass", "kink", "saturation", "rounding"}


@pytest.fixture(scope="module")
def table() -> pd.DataFrame:
    return run_specs(SPECS[:2], backends=NEW, policy="calibrated")


def test_registry_lists_every_path_and_keeps_the_defaults():
    assert DEFAULT_BACKENDS == ("torch", "jax")
    assert set(NEW) | {"torch.compile"} <= set(BACKENDS)
    assert set(DESCRIPTIONS) == set(BACKENDS)
    avail = available_backends()
    for name in NEW:
        ok, note = avail[name]
        assert ok and note.startswith(name.split(".")[0] + " ")


def test_every_new_backend_agrees_with_the_reference_row_by_row(table):
    judged = table[table["quantity"] != "*"]
    assert set(judged["backend"]) == set(NEW), table[table["quantity"] == "*"][
        ["backend", "reason"]]
    bad = table[~table["status"].isin(EXPLAINED_OR_PASS)]
    assert bad.empty, bad[["case_id", "backend", "quantity", "layer", "status", "reason"]]


def test_forward_mode_spreads_nan_from_saturated_examples_as_saturation(table):
    sat = table[(table["regime"] == "saturated") & table["quantity"].isin(["dW", "db", "dZ"])]
    fwd = sat[sat["backend"] == "jax.fwd"]
    assert (fwd["status"] == "saturation").all()
    assert fwd["reason"].str.contains("forward mode").any()
    assert not sat[sat["backend"] == "jax.checkpoint"]["reason"].str.contains(
        "forward mode").any()


def test_kinks_are_labelled_with_each_backends_own_convention(table):
    kink = table[(table["regime"] == "kinks") & (table["status"] == "kink")]
    # jax's leaky_relu'(0) = 1 differs from the reference, in every mode
    for name in ("jax.eager", "jax.fwd", "jax.checkpoint", "jax.vmap"):
        assert (kink["backend"] == name).any(), name
        assert get_backend(name).kink_conventions("float32") == {
            "relu": 0.0, "leaky_relu": 1.0, "linear_l1": 1.0}
    for name in ("torch.func", "torch.fwd", "torch.vmap"):
        assert get_backend(name).kink_conventions("float32") == REFERENCE_KINKS


def test_rows_say_how_the_gradient_was_computed(table):
    modes = {b: set(g["mode"]) for b, g in table.groupby("backend")}
    assert modes["torch.fwd"] == modes["jax.fwd"] == {"jacfwd"}
    assert modes["torch.func"] == modes["jax.checkpoint"] == {"end_to_end"}
    for name in ("torch.vmap", "jax.vmap"):
        rows = table[table["backend"] == name]
        for quantity, mode in PER_EXAMPLE_MODES.items():
            assert set(rows.loc[rows["quantity"] == quantity, "mode"]) == {mode}


def test_layer_own_is_skipped_with_a_reason_for_whole_network_paths():
    df = run_specs(SPECS[:1], backends=["torch.func", "jax.eager"], layer_own=True)
    own = df[df["mode"] == "layer_own"]
    assert list(own["status"]) == ["skipped", "skipped"]
    assert own["reason"].str.contains("runs whole networks only").all()


def test_baselines_keep_whole_network_modes_and_drop_layer_own(table):
    from gradparity.ci.baseline import end_to_end

    t = pd.concat([table, table.head(2).assign(mode="layer_own")])
    kept = end_to_end(t)
    assert len(kept) == len(table)
    assert {"jacfwd", "per_example_mean"} <= set(kept["mode"])


@pytest.mark.parametrize("name, batch", [("torch.vmap", "torch.func"), ("jax.vmap", "jax")])
def test_per_example_gradients_average_to_the_batch_gradient(name, batch):
    case = make_case(SPECS[2])
    per, _ = get_backend(name).per_example(case)
    whole = get_backend(batch).gradients(case)
    m = case.m
    assert per["dW1"].shape == (m, *whole.grads["dW1"].shape)
    for key, g in whole.grads.items():
        if key.startswith(("dW", "db")):
            np.testing.assert_allclose(per[key].mean(axis=0), g, rtol=1e-10, atol=1e-14)
        else:  # the seed's per-example dZ, dA: m times the true partial
            np.testing.assert_allclose(per[key], m * g, rtol=1e-10, atol=1e-14)
    # each example's dW is its own dZ times its own input
    a0 = case.X
    np.testing.assert_allclose(per["dW1"][1], np.outer(per["dZ1"][:, 1], a0[:, 1]),
                               rtol=1e-10, atol=1e-14)


def test_batch_from_per_example_faults_change_what_they_say():
    per = {"dW1": np.ones((4, 2, 3)), "db1": np.ones((4, 2, 1)), "dZ1": np.full((2, 4), 4.0)}
    good = batch_from_per_example(per, 4)
    np.testing.assert_array_equal(good["dW1"], np.ones((2, 3)))
    np.testing.assert_array_equal(good["dZ1"], np.ones((2, 4)))
    assert (batch_from_per_example(per, 4, mean=False)["dW1"] == 4).all()
    assert (batch_from_per_example(per, 4, divide=False)["dZ1"] == 4).all()


def test_selftest_detects_wrapper_faults_and_no_false_alarm():
    import gradparity.selftest.run as selftest

    report = selftest.run_selftest(SPECS[:2], backends=["torch.vmap", "jax.vmap",
                                                        "torch.fwd", "jax.fwd"])
    rates = report.faults.set_index("fault")
    for name in ("torch.vmap", "jax.vmap"):
        for fault in ("per_example_not_divided_by_m", "per_example_summed"):
            row = rates.loc[f"{name}: {fault}"]
            assert row["applicable"] == 2 and row["detection_rate"] == 1.0, row
    alarms = report.false_alarms.set_index("backend")
    assert (alarms["false_alarms"] == 0).all(), alarms
    assert report.ok


def test_a_wrapper_fault_hidden_by_nan_everywhere_has_no_effect():
    # a saturated example can make every parameter gradient NaN: summing instead of
    # averaging then changes nothing there, and cannot count as missed
    from gradparity.core.gradients import GradientSet
    from gradparity.judge.tolerances import resolve_tolerances
    from gradparity.reference.mlp import reference_gradients
    from gradparity.selftest.run import _wrapper_faults

    case = make_case(SPECS[0])
    ref = reference_gradients(case)
    m = case.m
    per = {k: (np.full((m, *v.shape), np.nan, v.dtype) if k[:2] in ("dW", "db") else m * v)
           for k, v in ref.grads.items()}

    class NanPerExample:
        name = "nan.vmap"

        def per_example(self, case):
            return per, GradientSet(self.name, ref.loss, ref.forward, {})

        def kink_conventions(self, dtype):
            return REFERENCE_KINKS

    rows = {r["subject"]: r["outcome"] for r in _wrapper_faults(
        NanPerExample(), case, ref, None, resolve_tolerances()[case.spec.dtype], "allclose")}
    assert rows == {"nan.vmap: per_example_summed": "no effect",
                    "nan.vmap: per_example_not_divided_by_m": "detected"}


@pytest.mark.parametrize("module, names", [
    ("gradparity.adapters.torch_modes", ("torch.func", "torch.fwd", "torch.compile",
                                         "torch.vmap")),
    ("gradparity.adapters.jax_grad", ("jax.eager", "jax.fwd", "jax.checkpoint", "jax.vmap")),
])
def test_a_missing_framework_names_its_extra(monkeypatch, module, names):
    import importlib

    monkeypatch.setattr(importlib.import_module(module), "modules_found", lambda *m: False)
    for name in names:
        framework = name.split(".")[0]
        assert not get_backend(name).available()
        assert get_backend(name).unavailable_reason() == (
            f"{framework} is not installed (pip install 'gradparity[{framework}]')")


def test_torch_compile_without_a_cxx_compiler_is_skipped_with_the_reason(monkeypatch):
    from gradparity.adapters import torch_modes

    monkeypatch.delenv("CXX", raising=False)
    monkeypatch.setattr(torch_modes.shutil, "which", lambda name: None)
    b = torch_modes.TorchCompileBackend()
    assert not b.available()
    assert "needs a C++ compiler" in b.unavailable_reason()
    df = run_specs(SPECS[:1], backends=[b])
    assert list(df["status"]) == ["skipped"]
    assert "C++ compiler" in df["reason"].iloc[0]


def test_torch_compile_agrees_and_reports_compile_time_apart():
    b = get_backend("torch.compile")
    if not b.available():
        pytest.skip(b.unavailable_reason())
    spec = SPECS[0]
    df = run_specs([spec], backends=[b], policy="calibrated")
    assert set(df["status"]) <= EXPLAINED_OR_PASS, df[["quantity", "status", "reason"]]
    again = b.gradients(make_case(spec))  # same structure and shapes: no new graph
    assert again.meta["compiled"] is False and again.meta["seconds"] >= 0


def test_bench_times_each_backend_with_compile_apart():
    from gradparity.bench.backends import COLUMNS, summary, time_backends

    times = time_backends(SPECS[:1], ["torch.func", "jax.checkpoint"])
    assert list(times.columns) == list(COLUMNS)
    assert list(times["backend"]) == ["torch.func", "jax.checkpoint"]
    assert (times[["first_s", "warm_s", "compile_s"]] >= 0).all().all()
    assert list(summary(times)["cases"]) == [1, 1]


@pytest.mark.parametrize("name", ["torch.fwd", "jax.fwd"])
def test_forward_mode_on_a_network_too_large_for_jacfwd_is_skipped_with_its_reason(name):
    """A full Jacobian of 784-256-256-10 x 128 would need about a terabyte: the row is
    ``skipped`` with the reason, at once, never an out-of-memory crash or an error."""
    from gradparity.experiments.runner import run_specs

    b = get_backend(name)
    if not b.available():
        pytest.skip(b.unavailable_reason())
    big = Spec((784, 256, 256, 10), activation="relu", head="softmax_ce", batch=128)
    small = Spec((4, 5, 5, 1), activation="relu", head="sigmoid_bce", batch=8)
    t0 = time.perf_counter()
    df = run_specs([big, small], backends=[name])
    assert time.perf_counter() - t0 < 60
    rows = df[df.case_id == big.case_id]
    assert list(rows.status) == ["skipped"]
    reason = rows.reason.iloc[0]
    assert "jacfwd" in reason and "GRADPARITY_JACFWD_BYTES" in reason and " GB" in reason
    assert set(df[df.case_id == small.case_id].status) == {"pass"}


def test_jacfwd_limit_covers_the_default_suite_and_can_be_changed(monkeypatch):
    from gradparity.adapters.base import JACFWD_BYTES, CaseNotSupported, check_jacfwd, jacfwd_cost
    from gradparity.experiments.suites import default_suite

    worst = max(jacfwd_cost(s)[1] for s in default_suite())
    assert worst < JACFWD_BYTES / 8  # every default case, with room
    spec = default_suite()[0]
    monkeypatch.setenv("GRADPARITY_JACFWD_BYTES", str(jacfwd_cost(spec)[1] - 1))
    with pytest.raises(CaseNotSupported):
        check_jacfwd(spec, "torch.fwd")
    monkeypatch.setenv("GRADPARITY_JACFWD_BYTES", str(jacfwd_cost(spec)[1]))
    check_jacfwd(spec, "torch.fwd")
    monkeypatch.setenv("GRADPARITY_JACFWD_BYTES", "inf")  # no limit, not an error
    check_jacfwd(Spec((784, 256, 256, 10), activation="relu", head="softmax_ce",
                      batch=128), "torch.fwd")
