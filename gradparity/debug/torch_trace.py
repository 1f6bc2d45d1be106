"""Recover the MLP inside any PyTorch module by running its own ``forward``.

`trace_module` runs the user's ``forward`` once, eagerly, on a batch, under a
``TorchFunctionMode`` that sees every torch call the forward makes (``nn.Linear`` calls
``F.linear``; ``nn.ReLU`` and ``F.relu``, ``torch.relu``, ``x.relu()``, ``x.clamp(min=0)``
all arrive as calls). It follows the one tensor that flows from the input to the output
and classifies each call made on it: a Linear layer (its weight and bias are parameters of
the module), a supported activation, a reshape (``view``/``flatten``/``reshape`` keeping
the batch), a Dropout (held as the identity) or, after the last Linear, the output
activation that belongs to the head (sigmoid, softmax, log_softmax, tanh). A custom
``torch.autograd.Function`` is seen whole (its ``apply``), and what its forward computes
is recognised from the values: a Linear with the module's weight and bias, or one of the
activations; its hand-written backward is then what gets checked for that layer.

Anything else on the path (a convolution, attention, a BatchNorm, a residual sum, two
tensors joined, data-dependent control flow) is a `UsageError` of one line naming the
module or the line of ``forward`` and what is supported. ``torch.fx`` is tried first as a
static check: when symbolic tracing fails because the forward branches on a tensor value,
the line is named (the eager run alone cannot see the other branch).

`run_traced_module` runs the forward again on the case's inputs with the same recorder,
registers gradient hooks on every Z and A as they are produced (before any in-place
activation changes them) and returns the forward values and the output, ready for the
loss and ``backward()``.
"""

from __future__ import annotations

import contextlib
import inspect
import io
import linecache
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from gradparity.core.errors import UsageError
from gradparity.core.spec import ELU_ALPHA, LEAKY_SLOPE
from gradparity.debug.torch_model import describe, import_torch
from gradparity.debug.user_code import Location, innermost_user_frame, is_user_file

SUPPORTED = ("Linear layers with bias; activations relu, leaky_relu(0.01), sigmoid, tanh, "
             "softplus, elu, silu, gelu (modules or functions, x.clamp(min=0), "
             "torch.maximum(x, 0)); Flatten/view at the input; Identity; Dropout; a final "
             "Sigmoid, Softmax, LogSoftmax or Tanh")

#: Output activations after the last Linear, and the head family they belong to.
OUTPUTS = ("sigmoid", "softmax", "log_softmax", "tanh")


@dataclass
class Step:
    """One classified call on the input-to-output path of the forward."""

    kind: str  # "linear", "activation", "reshape", "dropout"
    name: str  # activation name; for linear the weight's parameter name
    location: Location | None
    module: str  # dotted name of the innermost submodule running it ("" for forward)
    text: str  # how the user wrote it: "F.relu", "nn.Linear", "MyLinearFn.apply"
    custom: type | None = None  # the autograd.Function class
    weight: str = ""
    bias: str = ""
    shape: tuple[int, ...] = ()
    index: int = -1  # the position of its output among the recorded tensors
    parent: int = -1  # the position of the path tensor it was applied to
    layout: str = ""  # linear: "" for F.linear's W (n_out, n_in), "xW" for x @ W + b


@dataclass
class Recovered:
    """The MLP the forward computes."""

    sizes: tuple[int, ...]
    activation: str
    output: str  # "identity" or one of OUTPUTS
    linears: list[Step]
    activations: list[Step]  # one per hidden layer (kind "activation"), or identity ones
    output_step: Step | None
    steps: list[Step]
    notes: list[str] = field(default_factory=list)
    squeezed: bool = False  # the forward returns (m,) for one output

    @property
    def depth(self) -> int:
        return len(self.sizes) - 1

    def describe(self, head: str | None = None) -> str:
        """``Linear(784, 128) -> relu -> Linear(128, 10) -> head softmax_ce``."""
        parts = []
        for i, lin in enumerate(self.linears):
            n_in, n_out = self.sizes[i], self.sizes[i + 1]
            tag = f" [custom {lin.custom.__name__}]" if lin.custom is not None else ""
            parts.append(f"Linear({n_in}, {n_out}){tag}")
            if i < len(self.activations):
                act = self.activations[i]
                tag = f" [custom {act.custom.__name__}]" if act.custom is not None else ""
                parts.append(f"{act.name}{tag}")
        if self.output != "identity":
            out = self.output_step
            tag = f" [custom {out.custom.__name__}]" if out and out.custom is not None else ""
            parts.append(f"{self.output}{tag}")
        if head:
            parts.append(f"head {head}")
        return " -> ".join(parts)


