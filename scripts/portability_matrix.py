"""Does the CI gate hold on other machines? Save under one configuration, check under others.

Each configuration runs the suite in a fresh process with its own kernel choices, which is
how this one machine stands in for others (another CPU rounds differently in the same ways):

* torch's kernels forced with ``ATEN_CPU_CAPABILITY`` (``default``: no vector kernels;
  ``avx2`` where the CPU has AVX-512, whose kernels are then the stock ones);
* thread counts (``OMP_NUM_THREADS`` 1 and 2, the one that differs from the cores: torch
  and OpenBLAS sum in other orders);
* XLA's code generation limited to SSE4.2 (``XLA_FLAGS=--xla_cpu_max_isa=SSE4_2``; this
  jaxlib honours it: its CPU code then has no ymm register);
* NumPy's OpenBLAS kernels forced with ``OPENBLAS_CORETYPE`` (Nehalem: SSE only;
  Sandybridge: AVX without FMA; SkylakeX where the CPU has AVX-512), which moves the
  reference;
* ``legacy``: all of the oldest choices at once.

For every ordered pair (A, B) a baseline made as ``gradparity baseline save`` makes it under
A (``--kernels auto``: A's table and the tables of this CPU's other configurations among
``stock`` and ``legacy``, `gradparity.ci.kernels`) is compared with B's table: any
regression there is a false alarm. A second table shows the same with ``--kernels none``
(A's table alone), which is what the envelope of kernels is for. Then regressions are
injected into B and must be caught:

* ``perturb``: one element of torch's dW1 (the one of median magnitude) times 1 + 1e-3, in
  every case where that tensor is well conditioned (regime ``normal``, status ``pass``);
  caught when that tensor is flagged;
* ``swap``: torch's numbers replaced by jax's (other kink conventions, GELU and tanh
  formulas); caught when the check fails;
* ``new_failure``: one torch row's status set to ``fail``; ``deleted``: one torch row
  dropped; ``reason``: one passing torch row now ``kink``: each caught when flagged.

``--tables DIR`` keeps each configuration's tables, so the matrix can be recomputed
without running again (``--reuse``). A real second machine can be added with
``--extra NAME=TABLE.csv[.gz]`` (a result table recorded elsewhere; its injected runs are
not available, so it only counts false alarms). Prints a Markdown table; exit 1 on any
false alarm or missed regression.

    python scripts/portability_matrix.py [--suite default] [--tables DIR] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def configurations() -> dict[str, dict[str, str]]:
    """This CPU's kernel configurations (`kernel_configurations`), plus any configuration
    a baseline's errors are taken over (`envelope_configurations`) that is not among them."""
    from gradparity.experiments.environment import (
        envelope_configurations,
        kernel_configurations,
    )

    configs = kernel_configurations()
    for name, variables in envelope_configurations().items():
        if variables not in configs.values():
            configs[name] = variables
    return configs


# -- the worker: one configuration, in its own process -------------------------------------

