"""`debug_jax`: a user's JAX function checked per layer, as written.

The function is ``fn(params, X) -> outputs``, ``loss(params, X, Y) -> scalar`` or
``loss(params, batch)`` with ``batch = (inputs, targets)``; ``params`` is a list of
``(W, b)`` pairs (or of dicts), or a dict of arrays (``W1, b1, ...``), in either layout:
``x @ W + b`` (batch-major) or ``W @ x + b`` (column-major, or one example at a time; a
per-example function is batched with ``jax.vmap``).

How the layers are found: the function is traced to a jaxpr (``jax.make_jaxpr``; calls to
``jit`` functions are inlined, ``custom_jvp``/``custom_vjp`` calls stay whole so that their
own derivative rules run). The jaxpr is evaluated once on a batch, every intermediate value
kept. Z[l] is the first value after the first use of W[l] that equals ``A[l-1] W[l] + b[l]``
(either orientation); A[l] is the operand that meets W[l+1]; the activation is the one
whose values it has; the output is Z[L], or sigmoid / softmax / log_softmax / tanh of it.
The jaxpr is then evaluated again inside ``jax.grad`` with zero probes added to those
values: the gradients with respect to the probes are dJ/dZ and dJ/dA as the function's own
derivatives (a ``jax.custom_vjp`` backward included) give them.

For a loss function the head is the one whose dJ/dZ[L] the loss's gradient is a multiple
of (the factor, e.g. 1/n_out for ``jnp.mean`` over all entries, is named and divided out).
"""

from __future__ import annotations

import inspect
import linecache
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from gradparity.core.errors import UsageError
from gradparity.core.spec import DTYPES, HEADS, Spec
from gradparity.debug import conventions
from gradparity.debug.equations import Net
from gradparity.debug.localize import UserValues, localize
from gradparity.debug.quantities import key, split, walk_order
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
from gradparity.debug.user_code import Location, innermost_user_frame, is_user_file
from gradparity.reference.activations import ACTIVATION_FUNCS
from gradparity.reference.case import make_case
from gradparity.reference.heads import softmax

_INLINE = ("pjit", "jit", "closed_call", "core_call")
_ALIAS = ("transpose", "convert_element_type", "reshape", "copy", "copy_p", "squeeze",
          "expand_dims")
_SIZE_NAMES = ("sizes", "layer_sizes", "layers_sizes", "layer_dims", "layers_dims", "layers",
               "dims", "layer_widths", "widths")
_KEY_NAMES = ("key", "rng", "rng_key", "prng_key", "seed_key", "k")


def _import() -> tuple[Any, Any]:
    try:
        import jax
        import jax.numpy as jnp
    except ImportError as exc:
        raise UsageError(f"--jax needs JAX: pip install 'gradparity[jax]' ({exc})") from None
    return jax, jnp


# -- parameters -------------------------------------------------------------------------------
def _call_init(fn: Callable, module: ModuleType | None, label: str) -> Any:
    jax, _ = _import()
    kwargs: dict[str, Any] = {}
    for p in inspect.signature(fn).parameters.values():
        if p.default is not inspect.Parameter.empty or p.kind in (p.VAR_POSITIONAL,
                                                                  p.VAR_KEYWORD):
            continue
        name = p.name.lower()
        if name in _KEY_NAMES or "key" in name or "rng" in name:
            kwargs[p.name] = jax.random.PRNGKey(0)
            continue
        found = None
        if module is not None:
            for n in (p.name, *_SIZE_NAMES):
                v = getattr(module, n, None)
                if isinstance(v, (list, tuple)) and len(v) >= 2 and all(
                        isinstance(i, int) for i in v):
                    found = list(v)
                    break
        if found is None:
            raise UsageError(f"{label}: {fn.__name__}() needs {p.name!r}; put the sizes in a "
                             "module-level list (layer_sizes = [...]) or pass params")
        kwargs[p.name] = found
    try:
        return fn(**kwargs)
    except Exception as exc:  # noqa: BLE001 - the user's init failed
        raise UsageError(f"{label}: {fn.__name__}({', '.join(kwargs)}) raised "
                         f"{type(exc).__name__}: {exc}") from None


def resolve_params(params: Any, module: ModuleType | None, label: str
                   ) -> list[Callable[[], tuple[Any, str]]]:
    """Candidate parameter trees, each a thunk: given, a module attribute (variable or init
    function), else the module's ``params`` and its ``init_*params*`` functions (tried in
    that order until one fits the function)."""
    if params is not None and not isinstance(params, str):
        return [lambda: (params, "given")]
    if isinstance(params, str):
        v = getattr(module, params, None) if module is not None else None
        if v is None:
            raise UsageError(f"--params={params!r}: no such name in {label.split(':')[0]}")
        if callable(v):
            return [lambda: (_call_init(v, module, label), f"from {params}() in your file")]
        return [lambda: (v, f"from {params} in your file")]
    out: list[Callable[[], tuple[Any, str]]] = []
    if module is not None:
        for name in ("params", "parameters", "PARAMS"):
            v = getattr(module, name, None)
            if v is not None and not callable(v) and not isinstance(v, ModuleType):
                out.append(lambda v=v, name=name: (v, f"from {name} in your file"))
        inits = [n for n, v in vars(module).items() if callable(v) and n.startswith("init")
                 and "param" in n.lower() and inspect.isfunction(v)]
        for n in inits:
            out.append(lambda n=n: (_call_init(getattr(module, n), module, label),
                                    f"from {n}() in your file"))
    if out:
        return out
    raise UsageError(f"{label}: no parameters: define params (a list of (W, b) pairs or a dict) "
                     "or an init_*params* function in the file, or pass --params NAME")


