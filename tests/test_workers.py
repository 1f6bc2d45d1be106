"""Adapters in worker processes (`gradparity.adapters.worker`): the same answers as in
process, the same exceptions, a fallback when a worker is gone; and ``gradparity debug``
starts them before its child, ends them with it, and keeps its parent light."""

from __future__ import annotations

import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from gradparity.adapters import worker
from gradparity.adapters.registry import get_backend
from gradparity.core.spec import Spec
from gradparity.reference.case import make_case

ROOT = Path(__file__).resolve().parents[1]
SEED = ROOT / "examples" / "seed_backprop.py"


@pytest.fixture
def workers():
    yield worker
    worker.stop()


def _case(dtype: str = "float64", activation: str = "relu"):
    return make_case(Spec((4, 5, 5, 1), activation=activation, head="sigmoid_bce",
                          dtype=dtype, batch=8, seed=3))


def _same(a, b) -> None:
    assert a.keys() == b.keys()
    for k in a:
        x, y = np.asarray(a[k]), np.asarray(b[k])
        assert x.dtype == y.dtype and x.shape == y.shape, k
        assert np.array_equal(x, y, equal_nan=True), k


@pytest.mark.parametrize("name", ["torch", "jax"])
def test_a_worker_answers_what_the_adapter_answers_in_process(workers, name):
    local = get_backend(name)
    if not local.available():
        pytest.skip(local.unavailable_reason())
    workers.start([name], "float32")
    w = workers.started(name)
    assert w is not None and w._proc is not None
    for dtype in ("float64", "float32"):
        case = _case(dtype, "leaky_relu")
        w.prefetch(case)
        assert w.available() is True and w.unavailable_reason() == ""
        got, want = w.gradients(case), local.gradients(case)
        _same(got.grads, want.grads)
        _same(got.forward, want.forward)
        assert got.loss == want.loss and got.backend == want.backend
        assert w.kink_conventions(dtype) == local.kink_conventions(dtype)
    assert w._proc is not None  # answered by the worker, not by the fallback


def test_an_exception_in_the_worker_is_raised_here_as_itself(workers):
    local = get_backend("jax")
    if not local.available():
        pytest.skip(local.unavailable_reason())
    workers.start(["jax"])
    w = workers.started("jax")
    want = _raised(lambda: local.gradients("not a case"))
    got = _raised(lambda: w.gradients("not a case"))
    assert type(got) is type(want) and str(got) == str(want)
    assert w._proc is not None  # the worker is still there, and still answers
    case = _case()
    _same(w.gradients(case).grads, local.gradients(case).grads)


def test_a_killed_worker_is_replaced_by_the_adapter_in_this_process(workers):
    workers.start(["torch"])
    w = workers.started("torch")
    w._proc.kill()
    w._proc.wait()
    case = _case()
    local = get_backend("torch")
    assert w.available() == local.available()
    assert w._proc is None  # closed: the calls now run here
    if local.available():
        _same(w.gradients(case).grads, local.gradients(case).grads)


def test_an_unknown_backend_in_a_worker_fails_as_in_process(workers):
    workers.start(["nonesuch"])
    with pytest.raises(type(_raised(lambda: get_backend("nonesuch")))):
        workers.started("nonesuch").available()


def _raised(fn) -> BaseException:
    try:
        fn()
    except BaseException as exc:  # noqa: BLE001
        return exc
    raise AssertionError("expected an exception")


def test_debug_reports_the_same_with_and_without_workers(tmp_path):
    from gradparity.debug.api import debug_code

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-m", "gradparity", "debug", str(SEED)], cwd=ROOT,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    here = debug_code(str(SEED))
    assert r.stdout == here.report()
    assert "torch" in r.stdout and "jax" in r.stdout


