"""Adapters in worker processes, started before they are needed.

Most of a short session's time is importing the frameworks (torch about 1.5 s, jax about
0.8 s on two cores) and JAX's first compilations, one after the other. `start` launches
one worker per backend (``python -m gradparity.adapters.worker NAME DTYPE``) as soon as
the backends are known; each imports its framework and measures its kink conventions at
once, while the session loads the user's code and runs the reference. `started` then
gives a `WorkerBackend`: the adapter protocol, each call run by the same adapter class in
the worker on the same pickled arrays, so the results are the in-process ones (same
code, same machine, same environment). Exceptions come back as themselves.

If a worker is gone (killed, crashed, never started), or an answer would not survive the
trip (an exception that does not unpickle), `WorkerBackend` runs that call in this process
instead. The answers are those of a clean process: global settings changed by code that
runs here (``torch.set_default_dtype``, ``jax.config``) do not reach a worker.

A process that starts workers may hand them to a child process (`handoff`, `adopt`):
``gradparity debug`` starts them first thing, before its isolated child even starts, and
kills them when the child ends. Workers also leave when their input closes.
"""

from __future__ import annotations

import contextlib
import importlib
import os
import pickle
import queue
import signal
import struct
import subprocess
import sys
import threading
from collections import deque
from typing import TYPE_CHECKING, Any

from gradparity.core.processes import child_environment

if TYPE_CHECKING:
    from gradparity.core.gradients import GradientSet

#: The calls a worker serves: the adapter protocol, and the settings of its framework.
_METHODS = ("available", "unavailable_reason", "gradients", "kink_conventions",
            "framework_runtime")

#: Calls whose answer never changes in a worker (no user code runs there): asked once.
_CONSTANT = ("available", "unavailable_reason", "kink_conventions", "framework_runtime")

#: The environment variable `handoff` fills for a child process (read by `adopt`).
ENV = "GRADPARITY_WORKERS"

_STARTED: dict[str, WorkerBackend] = {}


