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

import pandas as pd
import pytest

from gradparity.ci import baseline as bl
from gradparity.ci.baseline import (
    Baseline,
    BaselineCase,
    BaselineError,
    BaselineRow,
    compare_with_baseline,
    dumps,
    load_baseline,
    loads,
    save_baseline,
)
from gradparity.cli import main
from gradparity.core.errors import UsageError
from gradparity.core.spec import Spec
from gradparity.experiments.suites import default_suite
from gradparity.experiments.toml_suite import load_suite_file

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
        BaselineRow(a.case_id, "torch", "reference", 1, "dW", "pass", "", 0.1 + 0.2, 1 / 3,
                    5e-324, 1.0, 0.5),
        BaselineRow(a.case_id, "jax", "reference", 2, "loss", "saturation", "saturation",
                    math.inf, math.inf, 2.0 ** -24, 1.0, 3.0),
        BaselineRow(EXPLICIT.case_id, "torch", "reference", None, "*", "error", "", None,
                    None, None, None, None),
        BaselineRow(a.case_id + "-arrays0123abcd", "mine", "reference", 1, "dZ", "fail",
                    "mismatch", 1e300, -0.0, 7.0, 12.5, 1e301),
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
    "newer_version": (lambda t: _mutate(t, '"version": 2', '"version": 7'),
                      "format version 7 is newer than this gradparity reads (2)"),
    "older_version": (lambda t: _mutate(t, '"version": 2', '"version": 1'),
                      "format version 1 compares the last bits of one machine, which this "
                      "gradparity no longer does (it reads version 2); save the baseline "
                      "again with 'gradparity baseline save'"),
    "short_row": (lambda t: _mutate(t, ', 1, "dW", "pass"', ', "dW", "pass"'),
                  "rows[0]: expected a list of 12 values"),
    "reason_code_not_a_string": (lambda t: _mutate(t, '"pass", "", ', '"pass", 3, '),
                                 "rows[0].reason_code=3: expected a string"),
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
                   "rows[1].err_oracle_eps='big': expected a number, null, 'inf'"),
    "layer_without_tensor": (lambda t: _mutate(t, 'null, "*"', '1, "*"'),
                             "rows[2]: layer is null exactly when quantity is '*'"),
    "duplicate_row": (lambda t: _mutate(t, '"jax", "reference", 2, "loss"',
                                        '"torch", "reference", 1, "dW"'),
                      "rows[1]: duplicate row"),
    "missing_column": (lambda t: _mutate(t, '"ref_err_oracle_eps", ', '"scale", '),
                       "row_columns lacks 'ref_err_oracle_eps'"),
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
NAN = math.nan


def _baseline(rows, backends=("torch",)) -> Baseline:
    return Baseline(cases=[BaselineCase(CID, SPEC32, backends, 1.3e-6, 1e-5)],
                    rows=[BaselineRow(CID, *r) for r in rows])


def _table(rows) -> pd.DataFrame:
    cols = ["backend", "against", "layer", "quantity", "status", "reason_code",
            "err_oracle_eps", "worst_oracle_eps", "ref_err_oracle_eps", "ref_worst_oracle_eps",
            "norm_err_eps"]
    df = pd.DataFrame([dict(zip(cols, r, strict=True), case_id=CID) for r in rows])
    df["reason"] = "why"
    df["a_column_added_later"] = 1.0  # extra columns are ignored
    return df


def _row(q="dW", layer=1, status="pass", err=1.0, worst=1.0, ref=1.0, ref_worst=1.0,
         norm=0.5, backend="torch", code=""):
    return (backend, "reference", layer, q, status, code, err, worst, ref, ref_worst, norm)


_new = _row


