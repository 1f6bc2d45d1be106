"""The tolerance report: what a run says about the tolerances to use in one's own tests.

Per group of rows (dtype x head x loss form x quantity x backend, optionally x depth): the
distribution of the backends' errors in eps, against the higher-precision oracle
(``err_oracle_eps``) and against the same-dtype reference (``norm_err_eps``), as median,
p99 and max; and the smallest ``rtol`` with ``atol = 0`` (``max_rel_err``) and the
smallest ``atol`` with ``rtol = 0`` (``max_abs_err``) under which every row of the group
passes the allclose rule ``|a - e| <= atol + rtol |e|``.

Per dtype, `suggest_tolerances` gives one (rtol, atol) pair under which every covered row
passes: a row passes when ``rtol >= its max_rel_err`` or ``atol >= its max_abs_err``
(either alone is enough for every element), so the pair is the point of that trade-off
closest to the dtype's default table (`DEFAULT_TOLERANCES`) scaled by one factor, rounded
up to two significant digits.

Covered rows are the compared tensors (not whole-case ``error``/``skipped`` rows) that
are not explained by a convention (``kink``) or a saturated loss (``saturation``) and
whose errors are finite: tolerances are for rounding, and a kink or an inf is no
rounding. Rows with reason code ``mismatch``, ``convention`` or ``nonfinite`` are real
disagreements: they are left out too, and counted in `Tolerances.left_out`.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from gradparity.judge.tolerances import DEFAULT_TOLERANCES, Tolerance

#: Group keys of the tolerance table, in display order.
GROUP_KEYS: tuple[str, ...] = ("dtype", "head", "loss_form", "quantity", "backend")
#: Statuses whose difference no tolerance should cover.
NOT_ROUNDING_STATUSES = frozenset({"kink", "saturation"})
#: Reason codes of real disagreements (see the README, "Reason codes").
DISAGREEMENT_CODES = frozenset({"mismatch", "convention", "nonfinite"})
TOLERANCE_COLUMNS: tuple[str, ...] = (
    "rows", "oracle_median", "oracle_p99", "oracle_max", "reference_median",
    "reference_p99", "reference_max", "rtol_alone", "atol_alone",
)


def check_quantile(q: float, *, name: str = "--quantile") -> float:
    """A quantile in (0, 1]; `UsageError` (one line) otherwise."""
    from gradparity.core.errors import UsageError

    if not (isinstance(q, (int, float)) and math.isfinite(q) and 0 < q <= 1):
        raise UsageError(f"{name}={q!r}: expected a number in (0, 1]")
    return float(q)


def covered_rows(df: pd.DataFrame) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(rows tolerances are derived from, compared rows that are left out as real
    disagreements)."""
    d = df[(df["quantity"] != "*") & df["max_abs_err"].notna()]
    d = d[~d["status"].isin(NOT_ROUNDING_STATUSES)]
    code = d["reason_code"].fillna("").astype(str)
    finite = np.isfinite(d["max_abs_err"].to_numpy(float))
    bad = code.isin(DISAGREEMENT_CODES).to_numpy() | ~finite
    return d[~bad], d[bad]


def tolerance_table(df: pd.DataFrame, *, quantile: float = 1.0, by_depth: bool = False,
                    keys: Sequence[str] = GROUP_KEYS) -> pd.DataFrame:
    """One row per group of `covered_rows` (``keys``, and ``depth`` if ``by_depth``):
    `TOLERANCE_COLUMNS`. ``rtol_alone`` / ``atol_alone`` are the ``quantile`` of the
    rows' ``max_rel_err`` / ``max_abs_err`` (1: every row of the group passes)."""
    check_quantile(quantile, name="quantile")
    rows, _ = covered_rows(df)
    keys = list(keys) + (["depth"] if by_depth else [])
    if rows.empty:
        return pd.DataFrame(columns=[*keys, *TOLERANCE_COLUMNS])
    g = rows.groupby(keys, observed=True, sort=True)

    def q(col: str, at: float) -> pd.Series:
        return g[col].quantile(at, interpolation="higher")

    out = pd.DataFrame({
        "rows": g.size(),
        "oracle_median": q("err_oracle_eps", 0.5), "oracle_p99": q("err_oracle_eps", 0.99),
        "oracle_max": g["err_oracle_eps"].max(),
        "reference_median": q("norm_err_eps", 0.5), "reference_p99": q("norm_err_eps", 0.99),
        "reference_max": g["norm_err_eps"].max(),
        "rtol_alone": q("max_rel_err", quantile), "atol_alone": q("max_abs_err", quantile),
    }).reset_index()
    out = out[[*keys, *TOLERANCE_COLUMNS]]
    return out.astype({c: "float64" for c in TOLERANCE_COLUMNS if c != "rows"})


def round_up(x: float, digits: int = 2) -> float:
    """``x`` rounded up to ``digits`` significant digits, strictly above ``x`` when ``x``
    has more digits (a tolerance equal to a measured error could lose to rounding of the
    allclose test itself, so a value already at two digits is bumped one step)."""
    if x <= 0 or not math.isfinite(x):
        return 0.0 if x <= 0 else x
    exp = math.floor(math.log10(x)) - digits + 1
    step = 10.0 ** exp
    up = math.ceil(x / step * (1 + 1e-12)) * step
    if up <= x:
        up += step
    return float(f"{up:.{digits}g}")


