"""Run a debug session's user code in a child process, under a wall-clock limit.

``gradparity debug`` treats the learner's file (or model module) as untrusted: the whole
session, from importing the file to the report, runs in a fresh interpreter
(``python -m gradparity.debug.isolation``, started with ``subprocess``), so that nothing the
user's code does can make the command lie or hang:

* stdin is closed (``input()`` raises EOFError at once, a finding like any exception);
* the child's own stdout and stderr go to files, never to the terminal; what the user's
  functions print reaches the report, capped (`gradparity.debug.user_code`);
* the working directory and ``--out`` are resolved in the parent before the child starts,
  and the parent writes the output: an ``os.chdir`` in user code changes nothing;
* the child runs in its own process group, which is killed when the session ends, on a
  timeout and on an interruption of the parent: no stray process or thread survives;
* after writing its result the child leaves with ``os._exit``: a non-daemon thread the
  user started cannot keep it alive;
* a child that ends without a result (``os._exit(0)``, ``sys.exit`` from a thread, a
  signal, a crash) or outlives ``timeout`` seconds is a `UsageError` naming what was
  running (the user function and line, from ``faulthandler`` or from the last user call
  the child announced): exit 2, never 0.

This protects against accidents, not against code written to fool the check (code that
runs in the child can patch gradparity itself).
"""

from __future__ import annotations

import contextlib
import faulthandler
import os
import pickle
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gradparity.core.errors import UsageError
from gradparity.core.processes import child_environment

#: Default wall-clock limit of the child, in seconds (``gradparity debug --timeout``).
DEFAULT_TIMEOUT = 60.0
#: How long the parent waits for the child's traceback dump after a timeout.
_DUMP_GRACE = 2.0
_REQUEST, _RESULT, _PHASE, _DUMP = "request.pickle", "result.pickle", "phase.txt", "dump.txt"
_STDOUT, _STDERR = "stdout.txt", "stderr.txt"


@dataclass
class IsolatedResult:
    """What the child computed: the report text, the table's rows and environment, and the
    exit code. Offers the ``report()`` / ``table()`` of a `DebugResult`, for writing
    ``--out`` (the table, and pandas, only then)."""

    report_text: str
    rows: list[dict[str, Any]]
    environment: dict[str, str]
    exit_code: int

    def report(self) -> str:
        return self.report_text

    def table(self) -> Any:
        from gradparity.experiments.tables import make_table

        return make_table(self.rows, self.environment)


def run_isolated(request: dict[str, Any], *, timeout: float = DEFAULT_TIMEOUT,
                 what: str = "your code") -> IsolatedResult:
    """Run ``gradparity.debug.request.compute(request)`` in a child process.

    Args:
        request: the debug options (plain values; see `gradparity.debug.request`).
        timeout: wall-clock limit of the child, in seconds.
        what: how messages name the user's code (the file or module).

    Raises:
        UsageError: the child ended without a result or timed out (one line naming what
            was running), or the session itself raised a `UsageError`.
    """
    work = Path(tempfile.mkdtemp(prefix="gradparity-debug-"))
    try:
        with open(work / _REQUEST, "wb") as f:
            pickle.dump(request, f)
        from gradparity.adapters import worker
        from gradparity.debug.request import framework_backends

        # the frameworks import in their own processes while the child runs the user's code
        worker.start(framework_backends(request), str(request.get("dtype") or "float64"))
        env = child_environment()
        env[worker.ENV], fds = worker.handoff()
        with open(work / _STDOUT, "wb") as out, open(work / _STDERR, "wb") as err:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gradparity.debug.isolation", str(work)],
                stdin=subprocess.DEVNULL, stdout=out, stderr=err, cwd=os.getcwd(), env=env,
                start_new_session=True, pass_fds=fds)
            try:
                timed_out = _wait(proc, timeout, work)
            finally:
                _kill_group(proc)
        return _outcome(proc.returncode, timed_out, timeout, work, what)
    finally:
        from gradparity.adapters import worker

        worker.stop()
        shutil.rmtree(work, ignore_errors=True)


def _wait(proc: subprocess.Popen, timeout: float, work: Path) -> bool:
    """Wait for the child; on a timeout ask it for a traceback dump. True if timed out."""
    try:
        proc.wait(timeout=timeout)
        return False
    except subprocess.TimeoutExpired:
        pass
    with contextlib.suppress(ProcessLookupError):
        proc.send_signal(signal.SIGUSR1)  # faulthandler: every thread's stack to dump.txt
    deadline = time.monotonic() + _DUMP_GRACE
    dump = work / _DUMP
    size = -1
    while time.monotonic() < deadline and proc.poll() is None:
        now = dump.stat().st_size if dump.exists() else 0
        if now and now == size:
            break
        size = now
        time.sleep(0.05)
    return True


