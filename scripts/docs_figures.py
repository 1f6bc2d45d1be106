"""Write the README's figures (docs/figures/*.png) from the committed default-suite results.

    python scripts/docs_figures.py

The same figures as `gradparity report results/default` embeds: JAX's heatmap, error
growth, and backend vs reference error with the calibrated rule.
"""

from __future__ import annotations

from pathlib import Path

from gradparity.experiments import figures
from gradparity.experiments.io import read_result

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    df = read_result(ROOT / "results" / "default")
    out = ROOT / "docs" / "figures"
    out.mkdir(parents=True, exist_ok=True)
    for name, fig in (("heatmap_jax.png", figures.heatmap(df, "jax")),
                      ("growth.png", figures.growth(df)),
                      ("calibration.png", figures.calibration(df))):
        (out / name).write_bytes(figures.png(fig))
        print(out / name)


if __name__ == "__main__":
    main()