# -- what each torch call is -----------------------------------------------------------------
def _kwarg(args: tuple, kwargs: dict, i: int, name: str, default: Any) -> Any:
    if name in kwargs:
        return kwargs[name]
    return args[i] if len(args) > i else default


def _zero(v: Any, torch: Any) -> bool:
    if isinstance(v, (int, float)) and not isinstance(v, bool):
        return v == 0
    if isinstance(v, torch.Tensor) and not v.requires_grad:
        return bool(v.numel() >= 1 and (v == 0).all())
    return False


def _classify(func: Any, args: tuple, kwargs: dict, torch: Any, F: Any, chain_pos: int
              ) -> tuple[str, str] | str:
    """``(kind, name)`` of a call whose argument ``chain_pos`` is the path tensor, or an
    explanation (str) of why it is not supported."""
    name = getattr(func, "__name__", str(func))
    T = torch.Tensor
    acts = {
        "relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid",
        "tanh": "tanh", "tanh_": "tanh", "silu": "silu", "logsigmoid": "",
    }
    if func in (F.linear, torch._C._nn.linear):
        return ("linear", "")
    if func in (F.dropout, torch.dropout, torch.dropout_, F.alpha_dropout,
                torch.nn.functional.dropout1d) or name in ("dropout", "dropout_",
                                                             "feature_dropout"):
        return ("dropout", "dropout")
    if func in (F.relu, torch.relu, torch.relu_, T.relu, T.relu_, F.relu_):
        return ("activation", "relu")
    if func in (torch.sigmoid, F.sigmoid, T.sigmoid, T.sigmoid_, torch.special.expit):
        return ("activation", "sigmoid")
    if func in (torch.tanh, F.tanh, T.tanh, T.tanh_):
        return ("activation", "tanh")
    if func is F.silu:
        return ("activation", "silu")
    if func is F.gelu:
        approx = _kwarg(args, kwargs, 1, "approximate", "none")
        return ("activation", "gelu" if approx == "none" else "gelu_tanh")
    if func in (F.leaky_relu, F.leaky_relu_, torch._C._nn.leaky_relu,
                torch._C._nn.leaky_relu_):
        slope = _kwarg(args, kwargs, 1, "negative_slope", 0.01)
        if float(slope) != LEAKY_SLOPE:
            return (f"leaky_relu with negative_slope={slope:g} (gradparity's leaky_relu has "
                    f"slope {LEAKY_SLOPE:g})")
        return ("activation", "leaky_relu")
    if func in (F.elu, F.elu_, torch._C._nn.elu):
        alpha = _kwarg(args, kwargs, 1, "alpha", 1.0)
        if float(alpha) != ELU_ALPHA:
            return f"elu with alpha={alpha:g} (gradparity's elu has alpha {ELU_ALPHA:g})"
        return ("activation", "elu")
    if func in (F.softplus, torch._C._nn.softplus):
        beta = _kwarg(args, kwargs, 1, "beta", 1.0)
        threshold = _kwarg(args, kwargs, 2, "threshold", 20.0)
        if float(beta) != 1.0 or float(threshold) != 20.0:
            return "softplus with beta/threshold other than 1/20"
        return ("activation", "softplus")
    if func in (torch.clamp, T.clamp, T.clamp_, torch.clamp_min, T.clamp_min, T.clip,
                torch.clip, T.clamp_min_):
        lo = _kwarg(args, kwargs, 1, "min", None)
        hi = _kwarg(args, kwargs, 2, "max", None)
        if _zero(lo, torch) and hi is None:
            return ("activation", "relu")
        return "clamp with bounds other than min=0 (a relu)"
    if func in (torch.maximum, T.maximum, torch.max, T.max, torch.fmax):
        if len(args) + len(kwargs) == 2:
            other = args[1 - chain_pos] if len(args) == 2 else next(iter(kwargs.values()))
            if _zero(other, torch):
                return ("activation", "relu")
        return f"{name} other than with 0 (a relu)"
    if func in (F.softmax, torch.softmax, T.softmax, torch.special.softmax):
        return _softmax_dim(args, kwargs, "softmax")
    if func in (F.log_softmax, torch.log_softmax, T.log_softmax, torch.special.log_softmax):
        return _softmax_dim(args, kwargs, "log_softmax")
    if func in (torch.flatten, T.flatten, T.view, T.reshape, torch.reshape, T.squeeze,
                torch.squeeze, T.unsqueeze, torch.unsqueeze, T.contiguous, T.view_as,
                T.reshape_as, T.float, T.double, T.to, T.type_as, T.clone):
        return ("reshape", name)
    if name in ("matmul", "mm", "__matmul__", "__rmatmul__", "addmm", "bmm"):
        return (f"{name} (x @ W with a raw tensor: gradparity follows nn.Linear / F.linear "
                "layers)")
    if func in (F.batch_norm, torch.batch_norm, F.layer_norm, torch.layer_norm):
        return f"{name}: a normalisation layer is not part of a gradparity MLP"
    if name in acts and acts[name]:
        return ("activation", acts[name])
    return f"{name}"


