"""Figures of a result table (matplotlib, Agg canvas; PNG bytes), for the HTML report and
the notebook views.

* `heatmap`: per backend, error against the oracle (eps, log colour scale) for every
  gradient of every case: rows the tensors in backprop order counted from the output,
  columns the cases grouped by dtype and head; kink, saturation, rounding and failing
  cells marked.
* `growth`: error against the oracle as backprop goes from the output to the input, as
  the network gets deeper, and as the layer gets wider (median and p90 per backend and
  dtype).
* `calibration`: the backend's error against the reference's own error (both against
  the oracle), log-log, with the calibrated rule's line ``k x ref + floor``
  (`gradparity.judge.policy.DEFAULT_RULE`): how far each tensor is from the verdict
  boundary.

Figures are drawn on matplotlib's `Figure` with the Agg canvas, never through pyplot, so a
notebook's own backend is left alone. Colours: the Okabe-Ito palette for backends and
cividis for the heatmap, both readable with colour-blindness. Every figure works for any
set of backend names found in the table. matplotlib is imported on first use.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from gradparity.judge.policy import DEFAULT_RULE, CalibratedRule

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Errors below this many eps (exact zeros included) are drawn at it on log axes.
FLOOR_EPS = 1e-2
#: Okabe & Ito's colour-blind-safe palette (black last), one colour per backend.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442",
           "#000000")
#: Marks of the non-pass statuses on the heatmap: (marker, colour).
STATUS_MARKS: dict[str, tuple[str, str]] = {
    "rounding": ("o", "#FFFFFF"), "kink": ("x", "#000000"),
    "saturation": ("^", "#FFFFFF"), "fail": ("s", "#D55E00"), "error": ("s", "#D55E00"),
}
GRADIENTS = ("loss", "dA", "dZ", "dW", "db")
#: Statuses of rounding-size differences: what the growth and calibration plots show
#: (a kink or a saturated loss is a convention, orders of magnitude off; the heatmap
#: marks those).
ROUNDING = ("pass", "rounding", "fail")
_Q_ORDER = {"dZ": 0, "dW": 1, "db": 2, "dA": 3}


def require_matplotlib() -> None:
    """`UsageError` naming the ``report`` extra when matplotlib is missing."""
    from gradparity.core.errors import UsageError

    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("figures need matplotlib: pip install 'gradparity[report]'"
                         ) from None


def backend_colours(backends) -> dict[str, str]:
    """A palette colour per backend name, in sorted order (stable across figures)."""
    return {b: PALETTE[i % len(PALETTE)] for i, b in enumerate(sorted(set(map(str, backends))))}


def png(fig: Figure, *, dpi: int = 100) -> bytes:
    """The figure as PNG bytes (Agg canvas, no timestamp or software metadata: the same
    figure gives the same bytes on one machine)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, metadata={"Software": None})
    return buf.getvalue()


def _new(width: float, height: float, **kw) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), layout="constrained", **kw)


def gradient_rows(df: pd.DataFrame) -> pd.DataFrame:
    """End-to-end rows of the loss and the gradients, with ``steps`` (how many layers
    backprop has gone through from the output: 0 for the loss and the output layer's
    dZ, dW, db), a ``tensor`` label counted from the output (``dZ[L-1]``) and the error
    against the oracle clipped to `FLOOR_EPS` for log axes (``err``, ``ref_err``)."""
    d = df[(df["mode"] == "end_to_end") & df["quantity"].isin(GRADIENTS)].copy()
    if d.empty:
        return d.assign(steps=pd.Series(dtype=int), tensor=pd.Series(dtype=str),
                        err=pd.Series(dtype=float), ref_err=pd.Series(dtype=float))
    layer = d["layer"].astype(int).to_numpy()
    depth = d["depth"].astype(int).to_numpy()
    q = d["quantity"].astype(str).to_numpy()
    from_out = depth - layer
    # dA of layer l-1 is computed with layer l: one step before layer l-1's dZ
    d["steps"] = np.where(q == "dA", np.maximum(from_out - 1, 0), from_out)
    d["steps"] = np.where(q == "loss", -1, d["steps"])
    rank = np.array([_Q_ORDER.get(x, -1) for x in q])
    d["_order"] = np.where(q == "loss", -2, np.where((q == "dA") & (layer == depth), -1,
                                                       from_out * 4 + rank))
    d["tensor"] = [("loss" if qq == "loss" else
                    f"{qq}[L]" if k == 0 else f"{qq}[L-{k}]")
                   for qq, k in zip(q, from_out, strict=True)]
    for src, dst in (("err_oracle_eps", "err"), ("ref_err_oracle_eps", "ref_err")):
        v = d[src].to_numpy(float)
        d[dst] = np.where(np.isnan(v), np.nan, np.maximum(v, FLOOR_EPS))
    return d


