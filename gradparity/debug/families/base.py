"""What every API family adapter gives the debug session, and the helpers they share.

A family adapter (one module per family) knows one way learners write an MLP: the names of
its functions or class, the layout of its parameters, caches and gradients. It turns the
learner's objects into what the session checks, in the reference layout (column-major
``W1, b1, ...``; ``Z1, A1, ...``; ``dZ1, dW1, db1, dA0, ...``), and reports only the
quantities the learner's code really returned (plus the intermediates it was seen computing,
which are optional).

* `Family.probe` runs the learner's forward (and cost) on a case: the session reads the
  hidden and output activations and the head from it.
* `Family.run` runs forward and backward on the case and returns a `FamilyOutput`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any

import numpy as np

from gradparity.debug.families.trace import Traced
from gradparity.debug.result import Problem
from gradparity.debug.user_code import Location
from gradparity.reference.case import Case

GRAD_NAME = re.compile(r"^d(Z|W|b|A)(\d+)$")
_ANY_GRAD = re.compile(r"^d([zZwWbBaA])(\d+)$")
_ANY_CACHE = re.compile(r"^([zZaA])(\d+)$")


def grad_key(k: Any) -> str | None:
    """``dz3`` / ``dZ3`` / ``dB1`` -> the reference's key (``dZ3``, ``db1``), else None."""
    m = _ANY_GRAD.match(k) if isinstance(k, str) else None
    if m is None:
        return None
    return "d" + {"z": "Z", "w": "W", "b": "b", "a": "A"}[m.group(1).lower()] + m.group(2)


def cache_key(k: Any) -> str | None:
    """``z1`` / ``A2`` -> ``Z1`` / ``A2``, else None."""
    m = _ANY_CACHE.match(k) if isinstance(k, str) else None
    return None if m is None else m.group(1).upper() + m.group(2)


@dataclass
class Context:
    """The learner's code: a module (from a file or a notebook's objects), its parsed
    source, and the objects given directly (functions, a class, an instance)."""

    module: ModuleType | None
    tree: Any = None
    objects: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    namespace: dict[str, Any] = field(default_factory=dict)  # a notebook's globals

    def get(self, *names: str) -> Any:
        for n in names:
            if n in self.objects:
                return self.objects[n]
            if self.module is not None and hasattr(self.module, n):
                return getattr(self.module, n)
        for n in names:
            if n in self.namespace:
                return self.namespace[n]
        return self._static(names)

    def _static(self, names: tuple[str, ...]) -> Any:
        """A function written as a staticmethod of a class (``NN.L_model_backward``)."""
        import inspect

        for v in list(self.names().values()):
            if not inspect.isclass(v) or (self.module is not None and getattr(
                    v, "__module__", None) != self.module.__name__):
                continue
            for n in names:
                if isinstance(inspect.getattr_static(v, n, None), staticmethod):
                    return getattr(v, n)
        return None

    def names(self) -> dict[str, Any]:
        out = dict(vars(self.module)) if self.module is not None else {}
        out.update(self.objects)
        return out


@dataclass
class Probe:
    """The learner's forward on a case, for inferring the network."""

    cache: dict[str, Any] = field(default_factory=dict)  # Z1, A1, ... (reference layout)
    cost: Any = None
    cost_per_example: bool = False
    cost_fn_name: str = ""
    problem: str = ""
    output_name: str | None = None  # an output activation the family fixes (Nielsen)
    hidden_name: str | None = None


@dataclass
class FamilyOutput:
    """The learner's values on a case, in the reference layout and the learner's units."""

    values: dict[str, Any] = field(default_factory=dict)
    locations: dict[str, Location] = field(default_factory=dict)
    errors: dict[str, tuple[str, Location | None]] = field(default_factory=dict)
    not_computed: dict[str, str] = field(default_factory=dict)
    required: set[str] = field(default_factory=set)
    problems: list[Problem] = field(default_factory=list)
    notes: dict[str, str] = field(default_factory=dict)
    traces: list[Traced] = field(default_factory=list)
    output: str = ""
    forward: bool = False  # Z/A of the learner's forward are in values
    loss: float | None = None  # the learner's loss on the case, when it returns one
    dtypes: dict[str, str] = field(default_factory=dict)  # key -> the learner's dtype
    raised_values: dict[str, Any] = field(default_factory=dict)  # the value an assert saw
    objects: dict[str, Any] = field(default_factory=dict)  # the learner's own array, if
    # values holds another (a mean over examples, a transposed copy)
    backprop_cache: dict[str, np.ndarray] | None = None


