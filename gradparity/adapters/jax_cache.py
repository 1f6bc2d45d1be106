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

The ``jax`` backend's own programs (and those of the other jitted JAX backends) are kept
in the same folder, under ``executables/``, as executables gradparity stores and finds by
a key of its own (`stored_call`): JAX finds a program in its cache only after tracing and
lowering it again, which was two thirds of a warm case's time. Under ``values/`` it keeps
the few numbers a JAX backend measures from JAX itself (its derivatives at the kinks),
under the same key (`stored_value`). Both stay within `MAX_BYTES`, the least recently
used going first (`prune`).
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
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


def cache_environment() -> dict[str, str]:
    """``{GRADPARITY_CACHE: the folder in use, or "off"}``: for the environment of a child
    process that must use this process's choice (``--cache-dir`` included)."""
    folder = cache_dir()
    return {ENV_VAR: OFF if folder is None else str(folder)}


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


# -- executables stored by gradparity ------------------------------------------------------
#: Bumped when what `_key` covers or how an entry is written changes.
_FORMAT = 2
_LOADED: dict[str, Any] = {}  # key -> executable, in this process
_LOADED_MAX = 512


def stored_call(jax: Any, fn: Any, name: str, structure: tuple, args: tuple) -> Any:
    """``jax.device_get(fn(*args))`` for a jitted ``fn``, without tracing or lowering it
    when an earlier run stored its executable.

    JAX looks a program up in its persistent cache by the program's own text, so even a
    warm run traces and lowers every shape first (about two thirds of a warm case's time
    on small networks). Here the executable is stored under `cache_dir` ``/executables``
    and found by a key made of everything the compiled program depends on: the backend
    ``name`` and ``structure``, the arguments' tree, shapes, dtypes and weak types, the
    source of every gradparity module, the versions of gradparity, jax and jaxlib, JAX's
    configuration, the ``XLA_*``/``JAX_*`` environment variables, the device and this
    CPU's model and features. A stored executable that fails to load or run is deleted
    and the program compiled again; results are those of ``fn(*args)``, bit for bit (the
    same compiled program). Like JAX's own cache, the folder holds machine code: it must
    be as private as the user's other caches. ``fn`` without ``lower`` (no jit), or the
    cache turned off: plain ``fn(*args)``.
    """
    folder = cache_dir()
    if folder is None or not hasattr(fn, "lower"):
        with compilation_cache(jax):
            return jax.device_get(fn(*args))
    key = _key(jax, name, structure, args)
    path = folder / "executables" / f"{key}.bin"
    with _LOCK:
        exe = _LOADED.get(key)
    if exe is None:
        exe = _load(jax, path)
    if exe is not None:
        try:
            out = jax.device_get(exe(*args))
        except Exception:  # noqa: BLE001 - a broken entry: compile again below
            with _LOCK:
                _LOADED.pop(key, None)
            with contextlib.suppress(OSError):
                path.unlink()
        else:
            _keep(key, exe)
            return out
    exe = _compile_fresh(jax, fn, args)
    _store(jax, exe, path)
    _keep(key, exe)
    return jax.device_get(exe(*args))


def stored_value(jax: Any, name: str, structure: tuple,
                 compute: Callable[[], dict[str, float]]) -> dict[str, float]:
    """``compute()``, a small dict of floats measured from JAX (a backend's derivatives at
    the kinks), kept in `cache_dir` ``/values`` under the key of `stored_call` (JAX's
    version and configuration, the package's source, the machine): a warm run does not
    trace and run these probes again. Not found, unreadable or the cache off: computed
    (and stored)."""
    import json

    folder = cache_dir()
    if folder is None:
        return compute()
    path = folder / "values" / f"{_key(jax, name, structure, ())}.json"
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
        if isinstance(value, dict) and all(
                isinstance(k, str) and isinstance(v, float) for k, v in value.items()):
            _touch(path)
            return value
    except (OSError, ValueError):
        pass
    value = compute()
    _write_atomically(path, json.dumps(value, sort_keys=True).encode())
    return value


