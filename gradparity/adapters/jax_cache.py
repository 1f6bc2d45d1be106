"""Where the JAX adapter keeps XLA's compiled functions between runs.

JAX can store compiled executables on disk (its persistent compilation cache), so a second
run of a suite loads them instead of compiling again. gradparity turns it on for its own
JAX calls, in this order of precedence:

1. `set_cache_dir` (the command line's ``--cache-dir``): a folder, or ``"off"``;
2. the environment variable ``GRADPARITY_CACHE``: a folder, or ``off``;
3. ``$XDG_CACHE_HOME/gradparity/jax`` (default ``~/.cache/gradparity/jax``).

Scope: the folder and a zero minimum compile time (JAX writes only compiles over 1 s by
default, and every compile here is shorter) are set through ``jax.config`` while the
adapter runs a case, and the previous values are put back afterwards. Two things a library
user should know, both JAX's design (one persistent cache per process):

* if the process already set ``jax_compilation_cache_dir``, gradparity uses that folder and
  changes nothing;
* once JAX has opened gradparity's folder, it stays JAX's cache for the rest of the
  process: the user's own jitted functions are then looked up there too (and stored there
  when they take longer than JAX's own threshold to compile). Turn the cache off
  (``"off"``) to keep a process free of it.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

ENV_VAR = "GRADPARITY_CACHE"
OFF = "off"

_LOCK = threading.RLock()
_chosen: str | None = None  # set_cache_dir's value; None: the environment decides


def default_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/gradparity/jax``, or ``~/.cache/gradparity/jax``."""
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "gradparity" / "jax"


def set_cache_dir(value: str | os.PathLike[str] | None) -> None:
    """Use ``value`` as the compilation cache folder (``"off"``: no cache; ``None``: back
    to ``GRADPARITY_CACHE`` or the default)."""
    global _chosen
    with _LOCK:
        _chosen = None if value is None else os.fspath(value)


def cache_dir() -> Path | None:
    """The folder in use, or ``None`` when the cache is off (see module doc)."""
    with _LOCK:
        value = _chosen
    if value is None:
        value = os.environ.get(ENV_VAR) or None
    if value is not None and value.strip().lower() == OFF:
        return None
    return Path(value).expanduser() if value else default_cache_dir()


@contextlib.contextmanager
def compilation_cache(jax: Any) -> Iterator[Path | None]:
    """Run a block with JAX's persistent cache in `cache_dir`; yields the folder used
    (the process's own when it set one), or ``None`` when off."""
    config = jax.config
    own = config.jax_compilation_cache_dir
    if own:  # the process chose a folder: use it as it is
        yield Path(own)
        return
    path = cache_dir()
    if path is None:
        yield None
        return
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError:  # an unwritable folder makes a slower run, never a failed one
        yield None
        return
    with _LOCK:
        before = config.jax_persistent_cache_min_compile_time_secs
        config.update("jax_compilation_cache_dir", str(path))
        config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        try:
            yield path
        finally:
            config.update("jax_compilation_cache_dir", own)
            config.update("jax_persistent_cache_min_compile_time_secs", before)