_PROBE = """
import atexit, sys
from gradparity.cli import main
def show():
    heavy = sorted(m for m in ("pandas", "torch", "jax", "matplotlib") if m in sys.modules)
    sys.__stderr__.write("HEAVY=" + ",".join(heavy) + "\\n")
atexit.register(show)
sys.exit(main(["debug", sys.argv[1], "--backends", sys.argv[2]]))
"""


@pytest.mark.parametrize("backends", ["none", "torch,jax"])
def test_the_debug_command_itself_imports_no_framework_and_no_pandas(backends):
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", _PROBE, str(SEED), backends], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "HEAVY=\n" in r.stderr  # the child and the workers import them, not the command


def _workers_of(pid: int) -> list[int]:
    """The worker processes whose parent is ``pid``, read from /proc (``ps`` cuts its
    lines to ``COLUMNS`` when that is set, and a long venv path then hides the module);
    ``ps``, with that variable unset, where there is no /proc."""
    if not Path("/proc/self/stat").exists():
        env = {k: v for k, v in os.environ.items() if k != "COLUMNS"}
        out = subprocess.run(["ps", "-o", "pid=,ppid=,args=", "-e"], capture_output=True,
                             text=True, env=env).stdout
        return [int(line.split()[0]) for line in out.splitlines()
                if "gradparity.adapters.worker" in line and int(line.split()[1]) == pid]
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            args = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:  # ended meanwhile
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])  # after "pid (comm) state"
        if ppid == pid and b"gradparity.adapters.worker" in args:
            found.append(int(entry.name))
    return found


def test_sigterm_ends_the_workers_too(tmp_path):
    text = SEED.read_text().replace(
        "import numpy as np\n", "import numpy as np\nimport time\ntime.sleep(600)\n", 1)
    p = tmp_path / "slow.py"
    p.write_text(text)
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    proc = subprocess.Popen([sys.executable, "-m", "gradparity", "debug", str(p)],
                            cwd=tmp_path, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 60
    pids: list[int] = []
    while len(pids) < 2 and time.monotonic() < deadline and proc.poll() is None:
        time.sleep(0.05)
        pids = _workers_of(proc.pid)
    if len(pids) != 2:  # say what the command did instead
        proc.kill()
        out, err = proc.communicate(timeout=30)
        listing = subprocess.run(["ps", "-o", "pid=,ppid=,args=", "-e"], capture_output=True,
                                 text=True).stdout
        pytest.fail(f"workers of the debug command (pid {proc.pid}): {pids}; its exit "
                    f"code {proc.returncode}\nstdout: {out[-2000:]}\nstderr: {err[-2000:]}"
                    f"\nprocesses:\n{listing[-4000:]}")
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)
    assert proc.returncode == 143
    for pid in pids:
        with pytest.raises(ProcessLookupError):  # killed and reaped
            os.kill(pid, 0)


_SESSION = """
import sys
from gradparity.adapters import worker
worker.start(("torch", "jax"))
from gradparity.debug.api import debug_code
r = debug_code(sys.argv[1])
print(sorted(m for m in ("torch", "jax") if m in sys.modules))
worker.stop()
"""


def test_a_session_with_workers_leaves_the_frameworks_to_them():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", _SESSION, str(SEED)], cwd=ROOT, env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "[]"  # torch and jax ran in the workers only


def test_adopted_pipes_are_not_passed_on_to_what_user_code_starts(workers):
    r, w = os.pipe()
    os.set_inheritable(r, True)
    os.set_inheritable(w, True)
    workers.adopt(f"torch:{w}:{r}")
    adopted = workers.started("torch")
    assert adopted is not None
    assert not os.get_inheritable(r) and not os.get_inheritable(w)
    adopted.close()


def test_debug_out_records_the_settings_of_the_framework_that_computed(tmp_path):
    import json

    env = dict(os.environ, PYTHONPATH=str(ROOT))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "gradparity", "debug", str(SEED), "--out",
                        str(out)], cwd=ROOT, env=env, capture_output=True, text=True,
                       timeout=300)
    assert r.returncode == 0, r.stderr
    if not get_backend("torch").available():
        pytest.skip("torch is not installed")
    recorded = json.loads((out / "environment.json").read_text())
    assert recorded["torch_threads"].isdigit()  # torch ran in a worker, not in the child
    assert "torch_cpu_capability" in recorded


