"""Debug your own model against the frameworks: which gradient is wrong, and why.

* `debug_numpy`: a hand-written NumPy backprop in the seed's API
  (``backpropagation(cache, Y, parameters) -> grads``, optionally
  ``forward(X, parameters) -> (AL, cache)``);
* `debug_torch`: a user's ``nn.Sequential`` of Linear and activation modules.

Both run the user's code, the NumPy reference, torch and jax on one case, name the first
quantity (in the order the code computes them) that diverges, mark later ones that only
inherit it, and diagnose each real finding. Modules, one concept each:

``user_code`` (load and run user code safely, tracing which line stored what),
``quantities`` (keys and walk order), ``equations`` (the seed's equations one quantity at a
time), ``conventions`` (per-example or true partials), ``localize`` (first divergence,
inherited marking), ``diagnose`` (candidate mistakes), ``torch_model`` (nn.Sequential ->
spec, case and the module's own autograd), ``session`` (the API), ``result``, ``report``
and ``table`` (outputs).
"""

from __future__ import annotations

from gradparity.debug.diagnose import Diagnosis
from gradparity.debug.localize import Check
from gradparity.debug.result import DebugResult
from gradparity.debug.session import debug_numpy
from gradparity.debug.torch_session import debug_torch

__all__ = ["Check", "DebugResult", "Diagnosis", "debug_numpy", "debug_torch"]