def _softmax_dim(args: tuple, kwargs: dict, name: str) -> tuple[str, str] | str:
    dim = _kwarg(args, kwargs, 1, "dim", None)
    x = args[0]
    if dim is None or dim in (1, -1) or (x.dim() == 2 and dim == x.dim() - 1):
        return ("activation", name)
    return f"{name} over dim={dim} (the classes are dim 1)"


# -- where a call comes from ------------------------------------------------------------------
def _user_location() -> Location | None:
    frame = sys._getframe(1)
    while frame is not None:
        file = frame.f_code.co_filename
        if is_user_file(file):
            return Location(file, frame.f_lineno, linecache.getline(file, frame.f_lineno).strip())
        frame = frame.f_back
    return None


def _function_location(cls: type) -> Location | None:
    """Where a custom autograd.Function's backward is written."""
    target = getattr(cls, "backward", cls)
    try:
        file = inspect.getsourcefile(target)
        lines, line = inspect.getsourcelines(target)
    except (TypeError, OSError):
        return None
    if not file:
        return None
    line += next((i for i, text in enumerate(lines) if text.lstrip().startswith("def ")), 0)
    return Location(file, line, linecache.getline(file, line).strip())


def _text(func: Any, module_type: str | None) -> str:
    name = getattr(func, "__name__", str(func))
    if module_type:
        return f"nn.{module_type}" if module_type != "" else name
    owner = getattr(func, "__module__", "") or ""
    if owner.startswith("torch.nn.functional"):
        return f"F.{name}"
    if owner == "torch" or owner.startswith("torch._C._nn"):
        return f"torch.{name}"
    qual = getattr(func, "__qualname__", "")
    if qual.startswith("TensorBase.") or qual.startswith("Tensor."):
        return f"x.{name}()"
    return f"torch.{name}" if owner.startswith("torch") else name


# -- the recorder -----------------------------------------------------------------------------
class _Unsupported(Exception):
    """Raised inside the forward to stop it at the first unsupported call."""


@dataclass
class _Record:
    tensor: Any
    value: Any  # a clone at the time it was produced
    step: Step | None


