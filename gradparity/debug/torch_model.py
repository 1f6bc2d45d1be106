"""A user's ``nn.Sequential`` as a gradparity case, and its own autograd, per layer.

`inspect_model` reads the structure (Linear, activation, Linear, ..., Linear) and maps
every module to the spec: sizes from the Linear layers, the hidden activation from the
activation modules. Anything the spec cannot express is a `UsageError` with one line naming
the module: an unsupported module, a LeakyReLU slope other than 0.01, a Linear without
bias, two activations or two Linears in a row, mixed hidden activations, or a trailing
activation (a Sigmoid/Softmax/Tanh at the end belongs to the head: ``--head``).
Subclasses of the supported modules are accepted: that is how a custom module (its own
forward, or its own ``autograd.Function``) gets checked.

`run_module` runs THE USER'S MODULE (a deep copy in the case's dtype, so the original is
untouched) on the case's inputs. Zero "probe" tensors are added to every Linear and
activation output by forward hooks: the gradient with respect to a probe is dJ/dZ or dJ/dA,
whatever the modules do in place. J is built from the module's output by the same losses
as gradparity's torch adapter (``reduction='sum'`` divided by m). An exception in the
module's forward or backward becomes a finding on the quantity being computed.
"""

from __future__ import annotations

import copy
import inspect
import linecache
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradparity.core.errors import UsageError
from gradparity.core.spec import ELU_ALPHA, LEAKY_SLOPE
from gradparity.debug.quantities import key, walk_order
from gradparity.debug.user_code import Location, innermost_user_frame, is_user_file

SUPPORTED = ("Linear (with bias), ReLU, LeakyReLU(0.01), Sigmoid, Tanh, Identity, "
             "Softplus(beta=1, threshold=20), ELU(alpha=1), SiLU, GELU(approximate='none' or "
             "'tanh')")

#: A trailing output activation and the head that applies it instead.
_HEAD_HINTS = {
    "Sigmoid": "--head sigmoid_bce (BCE; or sigmoid_mse)",
    "Softmax": "--head softmax_ce",
    "LogSoftmax": "--head softmax_ce",
    "Tanh": "--head tanh_mse",
}


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


@dataclass(frozen=True)
class Entry:
    """One module of the flattened Sequential: its dotted name, role and layer."""

    name: str
    module: Any
    role: str  # "linear" or "activation"
    layer: int


@dataclass(frozen=True)
class ModelStructure:
    sizes: tuple[int, ...]
    activation: str
    dtype: str
    entries: tuple[Entry, ...]

    @property
    def depth(self) -> int:
        return len(self.sizes) - 1


def _flatten(seq: Any, nn: Any, prefix: str = "") -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for name, child in seq.named_children():
        full = f"{prefix}{name}"
        if type(child) is nn.Sequential:
            out += _flatten(child, nn, full + ".")
        else:
            out.append((full, child))
    return out


def _activation(mod: Any, nn: Any, where: str) -> str | None:
    """The spec name of a supported activation module; None if it is not an activation."""
    if isinstance(mod, nn.LeakyReLU):
        if float(mod.negative_slope) != LEAKY_SLOPE:
            raise UsageError(f"{where} {describe(mod)}: negative_slope={mod.negative_slope:g} is "
                             f"not supported (gradparity's leaky_relu has slope {LEAKY_SLOPE:g})")
        return "leaky_relu"
    if isinstance(mod, nn.Softplus):
        if float(mod.beta) != 1.0 or float(mod.threshold) != 20.0:
            raise UsageError(f"{where} {describe(mod)}: only Softplus(beta=1, threshold=20) is "
                             "supported")
        return "softplus"
    if isinstance(mod, nn.ELU):
        if float(mod.alpha) != ELU_ALPHA:
            raise UsageError(f"{where} {describe(mod)}: alpha={mod.alpha:g} is not supported "
                             f"(gradparity's elu has alpha {ELU_ALPHA:g})")
        return "elu"
    if isinstance(mod, nn.GELU):
        approx = getattr(mod, "approximate", "none")
        if approx not in ("none", "tanh"):
            raise UsageError(f"{where} {describe(mod)}: approximate={approx!r} is not supported")
        return "gelu" if approx == "none" else "gelu_tanh"
    for cls, name in ((nn.ReLU, "relu"), (nn.Sigmoid, "sigmoid"), (nn.Tanh, "tanh"),
                      (nn.Identity, "identity"), (nn.SiLU, "silu")):
        if isinstance(mod, cls):
            return name
    return None