def _keep(key: str, exe: Any) -> None:
    """Keep ``exe`` for this process's later calls (the oldest goes beyond `_LOADED_MAX`)."""
    with _LOCK:
        if key not in _LOADED and len(_LOADED) >= _LOADED_MAX:
            _LOADED.pop(next(iter(_LOADED)))
        _LOADED[key] = exe


def stored_programs() -> int:
    """How many executables `stored_call` holds on disk (0 with the cache off)."""
    folder = cache_dir()
    if folder is None:
        return 0
    try:
        return sum(1 for f in (folder / "executables").iterdir() if f.suffix == ".bin")
    except OSError:
        return 0


def _compile_fresh(jax: Any, fn: Any, args: tuple) -> Any:
    """``fn.lower(*args).compile()`` with JAX's persistent cache off: an executable JAX
    read back from its cache does not serialise into one that loads again."""
    config = jax.config
    with _LOCK:
        before = config.jax_enable_compilation_cache
        config.update("jax_enable_compilation_cache", False)
        try:
            return fn.lower(*args).compile()
        finally:
            config.update("jax_enable_compilation_cache", before)


def _load(jax: Any, path: Path) -> Any:
    import hashlib
    import pickle

    from jax.experimental import serialize_executable

    try:
        data = path.read_bytes()
    except OSError:  # missing, or not ours to read: compiled here, left alone
        return None
    _touch(path)
    try:
        digest, body = data[:32], data[32:]
        if hashlib.sha256(body).digest() != digest:  # damaged on disk: never run
            raise ValueError("checksum")
        payload, in_tree, out_tree = pickle.loads(body)
        return serialize_executable.deserialize_and_load(payload, in_tree, out_tree)
    except Exception:  # noqa: BLE001 - damaged or stale: compiled again, then replaced
        with contextlib.suppress(OSError):
            path.unlink()
        return None


def _store(jax: Any, exe: Any, path: Path) -> None:
    """Write ``exe`` to ``path`` atomically (other processes may read or write it too);
    any failure leaves the run as it is, only slower next time."""
    import pickle

    from jax.experimental import serialize_executable

    try:
        import hashlib

        body = pickle.dumps(serialize_executable.serialize(exe),
                            protocol=pickle.HIGHEST_PROTOCOL)
        data = hashlib.sha256(body).digest() + body  # checked before anything is loaded
    except Exception:  # noqa: BLE001 - a cache write never fails a run
        return
    _write_atomically(path, data)