class Recorder:
    """Follows the path tensor through the forward and classifies each call on it."""

    def __init__(self, model: Any, label: str, hook: Callable[[int, Any], None] | None
                 ) -> None:
        self.torch, self.nn, self.F = import_torch()
        self.model = model
        self.label = label
        self.hook = hook
        self.records: list[_Record] = []
        self.ids: dict[int, int] = {}  # id(tensor) -> index in records
        self.steps: list[Step] = []
        self.params = {id(p): n for n, p in model.named_parameters()}
        self.module_stack: list[tuple[str, Any]] = []
        self.custom_depth = 0
        self.error: str | None = None
        self.dropouts: list[Step] = []
        self.busy = False  # the recorder's own torch calls pass through
        self.output = ""  # what the forward printed
        self.pending: dict[int, tuple[Step, int]] = {}  # x @ W outputs awaiting + b

    # path tensors
    def add(self, tensor: Any, step: Step | None, parent: Any = None) -> None:
        idx = len(self.records)
        if step is not None and parent is not None:
            step.parent = self.ids[id(parent)]
        self.records.append(_Record(tensor, tensor.detach().clone(), step))
        self.ids[id(tensor)] = idx
        if step is not None:
            step.index = idx
            step.shape = tuple(tensor.shape)
            self.steps.append(step)
        if self.hook is not None and tensor.requires_grad:
            self.hook(idx, tensor)

    def on_path(self, t: Any) -> bool:
        i = self.ids.get(id(t))
        return i is not None and self.records[i].tensor is t

    def where(self) -> tuple[str, Any]:
        return self.module_stack[-1] if self.module_stack else ("", None)

    def fail(self, what: str, location: Location | None) -> None:
        text = self.fail_text(what, location)
        self.error = text
        raise _Unsupported(text)

    def fail_text(self, what: str, location: Location | None) -> str:
        name, mod = self.where()
        if mod is not None and type(mod).__module__.split(".")[0] == "torch" and not \
                isinstance(mod, (self.nn.Sequential, self.nn.ModuleList, self.nn.ModuleDict)):
            text = (f"{self.label}: module [{name}] {describe(mod)} is not supported "
                    f"(it calls {what}); supported: {SUPPORTED}")
        else:
            at = f" at {location.short} ({location.source})" if location else ""
            text = (f"{self.label}: {what} on the path from input to output{at} is not "
                    f"supported; supported: {SUPPORTED}")
        return text

    # torch calls
    def call(self, func: Any, args: tuple, kwargs: dict) -> Any:
        torch = self.torch
        if self.custom_depth or self.error or self.busy:
            return func(*args, **kwargs)
        flat = list(args) + list(kwargs.values())
        for a in list(flat):
            if isinstance(a, (list, tuple)):
                flat += list(a)
        on = [i for i, a in enumerate(args) if isinstance(a, torch.Tensor) and self.on_path(a)]
        on_kw = [a for a in kwargs.values() if isinstance(a, torch.Tensor) and self.on_path(a)]
        on_nested = [a for a in flat if isinstance(a, torch.Tensor) and self.on_path(a)]
        if not on_nested:
            return func(*args, **kwargs)
        loc = _user_location()
        if len({id(a) for a in on_nested}) > 1 or (on_kw and on):
            self.fail(f"{getattr(func, '__name__', func)} joins two tensors of the path (a "
                      "skip connection or a sum)", loc)
        raw = self._raw_linear(func, args, kwargs, on, loc)
        if raw is not None:
            return raw
        got = _classify(func, args, kwargs, torch, self.F, on[0] if on else 0)
        if isinstance(got, str):
            out = None
            with contextlib.suppress(Exception):
                out = func(*args, **kwargs)
            if not isinstance(out, torch.Tensor):  # a query: size(), dim(), shape, repr
                if out is not None or getattr(func, "__name__", "") in ("__repr__",
                                                                         "__format__"):
                    return out
                self.fail(got, loc)
            if not out.is_floating_point():  # isnan(), argmax(): not on the path
                return out
            # unsupported, unless it turns out to be a side computation (x.mean() for a log)
            x = args[on[0]] if on else on_kw[0]
            self.add(out, Step("unknown", self.fail_text(got, loc), loc, self.where()[0],
                               getattr(func, "__name__", "")), x)
            return out
        kind, name = got
        x = args[on[0]] if on else on_kw[0]
        name_mod, mod = self.where()
        text = _text(func, type(mod).__name__ if mod is not None and not isinstance(
            mod, self.nn.Sequential) and name_mod else None)
        if kind == "dropout":
            step = Step("dropout", "dropout", loc, name_mod, text)
            self.dropouts.append(step)
            return x  # held as the identity
        out = func(*args, **kwargs)
        if not isinstance(out, torch.Tensor):
            return out
        step = Step(kind, name, loc, name_mod, text)
        if kind == "linear":
            w = _kwarg(args, kwargs, 1, "weight", None)
            b = _kwarg(args, kwargs, 2, "bias", None)
            if w is None or id(w) not in self.params:
                self.fail("F.linear with a weight that is not a parameter of the module", loc)
            if b is None:
                where = f"module [{name_mod}] {describe(mod)}" if mod is not None else \
                    f"F.linear at {loc.short if loc else '?'}"
                raise _fail_now(self, f"{self.label}: {where}: a Linear without bias is not "
                                "supported (every layer of a gradparity MLP has b)")
            if id(b) not in self.params:
                self.fail("F.linear with a bias that is not a parameter of the module", loc)
            step.weight, step.bias = self.params[id(w)], self.params[id(b)]
            step.name = step.weight
        if kind == "reshape" and out.dtype != x.dtype:
            self.fail(f"{getattr(func, '__name__', func)} changing the dtype", loc)
        self.add(out, step, x)
        return out

    def _raw_linear(self, func: Any, args: tuple, kwargs: dict, on: list[int],
                    loc: Location | None) -> Any:
        """``x @ W`` then ``+ b`` with parameters W (n_in, n_out) and b (n_out,): a Linear
        layer written by hand. Returns the output, or None when the call is not one."""
        torch = self.torch
        name = getattr(func, "__name__", "")
        if kwargs or len(args) != 2 or on != [0]:
            return None
        x, other = args
        if name in ("matmul", "mm", "__matmul__") and isinstance(other, torch.nn.Parameter) \
                and other.dim() == 2 and id(other) in self.params:
            out = func(*args)
            step = Step("matmul", "", loc, self.where()[0], "x @ W", weight=self.params[
                id(other)], layout="xW")
            self.add(out, Step("unknown", self.fail_text(
                f"x @ {step.weight} without a bias parameter added (a Linear layer needs "
                "+ b)", loc), loc, step.module, "matmul"), x)
            self.pending[id(out)] = (step, self.ids[id(x)])
            return out
        pending = self.pending.get(id(x))
        if name in ("add", "__add__", "__radd__") and pending is not None and isinstance(
                other, torch.nn.Parameter) and id(other) in self.params and other.numel() == \
                other.shape[-1]:
            step, parent = pending
            out = func(*args)
            step.kind, step.bias, step.name = "linear", self.params[id(other)], step.weight
            step.text = "x @ W + b"
            self.add(out, step)
            step.parent = parent
            return out
        return None

    def custom(self, cls: type, args: tuple, out: Any) -> Any:
        """A custom autograd.Function applied on the path."""
        torch = self.torch
        ins = [a for a in args if isinstance(a, torch.Tensor)]
        on = [a for a in ins if self.on_path(a)]
        if not on or not isinstance(out, torch.Tensor):
            return out
        loc = _user_location()
        if len(on) > 1:
            self.fail(f"{cls.__name__}.apply joins two tensors of the path", loc)
        x = on[0]
        params = [self.params[id(a)] for a in ins if id(a) in self.params]
        name_mod, _ = self.where()
        step = Step("custom", "", loc, name_mod, f"{cls.__name__}.apply", custom=cls)
        F = self.F
        with torch.no_grad():
            if params:
                ws = [a for a in ins if id(a) in self.params and a.dim() == 2]
                bs = [a for a in ins if id(a) in self.params and a.dim() == 1]
                if len(ws) == 1 and len(bs) == 1 and ws[0].shape[1] == x.shape[-1] \
                        and _close(out, F.linear(x, ws[0], bs[0]), torch):
                    step.kind = "linear"
                    step.weight, step.bias = self.params[id(ws[0])], self.params[id(bs[0])]
                    step.name = step.weight
                else:
                    self.fail(f"{cls.__name__}.apply (a custom autograd.Function with "
                              f"parameters {', '.join(params)}) does not compute "
                              "x @ W.T + b", loc)
            else:
                found = _which_activation(out, x, torch, F)
                if found is None:
                    self.fail(f"{cls.__name__}.apply (a custom autograd.Function) computes "
                              "none of the supported activations", loc)
                step.kind, step.name = "activation", found
        self.add(out, step, x)
        return out