def inspect_model(model: Any, label: str, dtype: str | None = None) -> ModelStructure:
    """The spec-relevant structure of ``model``; `UsageError` for anything unsupported.
    ``dtype`` (float32/float64) overrides the parameters' dtype (the module is copied and
    converted to it when it runs)."""
    torch, nn, _ = import_torch()
    if not isinstance(model, nn.Sequential):
        raise UsageError(f"{label}: expected an nn.Sequential of Linear and activation modules, "
                         f"got {type(model).__name__}")
    mods = _flatten(model, nn)
    if not mods:
        raise UsageError(f"{label}: the Sequential is empty")
    sizes: list[int] = []
    acts: list[tuple[str, str, Any]] = []
    entries: list[Entry] = []
    layer = 0
    for i, (name, mod) in enumerate(mods):
        where = f"{label}: module [{name}]"
        if isinstance(mod, nn.Linear):
            if entries and entries[-1].role == "linear":
                raise UsageError(f"{where} {describe(mod)} follows another Linear: put an "
                                 "activation between them (nn.Identity() for none)")
            if mod.bias is None:
                raise UsageError(f"{where} {describe(mod)}: a Linear without bias is not "
                                 "supported (every layer of a gradparity spec has b)")
            if sizes and mod.in_features != sizes[-1]:
                raise UsageError(f"{where} {describe(mod)} takes {mod.in_features} inputs but "
                                 f"the Linear before it gives {sizes[-1]}")
            if not sizes:
                sizes.append(int(mod.in_features))
            sizes.append(int(mod.out_features))
            layer += 1
            entries.append(Entry(name, mod, "linear", layer))
            continue
        act = _activation(mod, nn, where)
        last = i == len(mods) - 1
        if act is not None and last and entries:
            hint = _HEAD_HINTS.get(type(mod).__name__)
            raise UsageError(f"{where} {describe(mod)} is last: an output activation belongs to "
                             "the head, not the module; remove it and pass "
                             + (hint or "--head (the last module must be the output Linear)"))
        if act is None:
            hint = _HEAD_HINTS.get(type(mod).__name__)
            if hint and last:
                raise UsageError(f"{where} {describe(mod)} is last: an output activation "
                                 f"belongs to the head; remove it and pass {hint}")
            raise UsageError(f"{where} {describe(mod)} is not supported; supported: {SUPPORTED}")
        if not entries:
            raise UsageError(f"{where} {describe(mod)}: the Sequential must start with a Linear")
        if entries[-1].role == "activation":
            raise UsageError(f"{where} {describe(mod)} follows another activation: one "
                             "activation per hidden layer")
        acts.append((name, act, mod))
        entries.append(Entry(name, mod, "activation", layer))
    if entries[-1].role != "linear":  # pragma: no cover - caught above as "is last"
        raise UsageError(f"{label}: the last module must be the output Linear")
    kinds = {a for _, a, _ in acts}
    if len(kinds) > 1:
        listing = ", ".join(f"{type(m).__name__} at [{n}]" for n, _, m in acts)
        raise UsageError(f"{label}: mixed hidden activations ({listing}); a gradparity spec has "
                         "one hidden activation")
    dtypes = {p.dtype for p in model.parameters()}
    names = {torch.float32: "float32", torch.float64: "float64"}
    if dtype is not None:
        return ModelStructure(tuple(sizes), kinds.pop() if kinds else "relu", dtype,
                              tuple(entries))
    if len(dtypes) != 1 or next(iter(dtypes)) not in names:
        shown = ", ".join(sorted(str(d).replace("torch.", "") for d in dtypes))
        raise UsageError(f"{label}: parameters in {shown}; supported: one of float32, float64 "
                         "(or pass --dtype)")
    return ModelStructure(tuple(sizes), kinds.pop() if kinds else "relu",
                          names[next(iter(dtypes))], tuple(entries))


