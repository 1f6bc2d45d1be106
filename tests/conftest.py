"""Test-session settings shared by every test module."""

from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="session", autouse=True)
def _jax_cache_in_tmp(tmp_path_factory):
    """JAX's compiled functions go to a folder of this session, never the user's cache
    folder (child processes inherit the variable); a test may still set its own."""
    old = os.environ.get("GRADPARITY_CACHE")
    os.environ["GRADPARITY_CACHE"] = str(tmp_path_factory.mktemp("jax-cache"))
    yield
    if old is None:
        os.environ.pop("GRADPARITY_CACHE", None)
    else:
        os.environ["GRADPARITY_CACHE"] = old


@pytest.fixture(scope="session", autouse=True)
def _no_automatic_report():
    """``gradparity run`` writes report.html only where a test asks for it (with --report,
    or by unsetting the variable): figures take seconds, and most tests run suites."""
    old = os.environ.get("GRADPARITY_REPORT")
    os.environ["GRADPARITY_REPORT"] = "off"
    yield
    if old is None:
        os.environ.pop("GRADPARITY_REPORT", None)
    else:
        os.environ["GRADPARITY_REPORT"] = old
