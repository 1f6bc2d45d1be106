"""Fast warm runs: the JAX adapter's programs stored as executables between runs
(`gradparity.adapters.jax_cache.stored_call`), and the frameworks computing one case ahead
in worker processes (`run_specs(concurrent=True)`). Neither may change a table."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from gradparity.adapters import jax_cache, worker
from gradparity.adapters.registry import get_backend
from gradparity.core.processes import child_environment, concurrent_default
from gradparity.experiments import runner
from gradparity.experiments.runner import run_specs
from gradparity.experiments.suites import quick_suite

JAX = get_backend("jax")
TORCH = get_backend("torch")
needs_jax = pytest.mark.skipif(not JAX.available(), reason="jax is not installed")
needs_both = pytest.mark.skipif(not (JAX.available() and TORCH.available()),
                                reason="torch and jax are needed")

#: A fresh process runs the quick suite on jax and prints how many times J was traced,
#: the store's entries, and the table's digest.
_SCRIPT = """
import hashlib, json, os
from gradparity.adapters.jax_grad import jit_cache_info
from gradparity.experiments.runner import run_specs
from gradparity.experiments.suites import quick_suite
df = run_specs(quick_suite(), backends=["jax"])
folder = os.path.join(os.environ["GRADPARITY_CACHE"], "executables")
entries = sorted(os.listdir(folder)) if os.path.isdir(folder) else []
print(json.dumps({"traces": jit_cache_info()["traces"], "entries": entries,
                  "table": hashlib.sha256(df.to_csv(index=False).encode()).hexdigest()}))
