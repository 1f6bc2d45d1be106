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