@pytest.mark.parametrize(("before", "after", "ref_now", "flagged", "limit"), [
    (1.0, 20.0, 1.0, False, 20.0),     # within this machine's budget: 4 x 1 + 16
    (1.0, 20.5, 1.0, True, 20.0),
    (0.0, 16.0, 0.0, False, 16.0),     # an exact tensor may round: the floor
    (0.0, 16.5, 0.0, True, 16.0),
    (1.0, 50.0, 10.0, False, 56.0),    # this machine's reference is worse: budget grows
    (100.0, 400.0, 1.0, False, 400.0),  # a kink row: 4 x its baseline error
    (100.0, 401.0, 1.0, True, 400.0),
    (1.0, 1e-3, 1.0, False, 20.0),     # better
    (math.inf, math.inf, 1.0, False, math.inf),
    (1.0, math.inf, 1.0, True, 20.0),
    (1.0, NAN, 1.0, True, 20.0),
    (NAN, 1e9, 1.0, False, NAN),       # nothing to compare with
    (1.0, 30.0, NAN, True, 16.0),      # no reference error now: the floor and the factor
])
def test_a_tensor_regresses_only_when_less_accurate_than_before_and_the_budget_now(
        before, after, ref_now, flagged, limit):
    reg = compare_with_baseline(_baseline([_row(err=before, ref=123.0)]),
                                _table([_new(err=after, ref=ref_now)]), factor=4)
    assert (not reg.empty) == flagged
    if flagged:
        (r,) = reg.itertuples()
        assert (r.kind, r.metric, r.quantity, r.layer) == ("grew", "err_oracle_eps", "dW", 1)
        assert r.limit == pytest.approx(limit)


def test_the_worst_element_is_compared_too_and_the_factor_is_an_option():
    b = _baseline([_row(worst=10.0)])
    assert compare_with_baseline(b, _table([_new(worst=40.0)])).empty
    reg = compare_with_baseline(b, _table([_new(worst=41.0)]))
    assert list(reg["metric"]) == ["worst_oracle_eps"] and reg["ratio"][0] == 4.1
    assert compare_with_baseline(b, _table([_new(worst=41.0)]), factor=5).empty
    with pytest.raises(UsageError, match="factor=0.5: expected a finite number >= 1"):
        compare_with_baseline(b, _table([_new()]), factor=0.5)


def test_without_an_oracle_the_error_against_the_reference_is_compared():
    b = _baseline([_row(err=NAN, worst=NAN, ref=NAN, ref_worst=NAN, norm=0.5)])
    assert compare_with_baseline(b, _table([_new(err=NAN, worst=NAN, ref=NAN,
                                                 ref_worst=NAN, norm=16.0)])).empty
    reg = compare_with_baseline(b, _table([_new(err=NAN, worst=NAN, ref=NAN, ref_worst=NAN,
                                                norm=16.5)]))
    assert list(reg["metric"]) == ["norm_err_eps"] and reg["limit"][0] == 16.0


def test_the_reference_difference_between_machines_is_never_compared():
    # norm_err_eps (against this machine's reference) may change at will while an oracle
    # error exists: a reference that rounds differently is no regression.
    b = _baseline([_row(norm=0.1)])
    assert compare_with_baseline(b, _table([_new(norm=1e6)])).empty


def test_status_changes_missing_and_new_rows():
    b = _baseline([_row("dW", status="pass"), _row("db", status="fail"),
                   _row("dZ", status="kink"), _row("dA", layer=0),
                   _row("A", status="pass"), _row("Z", status="rounding")])
    t = _table([_new("dW", status="fail"), _new("db", status="pass"),
                _new("dZ", status="fail"), _new("A", status="kink", code="kink"),
                _new("Z", status="pass"), _new("Z", layer=2)])
    reg = compare_with_baseline(b, t)
    got = [(r.kind, r.quantity, r.status_before, r.status_after) for r in reg.itertuples()]
    assert got == [("new_failure", "dW", "pass", "fail"), ("new_failure", "dZ", "kink", "fail"),
                   ("new_reason", "A", "pass", "kink"),
                   ("missing", "dA", "pass", ""), ("new_row", "Z", "", "pass")]
    assert reg["detail"][0] == "why"


