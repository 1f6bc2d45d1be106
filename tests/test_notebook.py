"""The example notebook runs (nbclient, a fresh kernel) and its result objects render as
HTML with their tables and plot."""

from __future__ import annotations

from pathlib import Path

import pytest

NOTEBOOK = Path(__file__).resolve().parents[1] / "examples" / "notebooks" / "parity_report.ipynb"


def test_example_notebook_runs_and_renders_results_as_html():
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    pytest.importorskip("ipykernel")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    nbclient.NotebookClient(nb, timeout=240, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOK.parent)}}).execute()
    html = [o["data"]["text/html"] for c in nb.cells if c.cell_type == "code"
            for o in c.outputs if "text/html" in o.get("data", {})]
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.outputs
              if o["output_type"] == "error"]
    assert errors == []
    table, tolerances, debug, check = html
    for view in (table, check):
        assert view.count('<img alt="backend error vs reference error"') == 1
        assert "Tolerances under which every row passes" in view
    assert debug.count('<img alt="error of each tensor"') == 1
    assert "4 cases" in table and "<th>pass</th>" in table
    assert "derivative" in debug or "sigmoid" in debug  # the session's finding
    assert "Gradients match." in check
    assert "rtol_alone" in tolerances
    printed = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code"
                      for o in c.outputs if o["output_type"] == "stream")
    assert "[tolerances.float32]" in printed
