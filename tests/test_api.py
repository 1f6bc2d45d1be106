"""The public API: every exported name resolves, and importing it stays light."""

import os
import subprocess
import sys
from pathlib import Path

import gradparity

ROOT = Path(__file__).resolve().parents[1]


def test_every_exported_name_resolves():
    for name in gradparity.__all__:
        assert getattr(gradparity, name) is not None, name


def test_import_gradparity_loads_no_framework_and_no_pandas():
    code = ("import sys, gradparity; "
            "print(','.join(m for m in ('torch', 'jax', 'pandas') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, env=dict(os.environ, PYTHONPATH=str(ROOT)))
    assert out.stdout.strip() == ""