class WorkerBackend:
    """A backend whose calls run in a worker process (see the module docstring)."""

    def __init__(self, name: str, requests: Any = None, replies: Any = None,
                 proc: subprocess.Popen | None = None) -> None:
        self.name = name
        #: the table's ``mode`` for this backend's rows: its adapter class's
        self.row_mode = _row_mode(name)
        self._requests, self._replies, self._proc = requests, replies, proc
        self._local: Any = None
        # the pipes' identities: code running here may close a descriptor and reopen its
        # number on a file of its own, which must never be written to or read
        self._pipes = self._identify()
        # requests whose replies are unread, and replies not asked for yet; each keeps its
        # arguments alive, so that an id in a key cannot be reused by another case
        self._sent: deque[tuple[tuple[str, Any], tuple]] = deque()
        self._replied: dict[tuple[str, Any], tuple[tuple[str, Any], tuple]] = {}
        self._known: dict[tuple[str, Any], Any] = {}  # answers of the _CONSTANT calls

    @classmethod
    def launch(cls, name: str, dtype: str) -> WorkerBackend:
        """Start the worker of backend ``name`` (it measures ``dtype``'s kink conventions
        while it waits)."""
        from gradparity.adapters.jax_cache import cache_environment

        env = child_environment()
        env.update(cache_environment())  # --cache-dir, passed on
        try:
            proc = subprocess.Popen(
                [sys.executable, "-m", "gradparity.adapters.worker", name, dtype],
                stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                env=env, start_new_session=True)  # killed as a group
        except OSError:
            return cls(name)
        try:
            _widen(proc.stdout)
            return cls(name, proc.stdin, proc.stdout, proc)
        except BaseException:  # e.g. Ctrl-C or SIGTERM meanwhile: no worker left behind
            _end(proc)
            raise

    def _identify(self) -> tuple[tuple[int, int], ...] | None:
        try:
            return tuple((st.st_dev, st.st_ino) for st in (
                os.fstat(f.fileno()) for f in (self._requests, self._replies)))
        except (OSError, AttributeError, ValueError):
            return None

    def _intact(self) -> bool:
        """The pipes are still the worker's (same descriptors, same open pipes)."""
        return self._pipes is not None and self._identify() == self._pipes

    @staticmethod
    def _key(method: str, args: tuple) -> tuple[str, Any]:
        return method, tuple(id(a) if method == "gradients" else a for a in args)

    def _send(self, method: str, args: tuple) -> None:
        data = pickle.dumps((method, args), protocol=pickle.HIGHEST_PROTOCOL)
        self._requests.write(_FRAME.pack(len(data)) + data)
        self._requests.flush()
        self._sent.append((self._key(method, args), args))

    def _pending(self, key: tuple[str, Any]) -> bool:
        return key in self._replied or any(k == key for k, _ in self._sent)

    def prefetch(self, case) -> None:
        """Ask for everything a judgement of ``case`` needs at once (availability, the
        gradients, the kink conventions of its dtype): the worker computes while this
        process does other work; the calls then read the replies."""
        if self._requests is None:
            return
        try:
            for method, args in (("available", ()), ("gradients", (case,)),
                                 ("kink_conventions", (case.spec.dtype,))):
                key = self._key(method, args)
                if key not in self._known and not self._pending(key):
                    self._send(method, args)
        except Exception:  # noqa: BLE001 - the worker is gone: the calls run here
            self.close()

    def waiting(self) -> bool:
        """Whether a call now would wait: a request is unanswered and nothing can be read
        from the worker at once (e.g. it is still importing its framework). A hint only:
        an answer already read ahead into this side's buffer counts as not there yet."""
        if self._requests is None or not self._sent:
            return False
        try:
            import select

            readable, _, _ = select.select([self._replies], [], [], 0)
        except (OSError, ValueError, TypeError):  # closed, or no select on pipes here
            return False
        return not readable

    def _call(self, method: str, *args: Any) -> Any:
        key = self._key(method, args)
        if key in self._known:
            return self._known[key]
        if self._requests is not None:
            try:
                if not self._intact():
                    raise OSError("the worker's pipes were closed or replaced")
                if not self._pending(key):
                    self._send(method, args)
                while key not in self._replied:
                    sent, held = self._sent.popleft()
                    self._replied[sent] = (pickle.load(self._replies), held)
            except Exception:  # noqa: BLE001 - the worker is gone: run here instead
                self.close()
            else:
                (kind, value), _ = self._replied.pop(key)
                if kind == "raised":
                    raise value
                if kind == "value":
                    if method in _CONSTANT:
                        self._known[key] = value
                    return value
                # "local": the answer does not travel (it would not unpickle): run here
        if method == "framework_runtime":  # of this process, which now computes
            from gradparity.adapters.base import framework_runtime

            return framework_runtime()
        if self._local is None:
            from gradparity.adapters.registry import get_backend

            self._local = get_backend(self.name)
        return getattr(self._local, method)(*args)

    def available(self) -> bool:
        return bool(self._call("available"))

    def unavailable_reason(self) -> str:
        return str(self._call("unavailable_reason"))

    def gradients(self, case) -> GradientSet:
        return self._call("gradients", case)

    def kink_conventions(self, dtype: str) -> dict[str, float]:
        return dict(self._call("kink_conventions", dtype))

    def framework_runtime(self) -> dict[str, str]:
        """`gradparity.adapters.base.framework_runtime` of the process that computes."""
        return dict(self._call("framework_runtime"))

    def close(self) -> None:
        """Stop using the worker; end it if this process started it."""
        if self._intact():  # else the descriptors may be someone else's now: left alone
            for f in (self._requests, self._replies):
                with contextlib.suppress(OSError, AttributeError):
                    f.close()
        self._requests = self._replies = None
        self._pipes = None
        self._sent.clear()
        self._replied.clear()
        self._known.clear()  # this process computes now: its own answers
        proc, self._proc = self._proc, None
        if proc is not None:
            _end(proc)


def _end(proc: subprocess.Popen) -> None:
    """Kill a worker and whatever it started (its process group), and reap it."""
    with contextlib.suppress(OSError):
        os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


#: Bytes the pipe of a worker's answers holds (Linux; elsewhere the system's size): the
#: answers of the cases sent ahead wait there while this process judges. 1 MiB is Linux's
#: limit for an unprivileged process (``/proc/sys/fs/pipe-max-size``).
REPLY_PIPE = 1 << 20