class Family:
    """One API family. Subclasses set the class attributes and implement the methods."""

    name = ""
    title = ""
    default_activation = "relu"
    default_head = "sigmoid_bce"
    default_sizes: tuple[int, ...] = (4, 5, 5, 1)
    layout = "column-major, as the reference"

    def score(self, ctx: Context) -> int:
        """How well the learner's code fits this family (0: not at all)."""
        raise NotImplementedError

    def sizes(self, ctx: Context) -> tuple[tuple[int, ...], str] | None:
        """Layer widths the learner's objects fix (e.g. an instance's weights)."""
        return None

    def probe(self, ctx: Context, case: Case) -> Probe:
        raise NotImplementedError

    def run(self, ctx: Context, case: Case) -> FamilyOutput:
        raise NotImplementedError

    def depth(self, ctx: Context) -> int | None:
        """The number of layers the learner's code reads (``parameters["W3"]``), if fixed."""
        return None

    def file_sizes(self, ctx: Context) -> tuple[tuple[int, ...], str] | None:
        """Layer widths of a model the learner's file builds when imported."""
        return None

    def dtype(self, ctx: Context) -> str | None:
        """The dtype the learner's code works in, when it fixes one."""
        return None

    def explain(self, diagnosis: Any, key: str, user_value: Any) -> Any:
        """The diagnosis in the family's own terms (layouts that differ)."""
        return diagnosis

    def shape_reason(self, key: str, user_value: Any, expected_shape: tuple) -> str | None:
        """A wrong shape in the family's own layout, or None (the reference's words)."""
        return None


# -- helpers shared by the adapters ---------------------------------------------------------
def is_function(v: Any) -> bool:
    import inspect

    return callable(v) and not inspect.isclass(v)


def param_names(func: Callable) -> list[str]:
    import inspect

    try:
        return [p.name for p in inspect.signature(func).parameters.values()
                if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    except (TypeError, ValueError):
        return []


def required_count(func: Callable) -> int:
    import inspect

    try:
        return sum(1 for p in inspect.signature(func).parameters.values()
                   if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY,
                                                          p.POSITIONAL_OR_KEYWORD))
    except (TypeError, ValueError):
        return 0


_HELPER_WORDS = ("linear", "relu", "sigmoid", "tanh", "softmax", "activation", "update",
                 "test", "check", "predict", "dropout", "norm")


def find_role(ctx: Context, exact: tuple[str, ...], words: tuple[str, ...],
              params: tuple[str, ...] = ()) -> tuple[str, Callable] | None:
    """The learner's function for one role: one of the ``exact`` names (any case), else a
    function whose name has one of ``words`` (and none of the helpers' words) and whose
    parameter names include each of ``params`` (substrings, any case)."""
    for n in exact:
        f = ctx.get(n)
        if is_function(f):
            return n, f
    pool = ctx.names()
    pool.update({k: v for k, v in ctx.namespace.items() if k not in pool})
    low = {n.lower(): n for n in exact}
    for name, f in pool.items():
        if isinstance(name, str) and name.lower() in low and is_function(f):
            return name, f
    for name, f in pool.items():
        if not isinstance(name, str) or not is_function(f) or name.startswith("_"):
            continue
        lname = name.lower()
        if not any(w in lname for w in words) or any(w in lname for w in _HELPER_WORDS):
            continue
        names = [p.lower() for p in param_names(f)]
        if all(any(want in p for p in names) for want in params):
            return name, f
    return None


def weights_read(func: Callable) -> int | None:
    """The largest ``l`` of the ``W{l}`` the function's source reads by a literal key
    (``parameters["W3"]``), or None."""
    import inspect

    try:
        src = inspect.getsource(func)
    except (OSError, TypeError):
        return None
    found = [int(n) for n in re.findall(r"""\[\s*["']W(\d+)["']\s*\]""", src)]
    return max(found) if found else None


def array_of(v: Any) -> np.ndarray | None:
    if isinstance(v, np.ndarray) and v.dtype.kind in "fiub":
        return v
    return None