def test_a_regression_on_another_machine_says_so():
    b = _baseline([_row("dW")])
    reg = compare_with_baseline(b, _table([_new("dW", status="fail")]),
                                machine=["cpu", "cpu_isa"])
    assert reg["detail"][0] == ("why [this machine differs from the baseline's: cpu, "
                                "cpu_isa]")
    assert bl.differing_keys({"cpu": "Intel", "pandas": "1", "torch": "2"},
                             {"cpu": "AMD", "pandas": "2", "torch": "2", "XLA_FLAGS": ""}
                             ) == ["cpu"]
    assert bl.environment_differences({"cpu": "Intel"}, {"cpu": "AMD", "XLA_FLAGS": "x"}) == [
        "XLA_FLAGS: not recorded in the baseline, x now", "cpu: Intel in the baseline, AMD now"]


def test_whole_case_rows_are_collapsed():
    tensors = [_row("dW"), _row("db")]
    whole = (None, None, None, None, None)
    skipped = _table([("torch", "reference", None, "*", "skipped", "", *whole)])
    reg = compare_with_baseline(_baseline(tensors), skipped)
    assert list(reg["kind"]) == ["missing"] and reg["quantity"][0] == "*"
    assert reg["detail"][0] == "2 baseline rows not produced: skipped: why"
    errored = _table([("torch", "reference", None, "*", "error", "", *whole)])
    reg = compare_with_baseline(_baseline(tensors), errored)
    assert list(reg["kind"]) == ["new_failure"] and reg["status_after"][0] == "error"
    # the baseline had the backend skipped; now it runs: new rows, collapsed
    was_skipped = _baseline([("torch", "reference", None, "*", "skipped", "", *whole)])
    reg = compare_with_baseline(was_skipped, _table([_new("dW"), _new("db")]))
    assert list(reg["kind"]) == ["new_row"]
    assert reg["detail"][0] == "2 rows not in the baseline (it has skipped for this case " \
                               "and backend)"
    # the baseline had an error; now it works: fixed, not a regression
    was_error = _baseline([("torch", "reference", None, "*", "error", "", *whole)])
    assert compare_with_baseline(was_error, _table([_new("dW")])).empty


def test_regression_table_text():
    b = _baseline([_row("dW", err=1.0), _row("db", status="pass")])
    t = _table([_new("dW", err=100.0), _new("db", status="fail")])
    text = bl.format_regressions(compare_with_baseline(b, t))
    lines = text.splitlines()
    assert lines[0].split() == ["kind", "case_id", "backend", "tensor", "metric", "before",
                                "after", "ratio", "limit"]
    assert lines[1].split() == ["new", "failure", CID, "torch", "db1", "status", "pass",
                                "fail", "why"]
    assert lines[2].split() == ["grew", CID, "torch", "dW1", "err_oracle_eps", "1", "100",
                                "100", "20"]
    assert bl.regression_counts(compare_with_baseline(b, t)) == "1 new failure, 1 grew"


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
    assert {r.status for r in b.rows} == {"pass", "kink", "saturation"}
    run = pd.read_csv(saved.parent / "run" / "table.csv")
    assert len(run) == len(b.rows)  # --results wrote the same run
    code, out, err = _check(saved, capsys, "--out", str(tmp_path / "again"))
    assert code == 0, out + err
    others = ", ".join(b.kernels)
    assert others  # saved with --kernels auto: this CPU's other kernels ran too
    assert out == (f"check: no regression against {saved} (4 cases, {len(b.rows)} baseline "
                   "rows, factor 4 on err_oracle_eps, worst_oracle_eps; baseline errors over "
                   f"its run and kernels {others})\n")
    for name in b.kernels:  # --results wrote each run's table
        assert len(pd.read_csv(saved.parent / "run" / "kernels" / name / "table.csv.gz")
                   ) == len(run)
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


