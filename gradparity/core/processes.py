"""Starting gradparity's own helper interpreters (``python -m gradparity...``)."""

from __future__ import annotations

import os
from pathlib import Path


def child_environment() -> dict[str, str]:
    """This process's environment, with gradparity's package root first on ``PYTHONPATH``:
    a child interpreter imports this very gradparity, whatever its working directory."""
    env = dict(os.environ)
    package_root = str(Path(__file__).resolve().parents[2])
    env["PYTHONPATH"] = os.pathsep.join(p for p in (package_root, env.get("PYTHONPATH")) if p)
    return env
