"""What the benchmark measures: bare forward + backward of each framework, and gradparity's
warm verdict with its oracle and judge on their own (`measure_network`)."""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import numpy as np

#: (sizes, batch) of the networks measured (relu hidden layers, softmax + cross-entropy).
NETWORKS = [((784, 256, 256, 10), 128), ((784, 1024, 1024, 10), 512)]


def median(xs: list[float]) -> float:
    s = sorted(xs)
    n = len(s)
    return s[n // 2] if n % 2 else 0.5 * (s[n // 2 - 1] + s[n // 2])


def _timed(fn: Callable[[], object]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def judged_elements(got: dict) -> int:
    """Elements the judge measures for these backends' `GradientSet`s: the loss, every
    forward array and every gradient."""
    return sum(1 + sum(a.size for a in g.forward.values()) + sum(a.size for a in g.grads.values())
               for g in got.values())


def pass_time(n: int, repeats: int = 7) -> float:
    """Seconds of one float64 elementwise pass (``z = x - y``) over ``n`` elements, one
    cache-sized block (`gradparity.core.blocks`) at a time, the same block each time, so
    that it stays in the cache: the unit the judge is counted in, the cost of one of a
    block's passes after its first (which reads the block from memory). The count is
    therefore an upper bound on the passes the judge makes."""
    from gradparity.core.blocks import BLOCK

    x, y = np.ones(BLOCK), np.full(BLOCK, 0.5)
    z = np.empty(BLOCK)
    full, rest = divmod(n, BLOCK)

    def one_pass():
        for _ in range(full):
            np.subtract(x, y, out=z)
        np.subtract(x[:rest], y[:rest], out=z[:rest])

    one_pass()
    return median([_timed(one_pass) for _ in range(repeats)])


def bare_torch(case):
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


def bare_jax(case):
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


ALL_COLUMNS = ("numpy", "torch", "jax", "verdict", "oracle", "judge")
#: Columns whose function times itself (around work set up untimed) and returns seconds.
_SELF_TIMED = frozenset({"judge"})


def _fresh(g):
    """A copy of a `GradientSet` whose arrays are new objects (same values and layout)."""
    if g is None:
        return None
    return dataclasses.replace(
        g, loss=np.copy(g.loss, order="K"),
        forward={k: np.copy(v, order="K") for k, v in g.forward.items()},
        grads={k: np.copy(v, order="K") for k, v in g.grads.items()})


def measure_network(sizes, batch, dtype, repeats: int,
                    columns: tuple[str, ...] = ALL_COLUMNS) -> dict[str, float]:
    """Medians (seconds) of ``columns`` (at least the bare three) for one network and
    dtype; ``bare`` is their sum; with every column, the first verdict and jax compile."""
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
    bare_t, bare_j = bare_torch(case), bare_jax(case)
    first = {"jax_first": _timed(bare_j)}
    if columns == ALL_COLUMNS:
        first["verdict_first"] = _timed(lambda: evaluate_case(case, backends, tolerances=tol))
    ref = reference_gradients(case)
    oracle = oracle_gradients(case)
    got = {b.name: b.gradients(case) for b in backends}
    kinks = {b.name: b.kink_conventions(dtype) for b in backends}

    def judge_all() -> float:
        # on copies made untimed: the judge keeps what it measured of an array while the
        # array lives (the reference's and the oracle's sizes, shared by the backends), so
        # judging the same arrays again would time those memos, not a verdict's judge
        g, r, o = {k: _fresh(v) for k, v in got.items()}, _fresh(ref), _fresh(oracle)
        t0 = time.perf_counter()
        for b in backends:
            judge(case, g[b.name], r, tolerance=tol[dtype], kink_conventions=kinks[b.name],
                  oracle=o)
        return time.perf_counter() - t0

    cols: dict[str, Callable[[], object]] = {
        "numpy": lambda: reference_gradients(case),
        "torch": bare_t,
        "jax": bare_j,
        "verdict": lambda: evaluate_case(case, backends, tolerances=tol),
        "oracle": lambda: oracle_gradients(case),
        "judge": judge_all,
    }
    cols = {k: v for k, v in cols.items() if k in columns}
    samples: dict[str, list[float]] = {k: [] for k in cols}
    for _ in range(repeats):
        for k, fn in cols.items():
            samples[k].append(fn() if k in _SELF_TIMED else _timed(fn))
    out = {k: median(v) for k, v in samples.items()}
    out["bare"] = out["numpy"] + out["torch"] + out["jax"]
    if "judge" in out:
        out["judged"] = judged_elements(got)
        out["pass"] = pass_time(out["judged"])
    out.update(first)
    return out
