"""Measure what the calibrated rule's defaults must cover, from a result table.

    gradparity run default --policy calibrated --out /tmp/cal
    python scripts/measure_calibration.py /tmp/cal/table.csv

For the end-to-end rows that pass under the calibrated policy and are not explained by a
kink, saturation or output-form rounding, prints the floor (in eps) that each multiplier k
needs so that ``backend_err <= k * reference_err + floor`` holds for every row, per dtype,
normwise and worst-element, and the distribution of the backends' errors.
"""

from __future__ import annotations

import sys

import pandas as pd


def main(path: str) -> None:
    df = pd.read_csv(path)
    d = df[(df["mode"] == "end_to_end") & (df["status"] == "pass")
           & df["err_oracle_eps"].notna()]
    print(f"{len(d)} passing rows with an oracle ({path})")
    for dtype, g in d.groupby("dtype"):
        for err, ref in (("err_oracle_eps", "ref_err_oracle_eps"),
                         ("worst_oracle_eps", "ref_worst_oracle_eps")):
            q = g[err].quantile([0.5, 0.99, 1.0]).round(2).tolist()
            floors = "  ".join(f"k={k}: {(g[err] - k * g[ref]).max():.1f}" for k in (1, 2, 4))
            print(f"{dtype} {err:<17} median/p99/max {q}; floor needed  {floors}")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "results/default/table.csv")