def _write_atomically(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` through a temporary file in its folder (other processes
    may read or write it too); any failure leaves things as they were. The first write of
    a process to a cache folder `prune`s it."""
    import tempfile

    folder = path.parent.parent
    with _LOCK:
        first = folder not in _PRUNED
        _PRUNED.add(folder)
    if first:
        prune(folder)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
    except Exception:  # noqa: BLE001 - a cache write never fails a run
        return


# -- a bounded folder ---------------------------------------------------------------------
#: The most the stored entries (``executables/``, ``values/``) may take on disk, in bytes:
#: beyond it `prune` deletes the least recently used. The default suite's programs take
#: about 18 MB, and any change to gradparity's source (another version) stores them anew.
MAX_BYTES = 512 * 2**20
#: `prune` deletes what is left of an interrupted write (``.tmp-*``) once it is this old
#: (seconds): a younger one may be another process's write in progress.
STALE_SECONDS = 3600.0
_FOLDERS = (("executables", ".bin"), ("values", ".json"))
_PRUNED: set[Path] = set()  # the folders this process has pruned (at its first write)


def _touch(path: Path) -> None:
    """Mark ``path`` as just used (its modification time), for `prune`'s order."""
    with contextlib.suppress(OSError):
        os.utime(path)


def prune(folder: Path | None = None, max_bytes: int | None = None) -> int:
    """Keep the stored entries of ``folder`` (default: `cache_dir`) within ``max_bytes``
    (default `MAX_BYTES`): the least recently used (stored or last read earliest) are
    deleted until the rest take at most three quarters of it, so that the next runs do
    not prune again at once. Leftovers of interrupted writes older than `STALE_SECONDS`
    go too. Returns how many files were deleted. JAX's own entries in the folder (its
    persistent cache) are left to JAX. Never raises: a folder that cannot be read or
    changed is left as it is (another process pruning at the same time is harmless: a
    program deleted under a reader is compiled again)."""
    import time

    folder = cache_dir() if folder is None else Path(folder)
    limit = MAX_BYTES if max_bytes is None else max_bytes
    if folder is None:
        return 0
    now, deleted = time.time(), 0
    entries: list[tuple[float, int, Path]] = []
    for sub, suffix in _FOLDERS:
        try:
            with os.scandir(folder / sub) as it:
                found = list(it)
        except OSError:
            continue
        for e in found:
            try:
                st = e.stat(follow_symlinks=False)
            except OSError:
                continue
            if e.name.startswith(".tmp-"):
                if now - st.st_mtime > STALE_SECONDS:
                    deleted += _unlink(Path(e.path))
            elif e.name.endswith(suffix) and e.is_file(follow_symlinks=False):
                entries.append((st.st_mtime, st.st_size, Path(e.path)))
    total = sum(size for _, size, _ in entries)
    if total > limit:
        for _, size, path in sorted(entries, key=lambda t: t[0]):
            if total <= limit * 3 // 4:
                break
            if _unlink(path):
                deleted += 1
                total -= size
    return deleted


def _unlink(path: Path) -> int:
    try:
        path.unlink()
    except OSError:
        return 0
    return 1


def _key(jax: Any, name: str, structure: tuple, args: tuple) -> str:
    import hashlib

    leaves, tree = jax.tree_util.tree_flatten(args)
    avals = [(tuple(x.shape), str(x.dtype), bool(getattr(x, "weak_type", False)))
             for x in leaves]
    config = sorted((k, repr(v)) for k, v in jax.config.values.items() if "cache" not in k)
    environ = sorted((k, v) for k, v in os.environ.items() if k.startswith(("XLA_", "JAX_")))
    devices = [(d.platform, d.device_kind) for d in jax.devices()]
    text = repr((_FORMAT, _static_identity(), name, structure, str(tree), avals, config,
                 environ, devices, bool(jax.config.read("jax_enable_x64"))))
    return hashlib.sha256(text.encode()).hexdigest()[:40]


_IDENTITY: tuple | None = None


def _static_identity() -> tuple:
    """What stays the same for this process: versions, the adapters' source, the CPU."""
    global _IDENTITY
    if _IDENTITY is None:
        import hashlib
        import platform
        from importlib.metadata import PackageNotFoundError, version

        def ver(dist: str) -> str:
            try:
                return version(dist)
            except PackageNotFoundError:
                return ""

        # every module of the package: the programs hold constants from modules other
        # than the adapters' (e.g. the leaky relu slope, Huber's delta in core.spec)
        source = hashlib.sha256()
        package = Path(__file__).resolve().parents[1]
        for f in sorted(package.rglob("*.py")):
            source.update(str(f.relative_to(package)).encode() + b"\0" + f.read_bytes())
        cpu = ""
        with contextlib.suppress(OSError):
            info = Path("/proc/cpuinfo").read_text(errors="replace").split("\n\n")[0]
            cpu = "\n".join(line for line in info.splitlines()
                            if line.split(":")[0].strip() in ("vendor_id", "model name",
                                                              "flags", "cpu family", "model"))
        _IDENTITY = (ver("gradparity"), ver("jax"), ver("jaxlib"), source.hexdigest(),
                     platform.machine(), platform.processor(), cpu)
    return _IDENTITY
