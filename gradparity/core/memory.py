"""Keeping freed memory for reuse, in gradparity's own processes (glibc).

A verdict makes many temporary arrays of a few MB (the judge's passes, the oracle's
splits). glibc's malloc serves blocks that large with fresh ``mmap`` pages and gives them
back on ``free``, so every temporary costs one page fault per 4 kB, again and again: on a
virtual machine, where a page fault is expensive, this was most of the time of the
oracle's splits (22 ms of 23 ms on a 256 x 784 matrix) and a quarter of the judge's.
`keep_freed_memory` asks malloc to serve such blocks from its heap and to keep up to
`KEEP_BYTES` of freed memory there for the next one.

The command line, the debug child, the adapter workers, the benchmark and Dask workers
call it for themselves; ``import gradparity`` does not (a library does not change its
host's allocator). It changes where arrays live, not what is computed. ``GRADPARITY_MALLOC
=default`` leaves malloc as it is.
"""

from __future__ import annotations

import os
import sys

#: ``mallopt`` parameters (glibc's malloc.h).
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
#: Blocks up to this size come from the heap (glibc's largest ``M_MMAP_THRESHOLD``).
HEAP_BLOCKS = 32 * 2**20
#: Freed memory kept at the top of the heap before it is given back.
KEEP_BYTES = 256 * 2**20

_DONE: list[bool] = []


def keep_freed_memory() -> bool:
    """Tune this process's malloc as the module doc says; True when it took effect (Linux
    with glibc, not turned off by ``GRADPARITY_MALLOC=default``)."""
    if _DONE:
        return _DONE[0]
    ok = False
    if sys.platform.startswith("linux") and os.environ.get("GRADPARITY_MALLOC") != "default":
        try:
            import ctypes

            mallopt = ctypes.CDLL("libc.so.6").mallopt
            ok = (mallopt(M_MMAP_THRESHOLD, HEAP_BLOCKS) == 1
                  and mallopt(M_TRIM_THRESHOLD, KEEP_BYTES) == 1)
        except (OSError, AttributeError):  # not glibc: nothing to tune
            ok = False
    _DONE.append(ok)
    return ok