def test_check_fails_when_torch_gets_less_accurate(saved, capsys, monkeypatch):
    # torch's largest dW1 element off by a relative 1e-3 in every case: beyond rounding.
    from gradparity.adapters import torch_autograd

    real = torch_autograd.TorchBackend.gradients

    def perturbed(self, case):
        g = real(self, case)
        w = g.grads["dW1"].copy()
        w.flat[abs(w).argmax()] *= w.dtype.type(1 + 1e-3)
        g.grads["dW1"] = w
        return g

    monkeypatch.setattr(torch_autograd.TorchBackend, "gradients", perturbed)
    # the patch exists in this process only: torch must not run in a worker of its own
    monkeypatch.setenv("GRADPARITY_CONCURRENT", "off")
    code, out, err = _check(saved, capsys)
    assert code == 1, out + err
    lines = out.splitlines()
    assert lines[0] == (f"regressions against {saved} (before: the baseline, after: this run; "
                        "errors in eps against the oracle; limit: max(factor x before, "
                        "rounding budget now)):")
    assert lines[1].split() == ["kind", "case_id", "backend", "tensor", "metric", "before",
                                "after", "ratio", "limit"]
    cases = [c.case_id for c in load_baseline(saved).cases]
    # every case but the saturated one, whose dW1 is exactly 0 (nothing to perturb); the
    # float32 ones fail allclose too (new failures), all got less accurate (grew)
    for cid in cases[:1] + cases[2:]:
        assert any(line.split()[:5] == ["grew", cid, "torch", "dW1", "err_oracle_eps"]
                   for line in lines[2:-1]), cid
    assert all({"torch", "dW1"} <= set(line.split()) for line in lines[2:-1])
    assert lines[-1].startswith("check: ") and " grew (4 cases, " in lines[-1]


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


def test_check_fails_on_a_new_failure_and_names_another_environment(saved, capsys,
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
    assert {r.status for r in load_baseline(saved).rows if r.case_id == first} == {"pass"}
    code, out, err = _check(path, capsys)
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith("environment differs from the baseline: torch: 0.0.1-")
    assert lines[0].endswith(" now") and " in the baseline, " in lines[0]
    assert not lines[1].startswith("environment")
    assert lines[3].split()[:3] == ["new", "failure", first]
    assert lines[3].split()[5:8] == ["status", "pass", "fail"]
    assert lines[3].endswith("[this machine differs from the baseline's: torch]")
    assert err == ""


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
    (["baseline", "save", "quick", "--out", "x.json", "--kernels", "legacy,avx9"],
     "--kernels='legacy,avx9': 'avx9' is not a kernel configuration of this CPU; expected "
     "auto, none or names among stock, "),
    (["baseline", "save", "quick", "--out", "x.json", "--kernels", ","],
     "--kernels=',': expected auto, none or configuration names"),
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
                + b.cases[2:], rows=[r for r in b.rows if r.case_id != EXPLICIT.case_id])
    runnable, notes = bl.rerunnable(b)
    assert [c.case_id for c in runnable.cases] == [b.cases[0].case_id]
    assert {r.backend for r in runnable.rows} == {"torch", "jax"}
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
    run = pd.read_csv(ROOT / "results" / "default" / "table.csv")
    # the rows are the worst over the run and its runs under this CPU's other kernels
    kernels = ROOT / "results" / "default" / "kernels"
    names = sorted(p.name for p in kernels.iterdir()) if kernels.is_dir() else []
    assert names == sorted(committed.kernels) and names
    table = bl.envelope([run, *(pd.read_csv(kernels / n / "table.csv.gz") for n in names)])
    assert len(table) == len(committed.rows)
    cols = ["case_id", "backend", "quantity", "status", "err_oracle_eps", "worst_oracle_eps",
            "ref_err_oracle_eps"]
    for got, r in zip(table[cols].itertuples(index=False, name=None), committed.rows,
                      strict=True):
        assert got[:4] == (r.case_id, r.backend, r.quantity, r.status)
        for x, y in zip(got[4:], (r.err_oracle_eps, r.worst_oracle_eps,
                                  r.ref_err_oracle_eps), strict=True):
            assert (x == y) or (math.isnan(x) and y is None) or (math.isnan(x) and
                                                                 math.isnan(y))
    env = json.loads((ROOT / "results" / "default" / "environment.json").read_text())
    assert env == committed.environment


