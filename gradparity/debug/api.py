"""`debug_code`: debug a learner's backprop written in any known API family, from a file,
a module, or the functions, class or instance defined in a notebook.

``gradparity.debug(...)`` is this function (the ``gradparity.debug`` package is callable).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from gradparity.core.errors import UsageError
from gradparity.debug.families import API_NAMES, Context, is_seed, objects_of, resolve
from gradparity.debug.families.load import load_module, parse
from gradparity.debug.result import DebugResult
from gradparity.debug.user_code import display_path

KNOWN_APIS = ("backpropagation(cache, Y, parameters) [seed], L_model_backward(AL, Y, caches) "
              "[dlai_deep], backward_propagation(parameters, cache, X, Y) [dlai_2layer], "
              "Network.backprop(x, y) [nielsen], loss(X, y) -> (loss, grads) [cs231n]")


def load_data(path: str | os.PathLike[str]) -> tuple[np.ndarray, np.ndarray]:
    """X and Y from ``.npz`` (arrays ``X``, ``Y``; also ``x``/``y``, or the first two), a
    pair of ``.npy`` files (``X.npy`` names ``Y.npy`` next to it: ``--data X.npy,Y.npy``),
    or a CSV (last column Y, the others X, one example per row). The arrays keep their
    dtype and layout as stored."""
    text = str(path)
    if "," in text and text.split(",")[0].endswith(".npy"):
        xs, ys = text.split(",", 1)
        return _npy(xs, "X"), _npy(ys, "Y")
    p = Path(text)
    if not p.is_file():
        raise UsageError(f"--data={text!r}: no such file")
    if p.suffix == ".npz":
        try:
            with np.load(p, allow_pickle=False) as z:
                names = list(z.files)
                xk = next((n for n in ("X", "x", "X_train", "x_train") if n in names), None)
                yk = next((n for n in ("Y", "y", "Y_train", "y_train") if n in names), None)
                if xk is None or yk is None:
                    if len(names) < 2:
                        raise UsageError(f"--data={text!r}: expected arrays X and Y, found "
                                         f"{', '.join(names) or 'none'}")
                    xk, yk = names[0], names[1]
                return np.asarray(z[xk]), np.asarray(z[yk])
        except (OSError, ValueError) as exc:
            raise UsageError(f"--data={text!r}: not a readable .npz file ({exc})") from None
    if p.suffix == ".npy":
        other = p.with_name(p.name.replace("X", "Y", 1)) if "X" in p.name else None
        if other is None or not other.is_file():
            raise UsageError(f"--data={text!r}: a .npy X needs its Y: give X.npy,Y.npy")
        return _npy(str(p), "X"), _npy(str(other), "Y")
    if p.suffix == ".csv":
        try:
            arr = np.loadtxt(p, delimiter=",", ndmin=2)
        except ValueError:
            try:
                arr = np.loadtxt(p, delimiter=",", ndmin=2, skiprows=1)
            except ValueError as exc:
                raise UsageError(f"--data={text!r}: not a numeric CSV ({exc})") from None
        if arr.shape[1] < 2:
            raise UsageError(f"--data={text!r}: expected at least two columns (X..., Y)")
        return arr[:, :-1].T.copy(), arr[:, -1:].T.copy()
    raise UsageError(f"--data={text!r}: expected a .npz, .npy pair or .csv file")


def _npy(path: str, what: str) -> np.ndarray:
    try:
        return np.load(path, allow_pickle=False)
    except (OSError, ValueError) as exc:
        raise UsageError(f"--data: {what} file {path!r} is not a readable .npy ({exc})") \
            from None


def _data_layout(family: Any, X: np.ndarray, Y: np.ndarray, notes: dict[str, str]
                 ) -> tuple[np.ndarray, np.ndarray]:
    """The learner's X and Y in the reference layout (features x examples)."""
    if X.ndim == 1:
        X = X[None, :]
    Y = np.asarray(Y)
    if getattr(family, "row_major", False):
        X = X.reshape(X.shape[0], -1).T
        Y = Y.reshape(1, -1) if Y.ndim == 1 or 1 in Y.shape else Y.T
        notes["data"] = f"yours ({X.shape[1]} examples, row-major: mapped to columns)"
        return X, Y
    if Y.ndim == 1:
        Y = Y[None, :]
    if Y.shape[1] != X.shape[1] and Y.shape[0] == X.shape[0]:
        X, Y = X.T, Y.T
    notes["data"] = f"yours ({X.shape[1]} examples)"
    return X, Y


def _cell_locations(result: DebugResult) -> None:
    """Lines of code defined in notebook cells are shown as ``cell [n], line k``."""
    from gradparity.debug.families.trace import TracedLocation, cell_file_label, is_user_code

    for c in result.checks:
        loc = c.location
        if loc is not None and is_user_code(loc.file) and not loc.file.startswith("cell ["):
            label = cell_file_label(loc.file)
            if label != loc.file:
                c.location = TracedLocation(label, loc.line, loc.source)


