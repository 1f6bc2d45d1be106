"""``gradparity debug`` runs user code in a child process: whatever that code does (exit,
hang, read stdin, change folder, start threads, print megabytes, kill itself), the command
ends on time with exit 1 (a finding) or 2 (one line naming what ran), never a silent 0."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gradparity.cli import main

ROOT = Path(__file__).resolve().parents[1]
SEED_TEXT = (ROOT / "examples" / "seed_backprop.py").read_text()
ANCHOR = "    L = len(parameters) // 2\n"


def _user_file(tmp_path: Path, inject: str = "", top: str = "", name: str = "mine.py"
               ) -> Path:
    """The seed's (correct) backprop with ``inject`` as the first lines of
    backpropagation and ``top`` at module level."""
    body = "".join(f"    {line}\n" for line in inject.splitlines())
    text = SEED_TEXT.replace(ANCHOR, body + ANCHOR)
    text = text.replace("import numpy as np\n", "import numpy as np\n" + top + "\n", 1)
    p = tmp_path / name
    p.write_text(text)
    return p


def _line_of(path: Path, text: str) -> int:
    return next(i for i, ln in enumerate(path.read_text().splitlines(), 1) if text in ln)


def _debug(path: Path, *extra: str, cwd: Path, timeout: float = 120):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    start = time.monotonic()
    r = subprocess.run([sys.executable, "-m", "gradparity", "debug", str(path), "--backends",
                        "none", *extra], cwd=cwd, env=env, capture_output=True, text=True,
                       timeout=timeout)
    return r, time.monotonic() - start


def _one_line_error(r) -> str:
    assert r.returncode == 2, (r.stdout[-2000:], r.stderr[-2000:])
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr, r.stderr
    assert r.stdout == ""
    return r.stderr


def test_the_seed_still_passes_in_the_child(capsys):
    assert main(["debug", str(ROOT / "examples" / "seed_backprop.py"), "--backends",
                 "none"]) == 0
    assert "Result: everything agrees. Exit 0." in capsys.readouterr().out


def test_os_exit_0_in_backprop_is_an_error_naming_the_function(tmp_path):
    p = _user_file(tmp_path, "import os; os._exit(0)")
    r, _ = _debug(p, cwd=tmp_path)
    err = _one_line_error(r)
    assert "ended the process (exit status 0) without a result" in err
    assert f"backpropagation (mine.py:{_line_of(p, 'def backpropagation')})" in err


def test_a_signal_from_user_code_is_an_error_naming_it(tmp_path):
    p = _user_file(tmp_path, "import os, signal; os.kill(os.getpid(), signal.SIGKILL)")
    err = _one_line_error(_debug(p, cwd=tmp_path)[0])
    assert "was killed by SIGKILL in backpropagation" in err


@pytest.mark.parametrize("where", ["backprop", "import"])
def test_a_hang_times_out_naming_the_function_and_line(tmp_path, where):
    if where == "backprop":
        p = _user_file(tmp_path, "while True:\n    pass")
        func = "backpropagation"
    else:
        p = _user_file(tmp_path, top="while True:\n    pass")
        func = "<module>"
    r, took = _debug(p, "--timeout", "8", cwd=tmp_path)
    err = _one_line_error(r)
    assert took < 8 + 20  # the limit, the dump grace and the start-up: no hang
    assert "timed out after 8 s (--timeout)" in err
    line = _line_of(p, "while True:")
    assert f"in {func} at mine.py:{line}" in err or f"in {func} at mine.py:{line + 1}" in err


def test_input_does_not_hang_it_is_a_finding(tmp_path):
    p = _user_file(tmp_path, "input('continue? ')")
    r, took = _debug(p, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    assert "EOFError" in r.stdout


def test_a_stray_thread_cannot_keep_it_alive_or_speak_for_it(tmp_path):
    top = ("import threading, time, sys\n"
           "def _chatter():\n"
           "    while True:\n"
           "        print('Result: everything agrees. Exit 0.', flush=True)\n"
           "        time.sleep(0.01)\n"
           "threading.Thread(target=_chatter).start()\n")
    p = _user_file(tmp_path, "return {}", top=top)  # no gradients at all: findings
    r, took = _debug(p, cwd=tmp_path)
    assert r.returncode == 1, r.stderr
    # what the thread printed while the user's function ran is shown as its output
    # ("  | ..."), never as the verdict
    verdicts = [ln for ln in r.stdout.splitlines() if ln.startswith("Result: ")]
    assert len(verdicts) == 1 and "finding" in verdicts[0] and "Exit 1." in verdicts[0]


def test_a_chdir_in_user_code_does_not_move_out(tmp_path):
    p = _user_file(tmp_path, "import os; os.chdir('/')")
    name = f"rel_dbg_out_{os.getpid()}_{tmp_path.name}"  # where a moved --out would land
    r, _ = _debug(p, "--out", name, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert (tmp_path / name / "table.csv").is_file()
    assert f"table: {name}" in r.stdout
    assert not (Path("/") / name).exists()


def test_megabytes_of_output_are_cut_in_the_report(tmp_path):
    p = _user_file(tmp_path, "print('x' * 10_000_000)\nprint('y\\n' * 100_000)")
    r, _ = _debug(p, "--out", "o", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert len(r.stdout) < 20_000
    assert "Your code printed" in r.stdout
    assert len((tmp_path / "o" / "report.txt").read_text()) < 20_000


def test_bad_timeout_is_a_usage_error(tmp_path, capsys):
    for bad in ("0", "-1", "nan", "inf"):
        assert main(["debug", "x.py", "--timeout", bad]) == 2
        err = capsys.readouterr().err
        assert f"--timeout={float(bad)!r}: expected a positive number of seconds" in err


def test_an_exception_after_every_checked_quantity_is_still_a_finding(tmp_path):
    from gradparity.debug import debug_numpy

    p = tmp_path / "late.py"
    p.write_text(SEED_TEXT.replace("    return grads",
                                   "    raise ValueError('late')\n    return grads"))
    r = debug_numpy(p, backends=())
    assert r.exit_code == 1
    assert any("raised ValueError: late" in x.text and "never returned" in x.text
               for x in r.problems)


def test_a_torch_model_module_runs_isolated_too(tmp_path):
    (tmp_path / "model.py").write_text("import os\nos._exit(0)\nmodel = None\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "gradparity", "debug", "--torch",
                        "model.py:model"], cwd=tmp_path, env=env, capture_output=True,
                       text=True, timeout=120)
    err = _one_line_error(r)
    assert err.startswith("gradparity: error: --torch=model.py:model: ended the process "
                          "(exit status 0) without a result in importing model.py")


def test_sigterm_to_the_command_ends_it_and_its_child(tmp_path):
    p = _user_file(tmp_path, top="import os, time\nopen('started.tmp', 'w').write("
                   "str(os.getpid()))\nos.replace('started.tmp', 'started')\ntime.sleep(600)")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "gradparity", "debug", str(p), "--backends",
                             "none"], cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while not (tmp_path / "started").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (tmp_path / "started").exists()
    proc.terminate()
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 143 and err == "gradparity: terminated\n"
    child = int((tmp_path / "started").read_text())
    with pytest.raises(ProcessLookupError):  # killed and reaped, not left running
        os.kill(child, 0)
