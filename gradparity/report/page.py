"""The HTML report of a result: one self-contained file (figures embedded as PNG, no
script, nothing fetched when it is viewed).

Sections: summary (statuses by backend, head, dtype, regime), tolerances (errors in eps
and the tolerances under which every row passes), one heatmap per backend, error growth,
backend vs reference error with the calibrated rule, the worst cases with their reasons,
a ``gradparity debug`` folder's session report and per-quantity table, the diff against a
second result (`gradparity.ci.baseline.diff_results`), and the environment.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from gradparity.experiments import figures
from gradparity.experiments import html as h
from gradparity.experiments.tables import status_counts, worst_per_case
from gradparity.experiments.tolerance_report import suggest_tolerances, tolerance_table
from gradparity.judge.policy import DEFAULT_RULE
from gradparity.judge.status import FAILING

WORST_LISTED = 25


@dataclass
class Diff:
    """The diff of this result (B) against an earlier one (A)."""

    label_a: str
    label_b: str
    rows: pd.DataFrame
    environment: list[str]


def diff_of(before: str | Path, after: str | Path) -> Diff:
    """`gradparity diff A B` as the report shows it (A: ``before``, B: ``after``)."""
    from gradparity.ci.baseline import diff_results, environment_differences, load_comparable

    a = load_comparable(before, option="A")
    b = load_comparable(after, option="B")
    return Diff(a.label, b.label, diff_results(a.rows, b.rows),
                environment_differences(a.environment, b.environment,
                                        labels=("in A", "in B")))


def _summary(df: pd.DataFrame) -> str:
    parts = [h.paragraph(
        f"{df['case_id'].nunique()} cases, {len(df)} rows, backends: "
        f"{', '.join(sorted(df['backend'].astype(str).unique()))}. Statuses: pass (within "
        "tolerance); rounding, kink, saturation (a difference with a named, non-bug cause); "
        "fail, error (the run fails); skipped (framework not installed).")]
    for by, title in ((("backend",), "By backend"), (("head", "loss_form"), "By head and "
                      "loss form"), (("dtype", "backend"), "By dtype and backend"),
                      (("regime", "backend"), "By input regime and backend")):
        parts += [f"<h3>{h.esc(title)}</h3>", h.table(status_counts(df, by), index=True)]
    return h.section("Summary", parts, anchor="summary")


def _tolerances(df: pd.DataFrame) -> str:
    tol = suggest_tolerances(df)
    compact = tolerance_table(df, keys=("dtype", "quantity", "backend"))
    full = tolerance_table(df)
    parts = [h.paragraph(
        "Errors in eps against the higher-precision oracle and against the same-dtype "
        "reference (median / p99 / max), and the smallest rtol (with atol = 0) and atol "
        "(with rtol = 0) under which every row of the group passes allclose. Kink and "
        "saturation rows are left out: no tolerance should cover a convention."),
        h.table(compact)]
    if tol.pairs:
        parts += [h.paragraph("Tolerances under which every such row of this run passes "
                              "(a suite file's tables, and the assert_grads_match "
                              "arguments):"), h.pre(tol.toml() + "\n" + tol.assert_arguments())]
    parts.append(h.details(f"Per head, loss form, dtype, quantity and backend ({len(full)} "
                           "groups)", h.table(full)))
    return h.section("Tolerances", parts, anchor="tolerances")


def _figures(df: pd.DataFrame) -> str:
    parts = []
    judged = df[df["quantity"] != "*"]
    rule = DEFAULT_RULE.describe()
    if not judged.empty and judged["err_oracle_eps"].isna().all():  # e.g. a debug session
        parts.append(h.image(
            figures.png(figures.tensor_errors(judged)), alt="error of each tensor",
            caption="Normwise error of each tensor against what it is compared with (eps, "
            "log scale), in the table's order: where the gradients go wrong. The rows "
            "have no oracle errors, so the heatmap, growth and calibration figures are "
            "left out."))
        return h.section("Figures", parts, anchor="figures")
    for backend in sorted(judged["backend"].astype(str).unique()):
        parts.append(h.image(
            figures.png(figures.heatmap(df, backend)), alt=f"heatmap of {backend}'s errors",
            caption=f"{backend}: every gradient of every case, coloured by its error against "
            "the oracle in eps (log scale; grey: the tensor does not exist at that depth). "
            "Rows go from the output back to the input; columns are the cases grouped by "
            "head and dtype. Marks: o rounding, x kink, triangle saturation, square "
            "fail/error; orange: beyond the scale's top."))
    if not judged.empty:
        parts.append(h.image(
            figures.png(figures.growth(df)), alt="error growth with depth and width",
            caption="How the error against the oracle grows as backprop moves from the "
            "output to the input, as networks get deeper, and as layers get wider."))
        parts.append(h.image(
            figures.png(figures.calibration(df)), alt="backend error vs reference error",
            caption="Each tensor's backend error against the reference's own error (both "
            f"against the oracle). The black line is the calibrated rule ({rule}): "
            "a tensor above it fails the calibrated policy; the dotted diagonal is "
            "'as accurate as the reference'."))
    return h.section("Figures", parts or [h.paragraph("No tensor was compared.")],
                     anchor="figures")


def _worst(df: pd.DataFrame) -> str:
    parts = []
    notable = df[df["status"] != "pass"]
    if notable.empty:
        parts.append(h.paragraph("Every tensor of every case is within tolerance."))
    else:
        grouped = (notable.groupby(["status", "backend", "reason_code"], observed=True,
                                   dropna=False)
                   .agg(rows=("case_id", "size"), cases=("case_id", "nunique"),
                        example=("case_id", "first"), reason=("reason", "first"))
                   .reset_index())
        bad = notable[notable["status"].isin(FAILING)]
        parts += [h.paragraph("Rows that are not a plain pass, by status, backend and "
                              "reason (one example each):"), h.table(grouped)]
        if not bad.empty:
            parts += [h.paragraph("Failing rows:"), h.table(
                bad[["case_id", "backend", "layer", "quantity", "status", "err_oracle_eps",
                     "ref_err_oracle_eps", "reason"]], max_rows=WORST_LISTED)]
    worst = worst_per_case(df)
    if not worst.empty:
        worst = worst.sort_values(["norm_err_eps", "case_id", "backend"],
                                  ascending=[False, True, True]).head(WORST_LISTED)
        parts += [h.paragraph("Largest normwise error against the reference per case "
                              f"(top {WORST_LISTED}, eps):"), h.table(worst)]
    return h.section("Worst cases", parts, anchor="worst")


def _debug(df: pd.DataFrame, report_text: str) -> str:
    cols = ["layer", "quantity", "backend", "against", "status", "max_abs_err",
            "norm_err_eps", "err_oracle_eps", "ref_err_oracle_eps", "reason"]
    return h.section("Debug session", [
        h.pre(report_text), h.paragraph("Every quantity of the session:"),
        h.table(df[[c for c in cols if c in df.columns]])], anchor="debug")


def _diff(diff: Diff) -> str:
    from gradparity.ci.baseline import CHANGES

    counts = Counter(diff.rows["change"])
    parts = [h.paragraph(f"A: {diff.label_a}; B: {diff.label_b} (this report). Errors "
                         "against each side's oracle, in eps; 'within budget' means each "
                         "side is as accurate as its own machine's rounding allows."),
             h.table(pd.DataFrame({"change": list(CHANGES),
                                   "tensors": [counts.get(c, 0) for c in CHANGES]}))]
    parts += [h.paragraph(f"environment differs: {line}") for line in diff.environment]
    changed = diff.rows[diff.rows["change"] != "same"]
    if not changed.empty:
        parts += [h.paragraph("Changed tensors, worst first:"),
                  h.table(changed, max_rows=WORST_LISTED * 2)]
    return h.section("Diff against another result", parts, anchor="diff")


def _environment(env: Mapping[str, str]) -> str:
    frame = pd.DataFrame({"key": list(env), "value": [str(v) for v in env.values()]})
    return h.section("Environment", [h.table(frame)], anchor="environment")


def report_html(df: pd.DataFrame, *, name: str, debug_report: str | None = None,
                diff: Diff | None = None) -> str:
    """The whole report page of the result table ``df`` (environment from its attrs)."""
    figures.require_matplotlib()
    body = [_summary(df)]
    if debug_report is None:  # a learner's bug is no rounding to set tolerances by
        body.append(_tolerances(df))
    body += [_figures(df), _worst(df)]
    if debug_report is not None:
        body.append(_debug(df, debug_report))
    if diff is not None:
        body.append(_diff(diff))
    body.append(_environment(df.attrs.get("environment", {})))
    return h.page(f"gradparity report: {name}", body)


def folder_report(folder: str | Path, *, before: str | Path | None = None) -> str:
    """The report of a result folder (a run's or a debug session's, whose report.txt is
    shown), with the diff against ``before`` when given."""
    from gradparity.experiments.io import read_result

    figures.require_matplotlib()
    p = Path(folder)
    df = read_result(p)
    text = p / "report.txt"
    debug = text.read_text(encoding="utf-8") if text.is_file() else None
    diff = diff_of(before, p) if before is not None else None
    return report_html(df, name=p.resolve().name, debug_report=debug, diff=diff)
