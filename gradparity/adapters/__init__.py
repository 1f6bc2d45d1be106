"""Framework adapters: the same MLP in PyTorch autograd and JAX grad, in the reference's layout.

Importing this package imports nothing heavy (not even NumPy: a worker process,
`gradparity.adapters.worker`, imports its framework first); `get_backend` returns adapters
that load their framework on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gradparity.adapters.base import KINK_KEYS, Backend, LayerBackend
    from gradparity.adapters.registry import BACKENDS, available_backends, get_backend

__all__ = ["BACKENDS", "KINK_KEYS", "Backend", "LayerBackend", "available_backends", "get_backend"]

_LAZY = {
    "KINK_KEYS": "gradparity.adapters.base",
    "Backend": "gradparity.adapters.base",
    "LayerBackend": "gradparity.adapters.base",
    "BACKENDS": "gradparity.adapters.registry",
    "available_backends": "gradparity.adapters.registry",
    "get_backend": "gradparity.adapters.registry",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