MACHINES = ROOT / "results" / "machines"


@pytest.mark.parametrize("other", sorted(p.name for p in MACHINES.iterdir())
                         if MACHINES.is_dir() else [])
def test_the_committed_results_of_another_machine_pass_the_gate_both_ways(committed, other):
    # The default suite recorded on another CPU (see README, "Across machines"): its numbers
    # differ from the committed ones in thousands of rows, the reference's included, and
    # neither side's baseline flags the other.
    theirs = pd.read_csv(MACHINES / other / "table.csv.gz")
    ours = pd.read_csv(ROOT / "results" / "default" / "table.csv")
    env = json.loads((MACHINES / other / "environment.json").read_text())
    assert bl.differing_keys(env, committed.environment)  # really another machine
    moved = (theirs["ref_err_oracle_eps"] != ours["ref_err_oracle_eps"]).sum()
    assert moved > 1000
    assert compare_with_baseline(committed, theirs).empty
    base = bl.baseline_from_table(theirs, committed.cases, environment=env)
    assert compare_with_baseline(base, ours).empty
    # and the gate still bites across machines: their torch with jax's numbers
    swapped = ours[ours["backend"] == "jax"].assign(backend="torch")
    assert not compare_with_baseline(base, pd.concat([swapped, ours[ours["backend"] == "jax"]])
                                     ).empty


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
    statuses = {r.status for r in part.rows}
    assert {"kink", "saturation"} <= statuses
    path = tmp_path / "part.json"
    save_baseline(part, path)
    code, out, err = _check(path, capsys)
    assert code == 0, out + err
    # on another machine the environment differences come first; the verdict is last
    assert out.splitlines()[-1].startswith(f"check: no regression against {path} (6 cases")


def test_merge_replaces_cases_in_place_and_drops_rows_of_changed_settings():
    old = _toy()
    a = old.cases[0]
    newer = Baseline(
        cases=[replace(a, backends=("torch",)),
               replace(old.cases[1], rtol=1e-3),
               BaselineCase("x", Spec((2, 2)), ("jax",), 0.0, 0.0, rerun=False)],
        rows=[BaselineRow(a.case_id, "torch", "reference", 1, "dW", "pass", "", 1.0, 1.0,
                          1.0, 1.0, 1.0),
              BaselineRow("x", "jax", "reference", 1, "Z", "pass", "", 0.0, 0.0, 1.0, 1.0,
                          1.0)],
        environment={"torch": "new"}, source="newer")
    m = old.merged(newer)
    assert [c.case_id for c in m.cases] == [c.case_id for c in old.cases] + ["x"]
    assert m.cases[0].backends == ("torch", "jax")  # same settings: backends united
    assert m.cases[1].rtol == 1e-3
    assert [(r.case_id, r.backend, r.quantity) for r in m.rows] == [
        (a.case_id, "jax", "loss"),          # kept: jax was not re-run
        (a.case_id, "torch", "dW"),          # replaced
        (old.cases[2].case_id, "mine", "dZ"),
        ("x", "jax", "Z")]                   # the error row of the re-tolerated case: gone
    assert m.rows[1].err_oracle_eps == 1.0 and m.environment == {"torch": "new"}


def test_layer_own_rows_are_not_part_of_a_baseline():
    b = _baseline([_row("dW")])
    t = _table([_new("dW"), _new("dW", err=1e6)])
    t["mode"] = ["end_to_end", "layer_own"]
    assert compare_with_baseline(b, t).empty
    rows = bl.rows_from_table(t)
    assert len(rows) == 1 and rows[0].err_oracle_eps == 1.0
