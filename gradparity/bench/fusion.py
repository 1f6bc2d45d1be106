"""Would the judge be faster fused by the stack's own compilers? ``python -m
gradparity.bench.fusion`` times the judge's measurement of one tensor (`compare_arrays`, a
few dozen NumPy passes over cache-sized blocks) against the same metrics written once
and compiled into fused loops by ``jax.jit`` and by ``torch.compile``, on float32 and
float64 tensors of 64 Ki and 1 Mi elements, one thread everywhere. Each compiled version's
mismatch count and largest errors are checked against the judge's before it is timed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Callable

import numpy as np

from gradparity.bench.measure import _timed, median
from gradparity.bench.run import _pin_and_reexec, at_least_one

RTOL, ATOL = 1e-5, 1e-8
SIZES = (1 << 16, 1 << 20)


def _jax_metrics() -> Callable | None:
    try:
        import jax
        import jax.numpy as jnp
        from jax import lax
    except ImportError:
        return None

    def metrics(a, e):
        a64, e64 = a.astype(jnp.float64), e.astype(jnp.float64)
        d = a64 - e64
        diff, ae = jnp.abs(d), jnp.abs(e64)
        allowed = ae * RTOL + ATOL
        mismatch = diff > allowed
        rel = jnp.fmax(diff / ae, 0.0)
        bad = jnp.where(mismatch, diff - allowed, -jnp.inf)
        itype = jnp.int32 if a.dtype.itemsize == 4 else jnp.int64
        ra, re = lax.bitcast_convert_type(a, itype), lax.bitcast_convert_type(e, itype)
        return (jnp.isfinite(d).all(), mismatch.sum(), jnp.argmax(diff), diff.max(),
                jnp.argmax(rel), rel.max(), jnp.argmax(bad), jnp.min(ra ^ re),
                jnp.abs(ra.astype(jnp.int64) - re.astype(jnp.int64)).max(),
                a64 @ a64, e64 @ e64, d @ d, a64 @ e64)

    fn = jax.jit(metrics)

    def run(a: np.ndarray, e: np.ndarray):
        with jax.enable_x64(True):
            return jax.device_get(fn(a, e))

    return run


def _torch_metrics() -> Callable | None:
    try:
        import torch
    except ImportError:
        return None

    def metrics(a, e):
        a64, e64 = a.double(), e.double()
        d = a64 - e64
        diff, ae = d.abs(), e64.abs()
        allowed = ae * RTOL + ATOL
        mismatch = diff > allowed
        rel = torch.fmax(diff / ae, torch.zeros((), dtype=torch.float64))
        bad = torch.where(mismatch, diff - allowed,
                          torch.full((), -float("inf"), dtype=torch.float64))
        itype = torch.int32 if a.dtype == torch.float32 else torch.int64
        ra, re = a.view(itype), e.view(itype)
        return (torch.isfinite(d).all(), mismatch.sum(), diff.argmax(), diff.max(),
                rel.argmax(), rel.max(), bad.argmax(), (ra ^ re).min(),
                (ra.long() - re.long()).abs().max(), (a64 * a64).sum(), (e64 * e64).sum(),
                (d * d).sum(), (a64 * e64).sum())

    fn = torch.compile(metrics, dynamic=False)

    def run(a: np.ndarray, e: np.ndarray):
        return [t.item() for t in fn(torch.from_numpy(a), torch.from_numpy(e))]

    return run


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(
        prog="python -m gradparity.bench.fusion",
        description="Time the judge's metrics of one tensor in NumPy (compare_arrays) against "
        "the same metrics fused by jax.jit and torch.compile, one thread everywhere.")
    p.add_argument("--repeats", type=at_least_one, default=9,
                   help="timed calls per column (default 9)")
    args = p.parse_args(args_list)
    _pin_and_reexec(args_list, module="gradparity.bench.fusion")
    from gradparity.core.memory import keep_freed_memory
    from gradparity.judge.compare import compare_arrays

    keep_freed_memory()
    fused = {"jax.jit": _jax_metrics(), "torch.compile": _torch_metrics()}
    if fused["torch.compile"] is not None:
        import torch

        torch.set_num_threads(1)
    print("| elements | dtype | judge (NumPy) | " + " | ".join(
        f"{k}: compile | {k}: call | {k} / judge" for k, v in fused.items() if v) + " |")
    print("|---|---|---|" + "---|---|---|" * sum(v is not None for v in fused.values()))
    rng = np.random.default_rng(0)
    for n in SIZES:
        for dtype in (np.float32, np.float64):
            e = rng.standard_normal(n).astype(dtype)
            a = (e * (1 + 1e-6 * rng.standard_normal(n))).astype(dtype)
            want = compare_arrays(a, e, rtol=RTOL, atol=ATOL)
            judge = median([_timed(lambda a=a, e=e: compare_arrays(a, e, rtol=RTOL, atol=ATOL))
                            for _ in range(args.repeats)])
            cells = [f"{n // 1024} Ki", np.dtype(dtype).name, f"{1e3 * judge:.2f} ms"]
            for name, fn in fused.items():
                if fn is None:
                    continue
                t0 = time.perf_counter()
                got = fn(a, e)
                compile_s = time.perf_counter() - t0
                same = (int(got[1]) == want.n_mismatch and float(got[3]) == want.max_abs_err
                        and float(got[5]) == want.max_rel_err)
                if not same:
                    print(f"{name}: results differ from the judge's at {n} {dtype}",
                          file=sys.stderr)
                    return 1
                call = median([_timed(lambda fn=fn, a=a, e=e: fn(a, e))
                               for _ in range(args.repeats)])
                cells += [f"{compile_s:.1f} s", f"{1e3 * call:.2f} ms", f"{call / judge:.1f}x"]
            print("| " + " | ".join(cells) + " |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
