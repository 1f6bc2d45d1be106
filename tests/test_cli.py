"""The command line: exit codes, one-line errors, nothing half-written, lazy imports."""

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from gradparity.cli import main

ROOT = Path(__file__).resolve().parents[1]


def _run(args, cwd):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, "-m", "gradparity", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=300)


HELP_COMMANDS = [[], ["run"], ["list"], ["debug"], ["baseline", "save"], ["check"],
                 ["selftest"], ["report"], ["tolerances"], ["fuzz"]]


@pytest.mark.parametrize("command", HELP_COMMANDS, ids=lambda c: " ".join(c) or "top")
def test_help_does_not_import_frameworks_or_pandas(command):
    code = textwrap.dedent(f"""
        import sys
        from gradparity.cli import main
        try:
            main({command + ["--help"]!r})
        except SystemExit:
            pass
        heavy = [m for m in ("torch", "jax", "jaxlib", "pandas", "matplotlib", "tqdm",
                             "hypothesis", "dask", "distributed") if m in sys.modules]
        print("HEAVY=" + ",".join(heavy))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=dict(os.environ, PYTHONPATH=str(ROOT)), check=True)
    assert "HEAVY=\n" in out.stdout
    assert "usage: gradparity" in out.stdout


BAD_TOML = {
    "unknown_activation": ('[[case]]\nsizes = [3, 4, 2]\nactivation = "swish"\n',
                           "case[0]: activation='swish': expected one of relu"),
    "zero_width": ("[[sweep]]\nsizes = [[3, 0, 2]]\n", "sweep[0]: sizes[1]=0"),
    "ce_one_output": ('[[case]]\nsizes = [3, 1]\nhead = "softmax_ce"\n',
                      "sizes[-1]=1: expected at least 2 outputs for head softmax_ce"),
    "label_out_of_range": ('[[case]]\nsizes = [2, 3]\nhead = "softmax_ce"\nbatch = 2\n'
                           'targets = [[0, 5]]\n', "targets[0][1]=5.0: expected a class index"),
    "nan_input": ('[[case]]\nsizes = [1, 1]\nbatch = 2\ninputs = [[0.5, nan]]\n',
                  "inputs[0][1]=nan: expected a finite number"),
    "unknown_field": ("[[case]]\nsizes = [2, 2]\nwidth = 3\n", "case[0].width=3"),
    "bad_toml": ("[[case]\nsizes = [2, 2]\n", "invalid TOML"),
}


@pytest.mark.parametrize("name", sorted(BAD_TOML))
def test_bad_suite_exits_2_with_one_line_and_writes_nothing(tmp_path, name):
    text, expected = BAD_TOML[name]
    suite = tmp_path / "bad.toml"
    suite.write_text(text)
    r = _run(["run", str(suite), "--backends", "reference"], cwd=tmp_path)
    assert r.returncode == 2, r.stderr
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert expected in r.stderr
    assert not (tmp_path / "results").exists()


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["run", "nosuch"], "suite='nosuch': expected a built-in suite"),
        (["run", "quick", "--backends", "tensorflow"], "--backends='tensorflow'"),
        (["run", "quick", "--dtypes", "float16"], "--dtypes='float16'"),
        (["run", "quick", "--rtol", "-1"], "--rtol=-1.0"),
        (["run", "--bogus"], "unrecognized arguments: --bogus"),
    ],
)
def test_bad_options_exit_2(tmp_path, capsys, monkeypatch, args, expected):
    monkeypatch.chdir(tmp_path)
    with pytest.raises(SystemExit) as info:
        raise SystemExit(main(args))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1
    assert not (tmp_path / "results").exists()


def test_toml_sweep_runs_and_writes_the_result_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text(textwrap.dedent("""
        name = "mini"
        [[sweep]]
        sizes = [[3, 4, 2], [3, 4, 4, 2]]
        activation = ["relu", "tanh"]
        head = ["sigmoid_bce", "linear_mse"]
        dtype = "float64"
        batch = 3
    """))
    code = main(["run", "s.toml", "--backends", "reference", "-q"])
    assert code == 0
    out = tmp_path / "results" / "runs" / "mini"
    assert sorted(p.name for p in out.iterdir()) == [
        "environment.json", "pass_rates.csv", "summary.md", "table.csv", "table.parquet",
        "worst_per_case.csv"]
    df = pd.read_csv(out / "table.csv")
    # 2 sizes x 2 activations x (bce: 2 forms + mse: 1 form) = 12 cases
    assert df["case_id"].nunique() == 12
    assert set(df["status"]) == {"pass"}
    assert "results/runs/mini" in capsys.readouterr().out
    assert not [p for p in out.parent.iterdir() if p.name.startswith(".")]


def test_list_names_suites_activations_heads_and_backends(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for word in ("default", "gelu_tanh", "softmax_ce", "logits/probs", "torch", "jax"):
        assert word in out


def test_parity_failure_exits_1_and_still_writes_the_table(tmp_path, capsys, monkeypatch):
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    (tmp_path / "one.toml").write_text('[[case]]\nsizes = [4, 16, 3]\ndtype = "float32"\n'
                                       'activation = "tanh"\nbatch = 8\n')
    code = main(["run", "one.toml", "--backends", "torch", "--rtol", "0", "--atol", "0", "-q"])
    out = capsys.readouterr().out
    assert code == 1
    assert "failures:" in out and "torch" in out
    df = pd.read_csv(tmp_path / "results" / "runs" / "one" / "table.csv")
    assert (df["status"] == "fail").any()


def test_result_files_get_the_usual_modes(tmp_path):
    from gradparity.experiments.io import (
        text_writer,
        write_file_atomically,
        write_folder_atomically,
    )

    old = os.umask(0o022)
    try:
        out = write_folder_atomically(tmp_path / "r", {"a.txt": text_writer("x")})
        f = write_file_atomically(tmp_path / "b.json", text_writer("{}"))
    finally:
        os.umask(old)
    assert out.stat().st_mode & 0o777 == 0o755
    assert (out / "a.txt").stat().st_mode & 0o777 == 0o644
    assert f.stat().st_mode & 0o777 == 0o644


@pytest.mark.parametrize(
    ("setup", "args", "expected"),
    [
        ("folder", ["--out", "victim"], "is not a gradparity result folder (it holds 'notes.txt')"),
        ("file", ["--out", "afile"], "exists and is a file, expected a folder"),
        ("file", ["--out", "afile/sub"], "'afile' is a file, expected a folder"),
        (None, ["--out", "."], "the current folder"),
        (None, ["--out", ""], "--out='': expected a folder path"),
        (None, ["--name", "x\ny"], "expected a plain folder name"),
        (None, ["--backends", ""], "--backends='': expected at least one of"),
    ],
)
def test_bad_output_paths_are_refused_before_any_work(tmp_path, capsys, monkeypatch, setup,
                                                      args, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text("[[case]]\nsizes = [3, 4, 2]\n")
    if setup == "folder":
        (tmp_path / "victim").mkdir()
        (tmp_path / "victim" / "notes.txt").write_text("precious")
    if setup == "file":
        (tmp_path / "afile").write_text("hi")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    backends = [] if "--backends" in args else ["--backends", "reference"]
    code = main(["run", "s.toml", *backends, "-q", *args])
    err = capsys.readouterr().err
    assert code == 2 and expected in err and err.count("\n") == 1
    assert sorted(p.name for p in tmp_path.rglob("*")) == before  # nothing written
    if setup == "folder":
        assert (tmp_path / "victim" / "notes.txt").read_text() == "precious"


def test_a_previous_result_folder_is_replaced(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text("[[case]]\nsizes = [3, 4, 2]\n")
    assert main(["run", "s.toml", "--backends", "reference", "-q", "--out", "r"]) == 0
    assert main(["run", "s.toml", "--backends", "reference", "-q", "--out", "r"]) == 0


def test_nothing_compared_is_not_a_green_run(tmp_path, monkeypatch, capsys):
    import gradparity.experiments.runner as runner

    class Missing:
        name = "torch"

        def available(self):
            return False

        def unavailable_reason(self):
            return "torch is not installed"

    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text("[[case]]\nsizes = [3, 4, 2]\n")
    real = runner.get_backend
    monkeypatch.setattr(runner, "get_backend", lambda n: Missing() if n == "torch" else real(n))
    code = main(["run", "s.toml", "--backends", "torch", "-q"])
    assert code == 1
    assert "nothing was compared" in capsys.readouterr().err


def test_a_backend_named_twice_runs_once(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text("[[case]]\nsizes = [3, 4, 2]\n")
    assert main(["run", "s.toml", "--backends", "reference,reference", "-q"]) == 0
    df = pd.read_csv(tmp_path / "results" / "runs" / "s" / "table.csv")
    assert not df.duplicated(["case_id", "layer", "quantity", "backend", "mode"]).any()
