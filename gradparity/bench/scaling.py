"""How a verdict's cost grows, and what it holds in memory, next to the bare frameworks.

* `growth`: the warm verdict and the bare forward + backward (NumPy reference + torch +
  jax-jit) on networks of increasing ``params x batch``; the log-log slope (exponent) and
  the constant of ``t = c x params x batch``, in seconds per 10^9.
* `peak_memory`: the peak resident memory of a fresh process that runs the bare
  frameworks, and of one that runs the verdict, on the same case (``python -m
  gradparity.bench.scaling NET DTYPE bare|verdict``, one JSON line): the peak of the
  resident size while it runs (Linux's ``VmHWM``, restarted after the imports and the
  case), and that peak above the resident size it started from.
"""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Sequence

#: (sizes, batch) of the growth fit, smallest to largest ``params x batch``.
GROWTH_NETWORKS: list[tuple[tuple[int, ...], int]] = [
    ((784, 64, 64, 10), 64), ((784, 128, 128, 10), 128), ((784, 256, 256, 10), 128),
    ((784, 512, 512, 10), 256), ((784, 1024, 1024, 10), 512),
]


def n_params(sizes: Sequence[int]) -> int:
    return sum((a + 1) * b for a, b in zip(sizes[:-1], sizes[1:], strict=False))


def fit(xs: Sequence[float], ts: Sequence[float]) -> tuple[float, float]:
    """(exponent, c): the least-squares slope of log t on log x, and the least-squares
    ``c`` of ``t = c x`` (seconds per unit of x)."""
    lx = [math.log(x) for x in xs]
    lt = [math.log(t) for t in ts]
    mx, mt = sum(lx) / len(lx), sum(lt) / len(lt)
    slope = (sum((a - mx) * (b - mt) for a, b in zip(lx, lt, strict=True))
             / sum((a - mx) ** 2 for a in lx))
    c = sum(x * t for x, t in zip(xs, ts, strict=True)) / sum(x * x for x in xs)
    return slope, c


def growth(dtype: str, repeats: int) -> dict[str, object]:
    """Medians per network of the warm verdict and of the bare sum, and their fits."""
    from gradparity.bench.measure import measure_network

    xs, verdict, bare = [], [], []
    for sizes, batch in GROWTH_NETWORKS:
        r = measure_network(sizes, batch, dtype, repeats, columns=("numpy", "torch", "jax",
                                                                   "verdict"))
        xs.append(float(n_params(sizes) * batch))
        verdict.append(r["verdict"])
        bare.append(r["bare"])
    return {"x": xs, "verdict": verdict, "bare": bare, "verdict_fit": fit(xs, verdict),
            "bare_fit": fit(xs, bare)}


def _status_kb(field: str) -> int:
    """``VmRSS`` (resident now) or ``VmHWM`` (its peak) of this process, in kB."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


def _reset_peak() -> bool:
    """Restart the peak (``VmHWM``) from the resident size now (Linux: ``clear_refs``)."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _probe(net: str, dtype: str, what: str) -> dict[str, float]:
    """In this (fresh) process: import, make the case, run ``what`` twice; peak RSS."""
    from gradparity.core.memory import keep_freed_memory

    keep_freed_memory()  # as the command line does
    import jax  # noqa: F401 - imported before the baseline, as in the verdict
    import torch

    torch.set_num_threads(1)
    from gradparity.adapters.registry import get_backend
    from gradparity.bench.measure import bare_jax, bare_torch
    from gradparity.core.spec import Spec
    from gradparity.experiments.runner import evaluate_case
    from gradparity.judge.tolerances import resolve_tolerances
    from gradparity.reference.case import make_case
    from gradparity.reference.mlp import reference_gradients

    sizes = tuple(int(s) for s in net.split(",")[:-1])
    batch = int(net.split(",")[-1])
    case = make_case(Spec(sizes, activation="relu", head="softmax_ce", loss_form="logits",
                          dtype=dtype, batch=batch, seed=0))
    backends = [get_backend("torch"), get_backend("jax")]
    tol = resolve_tolerances()
    import gc

    gc.collect()
    before_peak = _status_kb("VmHWM")
    before = _status_kb("VmRSS")
    if not _reset_peak():
        raise RuntimeError("peak memory: /proc/self/clear_refs is not writable here")
    if what == "bare":
        steps = [lambda: reference_gradients(case), bare_torch(case), bare_jax(case)]
    else:
        steps = [lambda: evaluate_case(case, backends, tolerances=tol)]
    for _ in range(2):
        for s in steps:
            s()
    peak = _status_kb("VmHWM")
    return {"baseline_mb": before / 1024, "baseline_peak_mb": before_peak / 1024,
            "peak_mb": peak / 1024, "extra_mb": (peak - before) / 1024}


def peak_memory(sizes: Sequence[int], batch: int, dtype: str) -> dict[str, dict[str, float]]:
    """`_probe` of the bare frameworks and of the verdict, each in a fresh process."""
    net = ",".join(map(str, (*sizes, batch)))
    out = {}
    for what in ("bare", "verdict"):
        r = subprocess.run([sys.executable, "-m", "gradparity.bench.scaling", net, dtype, what],
                           capture_output=True, text=True, check=True)
        out[what] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


if __name__ == "__main__":
    print(json.dumps(_probe(*sys.argv[1:4])))
