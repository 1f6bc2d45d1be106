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
from pathlib import Path

from gradparity.bench.measure import NETWORKS, measure_network, median

#: One thread everywhere: BLAS, OpenMP, torch and XLA's CPU client.
PINNED = {
    "OMP_NUM_THREADS": "1",
    "OPENBLAS_NUM_THREADS": "1",
    "MKL_NUM_THREADS": "1",
    "XLA_FLAGS": "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1",
}
_MARK = "GRADPARITY_BENCH_PINNED"


def at_least_one(text: str) -> int:
    """argparse type of a repeat count: an integer >= 1, else one line naming the value."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: expected an integer >= 1")
    return value


def _pin_and_reexec(argv: list[str], module: str = "gradparity.bench") -> None:
    if os.environ.get(_MARK) == "1":
        return
    env = dict(os.environ, **PINNED, **{_MARK: "1"})
    os.execve(sys.executable, [sys.executable, "-m", module, *argv], env)


def suite_times(repeats: int = 1) -> tuple[float, float, float]:
    """Wall time of ``gradparity run --no-report`` on the default suite with a fresh
    compilation cache (cold), again with it filled (warm), and warm with every framework
    in the one process (``--no-concurrent``), each in a new process."""
    cold, warm, alone = [], [], []
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            cache = Path(tmp) / "cache"
            for i, (bucket, extra) in enumerate(((cold, []), (warm, []),
                                                 (alone, ["--no-concurrent"]))):
                cmd = [sys.executable, "-m", "gradparity", "run", "--out",
                       str(Path(tmp) / f"run{i}"), "-q", "--no-report", "--cache-dir",
                       str(cache), *extra]
                t0 = time.perf_counter()
                subprocess.run(cmd, check=False, capture_output=True)
                bucket.append(time.perf_counter() - t0)
    return median(cold), median(warm), median(alone)


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


def _print_growth(repeats: int) -> None:
    from gradparity.bench.scaling import GROWTH_NETWORKS, growth

    nets = ", ".join("-".join(map(str, s)) + f" x {b}" for s, b in GROWTH_NETWORKS)
    print(f"\ngrowth over params x batch ({nets}; {repeats} rounds each):\n")
    print("| dtype | verdict: exponent | verdict: s per 10^9 | bare: exponent "
          "| bare: s per 10^9 | ratio of constants |")
    print("|---|---|---|---|---|---|")
    for dtype in ("float32", "float64"):
        g = growth(dtype, repeats)
        (ve, vc), (be, bc) = g["verdict_fit"], g["bare_fit"]
        print(f"| {dtype[-2:]} | {ve:.2f} | {1e9 * vc:.2f} | {be:.2f} | {1e9 * bc:.2f} "
              f"| {vc / bc:.1f}x |", flush=True)


def _print_memory(sizes, batch) -> None:
    from gradparity.bench.scaling import peak_memory

    name = "-".join(map(str, sizes))
    print(f"\npeak resident memory, {name}, batch {batch}, each in a fresh process (above "
          "the process after its imports and the case):\n")
    print("| dtype | bare: peak | bare: above | verdict: peak | verdict: above "
          "| ratio (above) |")
    print("|---|---|---|---|---|---|")
    for dtype in ("float32", "float64"):
        m = peak_memory(sizes, batch, dtype)
        b, v = m["bare"], m["verdict"]
        ratio = v["extra_mb"] / b["extra_mb"] if b["extra_mb"] > 0 else float("inf")
        print(f"| {dtype[-2:]} | {b['peak_mb']:.0f} MB | {b['extra_mb']:.0f} MB "
              f"| {v['peak_mb']:.0f} MB | {v['extra_mb']:.0f} MB | {ratio:.1f}x |", flush=True)


def _print_debug(repeats: int) -> None:
    from gradparity.bench.debug_speed import SEED, debug_times

    t = debug_times(repeats)
    if t is None:
        print(f"\ngradparity debug: skipped ({SEED} not found: run from the repository)")
        return
    print(f"\n`gradparity debug examples/seed_backprop.py` (torch and jax second opinions), "
          f"median of {repeats}: command line {t['cli']:.2f} s (first call, empty "
          f"compilation cache: {t['cli_first']:.2f} s; `--backends none` {t['cli_none']:.2f}"
          f" s); notebook, later calls {t['notebook']:.3f} s (first call "
          f"{t['notebook_first']:.2f} s)", flush=True)


def main(argv: list[str] | None = None) -> int:
    args_list = sys.argv[1:] if argv is None else argv
    p = argparse.ArgumentParser(prog="python -m gradparity.bench", description=__doc__)
    p.add_argument("--repeats", type=at_least_one, default=5, help="rounds per network (median)")
    p.add_argument("--small-only", action="store_true",
                   help="only 784-256-256-10 (skip the 784-1024-1024-10 network)")
    p.add_argument("--no-suite", action="store_true",
                   help="skip the default suite's cold and warm runs")
    p.add_argument("--no-debug", action="store_true",
                   help="skip the timing of gradparity debug (command line and notebook)")
    p.add_argument("--no-growth", action="store_true",
                   help="skip the growth fit over five networks")
    p.add_argument("--no-memory", action="store_true",
                   help="skip the peak memory at the largest network")
    args = p.parse_args(args_list)
    _pin_and_reexec(args_list)
    from gradparity.core.memory import keep_freed_memory

    keep_freed_memory()  # as the command line does: bare frameworks and verdict alike
    import torch

    torch.set_num_threads(1)
    print(f"# gradparity bench ({_load()} at start; threads pinned to 1)\n")
    imp = import_times()
    print("import (fresh interpreter): " + ", ".join(f"{k} {v:.2f} s" for k, v in imp.items()))
    print()
    print("| network, batch | dtype | bare fwd+bwd (NumPy + torch + jax-jit) | verdict, warm "
          "| ratio | floor | oracle | judge | judge / bare | judge in passes "
          "| jax compile (bare) | first verdict |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    nets = NETWORKS[:1] if args.small_only else NETWORKS
    for sizes, batch in nets:
        for dtype in ("float32", "float64"):
            big = sizes[1] > 256
            r = measure_network(sizes, batch, dtype, max(1, args.repeats // (2 if big else 1)))
            name = "-".join(map(str, sizes))
            print(f"| {name}, {batch} | {dtype[-2:]} | {1e3 * r['bare']:.1f} ms "
                  f"({1e3 * r['numpy']:.1f} + {1e3 * r['torch']:.1f} + {1e3 * r['jax']:.1f}) "
                  f"| {r['verdict']:.3f} s | {r['verdict'] / r['bare']:.1f}x "
                  f"| {(r['bare'] + r['oracle'] + r['judge']) / r['bare']:.1f}x "
                  f"| {r['oracle']:.3f} s ({r['oracle'] / r['numpy']:.1f}x NumPy) "
                  f"| {r['judge']:.3f} s | {r['judge'] / r['bare']:.2f}x "
                  f"| {r['judge'] / r['pass']:.0f} of {r['judged'] / 1e6:.2f} M "
                  f"| {r['jax_first'] - r['jax']:.2f} s | {r['verdict_first']:.2f} s |",
                  flush=True)
    print("\nfloor: (bare + oracle + judge) / bare, each measured alone: the verdict with "
          "nothing beyond the frameworks' steps, its oracle and its judge. judge in passes: "
          "the judge's time over that of one float64 elementwise pass (x - y) over as many "
          "elements as the backends' arrays it measures (M: millions), on one cache-sized "
          "block held in the cache, as a block's passes after its first run.")
    if not args.no_growth:
        _print_growth(max(1, args.repeats // 2))
    if not args.no_memory:
        _print_memory(*NETWORKS[-1])
    if not args.no_debug:
        _print_debug(args.repeats)
    if not args.no_suite:
        cold, warm, alone = suite_times()
        print(f"\ndefault suite, `gradparity run --no-report` in a new process: cold (empty "
              f"compilation cache) {cold:.1f} s, warm {warm:.1f} s (all in one process, "
              f"--no-concurrent: {alone:.1f} s)")
    print(f"\n({_load()} at the end)")
    return 0
