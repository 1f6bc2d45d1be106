"""Framework adapters: the same MLP in PyTorch autograd and JAX grad, in the reference's layout.

Importing this package does not import torch or jax; `get_backend` returns adapters that
load their framework on first use.
"""

from __future__ import annotations

from gradparity.adapters.base import KINK_KEYS, Backend, LayerBackend
from gradparity.adapters.registry import BACKENDS, available_backends, get_backend

__all__ = ["BACKENDS", "KINK_KEYS", "Backend", "LayerBackend", "available_backends", "get_backend"]
