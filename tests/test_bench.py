"""The benchmark command: its options parse without loading the frameworks."""

from __future__ import annotations

import subprocess
import sys

import pytest

from gradparity.bench.measure import median as _median


def test_help_is_light():
    code = ("import sys, runpy; sys.argv = ['x', '--help']\n"
            "try:\n    runpy.run_module('gradparity.bench', run_name='__main__')\n"
            "except SystemExit:\n    pass\n"
            "print(sorted(m for m in ('torch', 'jax') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=120)
    assert "--repeats" in out.stdout
    assert out.stdout.strip().endswith("[]")


def test_median():
    assert _median([3.0, 1.0, 2.0]) == 2.0
    assert _median([4.0, 1.0, 2.0, 3.0]) == 2.5


def test_growth_fit_recovers_exponent_and_constant():
    from gradparity.bench.scaling import fit

    xs = [1e6, 4e6, 1.6e7, 6.4e7]
    slope, c = fit(xs, [3e-9 * x for x in xs])
    assert abs(slope - 1.0) < 1e-12 and abs(c - 3e-9) < 1e-20
    slope, _ = fit(xs, [1e-12 * x * x for x in xs])
    assert abs(slope - 2.0) < 1e-12


def test_memory_probe_reports_the_peak_of_its_run():
    import json

    from gradparity.adapters.registry import get_backend

    if not (get_backend("torch").available() and get_backend("jax").available()):
        import pytest

        pytest.skip("needs torch and jax")
    out = subprocess.run([sys.executable, "-m", "gradparity.bench.scaling", "4,5,5,3,8",
                          "float64", "verdict"], capture_output=True, text=True, check=True,
                         timeout=300)
    r = json.loads(out.stdout.strip().splitlines()[-1])
    assert r["peak_mb"] >= r["baseline_mb"] > 0
    assert r["extra_mb"] == r["peak_mb"] - r["baseline_mb"]
    assert r["baseline_peak_mb"] >= r["baseline_mb"]


_FAULTS = """
import resource, sys
import numpy as np
from gradparity.core.memory import keep_freed_memory
from gradparity.reference.extended import split
if sys.argv[1] == "keep":
    assert keep_freed_memory()
x = np.random.default_rng(0).standard_normal((256, 784)).astype(np.longdouble)
split(x, 1, 21)  # the first temporaries of their sizes fault in
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(10):
    split(x, 1, 21)  # the oracle's splits: several 1.6 MB temporaries alive at once
print(resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before)
"""


def test_kept_memory_spares_the_page_faults_of_repeated_temporaries():
    """Without it, glibc gives the oracle's freed temporaries back and maps them afresh
    (tens of thousands of page faults in ten splits); with it, they are reused."""
    import os
    import sys as _sys

    if not _sys.platform.startswith("linux"):
        import pytest

        pytest.skip("glibc's malloc only")

    def faults(mode: str) -> int:
        env = dict(os.environ, GRADPARITY_MALLOC="")
        out = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True,
                             text=True, check=True, timeout=120, env=env)
        return int(out.stdout.strip())

    assert faults("keep") < 500
    assert faults("default") > 5_000


def test_the_judge_is_timed_on_arrays_it_has_not_seen():
    """The judge keeps what it measured of an array while the array lives; the benchmark
    hands it copies (same values, same layout, new objects) so that it times a verdict's
    judge, not those memos."""
    import numpy as np

    from gradparity.bench.measure import _fresh, judged_elements
    from gradparity.core.spec import Spec
    from gradparity.reference.case import make_case
    from gradparity.reference.mlp import reference_gradients

    g = reference_gradients(make_case(Spec((3, 4, 2), batch=5)))
    g.forward["A0"] = np.asfortranarray(g.forward["A0"])
    c = _fresh(g)
    for name in ("forward", "grads"):
        old, new = getattr(g, name), getattr(c, name)
        assert old.keys() == new.keys()
        for k in old:
            assert new[k] is not old[k] and not np.shares_memory(new[k], old[k])
            assert np.array_equal(new[k], old[k]) and new[k].strides == old[k].strides
    assert c.loss is not g.loss and c.loss == g.loss
    assert _fresh(None) is None
    n = 1 + sum(a.size for a in g.forward.values()) + sum(a.size for a in g.grads.values())
    assert judged_elements({"torch": g, "jax": c}) == 2 * n


def test_a_pass_over_more_elements_takes_longer():
    from gradparity.bench.measure import pass_time

    assert 0 < pass_time(1000) < pass_time(2_000_000)


def test_the_fused_versions_measure_what_the_judge_measures():
    """The fusion benchmark times jax.jit and torch.compile versions of the judge's
    metrics; each must count the same mismatches and find the same largest errors."""
    import numpy as np
    import pytest

    from gradparity.bench import fusion
    from gradparity.judge.compare import compare_arrays

    rng = np.random.default_rng(3)
    e = rng.standard_normal(300)
    a = e * (1 + 1e-4 * rng.standard_normal(300))  # some elements beyond rtol 1e-5
    want = compare_arrays(a, e, rtol=fusion.RTOL, atol=fusion.ATOL)
    assert 0 < want.n_mismatch < 300
    ran = 0
    for make in (fusion._jax_metrics, fusion._torch_metrics):
        fn = make()
        if fn is None:
            continue
        got = fn(a, e)
        assert int(got[1]) == want.n_mismatch
        assert float(got[3]) == want.max_abs_err and float(got[5]) == want.max_rel_err
        ran += 1
    if not ran:
        pytest.skip("needs torch or jax")


@pytest.mark.parametrize("module", ["gradparity.bench", "gradparity.bench.fusion"])
def test_benchmarks_refuse_a_bad_repeat_count_in_one_line(module):
    for bad in ("0", "-3", "x"):
        out = subprocess.run([sys.executable, "-m", module, "--repeats", bad],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 2
        assert f"argument --repeats: '{bad}': expected an integer >= 1" in out.stderr
        assert "Traceback" not in out.stderr
