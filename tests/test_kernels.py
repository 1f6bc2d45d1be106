"""A baseline's errors over the kernel families of this CPU (`gradparity.ci.kernels`): the
envelope of several runs, the environments of the child runs, and the false alarm they
remove (XLA without FMA is another accuracy class for tanh-based derivatives)."""

import math

import numpy as np
import pandas as pd
import pytest

from gradparity.ci import baseline as bl
from gradparity.ci.baseline import envelope
from gradparity.ci.kernels import other_configurations, run_under
from gradparity.core.spec import Spec
from gradparity.experiments.environment import (
    LEGACY_KERNELS,
    cpu_flags,
    envelope_configurations,
    kernel_environment,
)
from gradparity.judge.tolerances import resolve_tolerances


def _table(rows):
    cols = ["case_id", "backend", "against", "layer", "quantity", "status", "reason_code",
            "reason", "err_oracle_eps", "worst_oracle_eps", "norm_err_eps"]
    t = pd.DataFrame(rows, columns=cols)
    t["layer"] = pd.array(t["layer"].tolist(), dtype="Int64")
    return t


def test_envelope_keeps_the_first_tables_rows_with_the_largest_errors_and_worst_status():
    a = _table([["c", "jax", "reference", 1, "dW", "pass", None, "", 2.0, 3.0, 1.0],
                ["c", "jax", "reference", 1, "db", "pass", None, "", 5.0, 5.0, 1.0],
                ["c", "jax", "reference", None, "*", "pass", None, "", np.nan, np.nan, np.nan],
                ["c", "torch", "reference", 1, "dW", "kink", "kink", "k", 1.0, 1.0, 1.0]])
    b = _table([["c", "torch", "reference", 1, "dW", "fail", "mismatch", "bad", 0.5, 9.0,
                 1.0],
                ["c", "jax", "reference", 1, "dW", "pass", None, "", 20.0, 1.0, np.inf],
                ["c", "jax", "reference", 2, "dZ", "fail", "mismatch", "", 1e9, 1e9, 1e9]])
    e = envelope([a, b])
    assert list(e["quantity"]) == ["dW", "db", "*", "dW"]  # a's rows, a's order
    assert e["err_oracle_eps"].tolist()[:2] == [20.0, 5.0]
    assert e["worst_oracle_eps"].tolist()[:2] == [3.0, 5.0]
    assert math.isinf(e["norm_err_eps"].iloc[0])  # non-finite wins
    assert e["status"].tolist() == ["pass", "pass", "pass", "fail"]
    assert (e["reason_code"].iloc[3], e["reason"].iloc[3]) == ("mismatch", "bad")
    assert e["err_oracle_eps"].iloc[3] == 1.0 and e["worst_oracle_eps"].iloc[3] == 9.0
    assert a["err_oracle_eps"].iloc[0] == 2.0  # inputs untouched
    assert envelope([a]).equals(a)


def test_kernel_environment_replaces_kernel_variables_and_keeps_other_xla_flags():
    base = {"PATH": "/bin", "OMP_NUM_THREADS": "8", "ATEN_CPU_CAPABILITY": "avx2",
            "XLA_FLAGS": "--xla_cpu_max_isa=AVX2 --xla_force_host_platform_device_count=2"}
    env = kernel_environment(LEGACY_KERNELS, base)
    assert env["PATH"] == "/bin"
    assert env["OMP_NUM_THREADS"] == "1" and env["ATEN_CPU_CAPABILITY"] == "default"
    assert env["XLA_FLAGS"] == ("--xla_force_host_platform_device_count=2 "
                                "--xla_cpu_max_isa=SSE4_2")
    stock = kernel_environment({}, base)
    assert "OMP_NUM_THREADS" not in stock and "ATEN_CPU_CAPABILITY" not in stock
    assert stock["XLA_FLAGS"] == "--xla_force_host_platform_device_count=2"
    assert "XLA_FLAGS" not in kernel_environment({}, {"XLA_FLAGS": "--xla_cpu_max_isa=AVX"})


def test_other_configurations_leave_out_the_one_this_process_runs():
    names = set(envelope_configurations())
    assert {"stock", "legacy"} <= names
    assert ("avx2" in names) == ("avx512f" in cpu_flags())
    assert set(other_configurations({})) == names - {"stock"}
    assert set(other_configurations(dict(LEGACY_KERNELS))) == names - {"legacy"}
    assert set(other_configurations({"OMP_NUM_THREADS": "1"})) == names