def layer_of(values: Any, weights: Mapping[int, np.ndarray], depth: int = 3) -> int | None:
    """The layer whose weight matrix is among ``values`` (the same object first, else equal
    contents); searched in tuples, lists and dicts up to ``depth`` levels."""
    found: list[np.ndarray] = []

    def walk(v: Any, d: int) -> None:
        if isinstance(v, np.ndarray):
            found.append(v)
        elif d > 0 and isinstance(v, (list, tuple)):
            for x in v[:16]:
                walk(x, d - 1)
        elif d > 0 and type(v) is dict:
            for x in list(v.values())[:16]:
                walk(x, d - 1)

    walk(values, depth)
    for a in found:
        for layer, W in weights.items():
            if a is W:
                return layer
    for a in found:
        for layer, W in weights.items():
            if a.shape == W.shape and W.size > 1 and np.array_equal(a, W):
                return layer
    return None


def exception_quantity(traced: Traced, order: list[str], have: Mapping[str, Any],
                       weights: Mapping[int, np.ndarray]) -> str | None:
    """The quantity whose computation raised: its kind from the names in the failing
    statement (``db``, ``dW``, ``dZ``/``delta``, ``dA``), its layer from the weight matrix
    in the failing frame's variables (else the first of that kind not yet computed)."""
    kinds = []
    for n in traced.exc_names:
        m = GRAD_NAME.match(n)
        if m and f"d{m.group(1)}{m.group(2)}" in order:
            return f"d{m.group(1)}{m.group(2)}"
        low = n.lower()
        for prefix, kind in (("db", "db"), ("nabla_b", "db"), ("dw", "dW"), ("nabla_w", "dW"),
                             ("dz", "dZ"), ("delta", "dZ"), ("da", "dA")):
            if low.startswith(prefix) and kind not in kinds:
                kinds.append(kind)
    layer = layer_of(list(traced.exc_locals.values()), weights)
    for kind in kinds:
        if layer is not None:
            k = f"{kind}{layer - 1 if kind == 'dA' else layer}"
            if k in order:
                return k
        k = next((k for k in order if k.startswith(kind) and re.match(rf"^{kind}\d+$", k)
                  and k not in have), None)
        if k is not None:
            return k
    return None


def exception_outcome(traced: Traced, order: list[str], have: Mapping[str, Any],
                      weights: Mapping[int, np.ndarray], what: str,
                      required: set[str] | None = None
                      ) -> tuple[dict[str, tuple[str, Location | None]], dict[str, str]]:
    """Errors and not-computed quantities when the learner's ``what`` raised: the quantity
    the failing line computes, else the first required one not yet computed."""
    assert traced.raised is not None
    exc = traced.raised
    at = exception_quantity(traced, order, have, weights)
    if at is None:
        at = next((k for k in order if k not in have and (required is None or k in required)),
                  None) or next((k for k in order if k not in have), order[-1])
    errors = {at: (f"your {what} raised {exc.text}", exc.location)}
    return errors, {k: f"not computed: your {what} raised at {at}" for k in order
                    if k != at and k not in have}


def exception_value(traced: Traced, at: str) -> np.ndarray | None:
    """The array the failing frame holds for quantity ``at`` (``db`` in the frame where
    ``assert db.shape == b.shape`` fired), if there is one."""
    kind = at.rstrip("0123456789")
    prefixes = {"db": ("db", "nabla_b"), "dW": ("dw", "nabla_w"), "dZ": ("dz", "delta"),
                "dA": ("da",)}[kind] if kind in ("db", "dW", "dZ", "dA") else ()
    for n in traced.exc_names:
        low = n.lower()
        if n == at or (any(low.startswith(p) for p in prefixes) and n in traced.exc_locals):
            a = array_of(traced.exc_locals.get(n))
            if a is not None:
                return a
    return None


def exception_values(traced: Traced, keys: Iterable[str]) -> dict[str, np.ndarray]:
    """``exception_value`` for each of ``keys`` (the quantities an exception was put on),
    where the failing frame holds one."""
    found = {k: exception_value(traced, k) for k in keys}
    return {k: v for k, v in found.items() if v is not None}


def dtype_of(v: Any) -> str:
    a = array_of(v)
    return str(a.dtype) if a is not None else ""
