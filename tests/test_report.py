"""Reports: gradparity tolerances (a rerun under its tolerances passes every row), the HTML
report (self-contained, every figure, the diff of two folders), run's report.html, the
progress bar and plain lines, notebook views."""

from __future__ import annotations

import base64
import io
import re
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from gradparity.cli import main
from gradparity.judge.status import EXPLAINED

# Two dtypes, two depths, a saturated composed loss: small and fast.
SUITE = textwrap.dedent("""\
    name = "tol"
    backends = ["torch", "reference"]
    [[sweep]]
    sizes = [[3, 5, 2], [3, 5, 5, 2]]
    activation = "tanh"
    head = "linear_mse"
    dtype = ["float32", "float64"]
    batch = 6
    [[case]]
    sizes = [3, 4, 2]
    activation = "tanh"
    head = "sigmoid_bce"
    loss_form = "probs"
    regime = "saturated"
    batch = 8
    seed = 11
    """)
TIGHT = ("[tolerances.float32]\nrtol = 0.0\natol = 0.0\n"
         "[tolerances.float64]\nrtol = 0.0\natol = 0.0\n")
PNG = b"\x89PNG\r\n\x1a\n"


def _suite(folder: Path, tolerances: str) -> Path:
    lines = SUITE.splitlines(keepends=True)
    f = folder / "tol.toml"
    f.write_text(lines[0] + lines[1] + tolerances + "".join(lines[2:]))
    return f


@pytest.fixture(scope="module")
def tight_run(tmp_path_factory):
    """The suite run under rtol = atol = 0 (most tensors fail: rounding), with --report:
    (folder, table)."""
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    root = tmp_path_factory.mktemp("report")
    out = root / "tight"
    code = main(["run", str(_suite(root, TIGHT)), "--out", str(out), "--report", "-q"])
    assert code == 1  # zero tolerances: rounding differences fail
    return out, pd.read_csv(out / "table.csv")


def test_tolerances_cli_gives_tolerances_under_which_a_rerun_passes_every_row(
        tight_run, tmp_path, capsys):
    out, table = tight_run
    assert (table["status"] == "fail").sum() > 10
    capsys.readouterr()
    assert main(["tolerances", str(out)]) == 0
    printed = capsys.readouterr().out
    snippet = "\n".join(re.findall(r"^\[tolerances\.float\d\d\]\nrtol = \S+\natol = \S+$",
                                   printed, flags=re.M)) + "\n"
    assert snippet.count("[tolerances.") == 2, printed
    assert "assert_grads_match(..., rtol=" in printed
    assert re.search(r"float32\s+linear_mse\s+logits\s+dW\s+torch", printed)
    again = tmp_path / "again"
    code = main(["run", str(_suite(tmp_path, snippet)), "--out", str(again), "--no-report",
                 "-q"])
    rerun = pd.read_csv(again / "table.csv")
    assert code == 0
    assert set(rerun["status"]) <= {"pass"} | EXPLAINED
    assert len(rerun) == len(table) and (rerun["status"] == "pass").sum() > len(rerun) // 2
    # the same from table.csv alone (a folder written without pyarrow)
    csv_only = tmp_path / "csv-only"
    csv_only.mkdir()
    (csv_only / "table.csv").write_bytes((out / "table.csv").read_bytes())
    capsys.readouterr()
    assert main(["tolerances", str(csv_only)]) == 0
    assert capsys.readouterr().out == printed.replace(str(out), str(csv_only))
    assert main(["tolerances", str(out), "--by-depth", "--quantile", "0.5"]) == 0
    by_depth = capsys.readouterr().out
    assert re.search(r"float32\s+linear_mse\s+logits\s+dW\s+torch\s+3\s", by_depth)
    assert "the 0.5 quantile of the rows" in by_depth
    assert main(["tolerances", str(out), "--quantile", "1.5"]) == 2
    assert "--quantile=1.5: expected a number in (0, 1]" in capsys.readouterr().err


