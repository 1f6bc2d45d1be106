"""The benchmark command: its options parse without loading the frameworks."""

from __future__ import annotations

import subprocess
import sys

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