def _seed_suggestion(result: DebugResult, target: Any, forward: Any, activation: str | None,
                     head: str | None, loss_form: str | None, batch: int | None, seed: int,
                     X: Any, Y: Any, rtol: float | None, atol: float | None,
                     backprop_name: str | None, forward_name: str | None) -> Any:
    """Most quantities fail (or a guessed activation/head is contradicted): the setup under
    which the learner's code agrees best, as flags."""
    from gradparity.debug.families.run import SETUP_ACTIVATIONS, setup_heads, setup_problem
    from gradparity.debug.session import debug_numpy

    spec = result.spec
    now = len(result.findings)
    best: tuple[int, str, str] | None = None
    heads = setup_heads(spec)
    for a in SETUP_ACTIVATIONS if activation is None else (activation,):
        for h in heads if head is None else (head,):
            if (a, h) == (spec.activation, spec.head):
                continue
            try:
                r = debug_numpy(target, forward=forward, sizes=spec.sizes, activation=a,
                                head=h, loss_form=loss_form, dtype=spec.dtype, batch=batch,
                                seed=seed, X=X, Y=Y, backends=(), rtol=rtol, atol=atol,
                                backprop_name=backprop_name, forward_name=forward_name)
            except Exception:  # noqa: BLE001 - a setup the learner's code cannot run
                continue
            n = len(r.findings) + len(r.problems)
            if best is None or n < best[0]:
                best = (n, a, h)
    if best is None or best[0] >= now or best[0] > 0:
        return None
    return setup_problem(spec, best, activation, head)


def _seed_dtype_drift(result: DebugResult, target: Any, backprop_name: str | None) -> Any:
    """The seed's backprop on the case's own cache: gradients in another dtype than the
    case's (float32 in, float64 out) are a finding."""
    from gradparity.debug.families.trace import trace_call
    from gradparity.debug.result import Problem
    from gradparity.reference.mlp import reference_gradients

    bp = target if callable(target) and not isinstance(target, ModuleType) else getattr(
        target, backprop_name or "backpropagation", None)
    if not callable(bp):
        return None
    case = result.case
    want = case.spec.dtype
    fwd = {k: np.array(v, copy=True) for k, v in reference_gradients(case).forward.items()}
    params = {k: np.array(v, copy=True) for k, v in case.parameters.items()}
    t = trace_call(bp, (fwd, case.Y.copy(), params))
    if not t.ok or not isinstance(t.value, dict):
        return None
    drift = sorted(k for k, v in t.value.items() if isinstance(v, np.ndarray)
                   and v.dtype.kind == "f" and str(v.dtype) != want)
    if not drift:
        return None
    got = str(t.value[drift[0]].dtype)
    first = next((r.where for r in t.records if r.snapshot is not None
                  and r.snapshot.dtype.kind == "f" and str(r.snapshot.dtype) != want), None)
    return Problem(f"dtype drift: your inputs and parameters are {want} but "
                   f"{', '.join(drift[:4])}{' ...' if len(drift) > 4 else ''} "
                   f"{'is' if len(drift) == 1 else 'are'} {got} (the first {got} array of "
                   "your code is made here)", first)


_FAMILY_FUNCTIONS = ("L_model_backward", "backward_propagation", "loss", "two_layer_net")


def _seed_like(func: Any) -> bool:
    """``backpropagation(cache, Y, parameters)``-shaped: the seed's call works."""
    from gradparity.debug.families.base import param_names

    names = [n.lower() for n in param_names(func)]
    return len(names) >= 3 and "cache" in names[0] and names[1] == "y" and "param" in names[2]


def _namespace(source: Any) -> dict[str, Any]:
    """The globals the learner's function or class was defined in (a notebook's)."""
    target = source
    if not (inspect.isfunction(target) or inspect.isclass(target)):
        target = type(source)
    if inspect.isclass(target):
        target = next((v for v in vars(target).values() if inspect.isfunction(v)), None)
    g = getattr(target, "__globals__", None)
    return dict(g) if isinstance(g, dict) else {}


