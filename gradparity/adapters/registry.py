"""Backend registry: names, lazy construction and availability.

Nothing here imports torch or jax. `get_backend` returns an adapter object whether or not
its framework is installed (the adapters import their framework on first use), so a sweep
can ask ``available()`` and record a ``skipped`` row with `Backend.unavailable_reason`.
"""

from __future__ import annotations

import importlib

from gradparity.adapters.base import Backend, dist_version
from gradparity.core.errors import UsageError
from gradparity.core.gradients import GradientSet

#: Backend names, in table order.
BACKENDS: tuple[str, ...] = ("reference", "torch", "jax")
#: Backends compared with the reference by default (runs, baselines, assertions).
DEFAULT_BACKENDS: tuple[str, ...] = ("torch", "jax")

_ADAPTERS: dict[str, tuple[str, str]] = {
    "torch": ("gradparity.adapters.torch_autograd", "TorchBackend"),
    "jax": ("gradparity.adapters.jax_grad", "JaxBackend"),
}

_INSTANCES: dict[str, Backend] = {}


class ReferenceBackend:
    """The NumPy reference as a backend (always available): a smoke check of the harness."""

    name = "reference"

    def available(self) -> bool:
        return True

    def unavailable_reason(self) -> str:
        return ""

    def gradients(self, case) -> GradientSet:
        from gradparity.reference.mlp import reference_gradients

        return reference_gradients(case, backend=self.name)

    def layer_gradients(self, case, layer: int, a_prev, dA_out) -> dict:
        from gradparity.reference.mlp import layer_step

        return layer_step(case, layer, a_prev, dA_out)

    def kink_conventions(self, dtype: str) -> dict[str, float]:
        from gradparity.reference.mlp import REFERENCE_KINKS

        return dict(REFERENCE_KINKS)

    def version(self) -> str | None:
        from gradparity.core import __version__

        return f"gradparity {__version__}, numpy {dist_version('numpy')}"


def _check_name(name: str) -> None:
    if name not in BACKENDS:
        raise UsageError(f"backend={name!r}: expected one of {', '.join(BACKENDS)}")


def get_backend(name: str) -> Backend:
    """The backend called ``name`` (one instance per name; its framework loads lazily).

    Raises:
        UsageError: ``name`` is not one of `BACKENDS`.
    """
    _check_name(name)
    if name not in _INSTANCES:
        if name == "reference":
            _INSTANCES[name] = ReferenceBackend()
        else:
            module, cls = _ADAPTERS[name]
            _INSTANCES[name] = getattr(importlib.import_module(module), cls)()
    return _INSTANCES[name]


def available_backends() -> dict[str, tuple[bool, str]]:
    """``{name: (available, note)}`` for every backend, without importing any framework.

    The note is the reason (with the install hint) when a backend is missing, and its
    version when it is installed.
    """
    out: dict[str, tuple[bool, str]] = {}
    for name in BACKENDS:
        b = get_backend(name)
        if b.available():
            v = b.version() or ""
            out[name] = (True, v if name == "reference" else f"{name} {v}".strip())
        else:
            out[name] = (False, b.unavailable_reason())
    return out