def case_order(df: pd.DataFrame) -> pd.DataFrame:
    """One row per case: dtype, head, loss form, in the order the heatmap's columns take
    (grouped by dtype and head, run order within)."""
    cases = df.drop_duplicates("case_id")[["case_id", "dtype", "head", "loss_form"]].copy()
    cases["_run"] = np.arange(len(cases))
    return cases.sort_values(["dtype", "head", "loss_form", "_run"],
                             kind="stable").reset_index(drop=True)


def heatmap(df: pd.DataFrame, backend: str) -> Figure:
    """Error against the oracle of every gradient of ``backend``, cases as columns."""
    from matplotlib.colors import LogNorm
    from matplotlib.lines import Line2D

    d = gradient_rows(df)
    d = d[d["backend"] == backend]
    cases = case_order(df)
    col = {c: i for i, c in enumerate(cases["case_id"])}
    tensors = (d.drop_duplicates("tensor").sort_values("_order", kind="stable")["tensor"]
               .tolist())
    row = {t: i for i, t in enumerate(tensors)}
    grid = np.full((len(tensors), len(cases)), np.nan)
    r = d["tensor"].map(row).to_numpy(int)
    c = d["case_id"].map(col).to_numpy(int)
    grid[r, c] = d["err"].to_numpy(float)
    rounding = d.loc[d["status"].isin(ROUNDING), "err"].to_numpy(float)
    rounding = rounding[np.isfinite(rounding)]
    vmax = max(float(rounding.max()) * 2 if rounding.size else 1.0, 100.0)
    fig = _new(12, 1.6 + 0.22 * max(len(tensors), 4))
    ax = fig.add_subplot()
    import matplotlib

    cmap = matplotlib.colormaps["cividis"].with_extremes(bad="#DDDDDD", over="#D55E00")
    shown = np.where(np.isinf(grid), vmax * 10, grid)
    im = ax.imshow(np.ma.masked_invalid(shown), aspect="auto", interpolation="nearest",
                   cmap=cmap, norm=LogNorm(vmin=FLOOR_EPS, vmax=vmax))
    bar = fig.colorbar(im, ax=ax, extend="max", pad=0.01)
    bar.ax.minorticks_off()  # fewer tick objects: much faster to lay out
    bar.set_label(f"error against the oracle (eps, log); above {vmax:.3g}: orange")
    ax.set_yticks(range(len(tensors)), tensors, fontsize=7)
    ax.set_ylabel("tensor, backprop order from the output")
    # group separators and labels: dtype / head
    groups = cases.groupby(["dtype", "head"], sort=False).indices
    ticks, labels = [], []
    for (dtype, head), idx in groups.items():
        lo, hi = int(min(idx)), int(max(idx))
        ticks.append((lo + hi) / 2)
        labels.append(f"{head} {dtype.replace('float', 'f')}")
        ax.axvline(lo - 0.5, color="#FFFFFF", lw=0.6)
    ax.set_xticks(ticks, labels, rotation=60, ha="right", fontsize=7)
    ax.set_xlabel(f"cases ({len(cases)}), grouped by head and dtype")
    handles = []
    for status, (marker, colour) in STATUS_MARKS.items():
        s = d[d["status"] == status]
        if s.empty:
            continue
        ax.scatter(s["case_id"].map(col), s["tensor"].map(row), marker=marker, s=9,
                   c=colour, linewidths=0.7,
                   edgecolors="#000000" if marker not in ("x",) else None)
        handles.append(Line2D([], [], ls="", marker=marker, color=colour,
                              markeredgecolor="#000000", label=f"{status} ({len(s)})"))
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(0, -0.32), ncol=5,
                  fontsize=7, frameon=False)
    ax.set_title(f"{backend}: error of each gradient against the oracle "
                 f"(grey: no such tensor or no oracle)", fontsize=10)
    return fig


