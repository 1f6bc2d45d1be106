"""Writes that survive signals: SIGINT, SIGTERM and SIGKILL sent the moment the write's
temporaries (``.R.tmp-*``, ``.R.old-*``) appear, found by a watcher."""

import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pandas as pd
import pytest

from gradparity.cli import main
from gradparity.experiments.io import (
    _host,
    check_output_folder,
    clean_stale_temporaries,
    write_folder_atomically,
)

ROOT = Path(__file__).resolve().parents[1]
SUITE = '[[sweep]]\nsizes = [3, 4, 2]\nseed = [0, 1]\n'
FILES = {"table.csv", "summary.md", "environment.json"}

# The run, with its write phase slowed down so the watcher cannot miss the window: each
# file of the temporary folder takes 0.2 s ("tmp"), or the swap pauses 1 s once the
# previous result is in its ".old-" folder ("old").
CHILD = textwrap.dedent("""
    import os, sys, time
    import gradparity.experiments.io as io

    if sys.argv[1] == "tmp":
        fsync = io._fsync

        def slow(path):
            fsync(path)
            time.sleep(0.2)

        io._fsync = slow
    else:
        replace = os.replace

        def slow_replace(a, b):
            replace(a, b)
            if ".old-" in str(b):
                time.sleep(1.0)

        os.replace = slow_replace
    from gradparity.cli import main
    sys.exit(main(["run", "s.toml", "--backends", "reference", "--out", "R", "-q"]))
""")


def _temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".R."))


def _watch(folder: Path, kind: str, proc: subprocess.Popen, sig: int) -> threading.Thread:
    def run():
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and proc.poll() is None:
            if any(n.startswith(f".R.{kind}-") for n in os.listdir(folder)):
                proc.send_signal(sig)
                return
            time.sleep(0.0005)

    t = threading.Thread(target=run, daemon=True)
    t.start()
    return t


def _previous_result(tmp_path: Path, monkeypatch) -> str:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "s.toml").write_text(SUITE)
    assert main(["run", "s.toml", "--backends", "reference", "--out", "R", "-q"]) == 0
    (tmp_path / "R" / "summary.md").write_text("previous result\n")  # tell them apart
    return "previous result\n"


def _complete(folder: Path) -> None:
    assert FILES <= {p.name for p in folder.iterdir()}
    assert len(pd.read_csv(folder / "table.csv")) > 0


@pytest.mark.parametrize("kind", ["tmp", "old"])
@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM, signal.SIGKILL],
                         ids=["SIGINT", "SIGTERM", "SIGKILL"])
def test_a_signal_while_the_temporaries_exist_leaves_nothing_behind(tmp_path, monkeypatch,
                                                                    kind, sig):
    previous = _previous_result(tmp_path, monkeypatch)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-c", CHILD, kind], cwd=tmp_path, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    watcher = _watch(tmp_path, kind, proc, sig)
    out, err = proc.communicate(timeout=300)
    watcher.join(5)
    assert "Traceback" not in err
    if sig == signal.SIGKILL:
        assert proc.returncode == -signal.SIGKILL
        assert _temporaries(tmp_path)  # what a killed run leaves ...
        check_output_folder(tmp_path / "R")  # ... the next run's first check removes
    else:
        expected = {signal.SIGINT: 130, signal.SIGTERM: 143}[sig]
        assert proc.returncode == expected, err
        assert err.strip() in ("gradparity: interrupted", "gradparity: terminated")
    assert _temporaries(tmp_path) == []
    _complete(tmp_path / "R")
    summary = (tmp_path / "R" / "summary.md").read_text()
    if kind == "tmp":  # interrupted before the swap: the previous result stays
        assert summary == previous
    elif sig == signal.SIGKILL:  # killed in the middle of the swap: put back
        assert summary == previous
    else:  # held until the swap was done: the new result, complete
        assert summary != previous


def _dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_only_our_own_temporaries_of_dead_processes_are_cleaned(tmp_path):
    out = tmp_path / "R"
    out.mkdir()
    (out / "table.csv").write_text("x\n")
    alive = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        dead = _dead_pid()
        names = {
            f".R.tmp-{_host()}-{dead}-abcd1234": True,       # ours, dead: cleaned
            f".R.old-{_host()}-{dead}-abcd_123": True,
            f".R.tmp-{_host()}-{alive.pid}-abcd1234": False,  # alive: kept
            f".R.tmp-otherhost-{dead}-abcd1234": False,       # another host: kept
            ".R.tmp-abcd1234": False,                         # not our naming: kept
            f".S.tmp-{_host()}-{dead}-abcd1234": False,       # another result: kept
        }
        for n in names:
            (tmp_path / n).mkdir()
            (tmp_path / n / "table.csv").write_text("y\n")
        removed = clean_stale_temporaries(out)
        assert sorted(p.name for p in removed) == sorted(n for n, gone in names.items()
                                                         if gone)
        left = {p.name for p in tmp_path.iterdir()}
        assert left == {"R"} | {n for n, gone in names.items() if not gone}
        assert (out / "table.csv").read_text() == "x\n"
    finally:
        alive.kill()
        alive.wait()


def test_a_result_lost_in_the_middle_of_a_killed_swap_is_put_back(tmp_path):
    out = tmp_path / "R"
    old = tmp_path / f".R.old-{_host()}-{_dead_pid()}-zz00zz00"
    (old / "R").mkdir(parents=True)
    (old / "R" / "table.csv").write_text("previous\n")
    assert not out.exists()
    check_output_folder(out)
    assert (out / "table.csv").read_text() == "previous\n"
    assert not old.exists()


def test_an_interruption_during_the_swap_keeps_the_previous_result(tmp_path, monkeypatch):
    out = tmp_path / "R"
    write_folder_atomically(out, {"table.csv": lambda p: p.write_text("previous\n")})
    real = os.replace
    calls = []

    def interrupted(a, b):
        calls.append(b)
        if len(calls) == 2:  # the previous result is aside, the new one not yet in place
            raise KeyboardInterrupt
        real(a, b)

    monkeypatch.setattr(os, "replace", interrupted)
    with pytest.raises(KeyboardInterrupt):
        write_folder_atomically(out, {"table.csv": lambda p: p.write_text("new\n")})
    monkeypatch.setattr(os, "replace", real)
    assert (out / "table.csv").read_text() == "previous\n"
    assert _temporaries(tmp_path) == []
