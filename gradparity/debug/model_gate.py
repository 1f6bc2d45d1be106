"""A user's own PyTorch model or JAX function as a CI gate: the same session as ``debug``,
with the verdict as a `ParityResult` (what `assert_grads_match`, the ``gradparity_check``
fixture and ``gradparity check`` report).

`is_user_model` tells a model from a `Spec`/`Case` without importing a framework;
`run_model` runs `debug_torch` or `debug_jax` on the model's own weights (and its own
data when given, else a drawn case) and turns every finding into a problem whose message
is the first-divergence block of the debug report (quantity, diagnosis, file:line, values).
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from gradparity.debug.result import DebugResult

#: Options a model check takes besides backends and tolerances.
MODEL_OPTIONS = ("loss", "params", "head", "dtype", "batch", "seed", "X", "Y", "module",
                 "label")


def _is_torch_module_class(obj: Any) -> bool:
    return inspect.isclass(obj) and any(
        c.__name__ == "Module" and c.__module__.startswith("torch.nn") for c in obj.__mro__)


def is_user_model(obj: Any) -> bool:
    """A torch module (instance or class), a ``file.py:attr`` / ``module:attr`` string, or
    a function (a torch factory or a JAX function); not a Spec, a Case or a list."""
    from gradparity.core.spec import Spec
    from gradparity.reference.case import Case

    if isinstance(obj, (Spec, Case, list, tuple)):
        return False
    if isinstance(obj, str):
        return ":" in obj
    return _is_torch_module_class(type(obj)) or _is_torch_module_class(obj) or callable(obj)


def _required_args(fn: Any) -> int:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return 0
    return sum(1 for p in sig.parameters.values()
               if p.default is inspect.Parameter.empty
               and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD))


def resolve_model(model: Any) -> tuple[str, Any, str, Any]:
    """``(framework, object, label, module)`` for a model given as an object or a target
    string."""
    module = None
    label = None
    if isinstance(model, str):
        from gradparity.debug.torch_session import import_target

        model, label, module = import_target(model, "model")
    if _is_torch_module_class(type(model)) or _is_torch_module_class(model):
        return "torch", model, label or type(model).__name__, module
    if callable(model) and _required_args(model) == 0:
        return "torch", model, label or getattr(model, "__name__", "model"), module
    if callable(model):
        if module is None:
            module = inspect.getmodule(model)
        return "jax", model, label or getattr(model, "__name__", "fn"), module
    from gradparity.core.errors import UsageError

    raise UsageError(f"model: expected a torch nn.Module (instance, class or factory), a JAX "
                     f"function or 'file.py:attr', got {type(model).__name__}")


@dataclass
class ModelProblem:
    """A finding of a model check, shaped like `gradparity.assertions.Problem`."""

    case_id: str
    backend: str
    text: str
    exception: BaseException | None = None

    def message(self) -> str:
        return self.text


def _finding_text(result: DebugResult, framework: str) -> str:
    from gradparity.debug.report import _finding_block

    s = result.spec
    head = (f"{framework} model {result.source} vs reference: head {s.head} ({s.loss_form}), "
            f"{s.dtype}, case {s.case_id}")
    lines = [head, f"recovered: {result.notes.get('network', '')}"]
    first = result.first
    if first is not None:
        lines.append(f"First divergence: {first.key}")
        lines += _finding_block(first)
        rest = [c.key for c in result.findings[1:]]
        if rest:
            lines.append("Also failing (not inherited): " + ", ".join(rest))
    for p in result.problems:
        lines.append(f"Problem: {p.text}")
    bad = [c.key for c in result.versus if c.is_finding]
    if bad:
        lines.append(f"Differs from {result.versus_name} on {', '.join(bad)}")
    for f in result.frameworks:
        if f.failing or f.status == "error":
            lines.append(f"{f.name} disagrees with the reference: "
                         + (", ".join(v.key for v in f.failing) or f.reason))
    return "\n".join(lines)


def run_model(model: Any, backends: Sequence[str] | None = None, *,
              rtol: float | None = None, atol: float | None = None,
              **options: Any) -> tuple[DebugResult, str]:
    """The debug session of a model, and its framework (``"torch"`` or ``"jax"``)."""
    from gradparity.core.errors import UsageError

    unknown = sorted(set(options) - set(MODEL_OPTIONS))
    if unknown:
        raise UsageError(f"{unknown[0]}: not an option of a model check (options: "
                         f"{', '.join(MODEL_OPTIONS)})")
    framework, obj, label, module = resolve_model(model)
    if framework == "jax" and isinstance(model, str) is False and inspect.isclass(obj):
        raise UsageError(f"model: {label} is a class but not a torch nn.Module")
    names = [b for b in (backends or ()) if isinstance(b, str) and b not in ("reference",
                                                                              framework)]
    opts = {k: v for k, v in options.items() if v is not None}
    module = opts.pop("module", None) or module
    label = opts.pop("label", None) or label
    if framework == "torch":
        from gradparity.debug.torch_session import debug_torch

        if "params" in opts:
            raise UsageError("params: used for a JAX function only (a torch model has its own)")
        result = debug_torch(obj, backends=tuple(names), rtol=rtol, atol=atol, label=label,
                             module=module, **opts)
    else:
        from gradparity.debug.jax_model import debug_jax

        result = debug_jax(obj, backends=tuple(names), rtol=rtol, atol=atol, label=label,
                           module=module, **opts)
    return result, framework


def model_problems(result: DebugResult, framework: str) -> list[ModelProblem]:
    """The problems of a model check (none when it passed)."""
    if result.passed:
        return []
    return [ModelProblem(result.spec.case_id, framework, _finding_text(result, framework))]
