"""Baselines: the file format, the comparison rules, `gradparity baseline save` / `check`,
and the committed results."""

import json
import math
import os
import subprocess
import sys
import textwrap
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gradparity import baseline as bl
from gradparity.baseline import (
    Baseline,
    BaselineCase,
    BaselineError,
    compare_with_baseline,
    dumps,
    load_baseline,
    loads,
    save_baseline,
)
from gradparity.case import make_case
from gradparity.cli import main
from gradparity.errors import UsageError
from gradparity.experiments.suites import default_suite
from gradparity.experiments.toml_suite import load_suite_file
from gradparity.reference.mlp import reference_gradients
from gradparity.spec import Spec

ROOT = Path(__file__).resolve().parents[1]
COMMITTED = ROOT / "results" / "baseline.json"

EXPLICIT = Spec((2, 3, 2), head="softmax_ce", batch=2, inputs=[[0.5, -1.0], [2.0, 0.1]],
                targets=[[0, 1]])


# -- file format ---------------------------------------------------------------------------

def _toy() -> Baseline:
    a = Spec((3, 4, 2), activation="tanh", dtype="float32")
    cases = [BaselineCase(a.case_id, a, ("torch", "jax"), 1.3e-6, 1e-5),
             BaselineCase(EXPLICIT.case_id, EXPLICIT, ("torch",), 1e-7, 1e-7),
             BaselineCase(a.case_id + "-arrays0123abcd", a, ("mine",), 0.0, 0.0, rerun=False)]
    rows = [
        (a.case_id, "torch", "reference", 1, "dW", "pass", 0.1 + 0.2, 1 / 3, 5e-324, 1.0),
        (a.case_id, "jax", "reference", 2, "loss", "saturation", math.inf, math.nan,
         2.0 ** -24, 1.0),
        (EXPLICIT.case_id, "torch", "reference", None, "*", "error", None, None, None, None),
        (a.case_id + "-arrays0123abcd", "mine", "reference", 1, "dZ", "fail", 1e300, -0.0,
         7.0, 12.5),
    ]
    return Baseline(cases=cases, rows=rows, environment={"torch": "2.13.0", "numpy": "2"},
                    source="test")


def test_round_trip_is_exact_and_the_text_is_strict_sorted_json_one_row_per_line():
    b = _toy()
    text = dumps(b)
    back = loads(text)
    assert dumps(back) == text
    assert [c.spec for c in back.cases] == [c.spec for c in b.cases]
    assert back.cases[1].spec.inputs == ((0.5, -1.0), (2.0, 0.1))
    assert back.cases[1].spec.targets == ((0.0, 1.0),)
    assert back.cases[2].rerun is False
    for got, want in zip(back.rows, b.rows, strict=True):
        for x, y in zip(got, want, strict=True):
            if isinstance(y, float) and math.isnan(y):
                assert math.isnan(x)
            else:
                assert x == y and type(x) is type(y)
                if isinstance(y, float):
                    assert math.copysign(1, x) == math.copysign(1, y)  # -0.0 too

    def no_constants(name):
        raise AssertionError(f"non-standard JSON constant {name}")

    data = json.loads(text, parse_constant=no_constants)
    assert list(data) == sorted(data)
    lines = text.splitlines()
    assert sum(line.startswith("    [") for line in lines) == len(b.rows)
    assert sum(line.startswith('    {"atol"') for line in lines) == len(b.cases)
    for line in lines:
        if line.startswith('    {"atol"'):
            obj = json.loads(line.rstrip(","))
            assert list(obj) == sorted(obj) and list(obj["spec"]) == sorted(obj["spec"])


def test_save_refuses_to_overwrite_without_force_and_is_atomic(tmp_path):
    path = tmp_path / "b.json"
    save_baseline(_toy(), path)
    before = path.read_bytes()
    with pytest.raises(BaselineError, match="exists; use --force to replace it"):
        save_baseline(replace(_toy(), source="other"), path)
    assert path.read_bytes() == before
    save_baseline(replace(_toy(), source="other"), path, force=True)
    assert load_baseline(path).source == "other"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["b.json"]  # no temporary left
    assert path.stat().st_mode & 0o777 != 0o600  # not mkstemp's private mode