@dataclass
class Layers:
    weights: list[tuple[Any, ...]]  # tree paths
    biases: list[tuple[Any, ...]]
    layout: str  # "xW" or "Wx"
    sizes: tuple[int, ...]


def _layer_key(path: tuple[Any, ...]) -> tuple:
    import re

    out = []
    for p in path:
        idx = getattr(p, "idx", None)
        if idx is not None:
            out.append(int(idx))
            continue
        k = str(getattr(p, "key", getattr(p, "name", p)))
        digits = re.findall(r"\d+", k)
        if digits:
            out.append(int(digits[-1]))
    return tuple(out)


def find_layers(params: Any, label: str) -> tuple[Layers, list[Any], Any]:
    """Weights and biases of ``params`` in layer order, and the layout."""
    jax, _ = _import()
    flat, treedef = jax.tree_util.tree_flatten_with_path(params)
    if not flat:
        raise UsageError(f"{label}: params has no arrays")
    leaves = [np.asarray(v) for _, v in flat]
    paths = [p for p, _ in flat]
    ws = [i for i, v in enumerate(leaves) if v.ndim == 2 and 1 not in v.shape[:1]
          or (v.ndim == 2 and v.shape[0] == 1 and v.shape[1] == 1)]
    bs = [i for i, v in enumerate(leaves) if i not in ws]
    ws2 = [i for i in ws if not (leaves[i].ndim == 2 and (leaves[i].shape[1] == 1))]
    if len(ws2) < len(ws) and len(bs) < len(ws) - len(bs):
        moved = [i for i in ws if i not in ws2]
        bs += moved
        ws = ws2
    if len(ws) != len(bs) or any(leaves[i].ndim not in (1, 2) for i in bs):
        shapes = ", ".join(f"{jax.tree_util.keystr(paths[i])}: {leaves[i].shape}"
                           for i in range(len(leaves)))
        raise UsageError(f"{label}: params should be (W, b) pairs, one per layer; got {shapes}")
    ws.sort(key=lambda i: (_layer_key(paths[i]), i))
    bs.sort(key=lambda i: (_layer_key(paths[i]), i))
    W = [leaves[i] for i in ws]
    B = [leaves[i].reshape(-1) for i in bs]

    def chain(layout: str) -> tuple[int, ...] | None:
        sizes = []
        for w, b in zip(W, B, strict=True):
            n_in, n_out = (w.shape if layout == "xW" else w.shape[::-1])
            if b.size != n_out or (sizes and sizes[-1] != n_in):
                return None
            if not sizes:
                sizes.append(int(n_in))
            sizes.append(int(n_out))
        return tuple(sizes)

    xw, wx = chain("xW"), chain("Wx")
    if xw is None and wx is None:
        shapes = " ".join(f"W{i + 1}{w.shape} b{i + 1}{b.shape}" for i, (w, b) in
                          enumerate(zip(W, B, strict=True)))
        raise UsageError(f"{label}: the weights do not chain into an MLP ({shapes}); expected "
                         "x @ W + b with W (n_in, n_out) or W @ x + b with W (n_out, n_in)")
    layout = "xW" if xw is not None else "Wx"
    layers = Layers([paths[i] for i in ws], [paths[i] for i in bs], layout,
                    xw if xw is not None else wx)
    return layers, [flat[i][1] for i in range(len(flat))], (ws, bs, treedef, wx is not None
                                                          and xw is not None)


# -- the jaxpr, evaluated with every value kept ------------------------------------------------
@dataclass
class Value:
    seq: int
    prim: str
    inputs: list[int]
    value: Any
    eqn: Any = None


@dataclass
class Trace:
    values: list[Value] = field(default_factory=list)
    n_inputs: int = 0


def evaluate(closed: Any, args: Sequence[Any], probes: Mapping[int, Any] | None = None,
             trace: Trace | None = None) -> list[Any]:
    """The jaxpr's outputs; ``probes[seq]`` is added to the seq-th value; ``trace`` keeps
    every value (concrete runs only). Calls to jit functions are inlined."""
    from jax.extend.core import Literal

    counter = [0]

    def run(jaxpr: Any, consts: Sequence[Any], ins: Sequence[Any], in_seq: Sequence[int]
            ) -> tuple[list[Any], list[int]]:
        env: dict[Any, Any] = {}
        seq: dict[Any, int] = {}
        for v, c in zip(jaxpr.constvars, consts, strict=True):
            env[v], seq[v] = c, -1
        for v, a, s in zip(jaxpr.invars, ins, in_seq, strict=True):
            env[v], seq[v] = a, s

        def read(v: Any) -> Any:
            return v.val if isinstance(v, Literal) else env[v]

        def sid(v: Any) -> int:
            return -1 if isinstance(v, Literal) else seq[v]

        for eqn in jaxpr.eqns:
            invals = [read(v) for v in eqn.invars]
            in_ids = [sid(v) for v in eqn.invars]
            sub = eqn.params.get("jaxpr")
            if eqn.primitive.name in _INLINE and sub is not None and hasattr(sub, "jaxpr"):
                outs, out_ids = run(sub.jaxpr, sub.consts, invals, in_ids)
                for v, o, s in zip(eqn.outvars, outs, out_ids, strict=True):
                    env[v], seq[v] = o, s
                continue
            bind_params = eqn.primitive.get_bind_params(eqn.params)
            ans = eqn.primitive.bind(*invals, **bind_params)
            outs = ans if eqn.primitive.multiple_results else [ans]
            for v, o in zip(eqn.outvars, outs, strict=True):
                counter[0] += 1
                s = counter[0]
                if probes is not None and s in probes:
                    o = o + probes[s]
                env[v], seq[v] = o, s
                if trace is not None:
                    trace.values.append(Value(s, eqn.primitive.name, in_ids, o, eqn))
        return [read(v) for v in jaxpr.outvars], [sid(v) for v in jaxpr.outvars]

    n = len(closed.jaxpr.invars)
    in_seq = [-(i + 2) for i in range(n)]  # inputs: -2, -3, ...
    outs, _ = run(closed.jaxpr, closed.consts, list(args), in_seq)
    return outs


