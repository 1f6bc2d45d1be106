"""gradparity: framework-parity validation of neural-network gradients.

A NumPy backprop reference for an MLP, adapters that build the same MLP in PyTorch autograd
and JAX grad, and experiments that compare every layer's gradients in tidy tables.

The names here are what the three uses need; everything else is reachable by submodule
(``gradparity.core``, ``reference``, ``adapters``, ``judge``, ``experiments``, ``debug``,
``ci``, ``selftest``):

* parity experiments: `Spec`, `make_case`, `reference_gradients`, `get_backend`, `judge`
  with `DEFAULT_TOLERANCES`, `run_specs`, `load_suite_file`, `write_results`;
* debugging a learner's backprop or model: `debug_numpy`, `debug_torch`, `debug_jax`;
* CI regression: `assert_grads_match`, `check_grads`, `save_baseline`, `load_baseline`,
  `rerun_baseline`, `compare_with_baseline`;
* errors: `UsageError` (bad input; the CLI exits 2) and its `SpecError`.

Importing this package imports nothing heavy: NumPy loads with the first name that needs it,
pandas-based parts on first use, and torch and jax only when a backend that needs them runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gradparity.core import __version__
from gradparity.core.errors import SpecError, UsageError

_LAZY = {
    "Spec": "gradparity.core.spec",
    "DEFAULT_TOLERANCES": "gradparity.judge.tolerances",
    "make_case": "gradparity.reference.case",
    "reference_gradients": "gradparity.reference.mlp",
    "get_backend": "gradparity.adapters.registry",
    "judge": "gradparity.judge.verdict",
    "run_specs": "gradparity.experiments.runner",
    "write_results": "gradparity.experiments.report",
    "load_suite_file": "gradparity.experiments.toml_suite",
    "debug_numpy": "gradparity.debug",
    "debug_torch": "gradparity.debug",
    "debug_jax": "gradparity.debug",
    "assert_grads_match": "gradparity.ci.assertions",
    "check_grads": "gradparity.ci.assertions",
    "load_baseline": "gradparity.ci.baseline",
    "save_baseline": "gradparity.ci.baseline",
    "rerun_baseline": "gradparity.ci.baseline",
    "compare_with_baseline": "gradparity.ci.baseline",
}

__all__ = [
    "DEFAULT_TOLERANCES",
    "Spec",
    "SpecError",
    "UsageError",
    "__version__",
    "make_case",
    "reference_gradients",
    # loaded on first use (pandas, adapters):
    "assert_grads_match",
    "check_grads",
    "compare_with_baseline",
    "debug_numpy",
    "debug_torch",
    "debug_jax",
    "get_backend",
    "judge",
    "load_baseline",
    "load_suite_file",
    "rerun_baseline",
    "run_specs",
    "save_baseline",
    "write_results",
]

if TYPE_CHECKING:
    from gradparity.adapters.registry import get_backend
    from gradparity.ci.assertions import assert_grads_match, check_grads
    from gradparity.ci.baseline import (
        compare_with_baseline,
        load_baseline,
        rerun_baseline,
        save_baseline,
    )
    from gradparity.core.spec import Spec
    from gradparity.debug import debug_jax, debug_numpy, debug_torch
    from gradparity.experiments.report import write_results
    from gradparity.experiments.runner import run_specs
    from gradparity.experiments.toml_suite import load_suite_file
    from gradparity.judge.tolerances import DEFAULT_TOLERANCES
    from gradparity.judge.verdict import judge
    from gradparity.reference.case import make_case
    from gradparity.reference.mlp import reference_gradients


def __getattr__(name: str) -> Any:
    if name == "debug":  # the callable package: gradparity.debug(L_model_backward, ...)
        import importlib

        return importlib.import_module("gradparity.debug")
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gradparity' has no attribute {name!r}")