def _fail_now(rec: Recorder, text: str) -> _Unsupported:
    rec.error = text
    return _Unsupported(text)


def _close(a: Any, b: Any, torch: Any) -> bool:
    if a.shape != b.shape:
        return False
    tol = 1e-5 if a.dtype == torch.float32 else 1e-10
    return bool(torch.allclose(a, b, rtol=tol, atol=tol))


def _which_activation(out: Any, x: Any, torch: Any, F: Any) -> str | None:
    cands: dict[str, Callable[[Any], Any]] = {
        "relu": F.relu, "sigmoid": torch.sigmoid, "tanh": torch.tanh,
        "leaky_relu": lambda z: F.leaky_relu(z, LEAKY_SLOPE), "elu": F.elu,
        "softplus": F.softplus, "silu": F.silu, "gelu": F.gelu,
        "gelu_tanh": lambda z: F.gelu(z, approximate="tanh"),
        "softmax": lambda z: torch.softmax(z, dim=-1),
        "log_softmax": lambda z: torch.log_softmax(z, dim=-1), "identity": lambda z: z,
    }
    best = None  # the closest one (gelu and its tanh form are close in float32)
    for name, g in cands.items():
        ref = g(x)
        if _close(out, ref, torch):
            err = float((out - ref).abs().max())
            if best is None or err < best[0]:
                best = (err, name)
    return best[1] if best else None