def test_tolerance_table_reports_each_group_and_what_passes_it(tight_run):
    from gradparity.experiments.tolerance_report import round_up, tolerance_table

    _, table = tight_run
    t = tolerance_table(table, keys=("dtype", "quantity", "backend"))
    dw = t[(t["dtype"] == "float64") & (t["quantity"] == "dW") & (t["backend"] == "torch")]
    rows = table[(table["dtype"] == "float64") & (table["quantity"] == "dW")
                 & (table["backend"] == "torch") & (table["reason_code"] != "mismatch")]
    assert int(dw["rows"].iloc[0]) == len(rows)
    assert dw["atol_alone"].iloc[0] == rows["max_abs_err"].max()
    assert dw["rtol_alone"].iloc[0] == rows["max_rel_err"].max()
    assert dw["oracle_max"].iloc[0] == rows["err_oracle_eps"].max()
    assert round_up(1.234e-6) == 1.3e-6 and round_up(1.2e-6) == 1.3e-6
    # kink and saturation rows, and real disagreements, are never covered by a tolerance
    assert t["rows"].sum() == (~table["status"].isin(["kink", "saturation"])
                               & (table["quantity"] != "*")
                               & (table["reason_code"] != "mismatch")).sum()
    assert set(table["reason_code"].dropna()) >= {"mismatch", "rounding"}