def _line_groups(d: pd.DataFrame):
    colours = backend_colours(d["backend"])
    for (backend, dtype), g in d.groupby(["backend", "dtype"], observed=True, sort=True):
        style = "-" if dtype == "float32" else "--"
        yield str(backend), str(dtype), g, dict(color=colours[str(backend)], ls=style)


def growth(df: pd.DataFrame) -> Figure:
    """Median (and p90, thin) error against the oracle: by backprop steps from the
    output, by network depth (the first layer's dW), by the layer's fan-in (dW)."""
    d = gradient_rows(df)
    d = d[np.isfinite(d["err"]) & (d["quantity"] != "loss") & d["status"].isin(ROUNDING)]
    fig = _new(12, 3.8)
    axes = fig.subplots(1, 3, sharey=True)
    dw = d[d["quantity"] == "dW"].copy()
    dw["fan_in"] = [int(s.split("x")[int(lay) - 1])
                    for s, lay in zip(dw["sizes"], dw["layer"], strict=True)]
    panels = (
        (axes[0], d, "steps", "backprop steps from the output (0: output layer's dZ, dW, db)"),
        (axes[1], dw[dw["layer"].astype(int) == 1], "depth",
         "network depth (layers), for the first layer's dW"),
        (axes[2], dw, "fan_in", "fan-in of the layer (inputs per unit), for dW"),
    )
    for ax, data, x, label in panels:
        for backend, dtype, g, style in _line_groups(data):
            stats = g.groupby(x)["err"].agg(
                median="median", p90=lambda v: float(np.quantile(v, 0.9)))
            ax.plot(stats.index, stats["median"], marker="o", ms=3,
                    label=f"{backend} {dtype} median", **style)
            ax.plot(stats.index, stats["p90"], lw=0.8, alpha=0.6, **style)
        ax.set_yscale("log")
        ax.minorticks_off()
        ax.set_xlabel(label, fontsize=8)
        ax.grid(True, which="major", alpha=0.3)
    if axes[2].has_data():
        axes[2].set_xscale("log", base=2)
    from matplotlib.ticker import MaxNLocator

    for ax in axes[:2]:
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    axes[0].set_ylabel("error against the oracle (eps, log)")
    handles, labels = axes[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="outside lower center", ncol=4, fontsize=7,
                   frameon=False)
    fig.suptitle("Error growth (rows that pass, round or fail; kinks and saturated losses "
                 "left out): median (thick) and p90 (thin), solid float32, dashed float64",
                 fontsize=10)
    return fig


