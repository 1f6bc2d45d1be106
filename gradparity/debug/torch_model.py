"""Shared pieces of the PyTorch debug path: importing torch lazily, a module's repr on one
line, and `ModuleRun` (what a user's module gave on a case).

The MLP inside a module is recovered by `gradparity.debug.torch_trace`, run on a case by
`gradparity.debug.torch_run`; the session is `gradparity.debug.torch_session`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradparity.core.errors import UsageError
from gradparity.debug.user_code import Location


def import_torch() -> tuple[Any, Any, Any]:
    try:
        import torch
        import torch.nn.functional as F
        from torch import nn
    except ImportError as exc:
        raise UsageError("--torch needs PyTorch: pip install 'gradparity[torch]' "
                         f"({exc})") from None
    return torch, nn, F


def describe(module: Any) -> str:
    """A module's repr on one line."""
    text = " ".join(repr(module).split())
    return text if len(text) <= 80 else text[:77] + "..."


@dataclass
class ModuleRun:
    """What the user's module gave on the case (column-major, case dtype)."""

    values: dict[str, np.ndarray] = field(default_factory=dict)
    loss: np.ndarray | None = None
    errors: dict[str, tuple[str, Location | None]] = field(default_factory=dict)
    not_computed: dict[str, str] = field(default_factory=dict)
    locations: dict[str, Location] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)  # key -> "module [2] ReLU"
