"""Test-session settings shared by every test module."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager

import pytest


@contextmanager
def _variable(name: str, value: str) -> Iterator[None]:
    """``os.environ[name] = value`` for the session (child processes inherit it), then put
    back as it was."""
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@pytest.fixture(scope="session", autouse=True)
def _jax_cache_in_tmp(tmp_path_factory):
    """JAX's compiled functions go to a folder of this session, never the user's cache
    folder; a test may still set its own."""
    with _variable("GRADPARITY_CACHE", str(tmp_path_factory.mktemp("jax-cache"))):
        yield


@pytest.fixture(scope="session", autouse=True)
def _inductor_cache_in_tmp(tmp_path_factory):
    """torch.compile's kernels and precompiled headers go to a folder of this session.
    Inductor's shared folder (/tmp/torchinductor_<user>) keeps a precompiled header built
    for the vector ISA of the process that made it; a later process with other kernels
    (``ATEN_CPU_CAPABILITY=default``) reuses it and its C++ compile fails."""
    with _variable("TORCHINDUCTOR_CACHE_DIR", str(tmp_path_factory.mktemp("inductor"))):
        yield


@pytest.fixture(scope="session", autouse=True)
def _no_automatic_report():
    """``gradparity run`` writes report.html only where a test asks for it (with --report,
    or by unsetting the variable): figures take seconds, and most tests run suites."""
    with _variable("GRADPARITY_REPORT", "off"):
        yield
