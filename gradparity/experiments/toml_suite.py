"""Sweeps declared in TOML.

Example::

    name = "gelu-heads"                    # optional; default: the file's stem
    backends = ["torch", "jax"]            # optional; the command line overrides
    [tolerances.float32]                   # optional per-dtype overrides
    rtol = 2e-6

    [[sweep]]                              # every list is an axis of a cartesian product
    sizes = [[4, 16, 3], [4, 16, 16, 3]]   # one list of ints, or a list of such lists
    activation = ["gelu", "gelu_tanh"]
    head = ["softmax_ce", "sigmoid_bce"]
    loss_form = ["logits", "probs"]        # omitted: every form of each head
    dtype = ["float32", "float64"]
    batch = 8
    seed = [0, 1]

    [[case]]                               # one spec; may carry explicit data
    sizes = [2, 3, 2]
    head = "softmax_ce"
    batch = 2
    inputs = [[0.5, -1.0], [2.0, 0.0]]
    targets = [[0, 1]]                     # class indices for softmax_ce

Combinations of a head with a loss form it does not have are left out of a sweep; a form
that fits none of the sweep's heads is an error.
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass, field, fields
from itertools import product
from pathlib import Path
from typing import Any

from gradparity.core.errors import SpecError, UsageError
from gradparity.core.spec import HEADS, Spec

_SPEC_FIELDS = tuple(f.name for f in fields(Spec))
_TOP_KEYS = ("name", "description", "backends", "tolerances", "sweep", "case")


@dataclass
class SuiteFile:
    """A parsed TOML suite."""

    name: str
    specs: list[Spec]
    backends: list[str] | None = None
    tolerances: dict[str, dict[str, float]] = field(default_factory=dict)
    description: str = ""


def _axis(value: Any, key: str) -> list[Any]:
    if key == "sizes":
        if isinstance(value, list) and value and all(isinstance(v, list) for v in value):
            return [tuple(v) for v in value]
        if isinstance(value, list):
            return [tuple(value)]
        return [value]
    if key in ("inputs", "targets"):
        return [value]
    return list(value) if isinstance(value, list) else [value]


def _spec(where: str, values: dict[str, Any]) -> Spec:
    try:
        return Spec(**values)
    except SpecError as e:
        raise SpecError(e.field, e.value, e.expected, where=where) from None


def _check_keys(where: str, table: dict[str, Any]) -> None:
    for key in table:
        if key not in _SPEC_FIELDS:
            raise SpecError(f"{where}.{key}", table[key],
                            f"a spec field, one of {', '.join(_SPEC_FIELDS)}")
    if "sizes" not in table:
        raise SpecError(f"{where}.sizes", None, "a list of layer widths (required)")


def expand_sweep(where: str, table: dict[str, Any]) -> list[Spec]:
    """The specs of one sweep table (a ``[[sweep]]``'s keys: spec fields, each a value or
    a list of values; ``sizes`` one list of widths or a list of such lists): the cartesian
    product of the lists, with the loss forms each head has. ``where`` prefixes errors.

    Raises:
        SpecError: a key that is not a spec field, no ``sizes``, a bad value, or a
            ``loss_form`` that none of the sweep's heads has.
    """
    _check_keys(where, table)
    axes = {k: _axis(v, k) for k, v in table.items() if k != "loss_form"}
    forms = _axis(table["loss_form"], "loss_form") if "loss_form" in table else [None]
    keys = list(axes)
    specs: list[Spec] = []
    used_forms: set[str] = set()
    for combo in product(*(axes[k] for k in keys)):
        values = dict(zip(keys, combo, strict=True))
        head = values.get("head", "linear_mse")
        for form in forms:
            if form is None:
                head_forms = HEADS[head].forms if head in HEADS else (None,)
            elif head in HEADS and form not in HEADS[head].forms:
                continue
            else:
                head_forms = (form,)
            for f in head_forms:
                used_forms.add(str(f))
                specs.append(_spec(where, dict(values, loss_form=f)))
    for form in forms:
        if form is not None and str(form) not in used_forms:
            heads = axes.get("head", ["linear_mse"])
            raise SpecError(f"{where}.loss_form", form,
                            f"a form one of the sweep's heads ({', '.join(map(str, heads))}) has")
    return specs


def load_suite_file(path: str | Path) -> SuiteFile:
    """Parse and validate a TOML suite; every error is a one-line `UsageError`."""
    p = Path(path)
    try:
        with p.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise UsageError(f"suite file {str(p)!r}: no such file") from None
    except tomllib.TOMLDecodeError as e:
        raise UsageError(f"suite file {str(p)!r}: invalid TOML: {e}") from None
    except OSError as e:
        raise UsageError(f"suite file {str(p)!r}: {e.strerror}") from None
    where = p.name
    for key in data:
        if key not in _TOP_KEYS:
            raise SpecError(f"{where}: {key}", data[key], f"one of {', '.join(_TOP_KEYS)}")
    specs: list[Spec] = []
    sweeps = data.get("sweep", [])
    cases = data.get("case", [])
    if not isinstance(sweeps, list) or not isinstance(cases, list):
        raise UsageError(f"{where}: use [[sweep]] and [[case]] (arrays of tables)")
    for i, table in enumerate(sweeps + cases):
        if not isinstance(table, dict):
            kind, j = ("sweep", i) if i < len(sweeps) else ("case", i - len(sweeps))
            raise SpecError(f"{where}: {kind}[{j}]", table, "a table ([[" + kind + "]])")
    for i, table in enumerate(sweeps):
        specs += expand_sweep(f"{where}: sweep[{i}]", table)
    for i, table in enumerate(cases):
        _check_keys(f"{where}: case[{i}]", table)
        values = dict(table)
        if "sizes" in values and isinstance(values["sizes"], list):
            values["sizes"] = tuple(values["sizes"])
        specs.append(_spec(f"{where}: case[{i}]", values))
    if not specs:
        raise UsageError(f"{where}: no cases: add a [[sweep]] or a [[case]] table")
    ids = [s.case_id for s in specs]
    dupes = sorted({i for i in ids if ids.count(i) > 1})
    if dupes:
        raise SpecError(f"{where}: case_id", dupes[0], "each case once (duplicate in sweep)")
    backends = data.get("backends")
    if backends is not None and (not isinstance(backends, list) or not backends
                                 or not all(isinstance(b, str) for b in backends)):
        raise SpecError(f"{where}: backends", backends, "a non-empty list of backend names")
    tolerances = data.get("tolerances", {})
    if not isinstance(tolerances, dict):
        raise SpecError(f"{where}: tolerances", tolerances, "tables [tolerances.<dtype>]")
    from gradparity.experiments.io import check_name
    from gradparity.judge.tolerances import resolve_tolerances

    for dtype, values in tolerances.items():
        try:
            resolve_tolerances({dtype: values})
        except SpecError as e:
            field = e.field if e.field.startswith("tolerances") else f"tolerances.{dtype}.{e.field}"
            raise SpecError(field, e.value, e.expected, where=where) from None
        except (TypeError, AttributeError):
            raise SpecError(f"tolerances.{dtype}", values, "a table of rtol/atol") from None
    if "name" in data:
        name = data["name"]
        check_name(name, option=f"{where}: name")
    else:
        name = re.sub(r"[^A-Za-z0-9._+-]", "_", p.stem).lstrip(".-") or "suite"
    return SuiteFile(name=name, specs=specs, backends=backends, tolerances=tolerances,
                     description=str(data.get("description", "")))
