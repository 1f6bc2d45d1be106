"""Throughput of runs on a local Dask cluster, on a synthetic suite of small cases.

Every case is a one-hidden-layer network (3 -> 4 -> 2, batch 4, seeds 0..N-1) judged
against the reference itself (NumPy only), so the work per case is small and the
scheduler's share shows. Prints the serial time, then for each number of workers and
each chunk size (cases per task) the wall time, cases/s, the speed-up and the overhead
per case: wall time per case minus the serial time per case divided by the workers that
can run at once (min(workers, CPUs)).

    OMP_NUM_THREADS=1 python scripts/measure_distributed.py [--cases 10000]
        [--workers 1,2,4] [--chunks 1,100]
"""

from __future__ import annotations

import argparse
import os
import time

from gradparity.core.spec import Spec
from gradparity.experiments.distributed import open_client, run_specs_distributed
from gradparity.experiments.runner import run_specs


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--cases", type=int, default=10_000)
    p.add_argument("--workers", default="1,2,4")
    p.add_argument("--chunks", default="1,100")
    args = p.parse_args()
    specs = [Spec((3, 4, 2), activation="tanh", batch=4, seed=s) for s in range(args.cases)]
    t = time.perf_counter()
    serial = run_specs(specs, backends=["reference"]).to_csv(index=False)
    t_serial = time.perf_counter() - t
    n = len(specs)
    print(f"serial: {t_serial:.1f} s, {n / t_serial:.0f} cases/s, "
          f"{1e3 * t_serial / n:.2f} ms/case")
    cpus = os.cpu_count() or 1
    print("| workers | cases per task | wall s | cases/s | speed-up | overhead ms/case | "
          "same table |")
    print("|---|---|---|---|---|---|---|")
    for w in map(int, args.workers.split(",")):
        with open_client(workers=w) as client:
            client.run(lambda: None)  # workers up
            for chunk in map(int, args.chunks.split(",")):
                t = time.perf_counter()
                table = run_specs_distributed(specs, client, backends=["reference"],
                                              chunk=chunk).to_csv(index=False)
                wall = time.perf_counter() - t
                over = 1e3 * (wall / n - t_serial / n / min(w, cpus))
                print(f"| {w} | {chunk} | {wall:.1f} | {n / wall:.0f} | "
                      f"{t_serial / wall:.2f} | {over:.2f} | {table == serial} |",
                      flush=True)


if __name__ == "__main__":
    main()
