"""Atomic writing of result folders: all files appear together, or none do.

Files are written into a temporary sibling folder, flushed, and the folder is renamed into
place; an existing result folder is replaced only after the new one is complete. The
temporary names are private while being written (``tempfile`` makes them 0600/0700); what
lands gets the usual modes under the process's umask (a replaced file keeps its mode).

Temporaries are named ``.<name>.tmp-<host>-<pid>-<random>`` (and ``.old-`` for a replaced
folder during the swap), so that a later process can tell a killed writer's leftovers from
a live one's (`clean_stale_temporaries`).
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path

import pandas as pd

from gradparity.core.errors import UsageError

Writer = Callable[[Path], None]


def _fsync(path: Path) -> None:
    with open(path, "rb") as f:
        os.fsync(f.fileno())


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _file_mode() -> int:
    return 0o666 & ~_umask()


def _dir_mode() -> int:
    return 0o777 & ~_umask()


def write_folder_atomically(out_dir: str | Path, files: Mapping[str, Writer]) -> Path:
    """Create ``out_dir`` with ``files`` (name -> function writing that path) atomically.

    An interruption (SIGINT, or SIGTERM under the command line) while the files are
    written removes the temporary folder and leaves ``out_dir`` as it was; one during the
    swap is held until the swap is done. Temporaries a killed process left (SIGKILL) are
    removed by the next write or output check (`clean_stale_temporaries`)."""
    out = Path(out_dir)
    out.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(out)
    tmp: Path | None = None
    old = None
    try:
        with deferred_signals():  # a signal right after mkdtemp still finds tmp set
            tmp = Path(tempfile.mkdtemp(prefix=_temp_prefix(out, "tmp"), dir=out.parent))
        for name, write in files.items():
            path = tmp / name
            path.parent.mkdir(parents=True, exist_ok=True)  # "sub/name": a subfolder
            write(path)  # written with open(): the umask's mode already
            _fsync(path)
        tmp.chmod(_dir_mode())
        with deferred_signals():
            if out.exists():
                old = Path(tempfile.mkdtemp(prefix=_temp_prefix(out, "old"), dir=out.parent))
                os.replace(out, old / out.name)
            os.replace(tmp, out)
            if old is not None:
                shutil.rmtree(old, ignore_errors=True)
    except BaseException:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if old is not None:
            _restore(old, out)
        raise
    return out


def _restore(old: Path, out: Path) -> None:
    """Put the previous result (moved into ``old``) back if ``out`` is gone; drop ``old``."""
    kept = old / out.name
    if not out.exists() and kept.exists():
        os.replace(kept, out)
    shutil.rmtree(old, ignore_errors=True)


# -- interruptions ----------------------------------------------------------------------------
def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def _temp_prefix(out: Path, kind: str) -> str:
    """``.<name>.<kind>-<host>-<pid>-``: whose temporary it is, for `clean_stale_temporaries`
    (``tempfile`` appends 8 random characters)."""
    return f".{out.name}.{kind}-{_host()}-{os.getpid()}-"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except (PermissionError, OverflowError, ValueError):
        return True  # someone else's process (or not a pid): not provably dead
    return True


def clean_stale_temporaries(out: str | Path) -> list[Path]:
    """Remove the temporaries of ``out`` (``.<name>.tmp-*``, ``.<name>.old-*``) that a
    killed gradparity process left: only those named with this host and the pid of a
    process that no longer exists. A stale ``.old-`` folder holding the previous result
    while ``out`` is missing (killed in the middle of the swap) is put back first.
    Returns what was removed."""
    p = Path(out)
    if not p.parent.is_dir():
        return []
    pattern = re.compile(rf"^\.{re.escape(p.name)}\.(tmp|old)-{re.escape(_host())}-(\d+)-"
                         r"[a-z0-9_]{8}$")
    removed = []
    try:
        entries = list(p.parent.iterdir())
    except OSError:
        return []
    for e in entries:
        m = pattern.match(e.name)
        if m is None or int(m.group(2)) == os.getpid() or _pid_alive(int(m.group(2))):
            continue
        if m.group(1) == "old" and e.is_dir():
            _restore(e, p)
        elif e.is_dir():
            shutil.rmtree(e, ignore_errors=True)
        else:
            with contextlib.suppress(FileNotFoundError):
                e.unlink()
        removed.append(e)
    return removed


@contextlib.contextmanager
def deferred_signals() -> Iterator[None]:
    """Hold SIGINT and SIGTERM for the duration of the block (a few renames), then act on
    the first one that came. Outside the main thread signals cannot be caught there: the
    block runs unprotected."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, object]] = []
    previous = {}

    def hold(signum: int, frame: object) -> None:
        caught.append((signum, frame))

    for sig in (signal.SIGINT, signal.SIGTERM):
        before = signal.signal(sig, hold)
        previous[sig] = signal.SIG_DFL if before is None else before  # None: set from C
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if caught:
            signum, frame = caught[0]
            handler = previous[signum]
            if callable(handler):
                handler(signum, frame)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(signum)


