"""The markdown summary of a run and the files of a result folder."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import pandas as pd

from gradparity.experiments.io import (
    Writer,
    csv_writer,
    gzip_csv_writer,
    have_parquet,
    json_writer,
    parquet_writer,
    text_writer,
    write_folder_atomically,
)
from gradparity.experiments.tables import (
    error_origins,
    markdown_table,
    pass_rate_pivot,
    status_counts,
    worst_per_case,
)
from gradparity.experiments.tolerance_report import tolerances_markdown

MAX_LISTED = 40


def summary_markdown(df: pd.DataFrame, *, name: str) -> str:
    """A readable summary: statuses, pass rates, non-pass rows, worst tensors."""
    env = df.attrs.get("environment", {})
    n_cases = df["case_id"].nunique()
    lines = [f"# gradparity run: {name}", ""]
    lines.append(f"{n_cases} cases, {len(df)} rows, backends: "
                 f"{', '.join(sorted(df['backend'].unique()))}.")
    lines.append("")
    lines.append("Environment: " + ", ".join(f"{k} {v}" for k, v in env.items() if v))
    lines += ["", "## Rows by status", "", markdown_table(status_counts(df))]
    lines += ["## Agreement",
              "",
              "Share of rows that pass or whose difference is explained (kink, saturation, "
              "rounding), by head and loss form, by hidden activation and by depth.",
              ""]
    for by in ("head_form", "activation", "depth"):
        lines.append(markdown_table(pass_rate_pivot(df, by), floatfmt=".0%"))
    notable = df[~df["status"].isin(["pass"])]
    lines += ["## Rows that are not a plain pass", ""]
    if notable.empty:
        lines.append("None: every tensor of every case is within tolerance.\n")
    else:
        grouped = (notable.groupby(["status", "backend", "reason"], observed=True, dropna=False)
                   .agg(rows=("case_id", "size"), cases=("case_id", "nunique"),
                        example=("case_id", "first"))
                   .reset_index())
        lines.append(markdown_table(grouped.head(MAX_LISTED), index=False))
        if len(grouped) > MAX_LISTED:
            lines.append(f"... {len(grouped) - MAX_LISTED} more groups in table.csv\n")
    origins = error_origins(df)
    if not origins.empty:
        lines += ["## Where failures start", "",
                  "First failing tensor end to end, and the first layer that fails on its "
                  "own when fed the reference's upstream values (--layer-own).", "",
                  markdown_table(origins.head(MAX_LISTED), index=False)]
    if not df[df["quantity"] != "*"].empty:
        lines += [tolerances_markdown(df)]
    worst = worst_per_case(df, status="pass")
    if not worst.empty:
        worst = worst.sort_values(["norm_err_eps", "case_id", "backend"],
                                  ascending=[False, True, True]).head(15)
        lines += ["## Largest rounding differences among passing tensors",
                  "",
                  "Normwise error ||backend - reference|| / (||reference|| eps), per case.",
                  "",
                  markdown_table(worst, index=False)]
    return "\n".join(lines)


def write_results(df: pd.DataFrame, out_dir: str | Path, *, name: str,
                  kernels: Mapping[str, pd.DataFrame] | None = None,
                  extra: Mapping[str, Writer] | None = None) -> Path:
    """Write table.csv, table.parquet (with pyarrow), pass_rates.csv (head.form x
    activation x backend/dtype), worst_per_case.csv, summary.md and environment.json;
    ``kernels`` (``{name: table}``, the same cases run under other kernel configurations,
    `gradparity.ci.kernels`), as ``kernels/<name>/table.csv.gz`` and ``environment.json``;
    and ``extra`` files (name -> writer, e.g. report.html), all at once."""
    pivot = pass_rate_pivot(df, ["head_form", "activation"]).reset_index()
    files = {
        "table.csv": csv_writer(df),
        "pass_rates.csv": csv_writer(pivot),
        "worst_per_case.csv": csv_writer(worst_per_case(df)),
        "summary.md": text_writer(summary_markdown(df, name=name)),
        "environment.json": json_writer(df.attrs.get("environment", {})),
    }
    if have_parquet():
        files["table.parquet"] = parquet_writer(df)
    for kname, table in (kernels or {}).items():
        files[f"kernels/{kname}/table.csv.gz"] = gzip_csv_writer(table)
        files[f"kernels/{kname}/environment.json"] = json_writer(
            table.attrs.get("environment", {}))
    files.update(extra or {})
    return write_folder_atomically(out_dir, files)