def _kill_group(proc: subprocess.Popen) -> None:
    """Kill the child's process group (its strays too) and reap the child."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def _read(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return ""


def _one_line(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[:limit - 3] + "..."


_FRAME = re.compile(r'^\s*File "(?P<file>.+)", line (?P<line>\d+) in (?P<func>\S+)')


def where_it_ran(dump: str) -> str:
    """The innermost frame of user code in a ``faulthandler`` dump (current thread first):
    ``"backpropagation at file.py:12: <source line>"``, or ``""``."""
    from gradparity.debug.user_code import Location, is_user_file

    for line in dump.splitlines():
        m = _FRAME.match(line)
        if m and is_user_file(m["file"]):
            loc = Location(m["file"], int(m["line"]), _source(m["file"], int(m["line"])))
            return f"{m['func']} at {loc.short}" + (f": {loc.source}" if loc.source else "")
    return ""


def _source(file: str, line: int) -> str:
    import linecache

    return linecache.getline(file, line).strip()


def _outcome(code: int | None, timed_out: bool, timeout: float, work: Path,
             what: str) -> IsolatedResult:
    result = work / _RESULT
    if not timed_out and result.exists():
        try:
            with open(result, "rb") as f:
                kind, payload = pickle.load(f)
        except Exception:  # noqa: BLE001 - a truncated or foreign result file
            kind, payload = "", None
        if kind == "ok":
            return IsolatedResult(*payload)
        if kind == "usage":
            raise UsageError(payload)
        if kind == "internal":
            sys.stderr.write(payload)
            raise UsageError(f"{what}: the debug session failed inside gradparity (traceback "
                             "above)")
    phase = _read(work / _PHASE).strip()
    running = where_it_ran(_read(work / _DUMP)) if timed_out else ""
    running = running or phase or "the debug session (outside your functions)"
    if timed_out:
        raise UsageError(f"{what}: timed out after {timeout:g} s (--timeout) in {running}; "
                         "no verdict")
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        how = f"was killed by {name}"
    else:
        how = f"ended the process (exit status {code}) without a result"
    tail = _one_line(_read(work / _STDERR).strip().splitlines()[-1]) if _read(
        work / _STDERR).strip() else ""
    raise UsageError(f"{what}: {how} in {running}; no verdict"
                     + (f" (its last output: {tail})" if tail else ""))


# -- the child --------------------------------------------------------------------------------
def _announce_to(path: Path):
    def announce(text: str) -> None:
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    return announce


def _child(work: Path) -> None:
    """Run the session of ``work/request.pickle``; write ``(kind, payload)`` to
    ``work/result.pickle``; leave with ``os._exit`` (stray threads cannot hold us)."""
    from gradparity.core.memory import keep_freed_memory

    keep_freed_memory()
    dump = open(work / _DUMP, "w")  # noqa: SIM115 - open until os._exit
    faulthandler.register(signal.SIGUSR1, file=dump, all_threads=True)
    cwd = os.getcwd()
    from gradparity.debug import user_code

    user_code.user_code_hook = _announce_to(work / _PHASE)
    with open(work / _REQUEST, "rb") as f:
        request = pickle.load(f)
    try:
        from gradparity.adapters import worker
        from gradparity.debug.request import compute

        worker.adopt()  # the frameworks the parent started (they import meanwhile)

        result = compute(request)
        os.chdir(cwd)  # the report's paths are relative to where the command ran
        from gradparity.debug.table import table_parts

        outcome: tuple[str, Any] = ("ok", (result.report(), *table_parts(result),
                                           result.exit_code))
    except UsageError as e:
        outcome = ("usage", str(e))
    except BaseException:  # noqa: BLE001 - reported by the parent, with the traceback
        import traceback

        outcome = ("internal", traceback.format_exc())
    user_code.user_code_hook = None
    tmp = work / (_RESULT + ".tmp")
    with open(tmp, "wb") as f:
        pickle.dump(outcome, f)
    os.replace(tmp, work / _RESULT)
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


if __name__ == "__main__":
    _child(Path(sys.argv[1]))