# -- recovering the MLP -----------------------------------------------------------------------
@dataclass
class JaxStructure:
    sizes: tuple[int, ...]
    layout: str
    activation: str
    output: str  # identity, sigmoid, softmax, log_softmax, tanh; "loss" for a loss fn
    z_seq: list[int]
    a_seq: list[int]  # hidden A's (0 when A = Z)
    out_seq: int
    orient: dict[int, bool]  # seq -> values are batch-major (m, n)
    custom: dict[str, str]  # key -> custom rule name
    locations: dict[str, Location]
    batched: bool  # the function takes one example; vmapped
    data_bm: bool = True  # the function takes (m, n0) inputs


def _tol(dtype: str) -> float:
    return 2e-4 if dtype == "float32" else 1e-8


def _match(value: Any, ref_cm: np.ndarray, dtype: str) -> bool | None:
    """True if ``value`` equals ``ref_cm`` batch-major (its transpose), False if
    column-major, None if neither."""
    v = np.asarray(value, dtype=np.float64)
    t = _tol(dtype)
    scale = max(1.0, float(np.abs(ref_cm).max(initial=0)))
    if v.shape == ref_cm.T.shape and np.allclose(v, ref_cm.T, rtol=t, atol=t * scale):
        return True
    if v.shape == ref_cm.shape and np.allclose(v, ref_cm, rtol=t, atol=t * scale):
        return False
    return None


def _distance(value: Any, ref_cm: np.ndarray, batch_major: bool) -> float:
    v = np.asarray(value, dtype=np.float64)
    return float(np.abs((v.T if batch_major else v) - ref_cm).max(initial=0.0))


def _eqn_location(eqn: Any) -> Location | None:
    try:
        from jax._src import source_info_util

        frame = source_info_util.user_frame(eqn.source_info.traceback)
    except Exception:  # noqa: BLE001 - source info is best effort
        return None
    if frame is None or not is_user_file(frame.file_name):
        return None
    line = frame.start_line
    return Location(frame.file_name, line, linecache.getline(frame.file_name, line).strip())


def _rule_function(eqn: Any) -> Callable | None:
    """The user's function behind a custom_vjp backward (or a custom_jvp rule)."""
    for name in ("bwd", "jvp", "jvp_jaxpr_fun", "jvp_jaxpr_thunk"):
        f = eqn.params.get(name)
        for _ in range(6):
            if f is None:
                break
            if inspect.isfunction(f):
                code = getattr(f, "__code__", None)
                if code is not None and is_user_file(code.co_filename):
                    return f
                break
            f = getattr(f, "f", None) or getattr(f, "__wrapped__", None) or getattr(
                f, "fun", None)
    return None


def _rule_location(eqn: Any) -> Location | None:
    """Where a custom_vjp's backward (or a custom_jvp's rule) is written, if by the user."""
    f = _rule_function(eqn)
    if f is None:
        return None
    try:
        file = inspect.getsourcefile(f)
        lines, line = inspect.getsourcelines(f)
    except (TypeError, OSError):
        return None
    if not file:
        return None
    line += next((i for i, t in enumerate(lines) if t.lstrip().startswith("def ")), 0)
    return Location(file, line, linecache.getline(file, line).strip())