@contextlib.contextmanager
def recording(rec: Recorder) -> Iterator[None]:
    """The recorder active: a TorchFunctionMode, module-stack hooks and a wrapper around
    ``autograd.Function.apply`` (all removed afterwards)."""
    torch = rec.torch
    from torch.overrides import TorchFunctionMode

    class Mode(TorchFunctionMode):
        def __torch_function__(self, func, types, args=(), kwargs=None):
            return rec.call(func, tuple(args), dict(kwargs or {}))

    handles = []
    for name, mod in rec.model.named_modules():
        if not name:
            continue

        def pre(m, inputs, _n=name):
            rec.module_stack.append((_n, m))

        def post(m, inputs, output):
            if rec.module_stack:
                rec.module_stack.pop()

        handles.append(mod.register_forward_pre_hook(pre))
        handles.append(mod.register_forward_hook(post))

    Function = torch.autograd.Function
    original = Function.__dict__["apply"]

    def apply(cls, *args, **kwargs):
        rec.custom_depth += 1
        try:
            out = original.__func__(cls, *args, **kwargs)
        finally:
            rec.custom_depth -= 1
        if rec.custom_depth == 0 and not rec.error and not rec.busy:
            rec.busy = True
            try:
                rec.custom(cls, args, out)
            finally:
                rec.busy = False
        return out

    Function.apply = classmethod(apply)
    try:
        with Mode():
            yield
    finally:
        Function.apply = original
        for h in handles:
            h.remove()


