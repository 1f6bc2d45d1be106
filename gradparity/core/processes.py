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


def concurrent_default() -> bool:
    """The command line's choice of `run_specs`' ``concurrent``: on when this process may
    use two CPUs or more; ``GRADPARITY_CONCURRENT=off`` turns it off, ``on`` on."""
    value = os.environ.get("GRADPARITY_CONCURRENT", "")
    setting = value.strip().lower()
    if setting in ("off", "0", "no", "false"):
        return False
    if setting in ("on", "1", "yes", "true"):
        return True
    if setting:
        from gradparity.core.errors import UsageError

        raise UsageError(f"GRADPARITY_CONCURRENT={value!r}: expected on or off (or unset)")
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cpus = os.cpu_count() or 1
    return cpus >= 2