def recover(trace: Trace, params_cm: list[tuple[np.ndarray, np.ndarray]], x_cm: np.ndarray,
            param_seqs: list[tuple[int, int]], dtype: str, label: str, is_loss: bool
            ) -> JaxStructure:
    """Z/A values of the traced run: see the module doc."""
    vals = trace.values
    L = len(params_cm)
    alias: dict[int, int] = {}  # seq -> layer (1-based) whose W it is
    for i, (ws, _) in enumerate(param_seqs, 1):
        alias[ws] = i
    first_use: dict[int, int] = {}
    by_seq = {v.seq: v for v in vals}
    for v in vals:
        layers = {alias[s] for s in v.inputs if s in alias}
        if len(layers) == 1:
            layer = layers.pop()
            if v.prim in _ALIAS and len(v.inputs) == 1:
                alias[v.seq] = layer
            elif layer not in first_use:
                first_use[layer] = v.seq
    missing = [i for i in range(1, L + 1) if i not in first_use]
    if missing:
        raise UsageError(f"{label}: W{missing[0]} is never used by the function")
    a_prev = x_cm
    z_seq, a_seq, orient = [], [], {}
    custom: dict[str, str] = {}
    locations: dict[str, Location] = {}
    acts: list[str] = []
    z_vals = []
    for layer in range(1, L + 1):
        W, b = params_cm[layer - 1]
        start = first_use[layer]
        if layer > 1:  # A[layer-1]: the operand that meets W[layer]
            use = by_seq[start]
            cand = [s for s in use.inputs if s not in alias and s != -1]
            zprev = z_vals[-1]
            found = None
            for s in cand:
                value = by_seq[s].value if s in by_seq else None
                if value is None:
                    continue
                best = None  # the closest activation (gelu and its tanh form are close)
                for name in ACTIVATION_FUNCS:
                    with np.errstate(all="ignore"):
                        g = ACTIVATION_FUNCS[name].forward(zprev)
                    o = _match(value, g, dtype)
                    if o is not None:
                        err = _distance(value, g, o)
                        if best is None or err < best[0]:
                            best = (err, name, o)
                if best is not None:
                    found = (s, best[1], best[2])
                    break
            if found is None:
                loc = _eqn_location(use.eqn)
                at = f" at {loc.short} ({loc.source})" if loc else ""
                raise UsageError(f"{label}: the input of layer {layer}{at} is not a supported "
                                 f"activation of Z{layer - 1} (relu, leaky_relu(0.01), sigmoid, "
                                 "tanh, softplus, elu, silu, gelu, identity)")
            s, name, o = found
            s_seq = s if s != z_seq[-1] else 0
            a_seq.append(s_seq)
            orient[s] = o
            acts.append(name)
            a_prev = ACTIVATION_FUNCS[name].forward(zprev)
            rule = _rule_location(by_seq[s].eqn) if s_seq and by_seq[s].prim.startswith(
                "custom_") else None
            if rule is not None:
                custom[key("A", layer - 1)] = _custom_name(by_seq[s].eqn)
                locations[key("dZ", layer - 1)] = rule
            loc = _eqn_location(by_seq[s].eqn) if s in by_seq else None
            if loc:
                locations.setdefault(key("A", layer - 1), loc)
        z_ref = W @ a_prev + b
        found_z = None
        for v in vals:
            if v.seq < start:
                continue
            o = _match(v.value, z_ref, dtype)
            if o is not None:
                found_z = (v.seq, o)
                break
        if found_z is None:
            loc = _eqn_location(by_seq[start].eqn)
            at = f" at {loc.short} ({loc.source})" if loc else ""
            raise UsageError(f"{label}: layer {layer}{at} does not compute x @ W{layer} + "
                             f"b{layer} (or W{layer} @ x + b{layer}): a Linear layer with bias "
                             "is expected")
        z_seq.append(found_z[0])
        orient[found_z[0]] = found_z[1]
        z_vals.append(z_ref)
        zv = by_seq[found_z[0]]
        loc = _rule_location(zv.eqn) if zv.prim.startswith("custom_") else None
        if loc is not None:
            custom[key("Z", layer)] = _custom_name(zv.eqn)
            if loc:
                for k in (key("dW", layer), key("db", layer), key("dA", layer - 1)):
                    locations[k] = loc
        loc = _eqn_location(by_seq[start].eqn)
        if loc:
            locations.setdefault(key("Z", layer), loc)
    hidden = set(acts)
    if len(hidden) > 1:
        raise UsageError(f"{label}: mixed hidden activations ({', '.join(acts)}); a "
                         "gradparity MLP has one hidden activation")
    activation = acts[0] if acts else "relu"
    output, out_seq = "loss" if is_loss else "identity", 0
    if not is_loss:
        last = vals[-1] if vals else None
        zL = z_vals[-1]
        outs = {"identity": zL, "sigmoid": ACTIVATION_FUNCS["sigmoid"].forward(zL),
                "softmax": softmax(zL), "log_softmax": np.log(softmax(zL)), "tanh": np.tanh(zL)}
        found_out = None
        for v in reversed(vals):
            for name, ref in outs.items():
                o = _match(v.value, ref, dtype)
                if o is not None:
                    found_out = (v.seq, name, o)
                    break
            if found_out:
                break
        if found_out is None or last is None:
            raise UsageError(f"{label}: its output is none of Z{L}, sigmoid, softmax, "
                             f"log_softmax or tanh of Z{L} (the last layer's x @ W + b)")
        out_seq, output, o = found_out
        orient[out_seq] = o
        if output == "identity":
            out_seq = 0
    return JaxStructure(tuple([x_cm.shape[0]] + [w.shape[0] for w, _ in params_cm]), "",
                        activation, output, z_seq, a_seq, out_seq, orient, custom, locations,
                        False)


def _custom_name(eqn: Any) -> str:
    f = _rule_function(eqn)
    kind = eqn.primitive.name.replace("_call", "")
    return f"{kind} {f.__name__}" if f is not None else kind


# -- the session ------------------------------------------------------------------------------
def _kind(fn: Callable, label: str) -> str:
    try:
        params = [p for p in inspect.signature(fn).parameters.values()
                  if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
                  and p.default is inspect.Parameter.empty]
    except (TypeError, ValueError):
        return "model"
    if len(params) == 3:
        return "loss3"
    if len(params) == 2 and params[1].name.lower() in ("batch", "data", "databatch",
                                                       "minibatch", "inputs_targets"):
        return "loss_batch"
    if len(params) == 2:
        return "model"
    raise UsageError(f"{label}: expected fn(params, X), loss(params, X, Y) or loss(params, "
                     f"batch); it takes {len(params)} arguments")


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__