# -- the structure ----------------------------------------------------------------------------
def _static_check(model: Any, label: str) -> None:
    """``torch.fx`` symbolic tracing: a forward that branches on a tensor's value is named
    at its line (the eager run cannot see the other branch)."""
    try:
        from torch import fx
    except ImportError:  # pragma: no cover - fx ships with torch
        return
    try:
        with contextlib.redirect_stdout(None):
            fx.symbolic_trace(model)
    except Exception as exc:  # noqa: BLE001 - fx fails on much legit code: only one case counts
        if type(exc).__name__ == "TraceError" and "control flow" in str(exc):
            loc = innermost_user_frame(exc.__traceback__)
            if loc is not None and loc.source.startswith("assert "):
                return  # a check, not a branch: the eager run sees the only path
            at = f" at {loc.short} ({loc.source})" if loc else ""
            raise UsageError(f"{label}: forward branches on a tensor's value{at}: "
                             "data-dependent control flow is not an MLP; supported: "
                             f"{SUPPORTED}") from None


def structure_of(rec: Recorder, output: Any, label: str) -> Recovered:
    """The MLP of a recorded run; `UsageError` when the path is not one."""
    torch = rec.torch
    if not isinstance(output, torch.Tensor) or not rec.on_path(output):
        raise UsageError(f"{label}: its forward does not return a tensor computed from its "
                         "input by the calls gradparity follows; supported: " + SUPPORTED)
    on_path: set[int] = set()
    idx: int | None = rec.ids[id(output)]
    while idx is not None and idx > 0:
        on_path.add(idx)
        step = rec.records[idx].step
        idx = step.parent if step is not None else None
    if idx != 0:  # pragma: no cover - every recorded tensor descends from the input
        raise UsageError(f"{label}: its output is not computed from its input")
    steps = [s for s in rec.steps if s.index in on_path]
    unknown = next((s for s in steps if s.kind == "unknown"), None)
    if unknown is not None:
        raise UsageError(unknown.name)
    linears: list[Step] = []
    acts: list[Step | None] = []
    squeezed = False
    sizes: list[int] = []
    for s in steps:
        if s.kind == "reshape":
            if not linears and len(s.shape) != 2:
                continue  # a reshape before the first Linear is checked by its result
            if linears and s.shape not in ((s.shape[0], sizes[-1]),) and not (
                    sizes[-1] == 1 and len(s.shape) == 1):
                raise UsageError(f"{label}: {s.text} at {_at(s)} reshapes the layer output to "
                                 f"{tuple(s.shape)}; only a (batch, features) path is an MLP")
            squeezed = len(s.shape) == 1
            continue
        if s.kind == "linear":
            if len(acts) < len(linears):
                acts.append(None)  # two Linear layers in a row: identity
            w = dict(rec.model.named_parameters())[s.weight]
            n_in, n_out = (w.shape[0], w.shape[1]) if s.layout == "xW" else (w.shape[1],
                                                                           w.shape[0])
            if sizes and n_in != sizes[-1]:  # pragma: no cover - torch raised first
                raise UsageError(f"{label}: {s.text} at {_at(s)} takes {n_in} inputs")
            if not sizes:
                sizes.append(int(n_in))
            sizes.append(int(n_out))
            if any(lin.weight == s.weight for lin in linears):
                raise UsageError(f"{label}: {s.weight} is used by two layers (shared weights "
                                 "are not an MLP of gradparity)")
            linears.append(s)
            continue
        # activations
        if not linears:
            raise UsageError(f"{label}: {s.text} at {_at(s)} comes before the first Linear; "
                             "an MLP starts with a Linear (Flatten/view may come first)")
        if len(acts) == len(linears):
            prev = acts[-1]
            raise UsageError(f"{label}: {s.text} at {_at(s)} follows another activation "
                             f"({prev.name if prev else '?'}); one activation per layer")
        acts.append(s)
    if not linears:
        raise UsageError(f"{label}: no Linear layer on the path from input to output; "
                         f"supported: {SUPPORTED}")
    # the activation after the last Linear belongs to the head
    output = "identity"
    final = acts[len(linears) - 1] if len(acts) == len(linears) else None
    hidden = acts[:len(linears) - 1]
    if final is not None:
        if final.name not in OUTPUTS:
            raise UsageError(f"{label}: {final.text} at {_at(final)} after the last Linear: no "
                             "head applies it (output activations: identity, sigmoid, softmax, "
                             "log_softmax, tanh)")
        output = final.name
    hidden_names = [a.name if a is not None else "identity" for a in hidden]
    bad = [a for a in hidden if a is not None and a.name in ("softmax", "log_softmax")]
    if bad:
        raise UsageError(f"{label}: {bad[0].text} at {_at(bad[0])} in a hidden layer; "
                         "softmax is an output activation only")
    if len(set(hidden_names)) > 1:
        listing = ", ".join(f"{n} at {_at(a) if a else 'layer ' + str(i + 1)}"
                            for i, (n, a) in enumerate(zip(hidden_names, hidden, strict=True)))
        raise UsageError(f"{label}: mixed hidden activations ({listing}); a gradparity MLP has "
                         "one hidden activation")
    activation = hidden_names[0] if hidden_names else "relu"
    hidden_steps = [a if a is not None else Step("activation", "identity", None, "", "")
                    for a in hidden]
    return Recovered(tuple(sizes), activation, output, linears, hidden_steps,
                     final, steps, squeezed=squeezed)


