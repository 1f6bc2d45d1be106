"""The NumPy API families learners write backprop in, each recognised by itself.

* ``seed``: ``backpropagation(cache, Y, parameters)`` (+ ``forward``), the session's own;
* ``dlai_deep``: deeplearning.ai L-layer (`gradparity.debug.families.dlai_deep`);
* ``dlai_2layer``: deeplearning.ai 2-layer (`gradparity.debug.families.dlai_2layer`);
* ``nielsen``: a ``Network`` class with per-example ``backprop(x, y)``
  (`gradparity.debug.families.nielsen`);
* ``cs231n``: row-major ``loss(X, y) -> (loss, grads)`` (`gradparity.debug.families.cs231n`).

`detect` scores every family on the learner's names and signatures and keeps the best;
`debug_api` runs the session (`gradparity.debug.families.run`).
"""

from __future__ import annotations

import inspect
import os
from collections.abc import Callable, Mapping
from types import ModuleType
from typing import Any

from gradparity.core.errors import UsageError
from gradparity.debug.families.base import Context, Family

API_NAMES: tuple[str, ...] = ("seed", "dlai_deep", "dlai_2layer", "nielsen", "cs231n")


def families() -> dict[str, Family]:
    import importlib

    out: dict[str, Family] = {}
    for name in API_NAMES[1:]:
        fam = importlib.import_module(f"gradparity.debug.families.{name}").FAMILY
        out[fam.name] = fam
    return out


def is_seed(ctx: Context) -> bool:
    f = ctx.get("backpropagation")
    return callable(f) and not inspect.isclass(f)


def detect(ctx: Context) -> Family | None:
    """The family that fits the learner's code best, or None (the seed's or unknown)."""
    scored = [(f.score(ctx), i, f) for i, f in enumerate(families().values())]
    scored = [s for s in scored if s[0] > 0]
    if not scored:
        return None
    return max(scored, key=lambda s: (s[0], -s[1]))[2]


def context_from_objects(objects: Mapping[str, Any], label: str) -> Context:
    return Context(None, None, dict(objects), label)


def objects_of(source: Any, extra: Mapping[str, Any]) -> dict[str, Any]:
    """Names for the family detection from objects given to the Python API: a function is
    known by its name, a class or an instance by its class name (and ``net``)."""
    out: dict[str, Any] = {}
    for obj in (source, *extra.values()):
        if obj is None:
            continue
        if inspect.isfunction(obj) or inspect.ismethod(obj) or inspect.isclass(obj):
            out[obj.__name__] = obj
        elif hasattr(obj, "__class__") and not isinstance(obj, (str, os.PathLike, ModuleType)):
            out["__instance__"] = obj
            out[type(obj).__name__] = type(obj)
    for k, v in extra.items():
        if v is not None and not isinstance(v, str):
            out[k] = v
    return out


def resolve(api: str | None, ctx: Context) -> Family | None:
    """The family ``api`` names (None: detect; ``"seed"``: None)."""
    if api is not None and api not in API_NAMES:
        raise UsageError(f"--api={api!r}: expected one of {', '.join(API_NAMES)}")
    if api == "seed":
        return None
    if api is not None:
        fam = families()[api]
        if fam.score(ctx) <= 0:
            raise UsageError(f"--api={api}: your code has none of the {api} family's "
                             f"functions ({fam.title})")
        return fam
    if is_seed(ctx):
        return None
    return detect(ctx)


def source_of(func: Callable) -> str:
    code = getattr(func, "__code__", None)
    return code.co_filename if code is not None else ""