def debug_jax(
    fn: Callable,
    *,
    params: Any = None,
    loss: Any = None,
    head: str | None = None,
    dtype: str | None = None,
    batch: int | None = None,
    seed: int = 0,
    X: Any = None,
    Y: Any = None,
    backends: Sequence[str] | None = ("torch",),
    rtol: float | None = None,
    atol: float | None = None,
    label: str | None = None,
    module: ModuleType | None = None,
) -> DebugResult:
    """Check a user's JAX function per layer against the reference (and torch).

    Args:
        fn: ``fn(params, X) -> outputs``, ``loss(params, X, Y)`` or ``loss(params, batch)``.
        params: the parameter tree (list of ``(W, b)``, dict of arrays, ...) or the name of
            a variable / init function in ``module``. Default: ``params`` in the module, or
            its ``init_*params*`` function (called with the module's ``layer_sizes`` and a
            PRNG key).
        head: for ``fn(params, X)`` returning logits: the head (default: softmax_ce for
            several outputs, sigmoid_bce for one).
        dtype: default: the parameters' dtype (float32 unless they are float64).
        X, Y: explicit data in the function's own layout.
        backends: frameworks run on the same case (default torch).

    Raises:
        UsageError: anything that is not an MLP, or a bad option (one line naming it).
    """
    jax, jnp = _import()
    label = label or getattr(fn, "__name__", "fn")
    if loss is not None:
        raise UsageError("--loss: with --jax, give the loss function itself "
                         "(--jax file.py:loss for loss(params, X, Y))")
    _check_choice("head", head, tuple(HEADS))
    _check_choice("dtype", dtype, DTYPES)
    backends = _check_backends(backends)
    if not callable(fn):
        raise UsageError(f"{label}: expected a function, got {type(fn).__name__}")
    kind = _kind(fn, label)
    if head is not None and kind != "model":
        raise UsageError("--head: not used for a loss function (its gradient sets the head)")
    candidates = resolve_params(params, module, label)
    first_error: UsageError | None = None
    for thunk in candidates:
        try:
            got = _try_params(fn, kind, thunk, dtype, label, head)
        except UsageError as exc:
            first_error = exc
            continue
        break
    else:
        assert first_error is not None
        raise first_error
    (tree, params_how, layers, leaves, w_idx, b_idx, treedef, dtype, structure, params_cm,
     batched, y_kind) = got
    sizes = layers.sizes
    L = len(sizes) - 1

    n_out = structure.sizes[-1]
    # the head
    if kind == "model":
        out = structure.output
        if out == "identity":
            head_name = head or ("softmax_ce" if n_out > 1 else "sigmoid_bce")
            form = "logits" if "logits" in HEADS[head_name].forms else None
            if form is None:
                raise UsageError(f"{label}: --head {head_name} needs the function to return "
                                 f"{HEADS[head_name].output} of the last layer")
            how = "given" if head else "default for logits (--head to change)"
        else:
            head_name = {"sigmoid": "sigmoid_bce", "softmax": "softmax_ce",
                         "log_softmax": "softmax_ce", "tanh": "tanh_mse"}[out]
            if head is not None and head != head_name and HEADS[head].output != \
                    HEADS[head_name].output:
                raise UsageError(f"{label}: --head {head} applies {HEADS[head].output}, but "
                                 f"the function returns {out}")
            head_name = head or head_name
            form = "logits" if out == "log_softmax" else "probs"
            how = f"from your function's {out} output"
        scale, scale_text = 1.0, ""
    else:
        head_name, form, scale, scale_text = structure.output_fit  # type: ignore[attr-defined]
        how = "fitted to your loss's gradient"

    bm = structure.data_bm
    if batch is None:
        batch = DEFAULT_BATCH if X is None else int(np.asarray(X).shape[0 if bm else 1])
    inputs = targets = None
    if X is not None:
        x = np.asarray(X, dtype=np.float64)
        inputs = (x.T if bm else x).tolist()
    if Y is not None:
        y = np.asarray(Y, dtype=np.float64)
        if y.ndim == 1:
            targets = y[None, :].tolist()
        else:
            targets = (y.T if bm else y).tolist()
    spec = Spec(sizes, activation=structure.activation, head=head_name, loss_form=form,
                dtype=dtype, batch=batch, seed=seed, inputs=inputs, targets=targets)
    parameters = {}
    for i, (w, b) in enumerate(params_cm, 1):
        parameters[f"W{i}"], parameters[f"b{i}"] = w, b
    case = _with_parameters(make_case(spec), parameters)
    tol = _tolerance(dtype, rtol, atol)

    with jax.enable_x64(dtype == "float64"):
        run = _measure(fn, kind, tree, treedef, w_idx, b_idx, leaves, layers, structure, case,
                       batched, y_kind, scale, label)
    order = walk_order(L, forward=True, output_dA=form == "probs", input_dA=True)
    rec_text = _describe(structure, spec)
    notes = {
        "sizes": f"from your parameters ({params_how}; "
        + ("x @ W + b" if layers.layout == "xW" else "W @ x + b")
        + ("; one example at a time, batched with jax.vmap" if batched else "") + ")",
        "activation": "from your function's values" if L > 1 else "none (one layer)",
        "head": how,
        "forward": "your function",
        "network": rec_text,
    }
    ref, reference = _reference_values(case)
    frameworks = _framework_runs(case, ref, backends, tol)
    explained = {} if run["errors"] else _explained(case, ref, order, run["values"],
                                                    run["loss"], "jax", tol, dtype)
    user = UserValues(values=run["values"], locations=structure.locations,
                      errors=run["errors"], not_computed=run["not_computed"],
                      required=frozenset(order), explained=explained,
                      container="function's gradients", forward_container="function's values")
    net = Net(L, spec.activation, spec.head, case.Y, case.parameters,
              output_dA_reported=form == "probs")
    checks = localize(order, net=net, reference=reference, user=user, factor=1.0,
                      tolerance=tol, dtype=dtype)
    for c in checks:
        q, layer = split(c.key)
        rule = structure.custom.get(key("A", layer)) if q in ("dZ",) else \
            structure.custom.get(key("Z", layer)) if q in ("dW", "db") else \
            structure.custom.get(key("Z", layer + 1)) if q == "dA" else None
        if c.is_finding and rule and rule not in c.reason:
            c.reason += f" ({rule} backward)"
    text = ("true partials of the seed's J (jax.grad of your function); compared directly"
            if kind == "model" else scale_text)
    convention = conventions.Convention(conventions.AUTOGRAD, scale, text)
    return DebugResult("jax", label, spec, case, checks, convention, frameworks, tol,
                       notes=notes)


