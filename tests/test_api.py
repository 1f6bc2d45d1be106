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


def test_every_name_the_readme_and_examples_use_resolves():
    import importlib
    import re

    texts = [(ROOT / "README.md").read_text()] + [
        p.read_text() for p in sorted((ROOT / "examples").rglob("*.py"))]
    seen = 0
    for text in texts:
        for name in re.findall(r"\bgp\.([A-Za-z_]\w*)", text):
            assert hasattr(gradparity, name), f"gp.{name}"
            seen += 1
        for module, names in re.findall(r"^\s*from (gradparity[\w.]*) import ([\w, ]+)$", text,
                                        re.M):
            mod = importlib.import_module(module)
            for name in names.split(","):
                assert hasattr(mod, name.strip()), f"{module}.{name.strip()}"
                seen += 1
    assert seen >= 8


def test_the_public_api_is_small():
    assert len(gradparity.__all__) <= 25