def parameters_of(structure: ModelStructure, dtype: str) -> dict[str, np.ndarray]:
    """``{"W1": weight, "b1": bias[:, None], ...}`` of the Linear layers, cast to ``dtype``."""
    out: dict[str, np.ndarray] = {}
    for e in structure.entries:
        if e.role == "linear":
            w = e.module.weight.detach().cpu().double().numpy()
            b = e.module.bias.detach().cpu().double().numpy()
            out[key("W", e.layer)] = np.ascontiguousarray(w, dtype=dtype)
            out[key("b", e.layer)] = np.ascontiguousarray(b[:, None], dtype=dtype)
    return out


def module_location(module: Any) -> Location | None:
    """Where a user-defined module class is defined (None for torch's own modules)."""
    cls = type(module)
    try:
        file = inspect.getsourcefile(cls)
        _, line = inspect.getsourcelines(cls)
    except (TypeError, OSError):
        return None
    if not file or not is_user_file(file):
        return None
    return Location(file, line, linecache.getline(file, line).strip())


@dataclass
class ModuleRun:
    """What the user's module gave on the case (column-major, case dtype)."""

    values: dict[str, np.ndarray] = field(default_factory=dict)
    loss: np.ndarray | None = None
    errors: dict[str, tuple[str, Location | None]] = field(default_factory=dict)
    not_computed: dict[str, str] = field(default_factory=dict)
    locations: dict[str, Location] = field(default_factory=dict)
    owners: dict[str, str] = field(default_factory=dict)  # key -> "module [2] ReLU"


def _owners(structure: ModelStructure) -> dict[str, Entry]:
    out: dict[str, Entry] = {}
    for e in structure.entries:
        if e.role == "linear":
            for k in (key("Z", e.layer), key("dW", e.layer), key("db", e.layer),
                      key("dA", e.layer - 1)):
                out[k] = e
        else:
            out[key("A", e.layer)] = e
            out[key("dZ", e.layer)] = e
    return out