class _Perturbed:
    """torch, with one element of dW1 (median magnitude) times 1 + 1e-3."""

    def __init__(self, inner):
        self._inner = inner
        self.name = inner.name

    def __getattr__(self, attr):
        return getattr(self._inner, attr)

    def gradients(self, case):
        import numpy as np

        g = self._inner.gradients(case)
        w = np.array(g.grads["dW1"], copy=True)
        flat = w.reshape(-1)
        i = int(np.argsort(np.abs(flat), kind="stable")[flat.size // 2])
        flat[i] = flat[i] * w.dtype.type(1 + 1e-3)
        g.grads["dW1"] = w
        return g


def worker(suite: str, out: Path) -> None:
    from gradparity.adapters.registry import get_backend
    from gradparity.experiments.environment import environment
    from gradparity.experiments.runner import run_specs
    from gradparity.experiments.suites import SUITES

    specs = SUITES[suite][0]()
    out.mkdir(parents=True, exist_ok=True)
    clean = run_specs(specs, backends=["torch", "jax"])
    env = dict(sorted(environment().items()))
    clean.to_csv(out / "table.csv", index=False)
    perturbed = run_specs(specs, backends=[_Perturbed(get_backend("torch"))])
    perturbed.to_csv(out / "perturbed.csv", index=False)
    (out / "environment.json").write_text(json.dumps(env, indent=2, sort_keys=True) + "\n")


def run_configuration(name: str, variables: dict[str, str], suite: str, out: Path) -> None:
    from gradparity.experiments.environment import kernel_environment

    env = kernel_environment(variables)
    print(f"[{name}] {' '.join(f'{k}={v}' for k, v in variables.items()) or '(no variables)'}",
          file=sys.stderr, flush=True)
    subprocess.run([sys.executable, __file__, "--worker", "--suite", suite, "--tables",
                    str(out)], env=env, check=True)


# -- the matrix ----------------------------------------------------------------------------

def _read(path: Path):
    import pandas as pd

    t = pd.read_csv(path, keep_default_na=False, na_values=[""])
    t["layer"] = pd.array(t["layer"].tolist(), dtype="Int64")
    return t


def _cases(suite: str):
    from gradparity.ci.baseline import cases_of
    from gradparity.experiments.suites import SUITES
    from gradparity.judge.tolerances import resolve_tolerances

    return cases_of(SUITES[suite][0](), ("torch", "jax"), resolve_tolerances())


def injected(clean, perturbed):
    """Name -> (table, what must be flagged: a set of keys, or None for "the check fails")."""
    import pandas as pd

    torch = clean["backend"] == "torch"
    out = {}
    # perturb: torch rows from the perturbed run; flagged must include each case's dW1
    cond = (clean["regime"] == "normal") & torch & (clean["quantity"] == "dW") & (
        clean["layer"] == 1) & (clean["status"] == "pass")
    want = {(r.case_id, "torch", 1, "dW") for r in clean[cond].itertuples()}
    table = pd.concat([clean[~torch], perturbed], ignore_index=True)
    out["perturb"] = (table, want)
    swapped = clean[clean["backend"] == "jax"].copy()
    swapped["backend"] = "torch"
    out["swap"] = (pd.concat([swapped, clean[~torch]], ignore_index=True), None)
    ok = clean.index[torch & (clean["status"] == "pass") & (clean["quantity"] == "dW")]
    i = ok[len(ok) // 2]
    key = (clean.at[i, "case_id"], "torch", int(clean.at[i, "layer"]), "dW")
    t = clean.copy()
    t.loc[i, "status"] = "fail"
    out["new_failure"] = (t, {key})
    out["deleted"] = (clean.drop(index=i), {key})
    t = clean.copy()
    t.loc[i, ["status", "reason_code"]] = ["kink", "kink"]
    out["reason"] = (t, {key})
    return out


def matrix(suite: str, tables: Path, names: list[str], extra: dict[str, Path]) -> int:
    from gradparity.ci.baseline import (
        baseline_from_table,
        compare_with_baseline,
        differing_keys,
    )
    from gradparity.ci.kernels import other_configurations
    from gradparity.experiments.environment import kernel_environment

    cases = _cases(suite)
    data = {}
    for name in names:
        d = tables / name
        env = json.loads((d / "environment.json").read_text())
        data[name] = (_read(d / "table.csv"), _read(d / "perturbed.csv"), env)
    for name, path in extra.items():
        env_path = path.parent / "environment.json"
        env = json.loads(env_path.read_text()) if env_path.is_file() else {}
        data[name] = (_read(path), None, env)

    header = ("| saved under | checked under | what differs | false alarms | perturb | swap "
              "| new failure | deleted | new reason |")
    lines = [header, "|" + "---|" * 9]
    false_alarms: dict[tuple[str, str], int | None] = {}
    single: dict[tuple[str, str], int] = {}
    configs = configurations()
    bad = 0
    for a, (table_a, _, env_a) in data.items():
        # as 'gradparity baseline save' (--kernels auto) saves it under configuration a:
        # the errors over a's run and the runs under this CPU's other envelope kernels
        others = {}
        if a in configs:
            variables = kernel_environment(configs[a], {})
            for v in other_configurations(variables).values():
                name = next(k for k, c in configs.items() if c == v)
                others[name] = (v, data[name][0])
        base = baseline_from_table(table_a, cases, environment=env_a, kernels=others)
        alone = baseline_from_table(table_a, cases, environment=env_a)
        for b, (table_b, pert_b, env_b) in data.items():
            if a == b:
                continue
            differs = differing_keys(env_a, env_b)
            reg = compare_with_baseline(base, table_b)
            false = len(reg)
            single[a, b] = len(compare_with_baseline(alone, table_b))
            if a not in configs:
                # a table recorded elsewhere without its kernel runs: as a baseline it
                # stands for '--kernels none' only (the second compact table)
                false_alarms[a, b] = None
                continue
            false_alarms[a, b] = false
            bad += false > 0
            cells = []
            if pert_b is None:
                cells = ["-"] * 5
            else:
                for _name, (t, want) in injected(table_b, pert_b).items():
                    r = compare_with_baseline(base, t)
                    if want is None:
                        ok = not r.empty
                        cells.append(f"{'caught' if ok else 'MISSED'} ({len(r)} rows)")
                    else:
                        got = {(c, k, int(la) if la is not None and la == la else None, q)
                               for c, k, la, q in zip(r["case_id"], r["backend"], r["layer"],
                                                      r["quantity"], strict=True)}
                        n = len(want & got)
                        ok = n == len(want)
                        cells.append(f"{n}/{len(want)}" if len(want) > 1 else
                                     ("caught" if ok else "MISSED"))
                    bad += not ok
            lines.append(f"| {a} | {b} | {', '.join(differs) or '-'} | {false} | "
                         + " | ".join(cells) + " |")
    names = list(data)
    for title, counts in (("false alarms", false_alarms),
                          ("false alarms with --kernels none", single)):
        compact = [f"| {title}: saved under \u2193, checked under \u2192 | "
                   + " | ".join(names) + " |", "|---|" + "---|" * len(names)]
        for a in names:
            compact.append(f"| {a} | " + " | ".join(
                "-" if a == b else "n/a" if counts[a, b] is None else str(counts[a, b])
                for b in names) + " |")
        print("\n".join(compact))
        print()
    print("\n".join(lines))
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--suite", default="default")
    p.add_argument("--tables", type=Path, default=ROOT / "results" / "runs" / "portability")
    p.add_argument("--reuse", action="store_true",
                   help="use the tables already in --tables; run only the missing ones")
    p.add_argument("--only", help="comma-separated configuration names")
    p.add_argument("--extra", action="append", default=[], metavar="NAME=TABLE",
                   help="a result table recorded on another machine")
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args.suite, args.tables)
        return 0
    configs = configurations()
    if args.only:
        configs = {k: v for k, v in configs.items() if k in args.only.split(",")}
    for name, variables in configs.items():
        out = args.tables / name
        if not (args.reuse and (out / "perturbed.csv").is_file()):
            run_configuration(name, variables, args.suite, out)
    extra = {}
    for item in args.extra:
        name, _, path = item.partition("=")
        extra[name] = Path(path)
    return matrix(args.suite, args.tables, list(configs), extra)


if __name__ == "__main__":
    sys.exit(main())
