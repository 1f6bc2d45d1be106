"""How result objects look in Jupyter (``_repr_html_``): a run's table (`ResultTable`), a
debug session (`gradparity.debug.result.DebugResult`) and a CI check
(`gradparity.ci.assertions.ParityResult`) show the statuses, the tolerances the rows
support, a small backend-vs-reference error plot (with matplotlib) and then the rows."""

from __future__ import annotations

import pandas as pd

from gradparity.experiments import html as h
from gradparity.experiments.tables import status_counts

#: Columns of the compact per-quantity table of a view.
VIEW_COLUMNS = ("case_id", "layer", "quantity", "backend", "status", "max_abs_err",
                "norm_err_eps", "err_oracle_eps", "ref_err_oracle_eps", "reason")


def small_plot(df: pd.DataFrame) -> str:
    """The calibration figure, small, as an embedded image; for a single case without
    oracle errors (a debug session), each tensor's error; a note without matplotlib."""
    import importlib.util

    if importlib.util.find_spec("matplotlib") is None:
        return h.paragraph("(install gradparity[report] for the plot)", note=True)
    from gradparity.experiments import figures

    judged = df[(df["quantity"] != "*") & df["err_oracle_eps"].notna()
                & df["ref_err_oracle_eps"].notna()]
    if not judged.empty:
        return h.image(figures.png(figures.calibration(judged, small=True), dpi=80),
                       alt="backend error vs reference error",
                       caption="Backend error vs the reference's own error against the "
                       "oracle (eps); above the black line fails the calibrated rule.")
    rows = df[df["quantity"] != "*"]
    if rows.empty or rows["case_id"].nunique() > 1:
        return ""
    return h.image(figures.png(figures.tensor_errors(rows), dpi=80),
                   alt="error of each tensor",
                   caption="Normwise error of each tensor against the reference (eps), in "
                   "the table's order.")


def result_view(df: pd.DataFrame, *, head: str = "", tolerances: bool = True,
                max_rows: int = 30) -> str:
    """A result table as notebook HTML: ``head`` (HTML), statuses by backend, the
    tolerance pair per dtype (with ``tolerances``), the small plot, and the rows
    (non-pass ones first)."""
    from gradparity.experiments.tolerance_report import suggest_tolerances

    parts = [head] if head else []
    if df.empty:
        return "".join(parts) + h.paragraph("(no rows)", note=True)
    parts.append(h.paragraph(f"{df['case_id'].nunique()} cases, {len(df)} rows, "
                             f"backends: {', '.join(sorted(df['backend'].astype(str).unique()))}"))
    parts.append(h.table(status_counts(df), index=True))
    tol = suggest_tolerances(df) if tolerances else None
    if tol is not None and tol.pairs:
        parts.append(h.paragraph("Tolerances under which every row passes (kink and "
                                 "saturation left out): " + "; ".join(
                                     f"{d}: rtol={t.rtol!r}, atol={t.atol!r}"
                                     for d, t in tol.pairs.items())))
    parts.append(small_plot(df))
    cols = [c for c in VIEW_COLUMNS if c in df.columns]
    shown = pd.concat([df[df["status"] != "pass"], df[df["status"] == "pass"]])
    parts.append(h.table(shown[cols], max_rows=max_rows))
    return '<div class="gradparity">' + "\n".join(parts) + "</div>"


class ResultTable(pd.DataFrame):
    """A result table as `run_specs` and `check_grads` return it: a DataFrame that Jupyter
    shows with its statuses, tolerances and a small plot before the rows (`result_view`).
    Anything derived from it (a selection, a groupby) is a plain DataFrame."""

    @property
    def _constructor(self):  # derived frames are plain DataFrames
        return pd.DataFrame

    def _repr_html_(self) -> str:
        return result_view(self)


def result_table(df: pd.DataFrame) -> ResultTable:
    """``df`` (a `make_table` table) as a `ResultTable`, its ``attrs`` kept."""
    table = ResultTable(df)
    table.attrs = dict(df.attrs)
    return table
