"""The benchmark: bare forward + backward (NumPy reference, torch, jax-jit) against
gradparity's warm per-layer verdict, with the oracle and the judge timed on their own,
import and compile times, and the default suite cold and warm.

Repeats are interleaved (one of each measurement per round) and the median is reported,
so that a machine shared with other work slows every column alike.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

#: One thread everywhere: BLAS, OpenMP, torch and XLA's CPU client.
PINNED = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}
_MARK = "GRADPARITY_BENCH_PINNED"

#: (sizes, batch) of the networks measured (relu hidden layers, softmax + cross-entropy).
NETWORKS = [((784, 256, 256, 10), 128), ((784, 1024, 1024, 10), 512)]


def _pin_and_reexec(argv: list[str], module: str = "gradparity.bench") -> None:
    if os.environ.get(_MARK) == "1":
        return
    env = dict(os.environ, **PINNED, **{_MARK: "1"})
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], env)


def _median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _bare_torch(case):
    import torch

    dt = torch.float32 if case.spec.dtype == "float32" else torch.float64
    Ws = [torch.tensor(case.parameters[f"W{i}"], dtype=dt, requires_grad=True)
          for i in range(1, case.spec.depth + 1)]
    bs = [torch.tensor(case.parameters[f"b{i}"][:, 0], dtype=dt, requires_grad=True)
          for i in range(1, case.spec.depth + 1)]
    x = torch.tensor(case.X.T.copy(), dtype=dt)
    y = torch.tensor(case.labels.astype("int64"))

    def step():
        a = x
        for i, (W, b) in enumerate(zip(Ws, bs, strict=True)):
            z = torch.nn.functional.linear(a, W, b)
            a = torch.relu(z) if i < len(Ws) - 1 else z
        loss = torch.nn.functional.cross_entropy(a, y)
        grads = torch.autograd.grad(loss, [*Ws, *bs])
        return [g.numpy() for g in grads]

    return step


def _bare_jax(case):
    import jax
    import jax.numpy as jnp

    dt = case.spec.dtype
    with jax.enable_x64(dt == "float64"):
        params = [(jnp.asarray(case.parameters[f"W{i}"], dtype=dt),
                   jnp.asarray(case.parameters[f"b{i}"][:, 0], dtype=dt))
                  for i in range(1, case.spec.depth + 1)]
        x = jnp.asarray(case.X.T, dtype=dt)
        y = jnp.asarray(case.labels.astype("int32"))

        def J(params):
            a = x
            for i, (W, b) in enumerate(params):
                z = a @ W.T + b
                a = jax.nn.relu(z) if i < len(params) - 1 else z
            logp = jax.nn.log_softmax(a, axis=1)
            return -jnp.mean(jnp.take_along_axis(logp, y[:, None], axis=1))

        fn = jax.jit(jax.grad(J))

    def step():
        with jax.enable_x64(dt == "float64"):
            return jax.device_get(fn(params))

    return step


def measure_network(sizes, batch, dtype, repeats: int) -> dict[str, float]:
    """Medians (seconds) of every column for one network and dtype."""
    from gradparity.adapters.registry import get_backend
    from gradparity.core.spec import Spec
    from gradparity.experiments.runner import evaluate_case
    from gradparity.judge.tolerances import resolve_tolerances
    from gradparity.judge.verdict import judge
    from gradparity.reference.case import make_case
    from gradparity.reference.mlp import reference_gradients
    from gradparity.reference.oracle import oracle_gradients

    spec = Spec(sizes, activation="relu", head="softmax_ce", loss_form="logits",
                dtype=dtype, batch=batch, seed=0)
    case = make_case(spec)
    backends = [get_backend("torch"), get_backend("jax")]
    tol = resolve_tolerances()
    bare_t, bare_j = _bare_torch(case), _bare_jax(case)
    first = {"jax_first": _timed(bare_j)}
    first["verdict_first"] = _timed(lambda: evaluate_case(case, backends, tolerances=tol))
    ref = reference_gradients(case)
    oracle = oracle_gradients(case)
    got = {b.name: b.gradients(case) for b in backends}
    kinks = {b.name: b.kink_conventions(dtype) for b in backends}

    def judge_all():
        for b in backends:
            judge(case, got[b.name], ref, tolerance=tol[dtype], kink_conventions=kinks[b.name],
                  oracle=oracle)

    cols: dict[str, Callable[[], object]] = {
        "numpy": lambda: reference_gradients(case),
        "torch": bare_t,
        "jax": bare_j,
        "verdict": lambda: evaluate_case(case, backends, tolerances=tol),
        "oracle": lambda: oracle_gradients(case),
        "judge": judge_all,
    }
    samples: dict[str, list[float]] = {k: [] for k in cols}
    for _ in range(repeats):
        for k, fn in cols.items():
            samples[k].append(_timed(fn))
    out = {k: _median(v) for k, v in samples.items()}
    out["bare"] = out["numpy"] + out["torch"] + out["jax"]
    out.update(first)
    return out


def suite_times(repeats: int = 1) -> tuple[float, float]:
    """Wall time of ``gradparity run`` on the default suite with a fresh compilation cache
    (cold) and again with it filled (warm), each in a new process."""
    cold, warm = [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "cache"
            for i, bucket in enumerate((cold, warm)):
                cmd = [sys.executable, "-m", "gradparity", "run", "--out",
                       str(Path(tmp) / f"run{i}"), "-q", "--cache-dir", str(cache)]
                t0 = time.perf_counter()
                subprocess.run(cmd, check=False, capture_output=True)
                bucket.append(time.perf_counter() - t0)
    return _median(cold), _median(warm)


def import_times() -> dict[str, float]:
    """Seconds to import torch and jax, each in a fresh interpreter."""
    out = {}
    for mod in ("numpy", "torch", "jax"):
        code = (f"import time; t = time.perf_counter(); import {mod}; "
                "print(time.perf_counter() - t)")
        r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                           check=True)
        out[mod] = float(r.stdout.strip())
    return out


def _load() -> str:
    try:
        one, five, _ = os.getloadavg()
        return f"load average {one:.1f} (1 min), {five:.1f} (5 min) on {os.cpu_count()} cpus"
    except OSError:
        return "load average unknown"


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m gradparity.bench", description=__doc__)
    p.add_argument("--repeats", type=int, default=5, help="rounds per network (median)")
    p.add_argument("--small-only", action="store_true",
                   help="only 784-256-256-10 (skip the 784-1024-1024-10 network)")
    p.add_argument("--no-suite", action="store_true",
                   help="skip the default suite's cold and warm runs")
    args = p.parse_args(args_list)
    _pin_and_reexec(args_list)
    import torch

    torch.set_num_threads(1)
    print(f"# gradparity bench ({_load()} at start; threads pinned to 1)\n")
    imp = import_times()
    print("import (fresh interpreter): " + ", ".join(f"{k} {v:.2f} s" for k, v in imp.items()))
    print()
    print("| network, batch | dtype | bare fwd+bwd (NumPy + torch + jax-jit) | verdict, warm "
          "| ratio | oracle | judge | judge / bare | jax compile (bare) | first verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    nets = NETWORKS[:1] if args.small_only else NETWORKS
    for sizes, batch in nets:
        for dtype in ("float32", "float64"):
            big = sizes[1] > 256
            r = measure_network(sizes, batch, dtype, max(1, args.repeats // (2 if big else 1)))
            name = "-".join(map(str, sizes))
            print(f"| {name}, {batch} | {dtype[-2:]} | {1e3 * r['bare']:.1f} ms "
                  f"({1e3 * r['numpy']:.1f} + {1e3 * r['torch']:.1f} + {1e3 * r['jax']:.1f}) "
                  f"| {r['verdict']:.3f} s | {r['verdict'] / r['bare']:.1f}x "
                  f"| {r['oracle']:.3f} s ({r['oracle'] / r['numpy']:.1f}x NumPy) "
                  f"| {r['judge']:.3f} s | {r['judge'] / r['bare']:.2f}x "
                  f"| {r['jax_first'] - r['jax']:.2f} s | {r['verdict_first']:.2f} s |",
                  flush=True)
    if not args.no_suite:
        cold, warm = suite_times()
        print(f"\ndefault suite, `gradparity run` in a new process: cold (empty compilation "
              f"cache) {cold:.1f} s, warm {warm:.1f} s")
    print(f"\n({_load()} at the end)")
    return 0
