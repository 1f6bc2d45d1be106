"""The tidy result table (one row per case x layer x quantity x backend) and its summaries.

Column order is fixed by `COLUMNS`; rows are sorted by the case order of the run, then
backprop order, then backend, so the same run gives the same table, byte for byte.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import numpy as np
import pandas as pd

from gradparity.experiments.rows import (  # noqa: F401 - the table's row API, here too
    COLUMNS,
    METRIC_COLUMNS,
    ORACLE_COLUMNS,
    SPEC_COLUMNS,
    VERDICT_COLUMNS,
    spec_columns,
    status_row,
    verdict_rows,
)
from gradparity.judge.status import EXPLAINED, STATUSES

_FLOATS = ("max_abs_err", "max_rel_err", "max_ulp", "cosine", "norm_err_eps", "worst_value",
           "worst_expected", "atol", "rtol", "err_oracle_eps", "worst_oracle_eps",
           "ref_err_oracle_eps", "ref_worst_oracle_eps")
_BOOLS = ("allclose_passed", "passed")
_INTS = ("depth", "batch", "seed", "layer", "n_mismatch", "n_elements")


def make_table(rows: list[Mapping[str, object]], environment: Mapping[str, str]
               ) -> pd.DataFrame:
    """Rows -> DataFrame with the schema's columns and dtypes; environment in ``attrs``."""
    df = pd.DataFrame(list(rows), columns=list(COLUMNS))
    for c in _FLOATS:
        df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
    for c in _INTS:
        df[c] = pd.array(df[c].tolist(), dtype="Int64")
    for c in _BOOLS:
        df[c] = df[c].astype(bool)
    df["calibrated_passed"] = pd.array(df["calibrated_passed"].tolist(), dtype="boolean")
    for c in COLUMNS:
        if c not in _FLOATS and c not in _INTS and c not in _BOOLS + ("calibrated_passed",):
            df[c] = df[c].astype("string")
    df.attrs["environment"] = dict(sorted(environment.items()))
    return df


def pass_rate_pivot(df: pd.DataFrame, by: str | list[str] = "head_form") -> pd.DataFrame:
    """Share of rows that pass or whose difference is explained (kink, saturation,
    rounding), per ``by`` (``head_form``, ``activation``, ``depth``, ...), one column per
    backend and dtype."""
    d = df[df["status"] != "skipped"].copy()
    if d.empty:
        return pd.DataFrame()
    d["head_form"] = d["head"] + "." + d["loss_form"]
    d["ok"] = d["status"].isin({"pass"} | EXPLAINED)
    d["col"] = d["backend"] + " " + d["dtype"]
    pivot = d.pivot_table(index=by, columns="col", values="ok", aggfunc="mean",
                          observed=True)
    return pivot.sort_index()


def status_counts(df: pd.DataFrame, by: Iterable[str] = ("backend",)) -> pd.DataFrame:
    """Rows per ``by`` (default: backend) x status."""
    counts = (df.groupby([*by, "status"], observed=True).size()
              .unstack(fill_value=0))
    return counts.reindex(columns=[s for s in STATUSES if s in counts.columns])


def error_origins(df: pd.DataFrame) -> pd.DataFrame:
    """Per case and backend with a failing row: the first failing end-to-end tensor, and
    the first layer (backprop order) whose layer-own run fails: where the error starts.
    ``dA`` of layer l-1 is computed by layer l."""
    failing = df[df["status"] == "fail"]
    rows = []
    for (case_id, backend), g in failing.groupby(["case_id", "backend"], sort=False,
                                                  observed=True):
        e2e = g[g["mode"] != "layer_own"]
        own = g[g["mode"] == "layer_own"]
        introduced = None
        if not own.empty:
            r = own.iloc[0]
            layer, depth = int(r["layer"]), int(r["depth"])
            introduced = layer + 1 if r["quantity"] == "dA" and layer < depth else layer
        rows.append({
            "case_id": case_id, "backend": backend,
            "first_failing": ("" if e2e.empty else
                              f"{e2e.iloc[0]['quantity']}{e2e.iloc[0]['layer']}"),
            "introduced_by_layer": introduced,
        })
    return pd.DataFrame(rows, columns=["case_id", "backend", "first_failing",
                                       "introduced_by_layer"])


def worst_per_case(df: pd.DataFrame, *, status: str | None = None) -> pd.DataFrame:
    """Per case and backend, the tensor with the largest normwise error (in eps units),
    among rows of ``status`` if given."""
    d = df[df["quantity"] != "*"].dropna(subset=["norm_err_eps"])
    if status is not None:
        d = d[d["status"] == status]
    if d.empty:
        return pd.DataFrame()
    key = d["norm_err_eps"].replace(np.inf, np.finfo(float).max)
    idx = key.groupby([d["case_id"], d["backend"]], observed=True).idxmax()
    cols = ["case_id", "backend", "layer", "quantity", "norm_err_eps", "max_ulp",
            "max_abs_err", "status"]
    return d.loc[idx.values, cols].reset_index(drop=True)


def markdown_table(df: pd.DataFrame, *, index: bool = True, floatfmt: str = ".3g") -> str:
    """A GitHub-flavoured markdown table (no extra dependency)."""
    if df.empty:
        return "_(empty)_\n"
    frame = df.reset_index() if index else df
    def fmt(v: object) -> str:
        if isinstance(v, (float, np.floating)):
            return "" if np.isnan(v) else format(float(v), floatfmt)
        return "" if v is None or v is pd.NA else str(v)
    head = "| " + " | ".join(map(str, frame.columns)) + " |"
    sep = "|" + "|".join("---" for _ in frame.columns) + "|"
    body = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([head, sep, *body]) + "\n"
