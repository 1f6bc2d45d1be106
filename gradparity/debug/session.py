"""The debug API: `debug_numpy` (a user's hand-written backprop) and `debug_torch` (a user's
``nn.Sequential``). Both return a `DebugResult`.

A session builds one case (`gradparity.reference.case.make_case`), runs the user's code on it, the
NumPy reference, and the frameworks (torch, jax), then walks the user's quantities in the
order the code computes them (`gradparity.debug.localize`), names the first one that
diverges, marks what merely inherits it, and diagnoses each real finding
(`gradparity.debug.diagnose`).

The user's NumPy code follows the seed's API::

    backpropagation(cache, Y, parameters) -> grads     # required
    forward(X, parameters) -> (AL, cache)              # optional ("forward" or
                                                       #  "forward_propagation")

with ``parameters = {"W1", "b1", ...}``, ``cache = {"A0", "Z1", "A1", ...}`` and
``grads = {"dZ1", "dW1", "db1", "dA1", ...}``, all column-major. Without a forward, the
harness's forward builds the cache. The user's functions get copies of the arrays.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from types import ModuleType
from typing import Any

import numpy as np

from gradparity.adapters.registry import DEFAULT_BACKENDS
from gradparity.core.errors import UsageError, check_finite_nonnegative
from gradparity.core.gradients import GradientSet
from gradparity.core.spec import ACTIVATIONS, DTYPES, HEADS, Spec
from gradparity.debug import conventions
from gradparity.debug.diagnose import fits
from gradparity.debug.equations import Net
from gradparity.debug.localize import Check, UserValues, as_array, localize
from gradparity.debug.quantities import key, split, walk_order
from gradparity.debug.result import DebugResult, FrameworkRun, Problem
from gradparity.debug.user_code import (
    CACHE_KEY,
    GRAD_KEY,
    Location,
    UserCall,
    accepts,
    copy_arrays,
    display_path,
    find_function,
    load_file,
    run_traced,
    signature_text,
)
from gradparity.judge.tolerances import Tolerance, resolve_tolerances
from gradparity.reference.activations import ACTIVATION_FUNCS
from gradparity.reference.case import Case, make_case
from gradparity.reference.heads import softmax
from gradparity.reference.mlp import backpropagation as reference_backprop
from gradparity.reference.mlp import reference_gradients

#: Defaults of a NumPy session: the seed's network shape (relu hidden layers, one sigmoid
#: output with binary cross-entropy), two equal hidden widths (so that an off-by-one layer
#: index keeps shapes compatible and shows up in the values), m = 8 examples.
DEFAULT_SIZES: tuple[int, ...] = (4, 5, 5, 1)
DEFAULT_BATCH = 8
DEFAULT_HEAD = "sigmoid_bce"
DEFAULT_ACTIVATION = "relu"
BACKPROP_NAMES: tuple[str, ...] = ("backpropagation",)
FORWARD_NAMES: tuple[str, ...] = ("forward", "forward_propagation")


# -- resolving the user's functions ---------------------------------------------------------
def _resolve_functions(source: Any, forward: Callable | None, backprop_name: str | None,
                       forward_name: str | None) -> tuple[str, Callable, Callable | None,
                                                         ModuleType | None, dict[str, str]]:
    notes: dict[str, str] = {}
    module: ModuleType | None = None
    if isinstance(source, (str, os.PathLike)):
        module = load_file(source)
        label = display_path(source)
    elif isinstance(source, ModuleType):
        module = source
        label = getattr(source, "__file__", None) or source.__name__
        label = display_path(label)
    elif callable(source):
        code = getattr(source, "__code__", None)
        where = f" ({display_path(code.co_filename)})" if code is not None else ""
        label = f"{getattr(source, '__qualname__', repr(source))}{where}"
    else:
        raise UsageError(f"source={source!r}: expected a .py path, a module or a function")

    if module is None:
        bp, bp_name = source, getattr(source, "__name__", "backpropagation")
    else:
        names = (backprop_name,) if backprop_name else BACKPROP_NAMES
        found = find_function(module, names)
        if found is None:
            raise UsageError(f"{label}: no function named {names[0]}(cache, Y, parameters)"
                             " (--backprop NAME picks another name)")
        bp_name, bp = found
    if not accepts(bp, 3):
        raise UsageError(f"{label}: {signature_text(bp_name, bp)} does not take (cache, Y, "
                         "parameters) as in the seed")

    fwd: Callable | None = forward
    if fwd is None and module is not None and forward_name != "":
        names = (forward_name,) if forward_name else FORWARD_NAMES
        found = find_function(module, names)
        if found is None and forward_name:
            raise UsageError(f"{label}: no function named {forward_name}(X, parameters)")
        if found is not None:
            f_name, f = found
            if accepts(f, 2):
                fwd = f
                notes["forward"] = f"yours ({f_name})"
            elif forward_name:
                raise UsageError(f"{label}: {signature_text(f_name, f)} does not take "
                                 "(X, parameters)")
            else:
                notes["forward"] = (f"the harness's ({signature_text(f_name, f)} in your file "
                                    "does not take (X, parameters))")
    elif fwd is not None:
        if not accepts(fwd, 2):
            raise UsageError(f"forward: {signature_text('forward', fwd)} does not take "
                             "(X, parameters)")
        notes["forward"] = f"yours ({getattr(fwd, '__name__', 'forward')})"
    notes.setdefault("forward", "the harness's (your code has no forward(X, parameters))")
    return label, bp, fwd, module, notes


# -- sizes and parameters -------------------------------------------------------------------
def sizes_from_parameters(parameters: Mapping[str, Any]) -> tuple[int, ...]:
    """``(n0, ..., nL)`` from ``W1, b1, ...`` shapes; `UsageError` if they do not chain."""
    L = sum(1 for k in parameters if isinstance(k, str) and k.startswith("W"))
    if L == 0:
        raise UsageError("parameters: no W1, b1, ... entries")
    sizes: list[int] = []
    for layer in range(1, L + 1):
        w, b = parameters.get(f"W{layer}"), parameters.get(f"b{layer}")
        if w is None or b is None:
            raise UsageError(f"parameters: W{layer} or b{layer} is missing (layers must be "
                             f"numbered 1 to {L})")
        w, b = np.asarray(w), np.asarray(b)
        if w.ndim != 2:
            raise UsageError(f"parameters: W{layer} has shape {w.shape}, expected (n{layer}, "
                             f"n{layer - 1})")
        if sizes and w.shape[1] != sizes[-1]:
            raise UsageError(f"parameters: W{layer} has shape {w.shape} but layer {layer - 1} "
                             f"has {sizes[-1]} units: expected ({w.shape[0]}, {sizes[-1]})")
        if b.shape != (w.shape[0], 1):
            raise UsageError(f"parameters: b{layer} has shape {b.shape}, expected "
                             f"({w.shape[0]}, 1)")
        if not sizes:
            sizes.append(int(w.shape[1]))
        sizes.append(int(w.shape[0]))
    if len(parameters) != 2 * L:
        extra = sorted(set(parameters) - {f"{p}{i}" for p in "Wb" for i in range(1, L + 1)})
        raise UsageError(f"parameters: unexpected entries {', '.join(map(str, extra))} "
                         "(only W1, b1, ... are allowed: the seed computes L = len(parameters)//2)")
    return tuple(sizes)


def _module_sizes(module: ModuleType | None) -> tuple[tuple[int, ...] | None,
                                                     dict[str, np.ndarray] | None, str]:
    """Sizes (and parameters) a user's file declares: a ``parameters`` dict, or
    ``layer_dims`` / ``layers_dims`` (the classic course's name)."""
    if module is None:
        return None, None, ""
    params = getattr(module, "parameters", None)
    if isinstance(params, Mapping) and "W1" in params:
        return sizes_from_parameters(params), dict(params), "from the parameters in your file"
    for name in ("layer_dims", "layers_dims"):
        dims = getattr(module, name, None)
        if isinstance(dims, (list, tuple)) and len(dims) >= 2:
            return tuple(int(d) for d in dims), None, f"from {name} in your file"
    return None, None, ""


def parse_sizes(text: str) -> tuple[int, ...]:
    """``"4,8,1"`` (or ``"4x8x1"``) -> ``(4, 8, 1)``; `UsageError` otherwise."""
    pieces = text.replace("x", ",").split(",")
    if not all(p.strip().isdigit() for p in pieces):
        raise UsageError(f"--sizes={text!r}: expected comma-separated integers such as 4,8,1")
    sizes = tuple(int(p) for p in pieces)
    if len(sizes) < 2:
        raise UsageError(f"--sizes={text!r}: expected at least two sizes (n0, ..., nL)")
    return sizes


def _check_choice(name: str, value: str | None, choices: Sequence[str]) -> None:
    if value is not None and value not in choices:
        raise UsageError(f"{name}={value!r}: expected one of {', '.join(choices)}")


def _tolerance(dtype: str, rtol: float | None, atol: float | None) -> Tolerance:
    for name, v in (("rtol", rtol), ("atol", atol)):
        if v is not None:
            check_finite_nonnegative(name, v)
    return resolve_tolerances(rtol=rtol, atol=atol)[dtype]


def _with_parameters(case: Case, parameters: Mapping[str, Any] | None) -> Case:
    if parameters is None:
        return case
    L = case.spec.depth
    cast = {}
    for layer in range(1, L + 1):
        for p in "Wb":
            v = np.asarray(parameters[f"{p}{layer}"], dtype=np.float64)
            if not np.isfinite(v).all():
                raise UsageError(f"parameters: {p}{layer} has NaN or inf entries")
            cast[f"{p}{layer}"] = np.ascontiguousarray(v, dtype=case.dtype)
    return replace(case, parameters=cast)


def _make_case(spec: Spec, parameters: Mapping[str, Any] | None) -> Case:
    return _with_parameters(make_case(spec), parameters)


# -- inference from the user's forward ------------------------------------------------------
def _infer_activation(cache: Mapping[str, Any], depth: int, dtype: str) -> str | None:
    hidden = []
    for layer in range(1, depth):
        Z, A = as_array(cache.get(f"Z{layer}")), as_array(cache.get(f"A{layer}"))
        if Z is None or A is None or Z.shape != A.shape:
            return None
        hidden.append((Z, A))
    if not hidden:
        return None
    for name in ACTIVATIONS:
        g = ACTIVATION_FUNCS[name].forward
        with np.errstate(all="ignore"):
            if all(fits(A, g(Z), dtype) for Z, A in hidden):
                return name
    return None


_OUTPUT_HEADS = (("sigmoid", "sigmoid_bce"), ("softmax", "softmax_ce"),
                 ("identity", "linear_mse"), ("tanh", "tanh_mse"))


def _infer_head(cache: Mapping[str, Any], depth: int, dtype: str) -> str | None:
    Z, A = as_array(cache.get(f"Z{depth}")), as_array(cache.get(f"A{depth}"))
    if Z is None or A is None or Z.shape != A.shape:
        return None
    funcs = {"sigmoid": ACTIVATION_FUNCS["sigmoid"].forward, "softmax": softmax,
             "identity": lambda z: z, "tanh": np.tanh}
    for out, head in _OUTPUT_HEADS:
        if head == "softmax_ce" and Z.shape[0] < 2:
            continue
        with np.errstate(all="ignore"):
            if fits(A, funcs[out](Z), dtype):
                return head
    return None


# -- parsing the user's results -------------------------------------------------------------
def _first_missing(order: list[str], have: Mapping[str, Any]) -> str:
    """The quantity an exception is attributed to when its line names none: the first one
    not yet stored, among the kinds (dZ, dW, ...) the code stored so far."""
    kinds = {split(k)[0] for k in have if k in order} or {split(k)[0] for k in order}
    return next((k for k in order if k not in have and split(k)[0] in kinds), order[0])


def _exception_outcome(call: UserCall, order: list[str], what: str
                       ) -> tuple[dict[str, tuple[str, Location | None]], dict[str, str]]:
    assert call.raised is not None
    exc = call.raised
    at = exc.key if exc.key in order else _first_missing(order, call.partial)
    errors = {at: (f"your {what} raised {exc.text}", exc.location)}
    after = order[order.index(at) + 1:]
    not_computed = {k: f"not computed: your {what} raised at {at}" for k in after
                    if k not in call.partial}
    return errors, not_computed


def _framework_runs(case: Case, reference: GradientSet, backends: Sequence[str],
                    tolerance: Tolerance) -> list[FrameworkRun]:
    from gradparity.adapters.base import CaseNotSupported
    from gradparity.adapters.registry import get_backend
    from gradparity.adapters.worker import started
    from gradparity.judge.verdict import judge

    runs = []
    for name in backends:  # workers started ahead all compute at once
        w = started(name)
        if w is not None:
            w.prefetch(case)
    for name in backends:
        b = started(name) or get_backend(name)  # a worker, else in process
        if not b.available():
            runs.append(FrameworkRun(name, "skipped", reason=b.unavailable_reason()))
            continue
        try:
            got = b.gradients(case)
            verdicts = judge(case, got, reference, tolerance=tolerance,
                             kink_conventions=b.kink_conventions(case.spec.dtype))
        except CaseNotSupported as exc:
            runs.append(FrameworkRun(name, "skipped", reason=str(exc)))
            continue
        except Exception as exc:  # noqa: BLE001 - a framework failure is a row, not a crash
            runs.append(FrameworkRun(name, "error", reason=f"{type(exc).__name__}: {exc}"))
            continue
        runs.append(FrameworkRun(name, "ran", verdicts, gradients=got))
    return runs


def _explained(case: Case, reference: GradientSet, order: list[str],
               values: Mapping[str, Any], loss: Any, backend: str, tolerance: Tolerance,
               dtype: str) -> dict[str, tuple[str, str]]:
    """The keys where the user's framework run (``values``, ``loss``, every key of ``order``
    computed) differs from the reference in a way the judge explains (the ``backend``'s kink
    conventions), with their status and reason."""
    explained: dict[str, tuple[str, str]] = {}
    if not all(k in values for k in order):
        return explained
    from gradparity.adapters.registry import get_backend
    from gradparity.judge.status import EXPLAINED
    from gradparity.judge.verdict import judge

    forward = {"A0": case.X.copy(), **{k: values[k] for k in order
                                      if split(k)[0] in ("Z", "A")}}
    grads = {k: values[k] for k in order if k.startswith("d")}
    mine = GradientSet("user", loss, forward, grads)
    kinks = get_backend(backend).kink_conventions(dtype)
    for v in judge(case, mine, reference, tolerance=tolerance, kink_conventions=kinks):
        if v.status in EXPLAINED:
            explained[v.key] = (v.status, v.reason)
    return explained


def _check_backends(backends: Sequence[str] | None) -> tuple[str, ...]:
    from gradparity.adapters.registry import BACKENDS

    out = tuple(backends or ())
    for b in out:
        if b not in BACKENDS or b == "reference":
            raise UsageError(f"backends={b!r}: expected torch, jax (or none)")
    return out


def _reference_values(case: Case) -> tuple[GradientSet, dict[str, np.ndarray]]:
    """The reference's GradientSet, and every value by key (with dA[L] and dA0)."""
    spec = case.spec
    ref = reference_gradients(case)
    with np.errstate(over="ignore", under="ignore"):
        grads = reference_backprop(ref.forward, case.Y, case.parameters, spec.activation,
                                   spec.head, with_output_dA=True)
    return ref, {**ref.forward, **grads}


# -- the steps of a NumPy session ----------------------------------------------------------
@dataclass
class _Run:
    """One user function's outcome, parsed for the walk."""

    call: UserCall
    values: dict[str, Any] = field(default_factory=dict)
    errors: dict[str, tuple[str, Location | None]] = field(default_factory=dict)
    not_computed: dict[str, str] = field(default_factory=dict)
    problems: list[Problem] = field(default_factory=list)
    cache: dict[str, Any] | None = None  # forward: the cache it returned


def _choose_sizes(sizes: Sequence[int] | None, parameters: Mapping[str, Any] | None,
                  module: ModuleType | None
                  ) -> tuple[tuple[int, ...], Mapping[str, Any] | None, str]:
    """Sizes, the parameters to use (if any), and how the sizes were chosen."""
    file_sizes, file_params, where = _module_sizes(module)
    if parameters is not None:
        p_sizes: tuple[int, ...] | None = sizes_from_parameters(parameters)
        where = "from the parameters you passed"
    elif file_params is not None:
        parameters, p_sizes = file_params, file_sizes
    else:
        p_sizes = file_sizes
    if sizes is not None:
        sizes = tuple(sizes)
        if parameters is not None and p_sizes != sizes:
            raise UsageError(f"sizes={','.join(map(str, sizes))}: the parameters ({where}) "
                             f"give sizes {','.join(map(str, p_sizes or ()))}")
        return sizes, parameters, "given"
    if p_sizes is not None:
        return p_sizes, parameters, where
    return DEFAULT_SIZES, parameters, "default (--sizes to change)"


def _run_forward(fwd: Callable, case: Case, notes: dict[str, str]) -> _Run:
    order = walk_order(case.spec.depth, forward=True, output_dA=False, input_dA=False)
    call = run_traced(fwd, (case.X.copy(), copy_arrays(case.parameters)), pattern=CACHE_KEY,
                      order=order)
    run = _Run(call)
    if call.raised is not None:
        run.errors, run.not_computed = _exception_outcome(call, order, "forward")
        run.values = dict(call.partial)
        return run
    value = call.value
    if isinstance(value, (tuple, list)) and len(value) == 2 and isinstance(value[1], Mapping):
        run.cache = dict(value[1])
    elif isinstance(value, Mapping):
        run.cache = dict(value)
        notes["forward"] += "; it returned the cache alone, not (AL, cache)"
    else:
        run.problems.append(Problem(f"forward returned {type(value).__name__}, not (AL, "
                                    "cache): the harness's forward builds the cache"))
        run.not_computed = {k: "not checked: your forward returned no cache" for k in order}
        return run
    run.values = {k: v for k, v in run.cache.items() if k in order}
    return run


def _infer_network(case: Case, cache: Mapping[str, Any] | None, activation: str | None,
                   head: str | None, loss_form: str | None,
                   parameters: Mapping[str, Any] | None, notes: dict[str, str]) -> Case:
    """The case again if the user's forward shows another activation or output."""
    spec, L = case.spec, case.spec.depth
    changes: dict[str, Any] = {}
    if activation is None:
        act = _infer_activation(cache, L, spec.dtype) if cache is not None else None
        if act is not None:
            changes["activation"] = act
            notes["activation"] = "inferred from your forward"
        elif L > 1:
            notes["activation"] = ("default, as in the seed (--activation to change)"
                                   if cache is None else "default: your forward's A = g(Z) "
                                   "matches no activation (--activation to set it)")
    else:
        notes["activation"] = "given"
    if head is None:
        h = _infer_head(cache, L, spec.dtype) if cache is not None else None
        if h is not None and h != spec.head:
            changes["head"] = h
        notes["head"] = ("inferred from your forward" if h is not None
                         else "default, as in the seed (--head to change)")
    else:
        notes["head"] = "given"
    if not changes:
        return case
    new_case = _make_case(spec.replace(loss_form=loss_form, **changes), parameters)
    same = np.array_equal(new_case.X, case.X) and all(
        np.array_equal(new_case.parameters[k], case.parameters[k]) for k in case.parameters)
    if not same:  # pragma: no cover - make_case draws X and W before the head's targets
        raise RuntimeError("internal: the case changed with the inferred activation/head")
    return new_case


def _run_backprop(backprop: Callable, case: Case, fwd_run: _Run | None,
                  harness_cache: Mapping[str, np.ndarray], notes: dict[str, str]) -> _Run:
    """The user's backprop on the user's own cache (when the user's forward gave one) or on
    the harness's."""
    L = case.spec.depth
    if fwd_run is not None and fwd_run.cache is not None:
        user_cache = fwd_run.cache
        cache_in = {k: (np.array(v, copy=True) if as_array(v) is not None else v)
                    for k, v in user_cache.items()}
    else:
        cache_in = copy_arrays(harness_cache)
        if fwd_run is not None:
            notes["forward"] += "; it failed, so your backpropagation ran on the harness's cache"
    order = walk_order(L, forward=False, output_dA=True, input_dA=True)
    call = run_traced(backprop, (cache_in, case.Y.copy(), copy_arrays(case.parameters)),
                      pattern=GRAD_KEY, order=order)
    run = _Run(call)
    if call.raised is not None:
        grads = dict(call.partial)
        run.errors, run.not_computed = _exception_outcome(
            call, walk_order(L, forward=False, output_dA=f"dA{L}" in grads, input_dA=True),
            "backpropagation")
    elif isinstance(call.value, Mapping):
        grads = dict(call.value)
    else:
        grads = dict(call.partial)
        hint = " (missing `return grads`?)" if call.value is None else ""
        text = (f"backpropagation returned {type(call.value).__name__}, not a dict of "
                f"gradients{hint}")
        if grads:
            text += f"; checked the dict it filled ({len(grads)} entries)"
        else:
            run.not_computed = {k: "nothing to check: backpropagation returned no gradients"
                                for k in order}
        run.problems.append(Problem(text))
    unexpected = sorted(k for k in grads if isinstance(k, str) and GRAD_KEY.match(k)
                        and k not in order)
    if unexpected:
        run.problems.append(Problem(
            f"your grads has entries for layers the network does not have "
            f"({', '.join(unexpected)}; L = {L}): an off-by-one loop bound?",
            call.assigned.get(unexpected[0])))
    run.values = {k: v for k, v in grads.items() if k in order}
    return run


# -- the NumPy session ----------------------------------------------------------------------
def debug_numpy(
    source: str | os.PathLike[str] | ModuleType | Callable,
    *,
    forward: Callable | None = None,
    sizes: Sequence[int] | None = None,
    activation: str | None = None,
    head: str | None = None,
    loss_form: str | None = None,
    dtype: str = "float64",
    batch: int | None = None,
    seed: int = 0,
    parameters: Mapping[str, Any] | None = None,
    X: Any = None,
    Y: Any = None,
    backends: Sequence[str] | None = DEFAULT_BACKENDS,
    rtol: float | None = None,
    atol: float | None = None,
    backprop_name: str | None = None,
    forward_name: str | None = None,
) -> DebugResult:
    """Debug a hand-written NumPy backprop against the reference, torch and jax.

    Args:
        source: a ``.py`` path or a module defining ``backpropagation(cache, Y,
            parameters)`` (and optionally ``forward(X, parameters) -> (AL, cache)``), or
            the backprop function itself.
        forward: the user's forward, when ``source`` is a function.
        sizes: ``(n0, ..., nL)``. Default: from ``parameters`` (or a ``parameters`` dict /
            ``layer_dims`` list in the user's file), else `DEFAULT_SIZES`.
        activation: hidden activation. Default: inferred from the user's forward, else relu.
        head, loss_form: output activation + loss. Default: inferred from the user's
            forward (sigmoid -> sigmoid_bce, softmax -> softmax_ce, linear -> linear_mse,
            tanh -> tanh_mse), else sigmoid_bce.
        dtype, batch, seed: the case (arrays drawn by `make_case`); ``batch`` defaults to
            ``X``'s number of columns, else `DEFAULT_BATCH`.
        parameters: ``{"W1": ..., "b1": ...}`` to use instead of drawn ones.
        X, Y: explicit data, column-major ``(n0, m)`` and ``(nL, m)``.
        backends: frameworks run on the same case (``()`` for none).
        rtol, atol: tolerance overrides (defaults: torch.testing's per dtype).
        backprop_name, forward_name: function names to look up in the file
            (``forward_name=""`` ignores the file's forward).

    Raises:
        UsageError: a bad option, an unreadable file, no backprop function.
    """
    _check_choice("activation", activation, ACTIVATIONS)
    _check_choice("head", head, tuple(HEADS))
    _check_choice("dtype", dtype, DTYPES)
    backends = _check_backends(backends)
    tol = _tolerance(dtype, rtol, atol)
    label, backprop, fwd, module, notes = _resolve_functions(source, forward, backprop_name,
                                                            forward_name)

    sizes, parameters, notes["sizes"] = _choose_sizes(sizes, parameters, module)
    inputs = None if X is None else np.atleast_2d(np.asarray(X, dtype=np.float64)).tolist()
    targets = None if Y is None else np.atleast_2d(np.asarray(Y, dtype=np.float64)).tolist()
    if batch is None:
        batch = len(inputs[0]) if inputs else len(targets[0]) if targets else DEFAULT_BATCH
    spec = Spec(tuple(sizes), activation=activation or DEFAULT_ACTIVATION,
                head=head or DEFAULT_HEAD, loss_form=loss_form, dtype=dtype, batch=batch,
                seed=seed, inputs=inputs, targets=targets)
    case = _make_case(spec, parameters)
    L = spec.depth

    fwd_run = _run_forward(fwd, case, notes) if fwd is not None else None
    case = _infer_network(case, fwd_run.cache if fwd_run else None, activation, head,
                          loss_form, parameters, notes)
    ref, reference = _reference_values(case)
    bp_run = _run_backprop(backprop, case, fwd_run, ref.forward, notes)

    values = {**(fwd_run.values if fwd_run else {}), **bp_run.values}
    order = walk_order(L, forward=fwd_run is not None, output_dA=f"dA{L}" in values,
                       input_dA="dA0" in values)
    required = {key(q, layer) for layer in range(1, L + 1) for q in ("dW", "db")}
    if fwd_run is not None:
        required |= set(walk_order(L, forward=True, output_dA=False, input_dA=False))
    user = UserValues(
        values=values,
        locations={**(fwd_run.call.assigned if fwd_run else {}), **bp_run.call.assigned},
        errors={**(fwd_run.errors if fwd_run else {}), **bp_run.errors},
        not_computed={**(fwd_run.not_computed if fwd_run else {}), **bp_run.not_computed},
        required=frozenset(required))
    net = Net(L, case.spec.activation, case.spec.head, case.Y, case.parameters,
              output_dA_reported=f"dA{L}" in values)
    backprop_cache = ref.forward if (fwd_run is not None and fwd_run.cache is None) else None
    problems = (fwd_run.problems if fwd_run else []) + bp_run.problems
    for run, what in ((fwd_run, "forward"), (bp_run, "backpropagation")):
        exc = run.call.raised if run is not None else None
        if exc is not None and not any(k in order for k in run.errors):
            # raised after everything that is checked: still a crash, never a pass
            problems.append(Problem(f"your {what} raised {exc.text} after computing every "
                                    "checked quantity: it never returned", exc.location))

    def walk(factor: float) -> list[Check]:
        return localize(order, net=net, reference=reference, user=user, factor=factor,
                        tolerance=tol, dtype=case.spec.dtype, backprop_cache=backprop_cache)

    reported_intermediates = any(split(k)[0] in ("dZ", "dA") and as_array(v) is not None
                                 for k, v in values.items() if k in order)
    convention, checks = conventions.detect(case.m, L, walk, reported_intermediates)
    frameworks = _framework_runs(case, ref, backends, tol)
    output = "".join(r.call.output for r in (fwd_run, bp_run) if r is not None)
    return DebugResult("numpy", label, case.spec, case, checks, convention, frameworks, tol,
                       problems=problems, notes=notes, user_output=output)