def _try_params(fn, kind, thunk, dtype, label, head):
    jax, _ = _import()
    tree, params_how = thunk()
    layers, leaves, (w_idx, b_idx, treedef, ambiguous) = find_layers(tree, label)
    leaf_dtypes = {np.asarray(v).dtype for v in leaves}
    dtype = dtype or ("float64" if np.dtype("float64") in leaf_dtypes else "float32")

    def cm(layout: str) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for wi, bi in zip(w_idx, b_idx, strict=True):
            w = np.asarray(leaves[wi], dtype=np.float64)
            b = np.asarray(leaves[bi], dtype=np.float64).reshape(-1, 1)
            out.append((w.T if layout == "xW" else w, b))
        return out

    with jax.enable_x64(dtype == "float64"):
        structure, params_cm, batched, y_kind = _analyse(
            fn, kind, tree, leaves, w_idx, b_idx, treedef, layers, ambiguous, cm, dtype,
            label, head)
    return (tree, params_how, layers, leaves, w_idx, b_idx, treedef, dtype, structure,
            params_cm, batched, y_kind)


def _describe(s: JaxStructure, spec: Spec) -> str:
    parts = []
    for i in range(spec.depth):
        tag = f" [{s.custom[key('Z', i + 1)]}]" if key("Z", i + 1) in s.custom else ""
        parts.append(f"Linear({spec.sizes[i]}, {spec.sizes[i + 1]}){tag}")
        if i < spec.depth - 1:
            tag = f" [{s.custom[key('A', i + 1)]}]" if key("A", i + 1) in s.custom else ""
            parts.append(f"{spec.activation}{tag}")
    if s.output not in ("identity", "loss"):
        parts.append(s.output)
    parts.append(f"head {spec.head}" + (" (probs)" if spec.loss_form == "probs" else ""))
    return " -> ".join(parts)


def _analyse(fn, kind, tree, leaves, w_idx, b_idx, treedef, layers, ambiguous, cm, dtype,
             label, head):
    """Trace the function on a drawn batch; recover the structure (trying the other layout
    and a per-example vmap when the first guess does not fit)."""
    jax, jnp = _import()
    jdtype = jnp.float64 if dtype == "float64" else jnp.float32
    rng = np.random.default_rng(12345)
    m = 7 if 7 not in layers.sizes else 11
    layouts = [layers.layout] + (["Wx" if layers.layout == "xW" else "xW"] if ambiguous else [])
    last_error: UsageError | None = None
    for layout in layouts:
        params_cm = cm(layout)
        n0, n_out = params_cm[0][0].shape[1], params_cm[-1][0].shape[0]
        x_cm = rng.standard_normal((n0, m))
        combos = [(True, False)] if layout == "xW" else [(False, False), (True, False)]
        if kind == "model":
            combos.append((True, True))
        for data_bm, batched in combos:
            x_in = x_cm.T if data_bm else x_cm
            f = jax.vmap(fn, in_axes=(None, 0)) if batched else fn
            jleaves = [jnp.asarray(np.asarray(v, dtype=np.float64), dtype=jdtype)
                       for v in leaves]
            jtree = jax.tree_util.tree_unflatten(treedef, jleaves)
            labels = rng.integers(0, n_out, m)
            onehot = np.eye(n_out)[labels]
            y_opts = [("onehot", onehot if data_bm else onehot.T)]
            y_vector = rng.integers(0, 2, m).astype(np.float64)
            if kind != "model":
                y_opts.append(("labels", labels))
                if n_out == 1:  # one output: targets as a vector (m,), like the outputs
                    y_opts.insert(0, ("vector", y_vector))
            for y_kind, y_user in y_opts:
                args = _args(kind, jtree, jnp.asarray(x_in, dtype=jdtype),
                             jnp.asarray(y_user, dtype=jnp.int32 if y_kind == "labels"
                                         else jdtype))
                try:
                    closed = jax.make_jaxpr(f)(*args)
                except Exception as exc:  # noqa: BLE001 - try the next way of calling it
                    last_error = UsageError(f"{label}: calling it on params and a ({m}, {n0})"
                                            f" batch raised {_first_line(exc)}"
                                            + _where(exc))
                    continue
                flat_args = jax.tree_util.tree_leaves(args)
                trace = Trace()
                try:
                    outs = evaluate(closed, flat_args, trace=trace)
                except Exception as exc:  # noqa: BLE001
                    last_error = UsageError(f"{label}: evaluating it raised {_first_line(exc)}")
                    continue
                out = np.asarray(outs[0]) if outs else None
                if kind == "model" and (out is None or out.size != m * n_out):
                    last_error = UsageError(f"{label}: returned shape "
                                            f"{None if out is None else out.shape} for a batch of "
                                            f"{m}; expected ({m}, {n_out}) or ({n_out}, {m})")
                    continue
                if kind != "model" and (out is None or out.size != 1):
                    last_error = UsageError(f"{label}: a loss function must return one number")
                    continue
                param_seqs = [(-(i + 2), -(j + 2)) for i, j in zip(w_idx, b_idx, strict=True)]
                try:
                    s = recover(trace, params_cm, x_cm, param_seqs, dtype, label,
                                kind != "model")
                except UsageError as exc:
                    last_error = exc
                    continue
                s.layout, s.batched, s.data_bm = layout, batched, data_bm
                if kind != "model":
                    s.output_fit = _fit_head(closed, flat_args, s, params_cm, x_cm,  # type: ignore[attr-defined]
                                             y_vector[None, :] if y_kind == "vector"
                                             else onehot.T,
                                             dtype, label)
                return s, params_cm, batched, y_kind
    assert last_error is not None
    raise last_error