def _widen(pipe: Any) -> None:
    """Let ``pipe`` hold `REPLY_PIPE` bytes where the system allows it (else leave it)."""
    try:
        import fcntl
    except ImportError:  # not a POSIX system
        return
    setpipe = getattr(fcntl, "F_SETPIPE_SZ", None)  # Linux only
    if setpipe is not None:
        with contextlib.suppress(OSError, ValueError, AttributeError):
            fcntl.fcntl(pipe.fileno(), setpipe, REPLY_PIPE)


def _row_mode(name: str) -> str | dict[str, str]:
    from gradparity.adapters.registry import get_backend

    try:
        return getattr(get_backend(name), "row_mode", "end_to_end")
    except Exception:  # noqa: BLE001 - not a registered backend: the default
        return "end_to_end"


class WorkerPool:
    """Several workers of one backend, the cases dealt to them in turn (`prefetch`); each
    case's gradients come from the worker it was sent to. The other calls, which answer
    the same in every worker, go to the first."""

    def __init__(self, workers: list[WorkerBackend]) -> None:
        self.workers = list(workers)
        self.name = self.workers[0].name
        self.row_mode = self.workers[0].row_mode
        self._turn = 0
        self._dealt: dict[int, tuple[WorkerBackend, Any]] = {}  # id(case) -> (worker, case)

    def prefetch(self, case) -> None:
        if id(case) not in self._dealt:
            w = self.workers[self._turn % len(self.workers)]
            self._turn += 1
            self._dealt[id(case)] = (w, case)  # the case kept alive: its id stays its own
        self._dealt[id(case)][0].prefetch(case)

    def waiting(self) -> bool:
        return any(w.waiting() for w in self.workers)

    def gradients(self, case) -> GradientSet:
        dealt = self._dealt.pop(id(case), None)
        return (dealt[0] if dealt is not None else self.workers[0]).gradients(case)

    def available(self) -> bool:
        return self.workers[0].available()

    def unavailable_reason(self) -> str:
        return self.workers[0].unavailable_reason()

    def kink_conventions(self, dtype: str) -> dict[str, float]:
        return self.workers[0].kink_conventions(dtype)

    def framework_runtime(self) -> dict[str, str]:
        return self.workers[0].framework_runtime()

    def close(self) -> None:
        self._dealt.clear()
        for w in self.workers:
            w.close()


def start(names: tuple[str, ...] | list[str], dtype: str = "float64") -> None:
    """Start a worker for each backend of ``names`` not started yet; ``dtype``: the one
    whose kink conventions the workers measure while they wait."""
    for name in names:
        if name not in _STARTED:
            _STARTED[name] = WorkerBackend.launch(name, dtype)


def start_frameworks(names: list[str] | tuple[str, ...], dtype: str = "float64") -> None:
    """`start` a worker for each of ``names`` that is a framework backend of gradparity's
    own and installed (``reference`` and unknown names are left out)."""
    from gradparity.adapters.registry import BACKENDS, get_backend

    start([n for n in names if n != "reference" and n in BACKENDS
           and get_backend(n).available()], dtype)


def started(name: str) -> WorkerBackend | None:
    """The worker of backend ``name``, if `start` launched one (or `adopt` took it over)."""
    return _STARTED.get(name)


def stop() -> None:
    """End every worker this process started (and forget those it adopted)."""
    while _STARTED:
        _STARTED.popitem()[1].close()


def runtime(workers=None) -> dict[str, str]:
    """The framework settings (threads, vector ISA) of every worker's process: what
    computed their answers (``workers``: those, else every started one)."""
    out: dict[str, str] = {}
    for w in _STARTED.values() if workers is None else workers:
        with contextlib.suppress(Exception):  # metadata only
            out.update(w.framework_runtime())
    return out


def handoff() -> tuple[str, tuple[int, ...]]:
    """The started workers for a child process: the value of `ENV` and the descriptors to
    pass (``subprocess.Popen(..., pass_fds=...)``). The child calls `adopt`."""
    parts, fds = [], []
    for name, w in _STARTED.items():
        if w._requests is not None:
            out, inp = w._requests.fileno(), w._replies.fileno()
            parts.append(f"{name}:{out}:{inp}")
            fds += [out, inp]
    return ",".join(parts), tuple(fds)