def _mutate(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


CORRUPT = {
    "truncated": (lambda t: t[: len(t) // 2], "invalid JSON at line"),
    "not_a_baseline": (lambda t: "[1, 2]\n", 'not a gradparity baseline (no "format"'),
    "newer_version": (lambda t: _mutate(t, '"version": 1', '"version": 7'),
                      "format version 7 is newer than this gradparity reads (1)"),
    "short_row": (lambda t: _mutate(t, ', 1, "dW", "pass"', ', "dW", "pass"'),
                  "rows[0]: expected a list of 10 values"),
    "unknown_case": (lambda t: _mutate(t, '["tanh-linear_mse.logits-f32-3x4x2',
                                       '["gelu-linear_mse.logits-f32-3x4x2'),
                     "rows[0].case_id='gelu-linear_mse.logits-f32-3x4x2-m8-s0-he-normal': "
                     "not among the cases"),
    "bad_spec": (lambda t: _mutate(t, '"activation": "tanh"', '"activation": "swish"'),
                 "cases[0].spec.activation='swish': expected one of relu"),
    "id_mismatch": (lambda t: _mutate(t, '"batch": 8', '"batch": 9'),
                    "cases[0].case_id='tanh-linear_mse.logits-f32-3x4x2-m8-s0-he-normal': "
                    "does not match its spec"),
    "bad_metric": (lambda t: _mutate(t, '"saturation", "inf"', '"saturation", "big"'),
                   "rows[1].max_abs_err='big': expected a number, null, 'inf'"),
    "layer_without_tensor": (lambda t: _mutate(t, 'null, "*"', '1, "*"'),
                             "rows[2]: layer is null exactly when quantity is '*'"),
    "duplicate_row": (lambda t: _mutate(t, '"jax", "reference", 2, "loss"',
                                        '"torch", "reference", 1, "dW"'),
                      "rows[1]: duplicate row"),
    "missing_column": (lambda t: _mutate(t, '"abs_floor", ', '"scale", '),
                       "row_columns lacks 'abs_floor'"),
    "negative_tolerance": (lambda t: _mutate(t, '"rtol": 1e-07', '"rtol": -1'),
                           "cases[1].rtol=-1: expected a finite number >= 0"),
}


@pytest.mark.parametrize("name", sorted(CORRUPT))
def test_corrupt_baseline_is_a_one_line_error_naming_the_problem(tmp_path, name):
    mutate, expected = CORRUPT[name]
    path = tmp_path / "b.json"
    path.write_text(mutate(dumps(_toy())))
    with pytest.raises(BaselineError) as info:
        load_baseline(path)
    message = str(info.value)
    assert message.startswith(f"baseline {str(path)!r}: ") and "\n" not in message
    assert expected in message


def test_unreadable_files(tmp_path):
    with pytest.raises(BaselineError, match="no such file"):
        load_baseline(tmp_path / "absent.json")
    with pytest.raises(BaselineError, match="is a directory"):
        load_baseline(tmp_path)
    (tmp_path / "bin.json").write_bytes(b"\xff\xfe\x00")
    with pytest.raises(BaselineError, match="not UTF-8 text"):
        load_baseline(tmp_path / "bin.json")


# -- comparison rules ----------------------------------------------------------------------

SPEC32 = Spec((3, 4, 2), activation="tanh", dtype="float32")
CID = SPEC32.case_id


def _baseline(rows, backends=("torch",)) -> Baseline:
    return Baseline(cases=[BaselineCase(CID, SPEC32, backends, 1.3e-6, 1e-5)],
                    rows=[(CID, *r) for r in rows])


def _table(rows) -> pd.DataFrame:
    cols = ["backend", "against", "layer", "quantity", "status", "max_abs_err", "norm_err_eps"]
    df = pd.DataFrame([dict(zip(cols, r, strict=True), case_id=CID) for r in rows])
    df["reason"] = "why"
    df["an_oracle_column_added_later"] = 1.0  # extra columns are ignored
    return df


def _row(q="dW", layer=1, status="pass", abs_err=0.0, norm=0.0, abs_floor=1e-7,
         norm_floor=1.0, backend="torch"):
    return (backend, "reference", layer, q, status, abs_err, norm, abs_floor, norm_floor)


def _new(q="dW", layer=1, status="pass", abs_err=0.0, norm=0.0, backend="torch"):
    return (backend, "reference", layer, q, status, abs_err, norm)


@pytest.mark.parametrize(("before", "after", "flagged"), [
    (0.0, 4e-7, False),      # 0 -> 4 floors: rounding, not a regression
    (0.0, 4.1e-7, True),     # 0 -> more than factor x floor
    (1e-6, 4e-6, False),     # exactly factor x before
    (1e-6, 4.01e-6, True),
    (1e-6, 1e-9, False),     # better
    (math.inf, math.inf, False),
    (1e-6, math.inf, True),
    (1e-6, math.nan, True),
    (math.nan, 1.0, False),  # nothing to compare with
])
def test_metric_growth_beyond_factor_times_max_of_before_and_floor(before, after, flagged):
    reg = compare_with_baseline(_baseline([_row(abs_err=before)]),
                                _table([_new(abs_err=after)]), factor=4)
    assert (not reg.empty) == flagged
    if flagged:
        (r,) = reg.itertuples()
        assert (r.kind, r.metric, r.quantity, r.layer) == ("grew", "max_abs_err", "dW", 1)
        assert r.limit == pytest.approx(4 * max(before, 1e-7))


def test_norm_err_eps_floor_and_factor_option():
    b = _baseline([_row(norm=0.5, norm_floor=2.0)])
    assert compare_with_baseline(b, _table([_new(norm=8.0)])).empty
    reg = compare_with_baseline(b, _table([_new(norm=8.5)]))
    assert list(reg["metric"]) == ["norm_err_eps"] and reg["ratio"][0] == 17.0
    assert compare_with_baseline(b, _table([_new(norm=8.5)]), factor=5).empty
    with pytest.raises(UsageError, match="factor=0.5: expected a finite number >= 1"):
        compare_with_baseline(b, _table([_new()]), factor=0.5)


def test_status_changes_missing_and_new_rows():
    b = _baseline([_row("dW", status="pass"), _row("db", status="fail"),
                   _row("dZ", status="kink"), _row("dA", layer=0)])
    t = _table([_new("dW", status="fail"), _new("db", status="pass"),
                _new("dZ", status="fail"), _new("Z", layer=1)])
    reg = compare_with_baseline(b, t)
    got = [(r.kind, r.quantity, r.status_before, r.status_after) for r in reg.itertuples()]
    assert got == [("new_failure", "dW", "pass", "fail"), ("new_failure", "dZ", "kink", "fail"),
                   ("missing", "dA", "pass", ""), ("new_row", "Z", "", "pass")]
    assert reg["detail"][0] == "why"


def test_whole_case_rows_are_collapsed():
    tensors = [_row("dW"), _row("db")]
    skipped = _table([("torch", "reference", None, "*", "skipped", None, None)])
    reg = compare_with_baseline(_baseline(tensors), skipped)
    assert list(reg["kind"]) == ["missing"] and reg["quantity"][0] == "*"
    assert reg["detail"][0] == "2 baseline rows not produced: skipped: why"
    errored = _table([("torch", "reference", None, "*", "error", None, None)])
    reg = compare_with_baseline(_baseline(tensors), errored)
    assert list(reg["kind"]) == ["new_failure"] and reg["status_after"][0] == "error"
    # the baseline had the backend skipped; now it runs: new rows, collapsed
    was_skipped = _baseline([("torch", "reference", None, "*", "skipped", None, None, None,
                              None)])
    reg = compare_with_baseline(was_skipped, _table([_new("dW"), _new("db")]))
    assert list(reg["kind"]) == ["new_row"]
    assert reg["detail"][0] == "2 rows not in the baseline (it has skipped for this case " \
                               "and backend)"
    # the baseline had an error; now it works: fixed, not a regression
    was_error = _baseline([("torch", "reference", None, "*", "error", None, None, None, None)])
    assert compare_with_baseline(was_error, _table([_new("dW")])).empty


def test_regression_table_text():
    b = _baseline([_row("dW", abs_err=1e-7), _row("db", status="pass")])
    t = _table([_new("dW", abs_err=1e-5), _new("db", status="fail")])
    text = bl.format_regressions(compare_with_baseline(b, t))
    lines = text.splitlines()
    assert lines[0].split() == ["kind", "case_id", "backend", "tensor", "metric", "before",
                                "after", "ratio", "limit"]
    assert lines[1].split() == ["new", "failure", CID, "torch", "db1", "status", "pass",
                                "fail", "why"]
    assert lines[2].split() == ["grew", CID, "torch", "dW1", "max_abs_err", "1e-07", "1e-05",
                                "100", "4e-07"]
    assert bl.regression_counts(compare_with_baseline(b, t)) == "1 new failure, 1 grew"


# -- floors --------------------------------------------------------------------------------

def test_permuted_reference_is_the_same_network():
    spec = Spec((4, 6, 5, 3), activation="gelu", head="softmax_ce", loss_form="probs",
                dtype="float64", batch=7, seed=3)
    case = make_case(spec)
    ref = reference_gradients(case)
    perm = bl._permuted_reference(case, 1)
    for key, a in ref.grads.items():
        np.testing.assert_allclose(perm.grads[key], a, rtol=1e-12, atol=1e-15, err_msg=key)
    for key, a in ref.forward.items():
        np.testing.assert_allclose(perm.forward[key], a, rtol=1e-12, atol=1e-15, err_msg=key)
    assert not all(np.array_equal(perm.grads[k], v) for k, v in ref.grads.items())


def test_floors_are_one_ulp_for_exact_arithmetic_and_reordering_noise_otherwise():
    exact = make_case(Spec((5, 8, 8, 2), activation="relu", dtype="float32", batch=16, seed=7,
                           regime="kinks"))
    floors = bl.tensor_floors(exact, reference_gradients(exact))
    ref = reference_gradients(exact)
    for (layer, q), (abs_floor, norm_floor) in floors.items():
        x = np.abs(ref.get(layer, q)).max()
        assert abs_floor == float(np.spacing(np.float32(x))), (layer, q)
        assert norm_floor == 1.0
    noisy = make_case(Spec((5, 32, 32, 2), activation="tanh", dtype="float32", batch=16))
    floors = bl.tensor_floors(noisy, reference_gradients(noisy))
    assert max(f[1] for f in floors.values()) > 1.0  # some sums run in another order


# -- the command line ----------------------------------------------------------------------

SUITE = textwrap.dedent("""
    name = "tiny"
    [[case]]
    sizes = [3, 6, 2]
    activation = "tanh"
    dtype = "float32"
    [[case]]
    sizes = [3, 6, 2]
    activation = "tanh"
    head = "sigmoid_bce"
    loss_form = "probs"
    dtype = "float32"
    batch = 16
    seed = 11
    regime = "saturated"
    [[case]]
    sizes = [3, 4, 4, 2]
    activation = "leaky_relu"
    head = "linear_l1"
    dtype = "float64"
    batch = 16
    seed = 7
    regime = "kinks"
    [[case]]
    sizes = [2, 3, 2]
    head = "softmax_ce"
    batch = 2
    inputs = [[0.5, -1.0], [2.0, 0.1]]
    targets = [[0, 1]]
""")


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    d = tmp_path_factory.mktemp("saved")
    (d / "tiny.toml").write_text(SUITE)
    code = main(["baseline", "save", str(d / "tiny.toml"), "--out", str(d / "b.json"), "-q",
                 "--results", str(d / "run")])
    assert code == 0
    return d / "b.json"


def _check(path, capsys, *extra):
    code = main(["check", "--baseline", str(path), "-q", *extra])
    out, err = capsys.readouterr()
    return code, out, err


def test_save_writes_every_spec_and_check_passes(saved, capsys, tmp_path):
    b = load_baseline(saved)
    assert [c.spec for c in b.cases] == load_suite_file(saved.parent / "tiny.toml").specs
    assert b.cases[3].spec == EXPLICIT  # explicit inputs and targets included
    assert b.source == f"gradparity baseline save {saved.parent / 'tiny.toml'}"
    assert {r[5] for r in b.rows} == {"pass", "kink", "saturation"}
    run = pd.read_csv(saved.parent / "run" / "table.csv")
    assert len(run) == len(b.rows)  # --results wrote the same run
    code, out, err = _check(saved, capsys, "--out", str(tmp_path / "again"))
    assert code == 0, out + err
    assert out == (f"check: no regression against {saved} (4 cases, {len(b.rows)} baseline "
                   "rows, factor 4 on max_abs_err, norm_err_eps)\n")
    assert err == ""
    again = pd.read_csv(tmp_path / "again" / "table.csv")
    pd.testing.assert_frame_equal(again, run)  # the same numbers, bit for bit


def test_save_never_overwrites_without_force(saved, capsys):
    before = saved.read_bytes()
    code = main(["baseline", "save", "quick", "--out", str(saved), "-q"])
    assert code == 2
    err = capsys.readouterr().err
    assert err == (f"gradparity: error: --out={str(saved)!r}: the file exists; use --force to "
                   "replace it\n")
    assert saved.read_bytes() == before


def _edit_rows(path, target, edit):
    """Replace the first row that ``target`` accepts by the rows ``edit`` returns (none
    deletes it); returns the original row."""
    lines = path.read_text().splitlines()
    for i, line in enumerate(lines):
        if line.startswith("    [") and target(json.loads(line.rstrip(","))):
            row = json.loads(line.rstrip(","))
            new = ["    " + json.dumps(r) + "," for r in edit(list(row))]
            lines[i:i + 1] = new
            rows = [j for j, x in enumerate(lines) if x.startswith("    [")]
            for j in rows:
                lines[j] = lines[j].rstrip(",") + ("," if j != rows[-1] else "")
            path.write_text("\n".join(lines) + "\n")
            return row
    raise AssertionError("no such row")


def test_check_fails_on_an_edited_baseline_value(saved, capsys, tmp_path):
    path = tmp_path / "edited.json"
    path.write_text(saved.read_text())

    def edit(row):
        row[6:10] = [0.0, 0.0, 0.0, 0.0]  # "this tensor was exact"
        return [row]

    row = _edit_rows(path, lambda r: r[1] == "torch" and r[4] == "dW" and r[6] > 0, edit)
    code, out, err = _check(path, capsys)
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == (f"regressions against {path} (before: the baseline, after: this run; "
                        "limit: factor x max(before, floor)):")
    assert lines[1].split() == ["kind", "case_id", "backend", "tensor", "metric", "before",
                                "after", "ratio", "limit"]
    tensor = f"dW{row[3]}"
    assert lines[2].split()[:7] == ["grew", row[0], "torch", tensor, "max_abs_err", "0",
                                    f"{row[6]:.4g}"]
    assert lines[3].split()[:6] == ["grew", row[0], "torch", tensor, "norm_err_eps", "0"]
    assert lines[-1].startswith("check: 2 grew (4 cases, ")


def test_check_fails_on_a_deleted_row_and_on_a_missing_one(saved, capsys, tmp_path):
    path = tmp_path / "deleted.json"
    path.write_text(saved.read_text())
    row = _edit_rows(path, lambda r: r[1] == "jax" and r[4] == "db", lambda r: [])
    code, out, _ = _check(path, capsys)
    assert code == 1
    assert out.splitlines()[2].split()[:6] == ["new", "row", row[0], "jax", f"db{row[3]}",
                                               "-"]
    assert out.splitlines()[-1].startswith("check: 1 new row (4 cases, ")

    path.write_text(saved.read_text())
    _edit_rows(path, lambda r: r[1] == "jax" and r[4] == "db",
               lambda r: [r, r[:3] + [9] + r[4:]])  # and a row for a layer 9
    code, out, _ = _check(path, capsys)
    assert code == 1
    assert out.splitlines()[2].split()[:6] == ["missing", "row", row[0], "jax", "db9", "-"]
    assert out.splitlines()[-1].startswith("check: 1 missing row (4 cases, ")


def test_check_fails_on_a_new_failure_and_warns_on_another_environment(saved, capsys,
                                                                        tmp_path):
    path = tmp_path / "strict.json"
    text = saved.read_text()
    text = _mutate(text, '"torch": "', '"torch": "0.0.1-')  # the baseline's torch version
    text = text.replace('"atol": 1e-05', '"atol": 0.0').replace('"rtol": 1.3e-06',
                                                               '"rtol": 0.0')
    path.write_text(text)
    # The saved rows of the first case all pass at the default tolerances; at zero
    # tolerance, tensors the backends round differently fail: new failures.
    first = load_baseline(saved).cases[0].case_id
    assert {r[5] for r in load_baseline(saved).rows if r[0] == first} == {"pass"}
    code, out, err = _check(path, capsys)
    assert code == 1
    assert out.splitlines()[2].split()[:3] == ["new", "failure", first]
    assert out.splitlines()[2].split()[5:8] == ["status", "pass", "fail"]
    assert err.startswith("gradparity check: warning: environment differs from the "
                          "baseline: torch: 0.0.1-")
    assert err.count("\n") == 1


@pytest.mark.parametrize(("args", "expected"), [
    (["check", "--baseline", "absent.json"], "baseline 'absent.json': no such file"),
    (["check", "--baseline", "b.json", "--factor", "0.5"],
     "--factor=0.5: expected a finite number >= 1"),
    (["check", "--baseline", "b.json", "--factor", "nan"],
     "--factor=nan: expected a finite number >= 1"),
    (["check"], "check: give --baseline FILE, or your model with --torch MODULE:ATTR"),
    (["baseline"], "expected a sub-command: save"),
    (["baseline", "save", "quick"], "the following arguments are required: --out"),
    (["baseline", "save", "nosuch", "--out", "x.json"], "suite='nosuch'"),
    (["baseline", "save", "quick", "--out", "x.json", "--backends", "tf"], "--backends='tf'"),
    (["baseline", "save", "quick", "--out", "."], "--out='.': is a folder, expected a file name"),
])
def test_usage_errors_exit_2_with_one_line(tmp_path, monkeypatch, capsys, args, expected):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "b.json").write_text(dumps(_toy()))
    with pytest.raises(SystemExit) as info:
        raise SystemExit(main(args))
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1, err
    assert not (tmp_path / "x.json").exists()


def test_corrupt_baseline_exits_2(tmp_path, capsys):
    path = tmp_path / "b.json"
    path.write_text(dumps(_toy())[:500])
    assert main(["check", "--baseline", str(path)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"gradparity: error: baseline {str(path)!r}: invalid JSON at line")
    assert err.count("\n") == 1


def test_cases_that_cannot_run_again_are_noted(tmp_path, capsys):
    b = _toy()
    b = replace(b, cases=[replace(b.cases[0], backends=("torch", "jax", "mine"))]
                + b.cases[2:], rows=[r for r in b.rows if r[0] != EXPLICIT.case_id])
    runnable, notes = bl.rerunnable(b)
    assert [c.case_id for c in runnable.cases] == [b.cases[0].case_id]
    assert {r[1] for r in runnable.rows} == {"torch", "jax"}
    assert notes == ["1 case(s) with custom arrays cannot be run again (checked by the "
                     "pytest plugin only)",
                     "backend(s) mine are not built in; their rows are not checked"]


def test_help_of_the_new_commands_stays_light():
    code = textwrap.dedent("""
        import sys
        from gradparity.cli import main
        for args in (["check", "--help"], ["baseline", "save", "--help"]):
            try:
                main(args)
            except SystemExit:
                pass
        print("HEAVY=" + ",".join(m for m in ("torch", "jax", "pandas") if m in sys.modules))
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert "HEAVY=\n" in out.stdout
    assert "(default: 4)" in out.stdout and bl.DEFAULT_FACTOR == 4.0


# -- the committed results -----------------------------------------------------------------

@pytest.fixture(scope="module")
def committed():
    if not COMMITTED.is_file():
        pytest.fail(f"{COMMITTED} is missing: run scripts/regenerate_results.sh")
    return load_baseline(COMMITTED)


def test_committed_baseline_is_the_default_suite_and_matches_the_committed_table(committed):
    assert [c.spec for c in committed.cases] == default_suite()
    assert {c.backends for c in committed.cases} == {("torch", "jax")}
    assert committed.source == "gradparity baseline save default"
    table = pd.read_csv(ROOT / "results" / "default" / "table.csv")
    assert len(table) == len(committed.rows)
    got = table[["case_id", "backend", "quantity", "status", "max_abs_err",
                 "norm_err_eps"]].itertuples(index=False, name=None)
    for (cid, backend, q, status, a, n), r in zip(got, committed.rows, strict=True):
        assert (cid, backend, q, status) == (r[0], r[1], r[4], r[5])
        for x, y in ((a, r[6]), (n, r[7])):
            assert (x == y) or (math.isnan(x) and y is None) or (math.isnan(x) and
                                                                 math.isnan(y))
    env = json.loads((ROOT / "results" / "default" / "environment.json").read_text())
    assert env == committed.environment


def test_check_passes_on_part_of_the_committed_baseline(committed, capsys, tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("jax")
    # One case per regime and dtype, with kinks and saturation (the full check is in .ci/run).
    picks = {"normal": lambda s: s.activation == "gelu" and s.head == "softmax_ce",
             "kinks": lambda s: s.activation == "leaky_relu" and s.head == "linear_l1",
             "saturated": lambda s: s.head == "sigmoid_bce" and s.loss_form == "probs"}
    wanted = [next(c.case_id for c in committed.cases
                   if c.spec.regime == regime and c.spec.dtype == dtype and pick(c.spec))
              for regime, pick in picks.items() for dtype in ("float32", "float64")]
    part = committed.restricted((cid, b) for cid in wanted for b in ("torch", "jax"))
    statuses = {r[5] for r in part.rows}
    assert {"kink", "saturation"} <= statuses
    path = tmp_path / "part.json"
    save_baseline(part, path)
    code, out, err = _check(path, capsys)
    assert code == 0, out + err
    assert out.startswith(f"check: no regression against {path} (6 cases")


def test_merge_replaces_cases_in_place_and_drops_rows_of_changed_settings():
    old = _toy()
    a = old.cases[0]
    newer = Baseline(
        cases=[replace(a, backends=("torch",)),
               replace(old.cases[1], rtol=1e-3),
               BaselineCase("x", Spec((2, 2)), ("jax",), 0.0, 0.0, rerun=False)],
        rows=[(a.case_id, "torch", "reference", 1, "dW", "pass", 1.0, 1.0, 1.0, 1.0),
              ("x", "jax", "reference", 1, "Z", "pass", 0.0, 0.0, 1.0, 1.0)],
        environment={"torch": "new"}, source="newer")
    m = old.merged(newer)
    assert [c.case_id for c in m.cases] == [c.case_id for c in old.cases] + ["x"]
    assert m.cases[0].backends == ("torch", "jax")  # same settings: backends united
    assert m.cases[1].rtol == 1e-3
    assert [(r[0], r[1], r[4]) for r in m.rows] == [
        (a.case_id, "jax", "loss"),          # kept: jax was not re-run
        (a.case_id, "torch", "dW"),          # replaced
        (old.cases[2].case_id, "mine", "dZ"),
        ("x", "jax", "Z")]                   # the error row of the re-tolerated case: gone
    assert m.rows[1][6] == 1.0 and m.environment == {"torch": "new"}


def test_layer_own_rows_are_not_part_of_a_baseline():
    b = _baseline([_row("dW")])
    t = _table([_new("dW"), _new("dW", abs_err=1.0)])
    t["mode"] = ["end_to_end", "layer_own"]
    assert compare_with_baseline(b, t).empty
    rows = bl.rows_from_table(t, {})
    assert len(rows) == 1 and rows[0][6] == 0.0