def _where(exc: BaseException) -> str:
    loc = innermost_user_frame(exc.__traceback__)
    return f" at {loc.short} ({loc.source})" if loc else ""


def _args(kind: str, tree: Any, x: Any, y: Any) -> tuple:
    if kind == "model":
        return (tree, x)
    if kind == "loss3":
        return (tree, x, y)
    return (tree, (x, y))


def _fit_head(closed, flat_args, s: JaxStructure, params_cm, x_cm, y_cm, dtype, label):
    """(head, form, scale, text): the head whose dJ/dZ[L] the loss's gradient is a multiple
    of."""
    jax, jnp = _import()
    zL_seq = s.z_seq[-1]
    trace = Trace()
    evaluate(closed, flat_args, trace=trace)
    z_val = next(v.value for v in trace.values if v.seq == zL_seq)

    def f(p):
        return evaluate(closed, flat_args, probes={zL_seq: p})[0].reshape(())

    g = np.asarray(jax.grad(f)(jnp.zeros_like(z_val)), dtype=np.float64)
    g = g.T if s.orient[zL_seq] else g
    a = x_cm
    for w, b in params_cm[:-1]:
        a = ACTIVATION_FUNCS[s.activation].forward(w @ a + b)
    z = params_cm[-1][0] @ a + params_cm[-1][1]
    m = z.shape[1]
    sig = ACTIVATION_FUNCS["sigmoid"].forward(z)
    t = np.tanh(z)
    cands = [("softmax_ce", "logits", (softmax(z) - y_cm) / m),
             ("sigmoid_bce", "logits", (sig - y_cm) / m),
             ("linear_mse", "logits", (z - y_cm) / m),
             ("sigmoid_mse", "probs", (sig - y_cm) * sig * (1 - sig) / m),
             ("tanh_mse", "probs", (t - y_cm) * (1 - t * t) / m),
             ("linear_l1", "logits", np.sign(z - y_cm) / m)]
    t_ = _tol(dtype) * 10
    for head, form, ref in cands:
        if head == "softmax_ce" and z.shape[0] < 2:
            continue
        denom = float((ref * ref).sum())
        if denom == 0:
            continue
        sc = float((g * ref).sum()) / denom
        if sc > 0 and np.allclose(g, sc * ref, rtol=t_, atol=t_ * abs(sc) * np.abs(ref).max()):
            sc_r = _nice(sc, z.shape[0], m)
            text = (f"your loss = {sc_r[1]} x the seed's J of head {head} (measured from its "
                    f"gradient); your gradients compared after dividing by {sc:.6g}")
            if sc_r[1] == "1":
                text = (f"your loss is the seed's J of head {head} (measured from its gradient)"
                        "; true partials compared directly")
            return head, form, sc, text
    raise UsageError(f"{label}: its gradient with respect to Z{len(params_cm)} is no multiple of "
                     "the seed's heads (softmax_ce, sigmoid_bce, linear_mse, sigmoid_mse, "
                     "tanh_mse, linear_l1)")


def _nice(sc: float, n_out: int, m: int) -> tuple[float, str]:
    for v, text in ((1.0, "1"), (1.0 / n_out, "1/n_out"), (2.0 / n_out, "2/n_out"),
                    (2.0, "2"), (float(m), "m"), (2.0 * m, "2m")):
        if abs(sc - v) <= 1e-6 * max(1.0, v):
            return v, f"{text} (= {sc:.6g})" if text not in ("1",) else "1"
    return sc, f"{sc:.6g}"


