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
    parameters = { W1 = [[1.0, 0.0], [0.5, -1.0], [0.0, 2.0]], b1 = [[0.0], [0.0], [0.0]],
                   W2 = [[1.0, -1.0, 0.5], [0.0, 1.0, 1.0]], b2 = [[0.0], [0.0]] }

`dumps_cases` writes specs back as ``[[case]]`` tables with every array explicit, so that
loading the text gives the same specs (floats in their shortest round-trip form).
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
    if key in ("inputs", "targets", "parameters"):
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


#: Fields whose values are names (a string, or in a sweep a list of strings).
_NAME_FIELDS = ("activation", "head", "loss_form", "dtype", "init", "regime")
#: Fields whose values are integers (an integer, or in a sweep a list of integers).
_INT_FIELDS = ("batch", "seed")


def _check_axis_types(where: str, table: dict[str, Any]) -> None:
    """Every value of a sweep axis has the field's type: a nested list, a table or a
    boolean where a name or an integer belongs is a one-line `SpecError`, before any
    value is used as a key."""
    for key in _NAME_FIELDS + _INT_FIELDS:
        if key not in table:
            continue
        value = table[key]
        items = value if isinstance(value, list) else [value]
        if isinstance(value, list) and not value:
            raise SpecError(f"{where}.{key}", value, "a non-empty list")
        for v in items:
            if key in _NAME_FIELDS and not (isinstance(v, str) or (v is None
                                                                    and key == "loss_form")):
                raise SpecError(f"{where}.{key}", value, "a string or a list of strings")
            if key in _INT_FIELDS and (isinstance(v, bool) or not isinstance(v, int)):
                raise SpecError(f"{where}.{key}", value, "an integer or a list of integers")
    sizes = table.get("sizes")
    if sizes is not None and not isinstance(sizes, (list, tuple)):
        raise SpecError(f"{where}.sizes", sizes, "a list of layer widths, or a list of such "
                        "lists")
    if isinstance(sizes, list) and not sizes:
        raise SpecError(f"{where}.sizes", sizes, "a non-empty list of layer widths")


def _check_case_types(where: str, table: dict[str, Any]) -> None:
    """A ``[[case]]`` is one spec: a single value per field, never an axis."""
    for key in _NAME_FIELDS:
        if key in table and not isinstance(table[key], str):
            raise SpecError(f"{where}.{key}", table[key], "a string")
    for key in _INT_FIELDS:
        v = table.get(key, 0)
        if isinstance(v, bool) or not isinstance(v, int):
            raise SpecError(f"{where}.{key}", v, "an integer")
    if "sizes" in table and not isinstance(table["sizes"], list):
        raise SpecError(f"{where}.sizes", table["sizes"], "a list of layer widths")
    if "parameters" in table and not isinstance(table["parameters"], dict):
        raise SpecError(f"{where}.parameters", table["parameters"],
                        "a table of W1, b1, ... matrices")


def expand_sweep(where: str, table: dict[str, Any]) -> list[Spec]:
    """The specs of one sweep table (a ``[[sweep]]``'s keys: spec fields, each a value or
    a list of values; ``sizes`` one list of widths or a list of such lists): the cartesian
    product of the lists, with the loss forms each head has. ``where`` prefixes errors.

    Raises:
        SpecError: a key that is not a spec field, no ``sizes``, a bad value, or a
            ``loss_form`` that none of the sweep's heads has.
    """
    _check_keys(where, table)
    _check_axis_types(where, table)
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
    except UnicodeDecodeError as e:
        raise UsageError(f"suite file {str(p)!r}: not UTF-8 text (byte "
                         f"0x{e.object[e.start]:02x} at offset {e.start})") from None
    except IsADirectoryError:
        raise UsageError(f"suite file {str(p)!r}: is a folder, expected a TOML file") from None
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
        _check_case_types(f"{where}: case[{i}]", table)
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
    if backends is not None:
        from gradparity.adapters.registry import BACKENDS

        for b in backends:
            if b not in BACKENDS:
                raise SpecError(f"{where}: backends", b, f"one of {', '.join(BACKENDS)}")
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
    description = data.get("description", "")
    if not isinstance(description, str):
        raise SpecError(f"{where}: description", description, "a string")
    return SuiteFile(name=name, specs=specs, backends=backends, tolerances=tolerances,
                     description=description)


# -- writing -------------------------------------------------------------------------------
def _toml_value(value: Any) -> str:
    """One TOML value: strings quoted, floats in their shortest round-trip form, lists
    and nested lists inline."""
    if isinstance(value, str):
        return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"no TOML form for {type(value).__name__}")


def dumps_cases(specs: list[Spec], *, name: str, description: str = "",
                backends: list[str] | None = None,
                comments: list[str] | None = None) -> str:
    """A suite file of ``specs``, one ``[[case]]`` each (optionally preceded by comment
    lines); `load_suite_file` reads it back into the same specs."""
    lines = [f"name = {_toml_value(name)}"]
    if description:
        lines.append(f"description = {_toml_value(description)}")
    if backends:
        lines.append(f"backends = {_toml_value(list(backends))}")
    for i, spec in enumerate(specs):
        lines.append("")
        if comments and comments[i]:
            lines += [f"# {c}" for c in comments[i].splitlines()]
        lines.append("[[case]]")
        for f in fields(Spec):
            v = getattr(spec, f.name)
            if v is None:
                continue
            if f.name == "parameters":
                inner = ", ".join(f"{k} = {_toml_value(rows)}" for k, rows in v)
                lines.append(f"parameters = {{ {inner} }}")
            else:
                lines.append(f"{f.name} = {_toml_value(v)}")
    return "\n".join(lines) + "\n"
