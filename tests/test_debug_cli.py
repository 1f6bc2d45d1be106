"""``gradparity debug``: exit codes, one-line usage errors, the report, --out, lazy imports."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from gradparity.cli import main
from gradparity.experiments.tables import COLUMNS

ROOT = Path(__file__).resolve().parents[1]
SEED = str(ROOT / "examples" / "seed_backprop.py")
BUGGY = str(ROOT / "examples" / "buggy_backprop.py")


def test_debug_help_names_both_entry_points(capsys):
    with pytest.raises(SystemExit):
        main(["debug", "--help"])
    out = capsys.readouterr().out
    assert "--torch MODULE:ATTR" in out and "FILE" in out


def test_seed_exits_0_and_buggy_exits_1(capsys):
    assert main(["debug", SEED, "--backends", "none"]) == 0
    assert "Result: everything agrees. Exit 0." in capsys.readouterr().out
    assert main(["debug", BUGGY, "--backends", "none"]) == 1
    out = capsys.readouterr().out
    assert "First divergence: dZ2" in out
    assert "sigmoid'(A2) where sigmoid'(Z2) belongs" in out
    assert "examples/buggy_backprop.py:40" in out or "buggy_backprop.py:40" in out
    assert "per-example dZ/dA, as in the seed" in out


@pytest.mark.parametrize(("args", "expected"), [
    (["debug"], "give one of FILE.py (your backprop), --torch MODULE:ATTR or --jax MODULE:FN"),
    (["debug", SEED, "--torch", "x:y"], "give one of FILE.py"),
    (["debug", "nope.py"], "file='nope.py': no such file"),
    (["debug", SEED, "--sizes", "4,x,1"], "--sizes='4,x,1': expected comma-separated"),
    (["debug", SEED, "--sizes", "4"], "expected at least two sizes"),
    (["debug", SEED, "--activation", "swish"], "activation='swish': expected one of"),
    (["debug", SEED, "--head", "hinge"], "head='hinge'"),
    (["debug", SEED, "--loss-form", "probs", "--head", "linear_mse"],
     "loss_form='probs': expected logits for head linear_mse"),
    (["debug", SEED, "--dtype", "float16"], "dtype='float16'"),
    (["debug", SEED, "--batch", "0"], "--batch=0: expected a positive integer"),
    (["debug", SEED, "--backends", "tensorflow"], "--backends='tensorflow'"),
    (["debug", SEED, "--rtol", "-1"], "rtol=-1.0: expected a finite number >= 0"),
    (["debug", SEED, "--out", "t.json"], "--out='t.json': expected a .csv or .parquet"),
    (["debug", SEED, "--backprop", "backward"], "no function named backward"),
    (["debug", SEED, "--forward", "fwd"], "no function named fwd(X, parameters)"),
    (["debug", "--torch", "nocolon"], "--torch='nocolon': expected MODULE:ATTR"),
    (["debug", "--torch", "no_such_module_xyz:model"], "cannot import 'no_such_module_xyz'"),
    (["debug", "--torch", "examples/torch_model.py:nope"], "has no attribute 'nope'"),
    (["debug", "--jax", "examples/jax_mlp.py:nope"], "--jax='examples/jax_mlp.py:nope': "
     "examples/jax_mlp.py has no attribute 'nope'"),
    (["debug", "--jax", "examples/jax_mlp.py:loss", "--sizes", "1,2"],
     "--sizes: not used with --jax"),
    (["debug", SEED, "--loss", "MSELoss"], "--loss: used with --torch or --jax only"),
    (["debug", "--torch", "examples/torch_model.py:model", "--sizes", "1,2"],
     "--sizes: not used with --torch"),
])
def test_usage_errors_exit_2_with_one_line(tmp_path, capsys, monkeypatch, args, expected):
    monkeypatch.chdir(ROOT if "--torch" in args or "--jax" in args else tmp_path)
    if "--torch" in args and "nocolon" not in args and len(args) > 2 and args[2].startswith(
            "examples/"):
        pytest.importorskip("torch")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert expected in err, err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert not list(tmp_path.iterdir())


def test_argparse_errors_are_one_line_too(capsys):
    with pytest.raises(SystemExit) as info:
        main(["debug", SEED, "--batch", "two"])
    assert info.value.code == 2
    assert capsys.readouterr().err.count("\n") == 1


def test_out_writes_the_full_table_atomically(tmp_path, capsys):
    out = tmp_path / "t.csv"
    assert main(["debug", BUGGY, "--backends", "none", "--out", str(out)]) == 1
    assert f"table: {out}" in capsys.readouterr().out
    df = pd.read_csv(out)
    assert list(df.columns) == list(COLUMNS)
    first = df[(df["quantity"] == "dZ") & (df["layer"] == 2)].iloc[0]
    assert first["status"] == "fail" and "derivative_at_A" in first["reason"]
    assert set(df["status"]) == {"pass", "fail", "inherited"}
    assert [p.name for p in tmp_path.iterdir()] == ["t.csv"]  # no temporary left behind

    folder = tmp_path / "session"
    assert main(["debug", SEED, "--backends", "none", "--out", str(folder)]) == 0
    assert sorted(p.name for p in folder.iterdir()) == ["environment.json", "report.txt",
                                                        "table.csv"]
    assert "Result: everything agrees" in (folder / "report.txt").read_text()


def test_debug_on_the_real_command_line_with_torch_and_jax(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    r = subprocess.run([sys.executable, "-m", "gradparity", "debug", BUGGY], cwd=ROOT,
                       env=dict(os.environ, PYTHONPATH=str(ROOT)), capture_output=True,
                       text=True, timeout=300)
    assert r.returncode == 1, r.stderr
    assert "reference = torch, jax on all 19 tensors" in r.stdout
    assert "First divergence: dZ2" in r.stdout
    assert r.stderr == ""


def test_debug_option_errors_name_the_option(tmp_path, capsys):
    (tmp_path / "adir").mkdir()
    assert main(["debug", str(tmp_path / "adir")]) == 2
    assert "is a folder, expected a Python file" in capsys.readouterr().err
    assert main(["debug", SEED, "--rtol", "-1"]) == 2
    assert "--rtol=-1.0: expected a finite number >= 0" in capsys.readouterr().err