def write_file_atomically(path: str | Path, write: Writer) -> Path:
    """Write one file through a temporary sibling and an atomic rename."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_temporaries(p)
    fd, tmp_name = tempfile.mkstemp(prefix=_temp_prefix(p, "tmp"), dir=p.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    mode = p.stat().st_mode & 0o777 if p.exists() else _file_mode()
    try:
        write(tmp)
        tmp.chmod(mode)
        _fsync(tmp)
        os.replace(tmp, p)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return p


def csv_writer(df: pd.DataFrame) -> Writer:
    """Floats written with round-tripping repr, '\\n' line ends, no index."""
    def write(path: Path) -> None:
        df.to_csv(path, index=False, lineterminator="\n", float_format=None)
    return write


def gzip_csv_writer(df: pd.DataFrame) -> Writer:
    """`csv_writer`'s text, gzip-compressed with no timestamp (same table, same bytes)."""
    def write(path: Path) -> None:
        df.to_csv(path, index=False, lineterminator="\n", float_format=None,
                  compression={"method": "gzip", "mtime": 0})
    return write


def parquet_writer(df: pd.DataFrame) -> Writer:
    def write(path: Path) -> None:
        df.to_parquet(path, index=False)
    return write


def text_writer(text: str) -> Writer:
    def write(path: Path) -> None:
        path.write_text(text, encoding="utf-8")
    return write