def calibration(df: pd.DataFrame, *, rule: CalibratedRule = DEFAULT_RULE,
                small: bool = False) -> Figure:
    """Backend error against the reference's own error (both against the oracle, eps),
    per dtype, with the calibrated rule's boundary and the diagonal."""
    d = gradient_rows(df)
    d = d[np.isfinite(d["err"]) & np.isfinite(d["ref_err"]) & d["status"].isin(ROUNDING)]
    dtypes = sorted(d["dtype"].astype(str).unique()) or ["(none)"]
    fig = _new(4.2 * len(dtypes) if not small else 3.2 * len(dtypes), 4.2 if not small else 3.0)
    axes = np.atleast_1d(fig.subplots(1, len(dtypes), sharey=True))
    colours = backend_colours(d["backend"])
    hi = max(float(d[["err", "ref_err"]].to_numpy().max()) if len(d) else 10.0, 100.0) * 2
    x = np.geomspace(FLOOR_EPS, hi, 200)
    for ax, dtype in zip(axes, dtypes, strict=True):
        g = d[d["dtype"] == dtype]
        for backend, bg in g.groupby("backend", observed=True, sort=True):
            ok = bg["status"] == "pass"
            ax.scatter(bg.loc[ok, "ref_err"], bg.loc[ok, "err"], s=4 if not small else 2,
                       alpha=0.5, color=colours[str(backend)], lw=0,
                       label=f"{backend} ({len(bg)})")
            if (~ok).any():
                ax.scatter(bg.loc[~ok, "ref_err"], bg.loc[~ok, "err"], s=18, marker="D",
                           facecolors="none", edgecolors=colours[str(backend)], lw=0.8,
                           label=f"{backend} not pass ({int((~ok).sum())})")
        ax.plot(x, rule.multiplier * x + rule.floor_eps, color="#000000", lw=1,
                label=f"calibrated rule: {rule.describe()}")
        ax.plot(x, x, color="#777777", lw=0.8, ls=":", label="backend = reference")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.minorticks_off()
        ax.set_xlim(FLOOR_EPS / 1.5, hi)
        ax.set_ylim(FLOOR_EPS / 1.5, hi)
        ax.set_title(dtype, fontsize=9)
        ax.set_xlabel("reference's error against the oracle (eps)", fontsize=8)
        ax.grid(True, alpha=0.3)
    axes[0].set_ylabel("backend's error against the oracle (eps)", fontsize=8)
    axes[0].legend(fontsize=6 if small else 7, loc="upper left", markerscale=2)
    if not small:
        fig.suptitle("Backend vs reference error: tensors above the black line fail the "
                     f"calibrated rule\n(errors below {FLOOR_EPS:g} eps drawn at it; kinks "
                     "and saturated losses left out)",
                     fontsize=10)
    return fig


def tensor_errors(df: pd.DataFrame) -> Figure:
    """Normwise error against what each row is compared with (eps, log), one bar per
    tensor in table order: where a session's gradients go wrong (a debug session, whose
    rows have no oracle errors)."""
    from matplotlib.patches import Patch

    d = df[df["quantity"] != "*"]
    labels = [f"{b} {q}{'' if pd.isna(lay) or q == 'loss' else int(lay)}"
              if d["backend"].nunique() > 1 else
              f"{q}{'' if pd.isna(lay) or q == 'loss' else int(lay)}"
              for b, q, lay in zip(d["backend"], d["quantity"], d["layer"], strict=True)]
    err = np.maximum(np.nan_to_num(d["norm_err_eps"].to_numpy(float), nan=FLOOR_EPS,
                                   posinf=1e300), FLOOR_EPS)
    status = d["status"].astype(str).to_numpy()
    colours = {"pass": PALETTE[0], "fail": PALETTE[5]}
    fig = _new(5.5, 0.8 + 0.16 * len(d))
    ax = fig.add_subplot()
    y = np.arange(len(d))
    ax.barh(y, err, color=[colours.get(s, PALETTE[1]) for s in status], left=0)
    ax.set_xscale("log")
    ax.minorticks_off()
    ax.set_yticks(y, labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("normwise error against the reference (eps, log)", fontsize=8)
    seen = list(dict.fromkeys(status))
    ax.legend(handles=[Patch(color=colours.get(s, PALETTE[1]), label=s) for s in seen],
              fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), frameon=False)
    return fig