def _exception_text(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def run_module(model: Any, structure: ModelStructure, case: Any, label: str) -> ModuleRun:
    """Forward and backward of (a copy of) ``model`` on ``case``; see the module doc."""
    torch, nn, F = import_torch()
    from gradparity.adapters.torch_autograd import _loss, _outputs

    spec = case.spec
    L, m, form = spec.depth, case.m, spec.loss_form
    tdtype = getattr(torch, spec.dtype)
    order = walk_order(L, forward=True, output_dA=form == "probs", input_dA=True)
    owners = _owners(structure)
    run = ModuleRun()
    for k, e in owners.items():
        run.owners[k] = f"module [{e.name}] {type(e.module).__name__}"
        loc = module_location(e.module)
        if loc is not None:
            run.locations[k] = loc

    mod = copy.deepcopy(model).to(dtype=tdtype, device="cpu")
    for p in mod.parameters():  # frozen layers too: their gradients are what is checked
        p.requires_grad_(True)
        p.grad = None
    flat = dict(_flatten(mod, nn))
    x = torch.tensor(case.X.T, dtype=tdtype).requires_grad_(True)
    y = torch.tensor(case.Y.T, dtype=tdtype)
    labels = None if case.labels is None else torch.tensor(case.labels, dtype=torch.int64)
    zp = {i: torch.zeros((m, spec.sizes[i]), dtype=tdtype, requires_grad=True)
          for i in range(1, L + 1)}
    n_ap = L - 1 + (form == "probs")
    ap = {i: torch.zeros((m, spec.sizes[i]), dtype=tdtype, requires_grad=True)
          for i in range(1, n_ap + 1)}
    fwd: dict[str, Any] = {}
    called: list[str] = []
    state: dict[str, str | None] = {"current": None}

    def post(e: Entry) -> Callable:
        def hook(module, inputs, output):
            called.append(e.name)
            k = key("Z" if e.role == "linear" else "A", e.layer)
            probe = zp[e.layer] if e.role == "linear" else ap[e.layer]
            out = output + probe
            fwd[k] = out.detach().clone()
            return out
        return hook

    def pre(e: Entry) -> Callable:
        def hook(module, inputs):
            state["current"] = key("Z" if e.role == "linear" else "A", e.layer)
        return hook

    handles = []
    for e in structure.entries:
        sub = flat[e.name]
        handles.append(sub.register_forward_pre_hook(pre(e)))
        handles.append(sub.register_forward_hook(post(e)))

    def stop(at: str, text: str, exc: BaseException) -> ModuleRun:
        loc = innermost_user_frame(exc.__traceback__) or run.locations.get(at)
        owner = f" ({run.owners[at]})" if at in run.owners else ""
        run.errors[at] = (f"your module raised {text}{owner}", loc)
        after = order[order.index(at) + 1:]
        for k in after:
            if k not in run.values:
                run.not_computed[k] = f"not computed: your module raised at {at}"
        return run

    with torch.enable_grad():
        try:
            z_out = mod(x)
        except Exception as exc:  # noqa: BLE001 - the user's module failed: a finding
            for h in handles:
                h.remove()
            at = state["current"] or order[0]
            for k, v in fwd.items():
                run.values[k] = _np(v.T, case.dtype)
            return stop(at, _exception_text(exc), exc)
        for h in handles:
            h.remove()
        expected = [e.name for e in structure.entries]
        if called != expected:
            raise UsageError(f"{label}: its forward did not call its modules once each, in "
                             f"order (called {', '.join(called) or 'none'}; expected "
                             f"{', '.join(expected)})")
        if not isinstance(z_out, torch.Tensor) or z_out.shape != (m, spec.sizes[-1]) or (
                not torch.equal(z_out.detach(), fwd[key("Z", L)])):
            raise UsageError(f"{label}: its forward does not return the last Linear's output")
        a_out = _outputs(torch)[spec.head](z_out)
        if form == "probs":
            a_out = a_out + ap[L]
        fwd[key("A", L)] = a_out.detach().clone()
        for k, v in fwd.items():
            run.values[k] = _np(v.T, case.dtype)
        loss = _loss(torch, F, spec.head, form, z_out, a_out, y, labels, m)
        run.loss = _np(loss.detach(), case.dtype)
        failure: BaseException | None = None
        try:
            loss.backward()
        except Exception as exc:  # noqa: BLE001 - the user's backward failed: a finding
            failure = exc

    # gradients that reached their leaf (all of them, unless the backward failed)
    def grad(t: Any) -> np.ndarray | None:
        return None if t.grad is None else _np(t.grad, case.dtype)

    for i, p in zp.items():
        g = grad(p)
        if g is not None:
            run.values[key("dZ", i)] = g.T
    for i, p in ap.items():
        g = grad(p)
        if g is not None:
            run.values[key("dA", i)] = g.T
    for e in structure.entries:
        if e.role == "linear":
            lin = flat[e.name]
            gw, gb = grad(lin.weight), grad(lin.bias)
            if gw is not None:
                run.values[key("dW", e.layer)] = gw
            if gb is not None:
                run.values[key("db", e.layer)] = gb[:, None]
    gx = grad(x)
    if gx is not None:
        run.values["dA0"] = gx.T
    if failure is not None:
        grads_order = [k for k in order if k.startswith("d")]
        at = next((k for k in grads_order if k not in run.values), grads_order[0])
        return stop(at, _exception_text(failure), failure)
    return run


def _np(t: Any, dtype: np.dtype) -> np.ndarray:
    """A C-contiguous NumPy copy (in the dtype torch computed in, which is the case's)."""
    return np.array(t.detach().cpu().numpy(), order="C", copy=True)
