"""A baseline's errors over every kernel family this CPU can run, so checks hold elsewhere.

Another CPU runs other kernels: torch picks its vector kernels by SIMD width, OpenBLAS by
core type, XLA generates code for the ISA it finds, and thread counts change summation
orders. Most of that moves only the last bits, which the calibrated budget of the machine
that checks covers (`gradparity.ci.baseline`). One choice changes a tensor's *accuracy
class*: XLA's elementwise code with or without FMA. Without it (CPUs before Haswell, or
``XLA_FLAGS=--xla_cpu_max_isa=SSE4_2``) JAX's float32 tanh-based derivatives (``tanh``,
``gelu_tanh``, the ``tanh_mse`` head) come out up to 5-15x less accurate against the
oracle; with it, its float64 ``gelu_tanh`` derivatives do (README, "Across machines").
Neither is a regression, and the reference and the oracle do not see it (they run NumPy).

So ``gradparity baseline save`` (`make_baseline`) runs the cases again, in a child process
per configuration of `gradparity.experiments.environment.envelope_configurations`, and
keeps per tensor the largest error and the worst status over all runs
(`gradparity.ci.baseline.envelope`). The
baseline then records what this CPU's kernel families give; ``check`` flags only what
none of them explains. Save baselines on the most capable CPU the checks will run on: the
configurations reach down from it (an AVX2 machine cannot run AVX-512 code).
"""

from __future__ import annotations

import argparse
import os
import pickle
import subprocess
import sys
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradparity.ci.baseline import (
    Baseline,
    baseline_from_table,
    cases_of,
    rerun_baseline,
)

if TYPE_CHECKING:
    import pandas as pd

    from gradparity.core.spec import Spec

def run_under(baseline: Baseline, variables: Mapping[str, str], *,
              timeout: float | None = None) -> pd.DataFrame:
    """The cases of ``baseline`` run again in a child process whose environment has the
    kernel ``variables`` (`gradparity.experiments.environment.kernel_environment`); the
    table's ``attrs["environment"]`` is the child's."""
    import pandas as pd

    from gradparity.adapters.jax_cache import cache_environment
    from gradparity.experiments.environment import kernel_environment

    env = kernel_environment(dict(variables))
    env.update(cache_environment())  # --cache-dir, passed on
    with tempfile.TemporaryDirectory(prefix="gradparity-kernels-") as tmp:
        src, dst = Path(tmp) / "cases.pkl", Path(tmp) / "table.pkl"
        with open(src, "wb") as f:
            pickle.dump(baseline, f)
        proc = subprocess.run([sys.executable, "-m", "gradparity.ci.kernels", str(src),
                               str(dst)], env=env, capture_output=True, text=True,
                              timeout=timeout, check=False)
        if proc.returncode != 0 or not dst.is_file():
            lines = (proc.stderr or "").strip().splitlines()
            last = lines[-1] if lines else f"exit status {proc.returncode}"
            shown = " ".join(f"{k}={v}" for k, v in variables.items()) or "stock kernels"
            raise RuntimeError(f"the run under {shown} failed: {last}")
        table = pd.read_pickle(dst)
    return table


def kernel_tables(baseline: Baseline, configurations: Mapping[str, Mapping[str, str]], *,
                  progress: Callable[[str], None] | None = None) -> dict[str, pd.DataFrame]:
    """``{name: table}``: the cases of ``baseline`` run under each configuration (see
    `run_under`), in order."""
    out = {}
    for name, variables in configurations.items():
        if progress is not None:
            shown = " ".join(f"{k}={v}" for k, v in variables.items()) or "no variables"
            progress(f"kernels {name}: {shown}")
        out[name] = run_under(baseline, variables)
    return out


def make_baseline(
    specs: Sequence[Spec],
    *,
    backends: Sequence[str],
    tolerances: Mapping[str, Any] | None = None,
    policy: str = "allclose",
    source: str = "",
    progress: Callable[..., None] | None = None,
    kernels: Mapping[str, Mapping[str, str]] | None = None,
    kernel_progress: Callable[[str], None] | None = None,
    concurrent: bool = False,
) -> tuple[Baseline, pd.DataFrame, dict[str, pd.DataFrame]]:
    """Run ``specs`` (`run_specs`, with ``concurrent``); then, for each of ``kernels``
    (``{name: variables}``, e.g. `other_configurations`), run them again in a child
    process under those kernel variables. Returns the baseline (rows over all the runs,
    see `baseline_from_table`), the main run's table and the other runs' tables."""
    from gradparity.experiments.runner import run_specs
    from gradparity.judge.tolerances import resolve_tolerances

    tol = dict(tolerances or resolve_tolerances())
    table = run_specs(specs, backends=backends, tolerances=tol, progress=progress,
                      policy=policy, concurrent=concurrent)
    cases = cases_of(specs, backends, tol, policy)
    others = kernel_tables(Baseline(cases=cases, rows=[]), dict(kernels or {}),
                           progress=kernel_progress)
    baseline = baseline_from_table(
        table, cases, source=source,
        kernels={n: ((kernels or {})[n], t) for n, t in others.items()})
    return baseline, table, others


def other_configurations(environment: Mapping[str, str] | None = None
                         ) -> dict[str, dict[str, str]]:
    """The configurations of `envelope_configurations` that differ from the one this
    process runs (``stock`` is left out when no kernel variable is set)."""
    from gradparity.experiments.environment import (
        LEGACY_KERNELS,
        envelope_configurations,
        kernel_environment,
    )

    here = dict(os.environ if environment is None else environment)

    def kernels(env: Mapping[str, str]) -> dict[str, str]:
        out = {k: env.get(k, "") for k in LEGACY_KERNELS if k != "XLA_FLAGS"}
        out["XLA_FLAGS"] = " ".join(t for t in env.get("XLA_FLAGS", "").split()
                                    if t.startswith("--xla_cpu_max_isa"))
        return out

    mine = kernels(here)
    return {name: v for name, v in envelope_configurations().items()
            if kernels(kernel_environment(v, here)) != mine}


def main(argv: list[str] | None = None) -> int:
    """Child process: ``python -m gradparity.ci.kernels CASES.pkl TABLE.pkl``."""
    parser = argparse.ArgumentParser(prog="python -m gradparity.ci.kernels")
    parser.add_argument("cases")
    parser.add_argument("table")
    args = parser.parse_args(argv)
    with open(args.cases, "rb") as f:
        baseline = pickle.load(f)  # written by run_under in the parent, a moment ago
    from gradparity.core.processes import concurrent_default

    table = rerun_baseline(baseline, concurrent=concurrent_default())
    table.to_pickle(args.table)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
