"""The cache folder stays bounded: `jax_cache.prune` deletes the least recently used
entries beyond a size, and the leftovers of interrupted writes once they are old."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from gradparity.adapters import jax_cache


def _entry(folder: Path, sub: str, name: str, size: int, age: float) -> Path:
    path = folder / sub / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x" * size)
    t = time.time() - age
    os.utime(path, (t, t))
    return path


def test_the_least_recently_used_go_first_down_to_three_quarters(tmp_path):
    # ten programs of 100 bytes, program k last used k hours ago; a value of 10 bytes
    progs = [_entry(tmp_path, "executables", f"{k}.bin", 100, 3600.0 * k) for k in range(10)]
    value = _entry(tmp_path, "values", "v.json", 10, 30.0)
    # 1010 bytes > 1000: the oldest go until at most 750 are left (710: three deleted)
    assert jax_cache.prune(tmp_path, max_bytes=1000) == 3
    assert [p.exists() for p in progs] == [True] * 7 + [False] * 3
    assert value.exists()  # used 30 s ago


def test_nothing_goes_within_the_limit(tmp_path):
    progs = [_entry(tmp_path, "executables", f"{k}.bin", 100, 3600.0 * k) for k in range(5)]
    assert jax_cache.prune(tmp_path, max_bytes=500) == 0
    assert all(p.exists() for p in progs)


def test_deleted_down_to_three_quarters_so_the_next_run_does_not_prune_again(tmp_path):
    progs = [_entry(tmp_path, "executables", f"{k}.bin", 100, 60.0 * k) for k in range(11)]
    jax_cache.prune(tmp_path, max_bytes=1000)
    left = sum(p.stat().st_size for p in progs if p.exists())
    assert left <= 750
    assert left > 650  # no more than needed
    _entry(tmp_path, "executables", "new.bin", 100, 0.0)
    assert jax_cache.prune(tmp_path, max_bytes=1000) == 0


def test_an_old_interrupted_write_goes_a_recent_one_stays(tmp_path):
    old = _entry(tmp_path, "executables", ".tmp-abc", 5, jax_cache.STALE_SECONDS + 60)
    young = _entry(tmp_path, "values", ".tmp-def", 5, 10.0)
    assert jax_cache.prune(tmp_path, max_bytes=10**9) == 1
    assert not old.exists() and young.exists()


def test_other_files_are_left_alone(tmp_path):
    # JAX's own cache entries and anything else in the folder are not gradparity's
    jax_own = _entry(tmp_path, ".", "jit_f-0123-cache", 5000, 10**6)
    other = _entry(tmp_path, "executables", "notes.txt", 5000, 10**6)
    prog = _entry(tmp_path, "executables", "a.bin", 100, 10**6)
    assert jax_cache.prune(tmp_path, max_bytes=50) == 1
    assert jax_own.exists() and other.exists() and not prog.exists()


def test_a_missing_or_unreadable_folder_is_no_error(tmp_path, monkeypatch):
    assert jax_cache.prune(tmp_path / "nothing", max_bytes=0) == 0
    _entry(tmp_path, "executables", "a.bin", 100, 10.0)

    def refuse(path):
        raise PermissionError(13, "Permission denied", str(path))

    monkeypatch.setattr(jax_cache.os, "scandir", refuse)
    assert jax_cache.prune(tmp_path, max_bytes=0) == 0
    monkeypatch.undo()
    monkeypatch.setattr(jax_cache, "_unlink", lambda path: 0)  # cannot delete: no error
    assert jax_cache.prune(tmp_path, max_bytes=0) == 0


def test_a_read_marks_an_entry_as_used(tmp_path, monkeypatch):
    # `stored_value` reads an entry: it becomes the most recently used, and survives
    monkeypatch.setenv(jax_cache.ENV_VAR, str(tmp_path))

    class FakeJax:  # what `_key` reads of jax
        class tree_util:
            @staticmethod
            def tree_flatten(args):
                return [], "tree"

        class config:
            values: dict = {}

            @staticmethod
            def read(name):
                return False

        @staticmethod
        def devices():
            return []

    value = jax_cache.stored_value(FakeJax, "kinks:test", ("float64",), lambda: {"relu": 0.0})
    assert value == {"relu": 0.0}
    (path,) = (tmp_path / "values").iterdir()
    t = time.time() - 10 * 3600
    os.utime(path, (t, t))
    prog = _entry(tmp_path, "executables", "p.bin", 1000, 3600.0)
    assert jax_cache.stored_value(FakeJax, "kinks:test", ("float64",),
                                  lambda: pytest.fail("computed again")) == value
    assert time.time() - path.stat().st_mtime < 60
    jax_cache.prune(tmp_path, max_bytes=1000)
    assert path.exists() and not prog.exists()


def test_the_first_write_of_a_process_prunes(tmp_path, monkeypatch):
    monkeypatch.setattr(jax_cache, "_PRUNED", set())
    monkeypatch.setattr(jax_cache, "MAX_BYTES", 1000)
    old = [_entry(tmp_path, "executables", f"{k}.bin", 400, 3600.0 * (k + 1))
           for k in range(3)]
    jax_cache._write_atomically(tmp_path / "executables" / "new.bin", b"y" * 10)
    assert (tmp_path / "executables" / "new.bin").read_bytes() == b"y" * 10
    assert [p.exists() for p in old] == [True, False, False]
    # once per process: the next write does not look at the folder again
    more = _entry(tmp_path, "executables", "more.bin", 5000, 10**6)
    jax_cache._write_atomically(tmp_path / "executables" / "new2.bin", b"z")
    assert more.exists()


def test_a_program_loaded_from_disk_is_marked_as_used(tmp_path, monkeypatch):
    pytest.importorskip("jax")
    from gradparity.adapters.jax_grad import JaxBackend
    from gradparity.core.spec import Spec
    from gradparity.reference.case import make_case

    monkeypatch.setenv(jax_cache.ENV_VAR, str(tmp_path))
    case = make_case(Spec((4, 3, 2), activation="tanh", head="linear_mse", batch=3, seed=2))
    want = JaxBackend().gradients(case)  # compiled and stored
    (path,) = (tmp_path / "executables").iterdir()
    t = time.time() - 10 * 3600
    os.utime(path, (t, t))
    monkeypatch.setattr(jax_cache, "_LOADED", {})  # as a new process: only the disk has it
    got = JaxBackend().gradients(case)
    assert all((got.grads[k] == want.grads[k]).all() for k in want.grads)
    assert time.time() - path.stat().st_mtime < 60


def test_each_folder_is_pruned_at_its_first_write(tmp_path, monkeypatch):
    # --cache-dir / set_cache_dir may move the cache within one process
    monkeypatch.setattr(jax_cache, "_PRUNED", set())
    monkeypatch.setattr(jax_cache, "MAX_BYTES", 1000)
    first, second = tmp_path / "one", tmp_path / "two"
    old = [_entry(f, "executables", "old.bin", 5000, 3600.0) for f in (first, second)]
    jax_cache._write_atomically(first / "executables" / "a.bin", b"a")
    assert not old[0].exists() and old[1].exists()
    jax_cache._write_atomically(second / "values" / "b.json", b"{}")
    assert not old[1].exists()
