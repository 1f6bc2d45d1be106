"""gradparity: framework-parity validation of neural-network gradients.

A NumPy backprop reference for an MLP, adapters that build the same MLP in PyTorch autograd
and JAX grad, and experiments that compare every layer's gradients in tidy tables.

Importing this package imports NumPy only; pandas-based parts load on first use, and torch
and jax only when a backend that needs them runs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from gradparity.case import Case, make_case
from gradparity.compare import TensorComparison, compare_arrays
from gradparity.errors import SpecError, UsageError
from gradparity.gradients import GradientSet, backprop_order
from gradparity.reference.mlp import backpropagation, forward_propagation, reference_gradients
from gradparity.spec import ACTIVATIONS, HEADS, Spec, head_forms
from gradparity.tolerances import DEFAULT_TOLERANCES, Tolerance, resolve_tolerances

__version__ = "0.1.0"

_LAZY = {
    "get_backend": "gradparity.adapters.registry",
    "available_backends": "gradparity.adapters.registry",
    "judge": "gradparity.verdict",
    "TensorVerdict": "gradparity.verdict",
    "run_specs": "gradparity.experiments.runner",
    "write_results": "gradparity.experiments.report",
    "load_suite_file": "gradparity.experiments.toml_suite",
    "SUITES": "gradparity.experiments.suites",
    "debug_numpy": "gradparity.debug",
    "debug_torch": "gradparity.debug",
    "debug_jax": "gradparity.debug",
    "DebugResult": "gradparity.debug",
    "run_selftest": "gradparity.selftest",
    "oracle_gradients": "gradparity.oracle",
    "CalibratedRule": "gradparity.policy",
    "assert_grads_match": "gradparity.assertions",
    "check_grads": "gradparity.assertions",
    "ParityResult": "gradparity.assertions",
    "Baseline": "gradparity.baseline",
    "BaselineError": "gradparity.baseline",
    "load_baseline": "gradparity.baseline",
    "save_baseline": "gradparity.baseline",
    "make_baseline": "gradparity.baseline",
    "rerun_baseline": "gradparity.baseline",
    "compare_with_baseline": "gradparity.baseline",
}

__all__ = [
    "ACTIVATIONS",
    "DEFAULT_TOLERANCES",
    "HEADS",
    "Case",
    "GradientSet",
    "Spec",
    "SpecError",
    "TensorComparison",
    "Tolerance",
    "UsageError",
    "__version__",
    "backprop_order",
    "backpropagation",
    "compare_arrays",
    "forward_propagation",
    "head_forms",
    "make_case",
    "reference_gradients",
    "resolve_tolerances",
    # loaded on first use (pandas, adapters):
    "SUITES",
    "Baseline",
    "BaselineError",
    "CalibratedRule",
    "DebugResult",
    "ParityResult",
    "assert_grads_match",
    "check_grads",
    "compare_with_baseline",
    "debug_numpy",
    "debug_torch",
    "debug_jax",
    "oracle_gradients",
    "run_selftest",
    "save_baseline",
    "TensorVerdict",
    "available_backends",
    "get_backend",
    "judge",
    "load_baseline",
    "load_suite_file",
    "make_baseline",
    "rerun_baseline",
    "run_specs",
    "write_results",
]

if TYPE_CHECKING:
    from gradparity.adapters.registry import available_backends, get_backend
    from gradparity.assertions import ParityResult, assert_grads_match, check_grads
    from gradparity.baseline import (
        Baseline,
        BaselineError,
        compare_with_baseline,
        load_baseline,
        make_baseline,
        rerun_baseline,
        save_baseline,
    )
    from gradparity.debug import DebugResult, debug_jax, debug_numpy, debug_torch
    from gradparity.experiments.report import write_results
    from gradparity.experiments.runner import run_specs
    from gradparity.experiments.suites import SUITES
    from gradparity.experiments.toml_suite import load_suite_file
    from gradparity.oracle import oracle_gradients
    from gradparity.policy import CalibratedRule
    from gradparity.selftest import run_selftest
    from gradparity.verdict import TensorVerdict, judge


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'gradparity' has no attribute {name!r}")
