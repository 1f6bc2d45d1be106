"""JAX's persistent compilation cache: on by default, movable, off on request, scoped."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from gradparity.adapters import jax_cache

pytest.importorskip("jax")

#: One case through the JAX adapter; prints the cache events JAX reported.
_SCRIPT = """
import json, jax
events = {}
jax.monitoring.register_event_listener(
    lambda name, **kw: events.__setitem__(name, events.get(name, 0) + 1))
from gradparity.adapters.jax_grad import JaxBackend
from gradparity.core.spec import Spec
from gradparity.reference.case import make_case
case = make_case(Spec((5, 8, 3), activation="tanh", head="softmax_ce", batch=4, seed=0,
                      dtype="float64"))
from gradparity.adapters.jax_grad import jit_cache_info
JaxBackend().gradients(case)
print(json.dumps({"hits": events.get("/jax/compilation_cache/cache_hits", 0),
                  "misses": events.get("/jax/compilation_cache/cache_misses", 0),
                  "traces": jit_cache_info()["traces"],
                  "dir_after": jax.config.jax_compilation_cache_dir}))
"""


def _run(env_cache: str, tmp_path: Path) -> dict:
    env = {k: v for k, v in os.environ.items() if k != jax_cache.ENV_VAR}
    env[jax_cache.ENV_VAR] = env_cache
    env["XDG_CACHE_HOME"] = str(tmp_path / "xdg")  # never the user's own cache
    out = subprocess.run([sys.executable, "-c", _SCRIPT], env=env, capture_output=True,
                         text=True, timeout=300, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_second_process_compiles_nothing(tmp_path):
    folder = tmp_path / "cache"
    first = _run(str(folder), tmp_path)
    assert first["traces"] == 1 and first["hits"] == 0
    # the adapter's program is stored by gradparity (executables/), not in JAX's cache
    assert any((folder / "executables").iterdir()), "no executable was stored"
    second = _run(str(folder), tmp_path)
    assert second["misses"] == 0 and second["traces"] == 0, second
    assert first["dir_after"] is None and second["dir_after"] is None  # scope restored


def test_off_writes_nothing(tmp_path):
    got = _run("off", tmp_path)
    assert got["hits"] == 0
    assert not (tmp_path / "xdg").exists()


def test_precedence(monkeypatch, tmp_path):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.delenv(jax_cache.ENV_VAR, raising=False)
    try:
        jax_cache.set_cache_dir(None)
        assert jax_cache.cache_dir() == tmp_path / "gradparity" / "jax"
        monkeypatch.setenv(jax_cache.ENV_VAR, str(tmp_path / "env"))
        assert jax_cache.cache_dir() == tmp_path / "env"
        monkeypatch.setenv(jax_cache.ENV_VAR, "OFF")
        assert jax_cache.cache_dir() is None
        jax_cache.set_cache_dir(tmp_path / "chosen")
        assert jax_cache.cache_dir() == tmp_path / "chosen"
        jax_cache.set_cache_dir("off")
        assert jax_cache.cache_dir() is None
    finally:
        jax_cache.set_cache_dir(None)


def test_kink_conventions_are_stored_and_read_back(monkeypatch, tmp_path):
    """A warm process reads the backend's kink conventions from the cache folder instead
    of probing JAX again; a damaged entry is probed again; off: always probed."""
    from gradparity.adapters.jax_grad import JaxBackend

    monkeypatch.setenv(jax_cache.ENV_VAR, str(tmp_path / "c"))
    probed = []
    real = JaxBackend._probe_kinks

    def probe(self, jax, dtype):
        probed.append(dtype)
        return real(self, jax, dtype)

    monkeypatch.setattr(JaxBackend, "_probe_kinks", probe)
    first = JaxBackend().kink_conventions("float64")
    assert probed == ["float64"]
    (entry,) = (tmp_path / "c" / "values").iterdir()
    assert JaxBackend().kink_conventions("float64") == first  # a new adapter: read back
    assert probed == ["float64"]
    assert JaxBackend().kink_conventions("float32") == JaxBackend().kink_conventions(
        "float32") and probed == ["float64", "float32"]  # its own key per dtype
    entry.write_text('{"relu": "1"}')  # damaged: probed again, and replaced
    assert JaxBackend().kink_conventions("float64") == first
    assert probed[-1] == "float64" and len(probed) == 3
    assert json.loads(entry.read_text()) == first
    monkeypatch.setenv(jax_cache.ENV_VAR, "off")
    assert JaxBackend().kink_conventions("float64") == first and len(probed) == 4