"""


def _fresh_run(cache: str, **env_extra: str) -> dict:
    env = child_environment()
    env.update(GRADPARITY_CACHE=cache, **env_extra)
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True,
                         text=True, timeout=600, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


@needs_jax
def test_a_second_run_loads_the_stored_programs_and_traces_nothing(tmp_path):
    cache = str(tmp_path / "cache")
    first = _fresh_run(cache)
    second = _fresh_run(cache)
    off = _fresh_run("off")
    assert first["traces"] > 0 and first["entries"]
    assert second["traces"] == 0, "a warm run traced J again: the store was not used"
    assert second["entries"] == first["entries"]
    # the stored programs are the compiled ones: the same table, byte for byte
    assert first["table"] == second["table"] == off["table"]


@needs_jax
def test_a_broken_entry_is_compiled_again_and_replaced(tmp_path):
    cache = tmp_path / "cache"
    first = _fresh_run(str(cache))
    folder = cache / "executables"
    for name in first["entries"]:
        (folder / name).write_bytes(b"not an executable")
    again = _fresh_run(str(cache))
    assert again["table"] == first["table"]
    assert again["traces"] > 0
    assert all((folder / n).read_bytes() != b"not an executable" for n in again["entries"])


@needs_jax
def test_other_compiler_settings_never_share_an_entry(tmp_path):
    cache = str(tmp_path / "cache")
    stock = _fresh_run(cache)
    other = _fresh_run(cache, XLA_FLAGS="--xla_cpu_max_isa=SSE4_2")
    assert other["traces"] > 0, "programs compiled under other XLA flags were reused"
    assert not set(other["entries"]) <= set(stock["entries"])


@needs_jax
def test_the_key_follows_shapes_dtypes_names_and_the_environment(monkeypatch):
    import jax
    import numpy as np

    def key(name="jax", shape=(3, 4), dtype=np.float32):
        return jax_cache._key(jax, name, ("s",), (jax.numpy.asarray(np.zeros(shape, dtype)),))

    base = key()
    assert key() == base
    assert key(shape=(3, 5)) != base
    assert key(name="jax.checkpoint") != base
    with jax.enable_x64(True):
        assert key(dtype=np.float64) != base
    monkeypatch.setenv("XLA_FLAGS", "--xla_cpu_max_isa=SSE4_2")
    assert key() != base


def _quick() -> list:
    return quick_suite()[:8]


@needs_both
@pytest.mark.parametrize("backends, layer_own", [
    (["jax.fwd", "torch.vmap", "jax.vmap", "torch.func", "jax.checkpoint"], False),
    (["torch", "jax"], True)])
def test_every_backend_and_mode_gives_the_same_table(backends, layer_own):
    kw = dict(backends=backends, layer_own=layer_own)
    alone = run_specs(_quick()[:4], **kw)
    together = run_specs(_quick()[:4], concurrent=True, **kw)
    pd.testing.assert_frame_equal(alone, together, check_exact=True)
    assert set(together["mode"]) != {"end_to_end"}  # the modes' own labels came through


@needs_both
def test_two_jax_workers_share_the_cases_of_a_cold_run(monkeypatch, tmp_path):
    from gradparity.experiments import runner

    monkeypatch.setattr(runner, "POOL_FROM_CASES", 4)
    monkeypatch.setenv("GRADPARITY_CACHE", str(tmp_path))  # cold: nothing stored yet
    served = []
    real = worker.WorkerBackend.gradients

    def gradients(self, case):
        served.append((self.name, id(self)))
        return real(self, case)

    monkeypatch.setattr(worker.WorkerBackend, "gradients", gradients)
    together = run_specs(_quick(), backends=["torch", "jax"], concurrent=True)
    alone = run_specs(_quick(), backends=["torch", "jax"])
    pd.testing.assert_frame_equal(alone, together, check_exact=True)
    jax_workers = [w for n, w in served if n == "jax"]
    assert len(set(jax_workers)) == 2 and len(jax_workers) == len(_quick())
    assert jax_workers[0::2] == [jax_workers[0]] * len(jax_workers[0::2])  # dealt in turn
    assert len({w for n, w in served if n == "torch"}) == 1
    served.clear()  # warm now: one JAX worker
    again = run_specs(_quick(), backends=["torch", "jax"], concurrent=True)
    pd.testing.assert_frame_equal(alone, again, check_exact=True)
    assert len({w for n, w in served if n == "jax"}) == 1


@needs_both
def test_a_concurrent_run_gives_the_same_table(monkeypatch):
    calls = []
    real = worker.WorkerBackend.gradients

    def counted(self, case):
        calls.append(self.name)
        return real(self, case)

    monkeypatch.setattr(worker.WorkerBackend, "gradients", counted)
    alone = run_specs(_quick(), backends=["torch", "jax"])
    together = run_specs(_quick(), backends=["torch", "jax"], concurrent=True)
    assert sorted(set(calls)) == ["jax", "torch"] and len(calls) == 2 * len(_quick())
    pd.testing.assert_frame_equal(alone, together, check_exact=True)
    env = together.attrs["environment"]
    assert env.get("torch_threads"), "the worker's torch settings were not recorded"


@needs_both
def test_a_worker_that_dies_mid_run_hands_its_cases_back(monkeypatch):
    launched: list = []
    real = worker.WorkerBackend.launch.__func__

    def launch(cls, name, dtype):
        w = real(cls, name, dtype)
        launched.append(w)
        return w

    monkeypatch.setattr(worker.WorkerBackend, "launch", classmethod(launch))
    served = []  # (backend, by its worker) for each case
    real_gradients = worker.WorkerBackend.gradients

    def gradients(self, case):
        got = real_gradients(self, case)
        served.append((self.name, self._requests is not None))
        return got

    monkeypatch.setattr(worker.WorkerBackend, "gradients", gradients)

    def kill_after_first(i, n, spec, statuses):
        if i == 1:
            for w in launched:
                os.kill(w._proc.pid, 9)

    specs = quick_suite()  # more cases than are sent ahead: some are left to hand back
    assert len(specs) > 2 + runner.LOOKAHEAD
    alone = run_specs(specs, backends=["torch", "jax"])
    together = run_specs(specs, backends=["torch", "jax"], concurrent=True,
                         progress=kill_after_first)
    assert len(launched) == 2
    assert all(w._proc is None for w in launched)  # closed: the calls ran here
    for name in ("torch", "jax"):
        by_worker = [w for n, w in served if n == name]
        # case 1 from the worker, and the answers it had written before it died; from
        # then on every case here
        assert by_worker[0] and not by_worker[-1], by_worker
        assert by_worker == sorted(by_worker, reverse=True), by_worker
        assert sum(by_worker) <= 1 + runner.LOOKAHEAD, by_worker
    pd.testing.assert_frame_equal(alone, together, check_exact=True)


def test_backends_of_the_callers_own_stay_in_process(monkeypatch):
    launched = []
    monkeypatch.setattr(worker.WorkerBackend, "launch",
                        classmethod(lambda cls, name, dtype: launched.append(name)))

    class Mine:
        name = "mine"

        def available(self):
            return True

        def unavailable_reason(self):
            return ""

        def gradients(self, case):
            return get_backend("reference").gradients(case)

        def kink_conventions(self, dtype):
            return get_backend("reference").kink_conventions(dtype)

    df = run_specs(_quick()[:2], backends=["reference", Mine()], concurrent=True)
    assert launched == [] and set(df["backend"]) == {"reference", "mine"}


def test_the_command_line_choice(monkeypatch):
    monkeypatch.setenv("GRADPARITY_CONCURRENT", "off")
    assert concurrent_default() is False
    monkeypatch.setenv("GRADPARITY_CONCURRENT", "on")
    assert concurrent_default() is True
    monkeypatch.delenv("GRADPARITY_CONCURRENT")
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0})
    assert concurrent_default() is False
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1})
    assert concurrent_default() is True


def test_a_wrong_setting_is_a_usage_error(tmp_path, monkeypatch, capsys):
    from gradparity.cli import main

    monkeypatch.setenv("GRADPARITY_CONCURRENT", "sometimes")
    code = main(["run", "quick", "-q", "--no-report", "--out", str(tmp_path / "r")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and "GRADPARITY_CONCURRENT='sometimes'" in err[0]
    assert not (tmp_path / "r").exists()


@needs_both
@pytest.mark.parametrize("setting, expected", [("on", True), ("off", False)])
def test_gradparity_run_follows_the_setting(tmp_path, monkeypatch, setting, expected):
    from gradparity.cli import main

    seen = []
    real = run_specs

    def spy(specs, **kw):
        seen.append(kw.get("concurrent"))
        return real(specs, **kw)

    monkeypatch.setattr("gradparity.experiments.runner.run_specs", spy)
    monkeypatch.setenv("GRADPARITY_CONCURRENT", setting)
    launched = []
    real_launch = worker.WorkerBackend.launch.__func__
    monkeypatch.setattr(worker.WorkerBackend, "launch", classmethod(
        lambda cls, name, dtype: launched.append(name) or real_launch(cls, name, dtype)))
    code = main(["run", "quick", "-q", "--no-report", "--out", str(tmp_path / "r")])
    assert code == 0 and seen == [expected]
    # started by the command before its imports, then used by run_specs (not started twice)
    assert sorted(launched) == (["jax", "torch"] if expected else [])
    assert worker.started("torch") is None  # and ended with the command
    env = json.loads(Path(tmp_path / "r" / "environment.json").read_text())
    assert env.get("torch_threads")


@needs_jax
def test_a_loaded_program_is_kept_for_the_process(tmp_path, monkeypatch):
    from gradparity.adapters.jax_grad import JaxBackend
    from gradparity.core.spec import Spec
    from gradparity.reference.case import make_case

    monkeypatch.setenv("GRADPARITY_CACHE", str(tmp_path))
    case = make_case(Spec((7, 6, 3), activation="tanh", head="softmax_ce", batch=5, seed=1))
    want = JaxBackend().gradients(case)  # compiled and stored
    assert any((tmp_path / "executables").iterdir())
    monkeypatch.setattr(jax_cache, "_LOADED", {})  # as a new process: only the disk has it
    loads = []
    real = jax_cache._load
    monkeypatch.setattr(jax_cache, "_load", lambda jax, path: loads.append(path) or
                        real(jax, path))
    for _ in range(3):
        got = JaxBackend().gradients(case)
        assert all((got.grads[k] == want.grads[k]).all() for k in want.grads)
    assert len(loads) == 1, "the program was read from disk again on every call"


@needs_both
def test_cases_larger_than_a_pipe_do_not_deadlock(tmp_path):
    # a case and an answer of over 64 kB each: the worker must read the next case while
    # the caller has not read its answer yet
    (tmp_path / "mid.toml").write_text(
        'backends = ["torch", "jax"]\n[[sweep]]\nsizes = [[64, 128, 10]]\n'
        'activation = "tanh"\nhead = "linear_mse"\ndtype = "float64"\nbatch = 16\n'
        "seed = [0, 1, 2, 3]\n")
    env = child_environment()
    env["GRADPARITY_CONCURRENT"] = "on"
    out = subprocess.run([sys.executable, "-m", "gradparity", "run", str(tmp_path / "mid.toml"),
                          "-q", "--no-report", "--out", str(tmp_path / "r")], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "4 cases" in out.stdout


def test_the_key_covers_every_module_of_the_package(monkeypatch, tmp_path):
    # the programs hold constants of other modules (core.spec's leaky relu slope)
    import gradparity

    package = Path(gradparity.__file__).resolve().parent
    monkeypatch.setattr(jax_cache, "_IDENTITY", None)
    before = jax_cache._static_identity()
    spec_py = package / "core" / "spec.py"
    original = spec_py.read_bytes()
    try:
        spec_py.write_bytes(original + b"\n# changed\n")
        monkeypatch.setattr(jax_cache, "_IDENTITY", None)
        assert jax_cache._static_identity() != before
    finally:
        spec_py.write_bytes(original)


@needs_jax
def test_an_entry_damaged_on_disk_is_never_run(tmp_path):
    cache = tmp_path / "cache"
    first = _fresh_run(str(cache))
    for name in first["entries"]:  # one byte flipped in the middle of each program
        f = cache / "executables" / name
        data = bytearray(f.read_bytes())
        data[len(data) // 2] ^= 0xFF
        f.write_bytes(bytes(data))
    again = _fresh_run(str(cache))
    assert again["table"] == first["table"] and again["traces"] > 0


def test_reference_and_oracle_computed_ahead_while_a_worker_keeps_us_waiting():
    """While a worker would keep this process waiting (torch importing at the start of a
    run), the next cases' reference and oracle are computed instead; they are the ones
    `evaluate_case` would compute, and nothing is computed ahead when no one waits."""
    from gradparity.reference.mlp import reference_gradients
    from gradparity.reference.oracle import oracle_gradients

    class Slow:
        def __init__(self, polls):
            self.polls = polls

        def prefetch(self, case):
            pass

        def waiting(self):
            self.polls -= 1
            return self.polls >= 0

    specs = quick_suite()[:6]
    ahead = runner._Ahead(specs, [Slow(3)])
    ahead.identity(0)
    assert ahead.prepared(0) is None  # case 0 itself: computed by evaluate_case
    assert sorted(ahead._prepared) == [1, 2, 3]  # one per poll that found it waiting
    case1, _, _ = ahead.identity(1)
    ref, oracle = ahead.prepared(1)
    want_ref, want_oracle = reference_gradients(case1), oracle_gradients(case1)
    for got, want in ((ref, want_ref), (oracle, want_oracle)):
        assert got.grads.keys() == want.grads.keys()
        assert all(np.array_equal(got.grads[k], want.grads[k]) for k in want.grads)
    idle = runner._Ahead(specs, [Slow(0)])
    idle.identity(0)
    assert idle.prepared(0) is None and not idle._prepared


def test_computing_ahead_stops_at_its_memory_budget(monkeypatch):
    class Waits:
        def prefetch(self, case):
            raise AssertionError("a case computed ahead is not sent any earlier")

        def waiting(self):
            return True

    monkeypatch.setattr(runner, "PREPARE_BYTES", 1)  # one case's gradients exceed it
    ahead = runner._Ahead(quick_suite()[:6], [Waits()])
    ahead._make(0, send=False)
    assert ahead.prepared(0) is None and sorted(ahead._prepared) == [1]
    monkeypatch.setattr(runner, "PREPARE_BYTES", 10**12)
    ahead.prepared(0)
    assert sorted(ahead._prepared) == [1, 2, 3, 4, 5]
