"""How long ``gradparity debug`` takes in a learner's edit-run loop.

* from the command line, each call a new process: the first with an empty JAX compilation
  cache, then calls with it filled (what every later run of the loop sees), and with
  ``--backends none`` (the reference only);
* from a notebook: ``gradparity.debug(FILE)`` in one process, its first call and the
  median of the next ones.

The program debugged is the seed's backprop (``examples/seed_backprop.py``, relu hidden
layers, sigmoid + BCE, 4-5-5-1, m = 8), the small network a learner debugs.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from gradparity.bench.measure import median

#: The learner program timed (in the repository checkout).
SEED = Path(__file__).resolve().parents[2] / "examples" / "seed_backprop.py"

_NOTEBOOK = """
import sys, time
import gradparity
times = []
for _ in range(int(sys.argv[2])):
    t = time.perf_counter()
    gradparity.debug(sys.argv[1]).report()
    times.append(time.perf_counter() - t)
print(" ".join(map(str, times)))
"""


def _cli(args: list[str], env: dict[str, str]) -> float:
    t0 = time.perf_counter()
    r = subprocess.run([sys.executable, "-m", "gradparity", "debug", *args], env=env,
                       capture_output=True, text=True)
    took = time.perf_counter() - t0
    if r.returncode != 0:
        raise RuntimeError(f"gradparity debug {' '.join(args)}: exit {r.returncode}: "
                           f"{r.stderr.strip()[-300:]}")
    return took


def debug_times(repeats: int = 5) -> dict[str, float] | None:
    """Seconds (medians over ``repeats``): ``cli_first`` (empty compilation cache),
    ``cli`` (filled), ``cli_none`` (``--backends none``), ``notebook_first`` and
    ``notebook`` (later calls in one process). None without the repository's examples."""
    if not SEED.is_file():
        return None
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, GRADPARITY_CACHE=str(Path(tmp) / "cache"))
        out = {"cli_first": _cli([str(SEED)], env)}
        cli, none = [], []
        for _ in range(repeats):
            cli.append(_cli([str(SEED)], env))
            none.append(_cli([str(SEED), "--backends", "none"], env))
        out["cli"], out["cli_none"] = median(cli), median(none)
        r = subprocess.run([sys.executable, "-c", _NOTEBOOK, str(SEED), str(repeats + 1)],
                           env=env, capture_output=True, text=True, check=True)
        nb = [float(x) for x in r.stdout.split()]
        out["notebook_first"], out["notebook"] = nb[0], median(nb[1:])
    return out