def _at(s: Step) -> str:
    if s.module:
        return f"[{s.module}]"
    return s.location.short if s.location else "?"


def first_linear_inputs(model: Any) -> list[int]:
    """Input widths to try: the nn.Linear layers' in order, else the first 2-D parameter's
    (either layout)."""
    _, nn, _ = import_torch()
    widths = [int(mod.in_features) for mod in model.modules() if isinstance(mod, nn.Linear)]
    if widths:  # the first defined is usually the first used; the others are tried after it
        return list(dict.fromkeys(widths))
    for _, p in model.named_parameters():
        if p.dim() == 2:
            return list(dict.fromkeys([int(p.shape[1]), int(p.shape[0])]))
    return []


def run_forward(model: Any, x: Any, label: str, hook: Callable[[int, Any], None] | None = None
                ) -> tuple[Recorder, Any, BaseException | None]:
    """The model's forward on ``x`` under a recorder: (recorder, output, exception)."""
    rec = Recorder(model, label, hook)
    rec.add(x, None)
    out, failure = None, None
    printed = io.StringIO()
    with recording(rec), contextlib.redirect_stdout(printed):
        try:
            out = model(x)
        except _Unsupported:
            pass
        except Exception as exc:  # noqa: BLE001 - the user's forward raised
            failure = exc
    rec.output = printed.getvalue()
    if rec.error:
        raise UsageError(rec.error)
    return rec, out, failure


def trace_module(model: Any, label: str, batch: int = 5) -> Recovered:
    """The MLP inside ``model`` (an eval-mode copy runs; the original is untouched)."""
    torch, nn, _ = import_torch()
    _static_check(model, label)
    widths = first_linear_inputs(model)
    if not widths:
        raise UsageError(f"{label}: has no Linear layer ({type(model).__name__}); supported: "
                         f"{SUPPORTED}")
    dtype = next(iter(model.parameters())).dtype
    first = None
    for n0 in widths:
        gen = torch.Generator().manual_seed(0)
        x = torch.randn((batch, n0), generator=gen, dtype=dtype)
        rec, out, failure = run_forward(model, x, label)
        if failure is None:
            break
        first = first or (rec, out, failure, n0)
    if failure is not None:
        assert first is not None
        rec, out, failure, n0 = first
        unknown = next((st for st in rec.steps if st.kind == "unknown"), None)
        if unknown is not None:  # an unsupported call, and what came after it failed
            raise UsageError(unknown.name)
        loc = innermost_user_frame(failure.__traceback__)
        at = f" at {loc.short} ({loc.source})" if loc else ""
        first = str(failure).strip().splitlines()[0] if str(failure).strip() else ""
        raise UsageError(f"{label}: its forward raised {type(failure).__name__}{at} on a "
                         f"({batch}, {n0}) batch: {first}")
    rec_struct = structure_of(rec, out, label)
    if rec.dropouts:
        rec_struct.notes.append("Dropout held as the identity (" + ", ".join(
            sorted({_at(d) for d in rec.dropouts})) + ")")
    return rec_struct