def json_writer(obj: object) -> Writer:
    return text_writer(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def have_parquet() -> bool:
    import importlib.util

    return importlib.util.find_spec("pyarrow") is not None


#: Files a gradparity result folder may hold: only such a folder is ever replaced.
RESULT_FILES = frozenset({
    "table.csv", "table.parquet", "summary.md", "environment.json", "pass_rates.csv",
    "worst_per_case.csv", "selftest.csv", "faults.csv", "false_alarms.csv",
    "regressions.csv", "debug.csv", "report.txt", "report.html",
    "counterexamples.csv", "counterexamples.toml", "examples.json",
})
#: Files of each ``kernels/<name>/`` subfolder (`write_results`' ``kernels``).
KERNEL_FILES = frozenset({"table.csv.gz", "environment.json"})


def _ours(entry: Path) -> bool:
    """A result file, or the ``kernels`` folder of per-configuration tables."""
    if entry.is_file():
        return entry.name in RESULT_FILES
    if entry.name == "kernels" and entry.is_dir():
        return all(k.is_dir() and all(f.is_file() and f.name in KERNEL_FILES
                                      for f in k.iterdir())
                   for k in entry.iterdir())
    return False


def _writable_ancestor(p: Path, option: str) -> None:
    """The nearest existing ancestor of ``p`` must be a folder we can create files in;
    checked with a probe file, so read-only mounts and /proc are caught too."""
    parent = p.parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        raise UsageError(f"{option}={str(p)!r}: {str(parent)!r} is a file, expected a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".gradparity-probe-", dir=parent)
    except OSError as e:
        raise UsageError(f"{option}={str(p)!r}: cannot write in {str(parent)!r} "
                         f"({e.strerror})") from None
    os.close(fd)
    os.unlink(probe)


def check_output_folder(path: str | Path, *, option: str = "--out") -> Path:
    """Validate a result-folder path before any work: not empty, not a file, not a folder
    holding anything but gradparity result files (never replace the user's folder), and
    in a writable place. Raises `UsageError` (one line)."""
    if str(path) == "":
        raise UsageError(f"{option}='': expected a folder path")
    p = Path(path)
    clean_stale_temporaries(p)
    if p.exists():
        if not p.is_dir():
            raise UsageError(f"{option}={str(p)!r}: exists and is a file, expected a folder")
        if p.resolve() == Path.cwd().resolve():
            raise UsageError(f"{option}={str(p)!r}: the current folder; name a result folder")
        foreign = sorted(e.name for e in p.iterdir() if not _ours(e))
        if foreign:
            raise UsageError(f"{option}={str(p)!r}: exists and is not a gradparity result "
                             f"folder (it holds {foreign[0]!r}); name a new folder")
    _writable_ancestor(p, option)
    return p


def check_output_file(path: str | Path, *, option: str = "--out") -> Path:
    """Validate a file path before any work: not empty, not a folder, in a writable place.
    Raises `UsageError` (one line); whether an existing file may be replaced is the
    caller's rule."""
    if str(path) == "":
        raise UsageError(f"{option}='': expected a file path")
    p = Path(path)
    clean_stale_temporaries(p)
    if p.is_dir():
        raise UsageError(f"{option}={str(p)!r}: is a folder, expected a file name")
    _writable_ancestor(p, option)
    return p


_NAME = re.compile(r"[A-Za-z0-9_+][A-Za-z0-9._+-]*")


def check_name(name: object, *, option: str = "--name") -> None:
    """A run name becomes a folder name: letters, digits, '.', '_', '+', '-' only."""
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UsageError(f"{option}={name!r}: expected a plain folder name (letters, "
                         "digits, '.', '_', '+', '-'; not starting with '.' or '-')")


def read_result(path: str | Path, *, option: str = "RESULT_DIR") -> pd.DataFrame:
    """The table of a result folder (``gradparity run --out`` or ``gradparity debug
    --out``): ``table.parquet`` when pyarrow can read it, else ``table.csv``; the folder's
    ``environment.json`` in ``attrs["environment"]``. One-line `UsageError` otherwise."""
    from gradparity.experiments.tables import COLUMNS, make_table

    p = Path(path)
    if not p.is_dir():
        raise UsageError(f"{option}={str(p)!r}: {'is a file' if p.exists() else 'no such folder'}"
                         ", expected a result folder of 'gradparity run' or 'gradparity debug'")
    env: dict[str, str] = {}
    env_path = p / "environment.json"
    if env_path.is_file():
        try:
            raw = json.loads(env_path.read_text(encoding="utf-8"))
        except (ValueError, UnicodeDecodeError):
            raise UsageError(f"{option}={str(env_path)!r}: not JSON") from None
        if isinstance(raw, dict):
            env = {str(k): str(v) for k, v in raw.items()}
    try:
        if (p / "table.parquet").is_file() and have_parquet():
            df = pd.read_parquet(p / "table.parquet")
        elif (p / "table.csv").is_file():
            df = pd.read_csv(p / "table.csv", keep_default_na=False, na_values=[""])
        else:
            raise UsageError(f"{option}={str(p)!r}: no table.csv in this folder, expected a "
                             "result folder of 'gradparity run' or 'gradparity debug'")
        missing = [c for c in COLUMNS if c not in df.columns]
        if missing:
            raise ValueError(f"no column {missing[0]!r}")
        return make_table(df[list(COLUMNS)].to_dict("records"), env)
    except (ValueError, TypeError, KeyError, pd.errors.ParserError, UnicodeDecodeError,
            OSError) as e:
        raise UsageError(f"{option}={str(p)!r}: not a result table "
                         f"({str(e).splitlines()[0] if str(e) else type(e).__name__})"
                         ) from None