def adopt(value: str | None = None) -> None:
    """Use the workers a parent started (`handoff`; default: the value of `ENV`)."""
    value = os.environ.pop(ENV, "") if value is None else value
    for part in filter(None, value.split(",")):
        name, out, inp = part.rsplit(":", 2)
        try:
            for fd in (int(out), int(inp)):
                os.set_inheritable(fd, False)  # not passed on to what user code starts
            # closefd=False: if code here closes and reuses a number, the file object
            # never closes what is no longer ours
            _STARTED[name] = WorkerBackend(name, os.fdopen(int(out), "wb", closefd=False),
                                           os.fdopen(int(inp), "rb", closefd=False))
        except (OSError, ValueError):
            continue


# -- the worker ----------------------------------------------------------------------------
def _serve(name: str, dtype: str) -> None:
    from gradparity.core.memory import keep_freed_memory

    keep_freed_memory()
    replies = os.fdopen(os.dup(1), "wb")
    os.dup2(2, 1)  # what the framework prints never mixes with the replies
    # Requests are read as they come, by a thread of their own: the caller sends the next
    # cases while this process writes its answer, and a pipe holds only 64 kB: if each
    # side waited for the other to read, both would wait for ever. That thread reads
    # bytes only; they are unpickled here: unpickling a case imports NumPy, and NumPy
    # imported by two threads at once (this one imports the framework, which imports
    # NumPy) fails ("cannot load module more than once per process"), killing the worker.
    requests: queue.SimpleQueue = queue.SimpleQueue()
    threading.Thread(target=_read_requests, args=(sys.stdin.buffer, requests),
                     daemon=True).start()
    with contextlib.suppress(Exception):  # not installed: the adapter says so when asked
        importlib.import_module(name.split(".")[0])  # the framework first: torch, jax
    from gradparity.adapters.registry import get_backend

    backend = get_backend(name)
    with contextlib.suppress(Exception):  # a failure here shows again when it is asked for
        if backend.available():
            backend.kink_conventions(dtype)  # warms its transform
    while True:
        frame = requests.get()
        if frame is None:  # the input closed
            return
        try:
            method, args = pickle.loads(frame)
        except Exception:  # noqa: BLE001 - garbled: the worker ends, the caller computes
            return
        if method not in _METHODS:
            return
        try:
            if method == "framework_runtime":
                from gradparity.adapters.base import framework_runtime

                reply: tuple[str, Any] = ("value", framework_runtime())
            else:
                reply = ("value", getattr(backend, method)(*args))
        except Exception as exc:  # noqa: BLE001 - raised again by the caller
            reply = ("raised", exc)
        try:
            data = pickle.dumps(reply, protocol=pickle.HIGHEST_PROTOCOL)
            if reply[0] == "raised":
                pickle.loads(data)  # some exceptions pickle but do not unpickle
        except Exception:  # noqa: BLE001 - the caller runs this call itself
            data = pickle.dumps(("local", None))
        replies.write(data)
        replies.flush()


#: A request's length, before its pickled bytes; a length beyond `_MAX_FRAME` is garbage.
_FRAME = struct.Struct("<Q")
_MAX_FRAME = 1 << 40


def _read_requests(stream: Any, requests: queue.SimpleQueue) -> None:
    """Put each request's bytes on ``requests`` as it arrives; ``None`` at the end."""
    while True:
        try:
            head = stream.read(_FRAME.size)
            size = _FRAME.unpack(head)[0] if len(head) == _FRAME.size else -1
            frame = stream.read(size) if 0 <= size <= _MAX_FRAME else b""
        except Exception:  # noqa: BLE001 - closed under us: the worker ends
            size, frame = -1, b""
        if size < 0 or len(frame) != size:
            requests.put(None)  # closed, cut short or garbled: the worker ends
            return
        requests.put(frame)


if __name__ == "__main__":
    _serve(sys.argv[1], sys.argv[2])
