"""The PyTorch session: `debug_torch` checks a user's module, its own autograd, per layer.

Moved out of `gradparity.debug.session` (which keeps the NumPy session); the helpers it
shares with it (the case, the reference values, the framework runs) are imported from there.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from gradparity.core.errors import UsageError
from gradparity.core.spec import DTYPES, HEADS, Spec
from gradparity.debug import conventions
from gradparity.debug.equations import Net
from gradparity.debug.localize import Check, UserValues, localize
from gradparity.debug.quantities import sort_keys, walk_order
from gradparity.debug.result import DebugResult
from gradparity.debug.session import (
    DEFAULT_BATCH,
    _check_backends,
    _check_choice,
    _explained,
    _framework_runs,
    _reference_values,
    _tolerance,
    _with_parameters,
)
from gradparity.debug.user_code import load_file
from gradparity.judge.tolerances import Tolerance
from gradparity.reference.case import make_case


# -- loading the user's model ----------------------------------------------------------------
def import_target(target: str, option: str = "--torch") -> tuple[Any, str, ModuleType]:
    """``"pkg.module:attr"`` or ``"path/to/file.py:attr"`` -> (the attribute, label, the
    module it lives in)."""
    import importlib
    import sys

    if ":" not in target:
        raise UsageError(f"{option}={target!r}: expected MODULE:ATTR or FILE.py:ATTR "
                         "(e.g. examples/torch_model.py:model)")
    where, attr = target.rsplit(":", 1)
    if not where or not attr:
        raise UsageError(f"{option}={target!r}: expected MODULE:ATTR or FILE.py:ATTR")
    if where.endswith(".py") or os.sep in where or "/" in where:
        module: ModuleType = load_file(where)
    else:
        cwd = str(Path.cwd())
        sys.path.insert(0, cwd)
        try:
            module = importlib.import_module(where)
        except ImportError as exc:
            raise UsageError(f"{option}={target!r}: cannot import {where!r} ({exc})") from None
        except Exception as exc:  # noqa: BLE001 - the user's module failed to import
            raise UsageError(f"{option}={target!r}: importing {where!r} raised "
                             f"{type(exc).__name__}: {exc}") from None
        finally:
            if sys.path and sys.path[0] == cwd:
                sys.path.pop(0)
    obj: Any = module
    for part in attr.split("."):
        if not hasattr(obj, part):
            raise UsageError(f"{option}={target!r}: {where} has no attribute {attr!r}")
        obj = getattr(obj, part)
    return obj, target, module


def _from_module(obj: Any, module: ModuleType | None) -> tuple[Any, str] | None:
    """A class whose constructor needs arguments, made as the file makes it: from module
    variables of the same names (``NeuralNet(input_size, hidden_size, num_classes)``), or an
    instance of it at the top level of the file."""
    import inspect

    if module is None or not inspect.isclass(obj):
        return None
    try:
        sig = inspect.signature(obj)
    except (TypeError, ValueError):
        return None
    required = [p.name for p in sig.parameters.values()
                if p.default is inspect.Parameter.empty
                and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)]
    if required and all(hasattr(module, n) for n in required):
        try:
            return obj(**{n: getattr(module, n) for n in required}), \
                f"{obj.__name__}({', '.join(required)}) with your file's values"
        except Exception:  # noqa: BLE001 - fall back to an instance in the file
            pass
    for n, v in vars(module).items():
        if type(v) is obj:
            return v, f"the instance {n} in your file"
    return None


def instantiate(obj: Any, label: str, module: ModuleType | None = None) -> Any:
    """An ``nn.Module`` from an instance, a class with a no-argument constructor (or one
    the file shows how to build, see `_from_module`) or a factory function."""
    from gradparity.debug.torch_model import import_torch

    _, nn, _ = import_torch()
    if isinstance(obj, nn.Module):
        return obj
    if not callable(obj):
        raise UsageError(f"{label}: expected an nn.Module, a class or a factory function, got "
                         f"{type(obj).__name__}")
    name = getattr(obj, "__name__", type(obj).__name__)
    try:
        made = obj()
    except TypeError as exc:
        made_from = _from_module(obj, module)
        if made_from is not None:
            return made_from[0]
        raise UsageError(f"{label}: calling {name}() raised TypeError: {exc} (give an instance "
                         "or a factory that takes no arguments)") from None
    except Exception as exc:  # noqa: BLE001 - the user's factory failed
        raise UsageError(f"{label}: calling {name}() raised {type(exc).__name__}: "
                         f"{exc}") from None
    if not isinstance(made, nn.Module):
        raise UsageError(f"{label}: {name}() returned {type(made).__name__}, not an "
                         "nn.Module")
    return made


def load_torch_target(target: str) -> tuple[Any, str]:
    """``"pkg.module:attr"`` or ``"path/to/file.py:attr"`` -> (the module object, label).

    ``attr`` may be dotted; if it names a class or a function, it is called with no
    arguments and must return the model.
    """
    obj, label, _ = import_target(target)
    return instantiate(obj, f"--torch={target!r}"), label


def default_torch_head(n_out: int) -> str:
    """BCE-with-logits for one output, cross-entropy from logits for several."""
    return "sigmoid_bce" if n_out == 1 else "softmax_ce"


def _model_dtype(model: Any, label: str) -> str:
    from gradparity.debug.torch_model import import_torch

    torch, _, _ = import_torch()
    dtypes = {p.dtype for p in model.parameters()}
    names = {torch.float32: "float32", torch.float64: "float64"}
    if len(dtypes) != 1 or next(iter(dtypes)) not in names:
        shown = ", ".join(sorted(str(d).replace("torch.", "") for d in dtypes)) or "none"
        raise UsageError(f"{label}: parameters in {shown}; supported: one of float32, float64 "
                         "(or pass --dtype)")
    return names[next(iter(dtypes))]


def debug_torch(
    model: Any,
    *,
    loss: Any = None,
    head: str | None = None,
    loss_form: str | None = None,
    dtype: str | None = None,
    batch: int | None = None,
    seed: int = 0,
    X: Any = None,
    Y: Any = None,
    backends: Sequence[str] | None = ("jax",),
    rtol: float | None = None,
    atol: float | None = None,
    label: str | None = None,
    module: ModuleType | None = None,
) -> DebugResult:
    """Check the autograd of a user's PyTorch model, through its own ``forward``.

    The MLP inside the model is recovered by running its forward
    (`gradparity.debug.torch_trace`): Linear layers, functional or module activations,
    Flatten/view at the input, Dropout (the identity), a final sigmoid/softmax/log_softmax
    that belongs to the head. Its weights become the case's parameters; inputs and targets
    are drawn by `make_case` unless given. Z, A and their gradients are read from the
    model's own run (gradient hooks), so a hand-written ``autograd.Function`` backward is
    checked at its layer.

    Args:
        model: an ``nn.Module`` instance, a class with a no-argument constructor, or a
            factory function.
        loss: the training loss: an ``nn`` loss object (``nn.CrossEntropyLoss()``, with
            its reduction), a function ``(output, target) -> loss``, a class name string
            (``"MSELoss(reduction='sum')"``), or the name of one in ``module``. Default:
            the one the model's file defines or names, else the default for its output.
        head, loss_form: instead of ``loss``, a gradparity head on the seed's J.
        dtype: default: the model's parameter dtype.
        X, Y: explicit data, batch-major as torch takes it: ``(m, n0)`` and ``(m, nL)``
            (or ``(m,)`` class indices for a classifier).
        backends: frameworks compared with the reference besides the model (default jax;
            the model is also compared with each of them directly).
        module: the Python module the model comes from (where its loss is looked for).

    Raises:
        UsageError: anything that is not an MLP, or a bad option (one line naming it).
    """
    import copy

    from gradparity.debug.torch_loss import choose_loss
    from gradparity.debug.torch_model import import_torch
    from gradparity.debug.torch_trace import trace_module

    torch, _, _ = import_torch()
    label = label or getattr(model, "__name__", None) or type(model).__name__
    model = instantiate(model, label, module)
    _check_choice("head", head, tuple(HEADS))
    _check_choice("dtype", dtype, DTYPES)
    backends = _check_backends(backends)
    dtype = dtype or _model_dtype(model, label)
    try:
        work = copy.deepcopy(model)
    except Exception as exc:  # noqa: BLE001 - the user's module holds something uncopyable
        raise UsageError(f"{label}: copying the module raised {type(exc).__name__}: {exc} "
                         "(gradparity works on a copy, so your model is left untouched)"
                         ) from None
    work = work.to(dtype=getattr(torch, dtype), device="cpu")
    was_training = work.training
    work.eval()
    recovered = trace_module(work, label)
    n_out = recovered.sizes[-1]

    inputs = targets = None
    if X is not None:
        x_np = np.asarray(_to_numpy(X), dtype=np.float64)
        inputs = x_np.reshape(x_np.shape[0], -1).T.tolist()
    if batch is None:
        batch = len(inputs[0]) if inputs else DEFAULT_BATCH
    choice = choose_loss(loss, recovered.output, n_out, batch, module, head, label)
    if Y is not None:
        y = np.asarray(_to_numpy(Y), dtype=np.float64)
        if y.ndim == 1 and n_out > 1 and choice.head == "softmax_ce":
            targets = y[None, :].tolist()
        else:
            targets = y.reshape(y.shape[0], -1).T.tolist()
        if inputs is None and Y is not None and batch != len(targets[0]):
            batch = len(targets[0])
    spec = Spec(recovered.sizes, activation=recovered.activation, head=choice.head,
                loss_form=loss_form or choice.form, dtype=dtype, batch=batch, seed=seed,
                inputs=inputs, targets=targets)
    params = dict(work.named_parameters())
    parameters = {}
    for i, lin in enumerate(recovered.linears, 1):
        w = params[lin.weight].detach().cpu().double().numpy()
        parameters[f"W{i}"] = w.T if lin.layout == "xW" else w
        parameters[f"b{i}"] = params[lin.bias].detach().cpu().double().numpy().reshape(-1, 1)
    case = _with_parameters(make_case(spec), parameters)
    tol = _tolerance(dtype, rtol, atol)

    from gradparity.debug.torch_run import run_recovered

    run = run_recovered(work, recovered, choice, case, label)
    notes = {
        "sizes": "from your module's forward",
        "activation": "from your module's forward" if spec.depth > 1 else "none (one layer)",
        "head": f"{choice.how}" + (f": {choice.name}" if choice.name and choice.name
                                   not in choice.how else ""),
        "forward": "your module's forward" + (
            "; it was in train() mode: checked in eval() mode (Dropout off)"
            if was_training and recovered.notes else ""),
        "network": recovered.describe(f"{spec.head}" + (
            f" ({spec.loss_form})" if spec.loss_form == "probs" else "")),
    }
    if recovered.notes:
        notes["network"] += "; " + "; ".join(recovered.notes)
    ref, reference = _reference_values(case)
    L = spec.depth
    order = walk_order(L, forward=True, output_dA=spec.loss_form == "probs", input_dA=True)

    frameworks = _framework_runs(case, ref, backends, tol)
    explained = {} if run.errors else _explained(case, ref, order, run.values, run.loss,
                                                 "torch", tol, dtype)
    user = UserValues(values=run.values, locations=run.locations, errors=run.errors,
                      not_computed=run.not_computed, required=frozenset(order),
                      explained=explained, container="module's gradients",
                      forward_container="module's outputs")
    net = Net(L, spec.activation, spec.head, case.Y, case.parameters,
              output_dA_reported=spec.loss_form == "probs")
    checks = localize(order, net=net, reference=reference, user=user, factor=1.0,
                      tolerance=tol, dtype=dtype)
    for c in checks:
        if c.is_finding and c.key in run.owners and run.owners[c.key] not in c.reason:
            c.reason += f" ({run.owners[c.key]})"

    versus: list[Check] = []
    versus_name = ""
    other = next((f for f in frameworks if f.name == "jax" and f.status == "ran"), None)
    if other is not None and other.gradients is not None:
        versus_name = "jax"
        versus = _versus(order, run.values, {**other.gradients.forward, **other.gradients.grads},
                         tol, dtype)
    convention = conventions.Convention(conventions.AUTOGRAD, run.scale,
                                        choice.convention(n_out, spec.batch)
                                        if choice.kind != "custom" else run.scale_text)
    return DebugResult("torch", label, spec, case, checks, convention, frameworks,
                       tol, versus=versus, versus_name=versus_name, notes=notes,
                       user_output=run.output)


def _to_numpy(v: Any) -> Any:
    return v.detach().cpu().numpy() if hasattr(v, "detach") else v


def _versus(order: list[str], mine: Mapping[str, np.ndarray], theirs: Mapping[str, np.ndarray],
            tol: Tolerance, dtype: str) -> list[Check]:
    from gradparity.judge.compare import compare_arrays

    out = []
    for k in sort_keys([k for k in order if k in theirs], order):
        if k not in mine:
            out.append(Check(k, "skipped", "not computed by your module", reported=False))
            continue
        c = compare_arrays(mine[k], theirs[k], rtol=tol.rtol, atol=tol.atol, dtype=dtype)
        out.append(Check(k, "pass" if c.passed else "fail",
                         "" if c.passed else f"{c.n_mismatch}/{c.n_elements} elements differ "
                         "from jax", c))
    return out