_REUSED = """
import os, sys
from gradparity.adapters import worker
from gradparity.core.spec import Spec
from gradparity.reference.case import make_case
worker.start(("torch",))
value, fds = worker.handoff()
worker._STARTED.clear()  # as in a child: this process only has the descriptors
worker.adopt(value)
w = worker.started("torch")
out_fd = int(value.split(":")[1])
os.close(out_fd)  # user code closes it, then puts a file of its own at that number
fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT, 0o600)
os.dup2(fd, out_fd)
os.close(fd)
case = make_case(Spec((4, 5, 5, 1), activation="relu", head="sigmoid_bce", batch=8))
g = w.gradients(case)  # answered here, in process: the file is not the worker's pipe
print('dW1' in g.grads, w._requests is None)
"""


def test_a_pipe_number_reused_by_user_code_is_never_written_to(tmp_path):
    if not get_backend("torch").available():
        pytest.skip("torch is not installed")
    target = tmp_path / "users_file"
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    r = subprocess.run([sys.executable, "-c", _REUSED, str(target)], env=env,
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "True True"
    assert target.read_bytes() == b""  # nothing of the protocol went into the user's file


class _WhoUnpickles:
    """Unpickled, writes the name of the thread that unpickles it to ``path``."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        code = (f"import pathlib, threading; pathlib.Path({self.path!r}).write_text("
                "threading.current_thread().name)")
        return (exec, (code,))


def test_requests_are_unpickled_by_the_workers_main_thread(tmp_path):
    """The worker's reader thread only reads bytes: unpickling a case imports NumPy, and
    NumPy imported by two threads at once killed the worker (about one start in five when
    cases arrived while the framework imported)."""
    path = tmp_path / "thread"
    w = worker.WorkerBackend.launch("reference", "float64")
    try:
        w._send("unavailable_reason", (_WhoUnpickles(path),))
        kind, _ = pickle.load(w._replies)  # the call itself fails: too many arguments
    finally:
        w.close()
    assert kind == "raised"
    assert path.read_text() == "MainThread"


@pytest.mark.parametrize("garbage", [b"\xff" * 8 + b"x", b"\x05\x00", b"\x03" + b"\0" * 7 + b"abc"])
def test_a_garbled_request_ends_the_worker_and_the_call_runs_here(garbage):
    """A cut-short, oversized or unpicklable frame ends the worker; the caller, waiting
    for its answer, computes it itself instead of waiting for ever."""
    w = worker.WorkerBackend.launch("reference", "float64")
    try:
        w._requests.write(garbage)
        w._requests.close() if len(garbage) < 8 else w._requests.flush()
        assert w._proc.wait(timeout=60) is not None
        assert w.available() is True  # answered here
        assert w._proc is None  # the worker was let go
    finally:
        w.close()


def test_an_interruption_while_a_worker_starts_leaves_no_worker_behind(monkeypatch):
    # Ctrl-C or SIGTERM (raised by the command line) can arrive right after the worker's
    # process exists and before the caller holds it (importing the adapter's module)
    started = []
    real = subprocess.Popen

    def popen(*args, **kwargs):
        started.append(real(*args, **kwargs))
        return started[-1]

    def interrupted(name):
        raise KeyboardInterrupt

    monkeypatch.setattr(worker.subprocess, "Popen", popen)
    monkeypatch.setattr(worker, "_row_mode", interrupted)
    with pytest.raises(KeyboardInterrupt):
        worker.WorkerBackend.launch("torch", "float64")
    (proc,) = started
    assert proc.returncode is not None  # killed and reaped
    with pytest.raises(ProcessLookupError):
        os.kill(proc.pid, 0)