@dataclass(frozen=True)
class Tolerances:
    """Per dtype, the (rtol, atol) pair under which every covered row passes, the share
    of covered rows it was derived from (``quantile``), and the rows left out as real
    disagreements (per dtype)."""

    pairs: dict[str, Tolerance]
    quantile: float = 1.0
    rows: dict[str, int] = field(default_factory=dict)
    left_out: dict[str, int] = field(default_factory=dict)

    def toml(self) -> str:
        """The ``[tolerances.<dtype>]`` tables of a suite file."""
        lines = []
        for dtype, t in self.pairs.items():
            lines += [f"[tolerances.{dtype}]", f"rtol = {t.rtol!r}", f"atol = {t.atol!r}",
                      ""]
        return "\n".join(lines)

    def assert_arguments(self) -> str:
        """The ``assert_grads_match(..., rtol=, atol=)`` arguments, one line per dtype."""
        return "\n".join(f"{dtype}: assert_grads_match(..., rtol={t.rtol!r}, "
                         f"atol={t.atol!r})" for dtype, t in self.pairs.items())


def _pair(rel: np.ndarray, ab: np.ndarray, default: Tolerance) -> Tolerance:
    """The smallest scale s (and its pair) such that every row has ``rel <= rtol`` or
    ``abs <= atol``, on the trade-off between the two, scaled by the default table:
    rtol covers the rows of smallest relative error, atol the rest."""
    order = np.argsort(rel, kind="stable")
    rel, ab = rel[order], ab[order]
    # rows [0, i) covered by rtol = rel[i-1], rows [i, n) by atol = max(ab[i:])
    tail_abs = np.concatenate([np.maximum.accumulate(ab[::-1])[::-1], [0.0]])
    head_rel = np.concatenate([[0.0], rel])
    r0, a0 = default.rtol or 1.0, default.atol or 1.0
    with np.errstate(invalid="ignore"):
        cost = np.maximum(head_rel / r0, tail_abs / a0)
    cost = np.where(np.isfinite(head_rel), cost, np.inf)
    i = int(np.argmin(cost))
    return Tolerance(rtol=round_up(float(head_rel[i])), atol=round_up(float(tail_abs[i])))


def suggest_tolerances(df: pd.DataFrame, *, quantile: float = 1.0) -> Tolerances:
    """Per dtype of ``df``, the rtol/atol pair that passes every covered row (or the
    ``quantile`` of them: the rows with the largest need, 1 - quantile of them, are left
    out of the derivation)."""
    check_quantile(quantile, name="quantile")
    rows, bad = covered_rows(df)
    pairs, counts, left = {}, {}, {}
    for dtype in sorted(set(rows["dtype"].astype(str)) | set(bad["dtype"].astype(str))):
        g = rows[rows["dtype"] == dtype]
        left[dtype] = int((bad["dtype"] == dtype).sum())
        counts[dtype] = len(g)
        if g.empty:
            continue
        default = DEFAULT_TOLERANCES.get(dtype, Tolerance(rtol=0.0, atol=0.0))
        rel = g["max_rel_err"].to_numpy(float)
        ab = g["max_abs_err"].to_numpy(float)
        if quantile < 1:
            need = np.minimum(rel / (default.rtol or 1.0), ab / (default.atol or 1.0))
            keep = need <= np.quantile(need, quantile, method="higher")
            rel, ab = rel[keep], ab[keep]
        pairs[dtype] = _pair(rel, ab, default)
    return Tolerances(pairs, quantile, counts, left)


def tolerances_markdown(df: pd.DataFrame, *, quantile: float = 1.0,
                        keys: Sequence[str] = ("dtype", "quantity", "backend")) -> str:
    """The summary's tolerance section: errors and tolerances per ``keys``, the pair per
    dtype as TOML and as `assert_grads_match` arguments."""
    from gradparity.experiments.tables import markdown_table

    table = tolerance_table(df, quantile=quantile, keys=keys)
    tol = suggest_tolerances(df, quantile=quantile)
    lines = ["## Tolerances", "",
             "Errors in eps against the higher-precision oracle and against the reference "
             "(median / p99 / max), and the smallest rtol (with atol = 0) and atol (with "
             "rtol = 0) under which every row of the group passes allclose. Kink and "
             "saturation rows are left out (no tolerance should cover them); "
             "`gradparity tolerances` gives the table per head and loss form.", "",
             markdown_table(table, index=False)]
    if tol.pairs:
        lines += ["Tolerances under which every such row of this run passes:", "",
                  "```toml", tol.toml().rstrip(), "```", "",
                  "```", tol.assert_arguments(), "```", ""]
    left = {d: n for d, n in tol.left_out.items() if n}
    if left:
        lines += ["Left out as real disagreements (reason code mismatch, convention or "
                  "nonfinite): " + ", ".join(f"{n} {d} rows" for d, n in left.items()), ""]
    return "\n".join(lines)