def test_baseline_file_keeps_the_kernels_and_refuses_a_malformed_entry(tmp_path):
    spec = Spec((2, 2))
    case = bl.BaselineCase(spec.case_id, spec, ("torch",), 0.0, 0.0)
    row = bl.BaselineRow(spec.case_id, "torch", "reference", 1, "dW", "pass", "", 1.0, 1.0,
                         1.0, 1.0, 1.0)
    b = bl.Baseline([case], [row], kernels={"legacy": dict(LEGACY_KERNELS)})
    assert bl.loads(bl.dumps(b)).kernels == {"legacy": dict(LEGACY_KERNELS)}
    text = bl.dumps(b).replace('"kernels": {"legacy": {', '"kernels": {"legacy": [{', 1)
    with pytest.raises(bl.BaselineError, match="'kernels': expected an object"):
        bl.loads(text.replace('}},\n  "metrics"', '}]},\n  "metrics"', 1))
    old = "".join(line for line in bl.dumps(b).splitlines(keepends=True)
                  if not line.startswith('  "kernels"'))  # a file from before kernels
    assert '"kernels"' not in old and bl.loads(old).kernels == {}


# The two cases of the default suite whose JAX errors change accuracy class without FMA.
_XLA_CLASS = [Spec((5, 8, 8, 3), activation="gelu_tanh", head="softmax_ce", batch=16,
                   seed=7, regime="kinks", dtype="float32"),
              Spec((5, 8, 2), activation="tanh", head="tanh_mse", loss_form="probs",
                   batch=16, seed=11, regime="saturated", dtype="float32")]


@pytest.mark.skipif("fma" not in cpu_flags(),
                    reason="this CPU has no FMA: XLA's own code is already the SSE4.2 class")
def test_the_envelope_removes_the_false_alarm_of_xla_without_fma():
    pytest.importorskip("jax")
    pytest.importorskip("torch")
    # every run in a child with its kernels set, whatever this process runs under
    cases = bl.Baseline(bl.cases_of(_XLA_CLASS, ["jax"], resolve_tolerances()), [])
    table = run_under(cases, {})  # the machine that saves: stock kernels (FMA)
    one = bl.baseline_from_table(table, cases.cases)
    enveloped = bl.baseline_from_table(
        table, cases.cases, kernels={"legacy": (LEGACY_KERNELS, run_under(cases,
                                                                          LEGACY_KERNELS))})
    assert one.kernels == {} and enveloped.kernels == {"legacy": LEGACY_KERNELS}
    # another machine: XLA without FMA (and the rest stock)
    sse = {"XLA_FLAGS": "--xla_cpu_max_isa=SSE4_2"}
    there = run_under(cases, sse)
    assert "--xla_cpu_max_isa=SSE4_2" in there.attrs["environment"]["XLA_FLAGS"]
    flagged = bl.compare_with_baseline(one, there)
    assert (flagged["kind"] == "grew").sum() >= 10, flagged  # the false alarm
    assert bl.compare_with_baseline(enveloped, there).empty
    assert bl.compare_with_baseline(enveloped, table).empty
    # and it still bites: a dW1 5x less accurate than any kernel family made it
    worse = there.copy()
    i = worse.index[(worse["quantity"] == "dW") & (worse["layer"] == 1)][0]
    before = enveloped.table().set_index(["case_id", "quantity", "layer"]).loc[
        (worse.at[i, "case_id"], "dW", 1)]
    for metric in ("err_oracle_eps", "worst_oracle_eps"):
        worse.loc[i, metric] = 5 * float(before[metric]) + 20
    reg = bl.compare_with_baseline(enveloped, worse)
    assert reg["quantity"].tolist() == ["dW", "dW"] and set(reg["kind"]) == {"grew"}


def test_a_result_folder_with_kernel_tables_can_be_written_again_and_a_foreign_one_not(
        tmp_path):
    from gradparity.core.errors import UsageError
    from gradparity.experiments.io import check_output_folder

    out = tmp_path / "res"
    (out / "kernels" / "legacy").mkdir(parents=True)
    for name in ("table.csv", "summary.md", "kernels/legacy/table.csv.gz",
                 "kernels/legacy/environment.json"):
        (out / name).write_text("x")
    assert check_output_folder(out) == out  # what baseline save --results wrote
    (out / "kernels" / "legacy" / "notes.txt").write_text("mine")
    with pytest.raises(UsageError, match="holds 'kernels'"):
        check_output_folder(out)