def debug_code(
    source: str | os.PathLike[str] | ModuleType | Callable | Any = None,
    *,
    forward: Callable | None = None,
    cost: Callable | None = None,
    api: str | None = None,
    data: str | os.PathLike[str] | None = None,
    X: Any = None,
    Y: Any = None,
    sizes: Sequence[int] | None = None,
    activation: str | None = None,
    head: str | None = None,
    loss_form: str | None = None,
    dtype: str | None = None,
    batch: int | None = None,
    seed: int = 0,
    backends: Sequence[str] | None = ("torch", "jax"),
    rtol: float | None = None,
    atol: float | None = None,
    backprop_name: str | None = None,
    forward_name: str | None = None,
    definitions_only: bool = False,
    **objects: Any,
) -> DebugResult:
    """Debug a learner's backprop of any known API family (see `gradparity.debug.families`).

    Args:
        source: a ``.py`` path, a module, or the learner's backprop function, class or
            instance (from a notebook: ``L_model_backward``, ``Network``, ``net``).
        forward, cost: the learner's forward and cost functions, with a function source.
        api: force a family (``seed``, ``dlai_deep``, ``dlai_2layer``, ``nielsen``,
            ``cs231n``); default: recognised from the names and signatures.
        data: the learner's data file (`load_data`); or ``X`` and ``Y`` as arrays, in the
            learner's layout. The learner's dtype is kept.
        definitions_only: import only the file's definitions (skip a training script).
        objects: more of the learner's functions by name (``linear_backward=...``).
        The other options are `gradparity.debug.debug_numpy`'s.

    Raises:
        UsageError: a bad option or file, or code of no known family.
    """
    import linecache

    from gradparity.debug.session import debug_numpy

    linecache.checkcache()  # source lines shown for `where` are the files' current ones
    notes: dict[str, str] = {}
    module: ModuleType | None = None
    tree = None
    if isinstance(source, (str, os.PathLike)):
        loaded = load_module(source, definitions_only=definitions_only)
        module, tree = loaded.module, loaded.tree
        label = display_path(source)
        if loaded.note:
            notes["import"] = loaded.note
        if loaded.skipped:
            notes["import"] = (notes.get("import", "definitions only") + "; skipped: "
                               + "; ".join(loaded.skipped[:3]))
    elif isinstance(source, ModuleType):
        module = source
        label = display_path(getattr(source, "__file__", None) or source.__name__)
        if getattr(source, "__file__", None):
            tree = parse(source.__file__)
    elif source is None:
        raise UsageError("debug: give your file, module, function, class or instance")
    else:
        label = getattr(source, "__qualname__", None) or type(source).__name__
    extra = {"forward": forward, "cost": cost, **objects}
    if module is None:
        objs = objects_of(source, extra)
        ctx = Context(None, None, objs, label, namespace=_namespace(source))
    else:
        ctx = Context(module, tree, {k: v for k, v in objects.items() if v is not None}, label)
        if forward is not None:
            ctx.objects[getattr(forward, "__name__", "forward")] = forward
        if cost is not None:
            ctx.objects[getattr(cost, "__name__", "compute_cost")] = cost

    named = ctx.get(backprop_name) if backprop_name else None
    if named is not None and (inspect.isclass(named) or api not in (None, "seed")
                              or (api is None and not _seed_like(named)
                                  and backprop_name in _FAMILY_FUNCTIONS)):
        ctx.objects[backprop_name] = named  # a family's class or function, by name
        backprop_name = None
    seed_code = (backprop_name is not None or api == "seed"
                 or (api is None and is_seed(ctx))
                 or (module is None and callable(source) and not inspect.isclass(source)
                     and getattr(source, "__name__", "") == "backpropagation"))
    if seed_code:
        if data is not None:
            Xd, Yd = load_data(data)
            X, Y = (X if X is not None else Xd), (Y if Y is not None else Yd)
        target = module if module is not None else source
        if dtype is None and X is not None and np.asarray(X).dtype == np.float32:
            dtype = "float32"  # the learner's dtype is kept
        result = debug_numpy(target, forward=forward, sizes=sizes, activation=activation,
                             head=head, loss_form=loss_form, dtype=dtype or "float64",
                             batch=batch, seed=seed, X=X, Y=Y, backends=backends, rtol=rtol,
                             atol=atol, backprop_name=backprop_name, forward_name=forward_name)
        result.notes.setdefault("api", "the seed's: backpropagation(cache, Y, parameters)")
        result.notes.update({k: v for k, v in notes.items() if k not in result.notes})
        _cell_locations(result)
        drift = _seed_dtype_drift(result, target, backprop_name)
        if drift is not None:
            result.problems.append(drift)
        from gradparity.debug.families.run import _wrong_setup

        if _wrong_setup(result.checks, result.notes):
            hint = _seed_suggestion(result, target, forward, activation, head, loss_form,
                                    batch, seed, X, Y, rtol, atol, backprop_name,
                                    forward_name)
            if hint is not None:
                result.problems.insert(0, hint)
        return result

    family = resolve(api, ctx)
    if family is None:
        raise UsageError(f"{label}: no backprop of a known API found; expected one of "
                         f"{KNOWN_APIS} (--api NAME to force one of {', '.join(API_NAMES)})")
    if data is not None:
        X, Y = load_data(data)
    Xr = Yr = None
    if X is not None and Y is not None:
        Xr, Yr = _data_layout(family, np.asarray(X), np.asarray(Y), notes)
    elif X is not None or Y is not None:
        raise UsageError("data: give both X and Y")
    from gradparity.debug.families.run import debug_family

    notes["api"] = (family.title if family.layout.startswith("column-major")
                    else f"{family.title}; {family.layout}")
    return debug_family(family, ctx, sizes=sizes, activation=activation, head=head,
                        loss_form=loss_form, dtype=dtype, batch=batch, seed=seed, X=Xr,
                        Y=Yr, backends=backends or (), rtol=rtol, atol=atol, notes=notes)
