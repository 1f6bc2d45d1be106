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

#: Backend names, in table order: the reference, the two default backends, then the other
#: ways each framework computes a gradient (opt-in with ``--backends``).
BACKENDS: tuple[str, ...] = (
    "reference", "torch", "jax",
    "torch.func", "torch.fwd", "torch.compile", "torch.vmap",
    "jax.eager", "jax.fwd", "jax.checkpoint", "jax.vmap",
)
#: Backends compared with the reference by default (runs, baselines, assertions).
DEFAULT_BACKENDS: tuple[str, ...] = ("torch", "jax")

_ADAPTERS: dict[str, tuple[str, str]] = {
    "torch": ("gradparity.adapters.torch_autograd", "TorchBackend"),
    "jax": ("gradparity.adapters.jax_grad", "JaxBackend"),
    "torch.func": ("gradparity.adapters.torch_modes", "TorchFuncBackend"),
    "torch.fwd": ("gradparity.adapters.torch_modes", "TorchForwardBackend"),
    "torch.compile": ("gradparity.adapters.torch_modes", "TorchCompileBackend"),
    "torch.vmap": ("gradparity.adapters.torch_modes", "TorchVmapBackend"),
    "jax.eager": ("gradparity.adapters.jax_modes", "JaxEagerBackend"),
    "jax.fwd": ("gradparity.adapters.jax_modes", "JaxForwardBackend"),
    "jax.checkpoint": ("gradparity.adapters.jax_modes", "JaxCheckpointBackend"),
    "jax.vmap": ("gradparity.adapters.jax_modes", "JaxVmapBackend"),
}

#: What each backend computes, for ``gradparity list`` and the README.
DESCRIPTIONS: dict[str, str] = {
    "reference": "the NumPy reference itself (a smoke check of the harness)",
    "torch": "reverse mode, loss.backward() on nn.Linear, retain_grad",
    "jax": "reverse mode, jax.jit(jax.value_and_grad), zero probes",
    "torch.func": "reverse mode, torch.func.grad_and_value over functional_call",
    "torch.fwd": "forward mode, torch.func.jacfwd (full gradient from basis tangents)",
    "torch.compile": "reverse mode through torch.compile (inductor, CPU, dynamic shapes)",
    "torch.vmap": "per-example torch.func.vmap(grad): mean = batch gradient, dZ/m",
    "jax.eager": "reverse mode, jax.value_and_grad without jit",
    "jax.fwd": "forward mode, jax.jit(jax.jacfwd) (full gradient from basis tangents)",
    "jax.checkpoint": "reverse mode, every layer under jax.checkpoint (rematerialised)",
    "jax.vmap": "per-example jax.vmap(jax.value_and_grad): mean = batch gradient, dZ/m",
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

    The note is the reason (with the install hint, or the missing C++ compiler of
    ``torch.compile``) when a backend is missing, and its framework's version (and the
    compiler it found) when it is installed.
    """
    out: dict[str, tuple[bool, str]] = {}
    for name in BACKENDS:
        b = get_backend(name)
        if b.available():
            v = b.version() or ""
            note = v if name == "reference" else f"{name.split('.')[0]} {v}".strip()
            compiler = getattr(b, "compiler", None)
            if compiler is not None:
                note += f", C++ compiler {compiler()}"
            out[name] = (True, note)
        else:
            out[name] = (False, b.unavailable_reason())
    return out
