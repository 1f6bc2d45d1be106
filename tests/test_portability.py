"""The CI gate across machines: a baseline saved under one kernel configuration is checked
under another (this machine standing in for a second one), and `gradparity diff` of the
two runs. The full matrix over the default suite is ``scripts/portability_matrix.py``."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]

SUITE = textwrap.dedent("""
    name = "machines"
    [[sweep]]
    sizes = [[6, 16, 16, 3]]
    activation = "tanh"
    head = "softmax_ce"
    loss_form = "probs"
    dtype = ["float32", "float64"]
    batch = 16
    seed = 11
    regime = ["normal", "saturated"]
    [[sweep]]
    sizes = [[5, 8, 8, 2]]
    activation = ["leaky_relu", "gelu"]
    head = "linear_l1"
    dtype = ["float32", "float64"]
    batch = 16
    seed = 7
    regime = "kinks"
""")

#: Kernel variables this test sets; everything else is inherited.
_VARIABLES = ("ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS", "XLA_FLAGS", "OPENBLAS_CORETYPE")
STOCK: dict[str, str] = {}  # every library's own choice on this CPU
LEGACY = {"ATEN_CPU_CAPABILITY": "default", "OMP_NUM_THREADS": "1",
          "XLA_FLAGS": "--xla_cpu_max_isa=SSE4_2", "OPENBLAS_CORETYPE": "Nehalem"}


def _gradparity(args, variables, cwd):
    env = {k: v for k, v in os.environ.items() if k not in _VARIABLES}
    env.update(variables)
    env["PYTHONPATH"] = str(ROOT)
    return subprocess.run([sys.executable, "-m", "gradparity", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def two_machines(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    d = tmp_path_factory.mktemp("machines")
    (d / "machines.toml").write_text(SUITE)
    saved = _gradparity(["baseline", "save", "machines.toml", "--out", "b.json", "-q",
                         "--kernels", "none",
                         "--results", "a"], STOCK, d)
    assert saved.returncode == 0, saved.stdout + saved.stderr
    checked = _gradparity(["check", "--baseline", "b.json", "-q", "--out", "b"], LEGACY, d)
    return d, checked


def test_a_baseline_saved_under_one_configuration_passes_under_another(two_machines):
    d, checked = two_machines
    assert checked.returncode == 0, checked.stdout + checked.stderr
    out = checked.stdout.splitlines()
    differs = [line.split(":")[1].strip() for line in out
               if line.startswith("environment differs from the baseline: ")]
    for var in ("ATEN_CPU_CAPABILITY", "OMP_NUM_THREADS", "XLA_FLAGS", "OPENBLAS_CORETYPE"):
        assert var in differs, out
    assert out[-1].startswith("check: no regression against b.json (8 cases")
    # the two runs really rounded differently: otherwise this test proves nothing
    a = pd.read_csv(d / "a" / "table.csv")
    b = pd.read_csv(d / "b" / "table.csv")
    assert (a["err_oracle_eps"] != b["err_oracle_eps"]).sum() > 20
    assert (a["ref_err_oracle_eps"] != b["ref_err_oracle_eps"]).sum() > 5


def test_diff_of_the_two_runs_names_the_environment_and_stays_within_budget(two_machines):
    d, _ = two_machines
    r = _gradparity(["diff", "a", "b", "--csv", "diff.csv"], {}, d)
    assert r.returncode == 0, r.stdout + r.stderr
    lines = r.stdout.splitlines()
    assert "environment differs: ATEN_CPU_CAPABILITY: " in r.stdout
    assert any(line.startswith("environment differs: XLA_FLAGS: not recorded in A, "
                               "--xla_cpu_max_isa=SSE4_2 in B") for line in lines)
    assert lines[-1].startswith("diff: ")
    diff = pd.read_csv(d / "diff.csv")
    assert (diff["change"] == "within_budget").sum() > 20
    assert set(diff["change"]) <= {"same", "within_budget"}
    # one tensor made 1000 x less accurate in B: beyond the budget, exit 1
    b = pd.read_csv(d / "b" / "table.csv")
    i = b.index[(b["backend"] == "torch") & (b["quantity"] == "dW")][0]
    b.loc[i, "err_oracle_eps"] = b.loc[i, "err_oracle_eps"] * 1000 + 1000
    (d / "worse").mkdir()
    b.to_csv(d / "worse" / "table.csv", index=False)
    r = _gradparity(["diff", "a", "worse"], {}, d)
    assert r.returncode == 1, r.stdout + r.stderr
    changed = [line.split() for line in r.stdout.splitlines() if line.startswith("beyond")]
    assert len(changed) == 1
    assert changed[0][:5] == ["beyond", "budget", b.loc[i, "case_id"], "torch",
                              f"dW{b.loc[i, 'layer']}"]


@pytest.mark.parametrize(("args", "expected"), [
    (["diff", "nosuch", "a"], "A='nosuch': no such file or folder, expected a result folder "
                              "or a baseline file"),
    (["diff", "empty", "a"], "A='empty': no table.csv in this folder"),
    (["diff", "a", "a"], "A='a/table.csv': not a result table (table lacks columns"),
    (["diff", "a", "a", "--factor", "0"], "--factor=0.0: expected a finite number >= 1"),
    (["diff", "notjson.json", "a"], "baseline 'notjson.json': invalid JSON"),
])
def test_diff_usage_errors_are_one_line_exit_2(tmp_path, args, expected):
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "table.csv").write_text("case_id\n")
    (tmp_path / "empty").mkdir()
    (tmp_path / "notjson.json").write_text("{")
    r = _gradparity(args, {}, tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert expected in r.stderr and r.stderr.count("\n") == 1 and r.stdout == ""
