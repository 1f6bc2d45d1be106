"""Debug your own model against the frameworks: which gradient is wrong, and why.

* `debug_numpy`: a hand-written NumPy backprop in the seed's API
  (``backpropagation(cache, Y, parameters) -> grads``, optionally
  ``forward(X, parameters) -> (AL, cache)``);
* `debug_torch`: a user's PyTorch model whose forward is an MLP (any ``nn.Module``);
* `debug_jax`: a user's JAX function ``fn(params, X)`` or ``loss(params, X, Y)``;
* `debug` (also ``gradparity.debug(...)``: this package is callable): learner code of any
  known NumPy API family, from a file or from a notebook's functions, class or instance
  (`gradparity.debug.families`, `gradparity.debug.api`).

Both run the user's code, the NumPy reference, torch and jax on one case, name the first
quantity (in the order the code computes them) that diverges, mark later ones that only
inherit it, and diagnose each real finding. Modules, one concept each:

``user_code`` (load and run user code safely, tracing which line stored what),
``quantities`` (keys and walk order), ``equations`` (the seed's equations one quantity at a
time), ``conventions`` (per-example or true partials), ``localize`` (first divergence,
inherited marking), ``diagnose`` (candidate mistakes), ``torch_trace`` (the MLP inside a
torch module, from its forward), ``torch_loss`` (the user's loss: head and scaling),
``torch_run`` (the module's own forward and backward on a case), ``torch_session`` and
``jax_model`` (the torch and JAX sessions), ``model_gate`` (a model in the CI gate),
``session`` (the NumPy API), ``result``, ``report`` and ``table`` (outputs).
"""

from __future__ import annotations

import sys
import types
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gradparity.debug.diagnose import Diagnosis
    from gradparity.debug.jax_model import debug_jax
    from gradparity.debug.localize import Check
    from gradparity.debug.result import DebugResult
    from gradparity.debug.session import debug_numpy
    from gradparity.debug.torch_session import debug_torch

#: Names loaded on first use (``gradparity debug`` needs none of them in its parent process).
_LAZY = {
    "Diagnosis": "gradparity.debug.diagnose",
    "debug_jax": "gradparity.debug.jax_model",
    "Check": "gradparity.debug.localize",
    "DebugResult": "gradparity.debug.result",
    "debug_numpy": "gradparity.debug.session",
    "debug_torch": "gradparity.debug.torch_session",
}

__all__ = ["Check", "DebugResult", "Diagnosis", "debug", "debug_jax", "debug_numpy",
           "debug_torch"]


def debug(source: Any = None, **options: Any) -> DebugResult:
    """``gradparity.debug(...)``: `gradparity.debug.api.debug_code` (a file, a module, or a
    learner's functions, class or instance from a notebook)."""
    from gradparity.debug.api import debug_code

    return debug_code(source, **options)


class _CallableModule(types.ModuleType):
    """``gradparity.debug(L_model_backward, forward=L_model_forward)`` calls `debug`."""

    def __call__(self, source: Any = None, **options: Any) -> DebugResult:
        return debug(source, **options)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


sys.modules[__name__].__class__ = _CallableModule