def _images(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in
            re.findall(r'<img alt="[^"]*" src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_run_report_is_self_contained_with_every_figure(tight_run):
    out, table = tight_run
    html = (out / "report.html").read_text()
    images = _images(html)
    backends = table["backend"].nunique()
    assert len(images) == backends + 2  # a heatmap per backend, growth, calibration
    assert html.count("<img") == len(images)
    assert all(i.startswith(PNG) and len(i) > 5000 for i in images)
    from PIL import Image  # matplotlib's own dependency: every PNG decodes to its end

    for data in images:
        with Image.open(io.BytesIO(data)) as im:
            im.load()
            assert im.width >= 400 and im.height >= 200
    assert not re.search(r"<script|https?://|<link", html)
    for title in ("Summary", "Tolerances", "Figures", "Worst cases", "Environment"):
        assert f"<h2>{title}</h2>" in html
    assert "[tolerances.float32]" in html and "reference" in html
    assert "<h2>Diff" not in html


def test_report_input_errors_are_one_line_and_write_nothing(tight_run, tmp_path, capsys,
                                                            monkeypatch):
    out, _ = tight_run
    capsys.readouterr()
    assert main(["report", str(tmp_path / "none"), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert "no such folder" in err and len(err.strip().splitlines()) == 1
    assert main(["report", str(out), str(out), str(out)]) == 2
    assert "expected one folder, or two" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as if not installed
    assert main(["report", str(out), "--out", str(tmp_path / "r.html")]) == 2
    err = capsys.readouterr().err
    assert err == "gradparity: error: figures need matplotlib: pip install " \
                  "'gradparity[report]'\n"
    assert main(["run", "quick", "--report", "--out", str(tmp_path / "x")]) == 2
    assert "gradparity[report]" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_run_writes_the_report_unless_told_not_to(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    suite = tmp_path / "s.toml"
    suite.write_text('[[case]]\nsizes = [2, 3, 2]\nbatch = 2\n')
    monkeypatch.delenv("GRADPARITY_REPORT")
    assert main(["run", str(suite), "--backends", "reference", "-q", "--out",
                 str(tmp_path / "a")]) == 0
    assert (tmp_path / "a" / "report.html").is_file()
    assert main(["run", str(suite), "--backends", "reference", "-q", "--no-report",
                 "--out", str(tmp_path / "b")]) == 0
    assert not (tmp_path / "b" / "report.html").exists()
    # two folders: B's report with the diff of A and B
    two = tmp_path / "two.html"
    assert main(["report", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(two)]) == 0
    both = two.read_text()
    assert "<h2>Diff against another result</h2>" in both
    assert f"A: {tmp_path / 'a'}; B: {tmp_path / 'b'}" in both
    assert len(_images(both)) == 3


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _feed(progress, n=3):
    from gradparity.core.spec import Spec
    from gradparity.experiments.runner import CaseStatuses

    for i in range(1, n + 1):
        statuses = CaseStatuses({"torch": "pass", "jax": "kink" if i == 2 else "pass"})
        statuses.rows_not_pass = {2: 4, 3: 1}.get(i, 0)
        progress(i, n, Spec((2, 2), seed=i), statuses)


def test_progress_is_a_bar_on_a_terminal_and_lines_otherwise():
    pytest.importorskip("tqdm")
    from gradparity.cli.progress import case_progress

    term = _Terminal()
    _feed(case_progress(False, term))
    bar = term.getvalue()
    assert "\r" in bar and "3/3" in bar and "not pass: 5 rows" in bar
    assert re.search(r"case/s|s/case", bar)  # the rate
    assert "<00:00" in bar  # elapsed<remaining
    log = io.StringIO()
    _feed(case_progress(False, log))
    lines = log.getvalue().splitlines()
    assert len(lines) == 3 and "\r" not in log.getvalue()
    assert lines[1].startswith("[2/3] ") and lines[1].endswith("torch pass  jax kink")
    assert case_progress(True, term) is None


def test_a_run_reports_rows_that_are_not_a_pass_to_progress():
    pytest.importorskip("torch")
    from gradparity.core.spec import Spec
    from gradparity.experiments.runner import run_specs

    seen = []
    spec = Spec((3, 4, 2), activation="tanh", head="sigmoid_bce", loss_form="probs",
                dtype="float64", batch=16, seed=11, regime="saturated")
    df = run_specs([spec], backends=["torch"], progress=lambda *a: seen.append(a[3]))
    assert seen[0].rows_not_pass == int((df["status"] != "pass").sum()) > 0
    assert dict(seen[0]) == {"torch": "saturation"}


# -- in a real browser ------------------------------------------------------------------------
PROBE = """<script>
window.gpErrors = [];
window.addEventListener("error", e => window.gpErrors.push("error: " + (e.message ||
  (e.target && e.target.tagName) || "?")), true);
const gpConsoleError = console.error;
console.error = (...a) => { window.gpErrors.push("console: " + a.join(" "));
  gpConsoleError(...a); };
window.addEventListener("load", () => {
  const images = [...document.images];
  const ok = images.map(i => i.complete && i.naturalWidth > 0 && i.naturalHeight > 0);
  const out = document.createElement("pre");
  out.id = "gp-probe";
  out.textContent = JSON.stringify({images: images.length, decoded: ok.filter(Boolean).length,
    sizes: images.map(i => [i.naturalWidth, i.naturalHeight]), errors: window.gpErrors});
  document.body.appendChild(out);
});
</script>"""


def _chromium() -> str | None:
    import shutil

    return next((p for n in ("chromium", "chromium-browser", "google-chrome")
                 if (p := shutil.which(n))), None)


@pytest.mark.skipif(_chromium() is None, reason="no Chromium on this machine (Debian: apt-get "
                    "install chromium); the report's structure is checked without it above")
def test_report_renders_in_headless_chromium(tight_run, tmp_path):
    """Chromium loads the report: at the load event every image is complete with its
    decoded size (a PNG that does not decode is ``broken``: naturalWidth 0, and an error
    event), no error event or console error; a screenshot is taken. The probe script goes
    into a copy of the page only: the report itself has no script."""
    import json
    import subprocess

    out, table = tight_run
    html = (out / "report.html").read_text()
    probe = tmp_path / "probe.html"
    probe.write_text(html.replace("<head>", "<head>" + PROBE, 1))
    flags = [_chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
             "--virtual-time-budget=10000", f"--user-data-dir={tmp_path / 'profile'}"]
    dom = subprocess.run([*flags, "--dump-dom", probe.as_uri()], capture_output=True,
                         text=True, timeout=120)
    found = re.search(r'<pre id="gp-probe">(.*?)</pre>', dom.stdout, flags=re.S)
    assert found, dom.stderr[-2000:]
    result = json.loads(found.group(1).replace("&quot;", '"').replace("&amp;", "&"))
    assert result["errors"] == []
    assert result["images"] == table["backend"].nunique() + 2
    assert result["decoded"] == result["images"]
    assert all(w >= 400 and h >= 200 for w, h in result["sizes"])
    shot = tmp_path / "report.png"
    subprocess.run([*flags, "--window-size=1280,2000", f"--screenshot={shot}",
                    (out / "report.html").as_uri()], capture_output=True, timeout=120)
    assert shot.read_bytes().startswith(PNG) and shot.stat().st_size > 50_000


def test_report_of_a_debug_folder_shows_the_session(tmp_path):
    pytest.importorskip("matplotlib")
    import gradparity as gp
    from gradparity.experiments.io import csv_writer, text_writer, write_folder_atomically

    examples = Path(__file__).resolve().parents[1] / "examples"
    result = gp.debug_numpy(str(examples / "buggy_backprop.py"), backends=())
    folder = write_folder_atomically(tmp_path / "dbg", {  # as `gradparity debug --out`
        "table.csv": csv_writer(result.table()), "report.txt": text_writer(result.report())})
    assert main(["report", str(folder)]) == 0
    html = (folder / "report.html").read_text()
    assert "<h2>Debug session</h2>" in html and "<h2>Tolerances</h2>" not in html
    assert html.count('<img alt="error of each tensor"') == 1 and html.count("<img") == 1
    assert "dZ2" in result.report() and "fail" in html