def _measure(fn, kind, tree, treedef, w_idx, b_idx, leaves, layers, s: JaxStructure, case,
             batched, y_kind, scale, label) -> dict[str, Any]:
    """Values and gradients of the user's function on the case (probes at Z and A)."""
    jax, jnp = _import()
    from gradparity.adapters.jax_grad import _loss, _outputs

    spec = case.spec
    L, m = spec.depth, case.m
    jdtype = jnp.float64 if spec.dtype == "float64" else jnp.float32
    bm = s.data_bm  # batch-major data
    x_user = case.X.T if bm else case.X
    n_out = spec.sizes[-1]
    labels = case.labels if case.labels is not None else None
    if kind != "model" and y_kind == "labels":
        if labels is None:
            labels = np.argmax(case.Y, axis=0)
        y_user = labels
        y_j = jnp.asarray(y_user, dtype=jnp.int32)
    elif y_kind == "vector":
        y_j = jnp.asarray(case.Y[0], dtype=jdtype)
    else:
        y_user = case.Y.T if bm else case.Y
        y_j = jnp.asarray(y_user, dtype=jdtype)
    # the user's params in the case dtype (the case's values: the user's own)
    jleaves = [jnp.asarray(np.asarray(v, dtype=np.float64), dtype=jdtype) for v in leaves]
    jtree = jax.tree_util.tree_unflatten(treedef, jleaves)
    f = jax.vmap(fn, in_axes=(None, 0)) if batched else fn
    x_j = jnp.asarray(x_user, dtype=jdtype)
    args = _args(kind, jtree, x_j, y_j)
    closed = jax.make_jaxpr(f)(*args)
    flat = jax.tree_util.tree_leaves(args)
    n_par = len(leaves)
    trace = Trace()
    evaluate(closed, flat, trace=trace)
    by_seq = {v.seq: v for v in trace.values}
    probe_seqs = [q for q in (*s.z_seq, *[a for a in s.a_seq if a], s.out_seq) if q]
    probes0 = {q: jnp.zeros_like(by_seq[q].value) for q in probe_seqs}
    y_cm = jnp.asarray(case.Y.T, dtype=jdtype)
    lab = None if case.labels is None else jnp.asarray(case.labels)

    def J(par_leaves, probes, x):
        args_flat = list(par_leaves) + [x] + flat[n_par + 1:]
        out = evaluate(closed, args_flat, probes=probes)[0]
        if kind != "model":
            return out.reshape(()) / scale
        o = out if s.orient.get(s.out_seq or s.z_seq[-1], True) else out.T
        o = o.reshape(m, n_out)
        if s.output == "identity":
            return _loss(jax, spec.head, spec.loss_form, o, _outputs(jax)[spec.head](o), y_cm,
                         lab, m)
        if s.output == "log_softmax":
            return (-jnp.sum(jnp.take_along_axis(o, lab[:, None], axis=1)) / m
                    if lab is not None else -jnp.sum(y_cm * o) / m)
        return _loss(jax, spec.head, "probs", None, o, y_cm, lab, m)

    run: dict[str, Any] = {"values": {}, "errors": {}, "not_computed": {}, "loss": None}
    order = walk_order(L, forward=True, output_dA=spec.loss_form == "probs", input_dA=True)

    def col(seq: int, v: Any) -> np.ndarray:
        a = np.asarray(v, dtype=spec.dtype)
        a = a.reshape(a.shape[0], -1) if a.ndim != 2 else a
        return np.ascontiguousarray(a.T if s.orient.get(seq, bm) else a)

    for i, q in enumerate(s.z_seq, 1):
        run["values"][key("Z", i)] = col(q, by_seq[q].value)
    for i, q in enumerate(s.a_seq, 1):
        run["values"][key("A", i)] = (col(q, by_seq[q].value) if q
                                      else run["values"][key("Z", i)])
    zL = run["values"][key("Z", L)]
    if s.output in ("identity", "loss"):
        with np.errstate(all="ignore"):
            aL = {"softmax_ce": softmax, "sigmoid_bce": ACTIVATION_FUNCS["sigmoid"].forward,
                  "sigmoid_mse": ACTIVATION_FUNCS["sigmoid"].forward,
                  "tanh_mse": np.tanh}.get(spec.head, lambda z: z)(zL.astype(np.float64))
        run["values"][key("A", L)] = np.asarray(aL, dtype=spec.dtype)
    else:
        a = col(s.out_seq, by_seq[s.out_seq].value)
        run["values"][key("A", L)] = np.exp(a) if s.output == "log_softmax" else a
    try:
        loss, (g_par, g_probe, g_x) = jax.value_and_grad(J, argnums=(0, 1, 2))(
            jleaves, probes0, x_j)
    except Exception as exc:  # noqa: BLE001 - the user's derivative rule failed: a finding
        loc = innermost_user_frame(exc.__traceback__)
        at = next((k for k in order if k.startswith("d")), order[0])
        run["errors"][at] = (f"your function's gradient raised {_first_line(exc)}", loc)
        for k in order[order.index(at) + 1:]:
            run["not_computed"][k] = f"not computed: your function raised at {at}"
        return run
    run["loss"] = np.asarray(loss, dtype=spec.dtype)
    for i, q in enumerate(s.z_seq, 1):
        run["values"][key("dZ", i)] = col(q, g_probe[q])
    for i, q in enumerate(s.a_seq, 1):
        run["values"][key("dA", i)] = col(q, g_probe[q]) if q else run["values"][key("dZ", i)]
    if spec.loss_form == "probs" and s.out_seq:
        run["values"][key("dA", L)] = col(s.out_seq, g_probe[s.out_seq])
    for i, (wi, bi) in enumerate(zip(w_idx, b_idx, strict=True), 1):
        gw = np.asarray(g_par[wi], dtype=spec.dtype)
        run["values"][key("dW", i)] = np.ascontiguousarray(gw.T if s.layout == "xW" else gw)
        run["values"][key("db", i)] = np.asarray(g_par[bi], dtype=spec.dtype).reshape(-1, 1)
    gx = np.asarray(g_x, dtype=spec.dtype)
    run["values"]["dA0"] = np.ascontiguousarray(gx.T if bm else gx)
    return run
