"""The specification of one parity case: network, head, dtype, data regime and seed.

A `Spec` is a frozen dataclass, validated on construction. Everything a backend needs to
build the same MLP comes from it (through `make_case`), so the spec is also the case's
identity in the result tables.

Conventions (column-major, as in the seed document): ``sizes = (n0, n1, ..., nL)``; layer
``l`` has ``W[l]`` of shape ``(n_l, n_{l-1})`` and ``b[l]`` of shape ``(n_l, 1)``; a batch
of ``m`` examples is a matrix of shape ``(n0, m)``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Any

from gradparity.core.errors import SpecError

#: Hidden-layer activations, in the order tables list them.
ACTIVATIONS: tuple[str, ...] = (
    "relu",
    "leaky_relu",
    "sigmoid",
    "tanh",
    "identity",
    "softplus",
    "elu",
    "silu",
    "gelu",
    "gelu_tanh",
)


@dataclass(frozen=True)
class HeadInfo:
    """An output activation paired with a loss.

    ``forms`` lists the loss forms the head supports: ``"logits"`` computes the loss from
    Z[L] in one fused, numerically stable expression; ``"probs"`` applies the output
    activation first and takes the loss of A[L] (composed). ``canonical`` heads have
    ``dJ/dZ[L] = (A[L] - Y) / m``.
    """

    name: str
    output: str
    loss: str
    forms: tuple[str, ...]
    canonical: bool
    targets: str  # "real", "binary", "onehot"
    min_outputs: int = 1
    description: str = ""


HEADS: dict[str, HeadInfo] = {
    h.name: h
    for h in (
        HeadInfo("linear_mse", "identity", "mse", ("logits",), True, "real",
                 description="J = 1/(2m) sum ||Z[L] - Y||^2"),
        HeadInfo("sigmoid_bce", "sigmoid", "bce", ("logits", "probs"), True, "binary",
                 description="binary cross-entropy of sigmoid(Z[L]), summed over outputs"),
        HeadInfo("softmax_ce", "softmax", "ce", ("logits", "probs"), True, "onehot",
                 min_outputs=2, description="categorical cross-entropy of softmax(Z[L])"),
        HeadInfo("sigmoid_mse", "sigmoid", "mse", ("probs",), False, "real",
                 description="J = 1/(2m) sum ||sigmoid(Z[L]) - Y||^2"),
        HeadInfo("tanh_mse", "tanh", "mse", ("probs",), False, "real",
                 description="J = 1/(2m) sum ||tanh(Z[L]) - Y||^2"),
        HeadInfo("linear_l1", "identity", "l1", ("logits",), False, "real",
                 description="J = 1/m sum |Z[L] - Y|"),
        HeadInfo("linear_huber", "identity", "huber", ("logits",), False, "real",
                 description="J = 1/m sum huber_1(Z[L] - Y), delta = 1"),
    )
}

DTYPES: tuple[str, ...] = ("float32", "float64")
INITS: tuple[str, ...] = ("he", "xavier", "normal")
REGIMES: tuple[str, ...] = ("normal", "kinks", "saturated")

#: Fixed hyper-parameters of the activations and losses (the frameworks' defaults).
LEAKY_SLOPE = 0.01
ELU_ALPHA = 1.0
HUBER_DELTA = 1.0

_MAX_UNITS = 4096
_MAX_BATCH = 65536
_MAX_DEPTH = 64
_MAX_SEED = 2**63 - 1  # the tables' seed column is a 64-bit integer


def head_forms() -> list[tuple[str, str]]:
    """Every (head, loss_form) pair, in table order."""
    return [(h.name, form) for h in HEADS.values() for form in h.forms]


def _choice(name: str, value: Any, options: tuple[str, ...]) -> None:
    """``value`` must be one of the option strings (a list or a number is a clear error)."""
    if not isinstance(value, str) or value not in options:
        raise SpecError(name, value, f"one of {', '.join(options)}")


def _is_sequence(value: Any) -> bool:
    return (hasattr(value, "__len__") and hasattr(value, "__iter__")
            and not isinstance(value, (str, bytes, Mapping)))


def _matrix(name: str, value: Any) -> tuple[tuple[float, ...], ...]:
    """Normalise a nested sequence to a tuple of equal-length float tuples. Numbers only:
    a boolean, a string or a table where a number belongs is an error."""
    expected = "a matrix (list of equal-length lists of numbers)"
    if not _is_sequence(value) or not all(_is_sequence(row) for row in value):
        raise SpecError(name, value, expected)
    for i, row in enumerate(value):
        for j, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, numbers.Real):
                raise SpecError(f"{name}[{i}][{j}]", v, "a number")
    try:
        rows = tuple(tuple(float(v) for v in row) for row in value)
    except (TypeError, ValueError, OverflowError):
        raise SpecError(name, value, expected) from None
    if not rows or len({len(r) for r in rows}) != 1 or len(rows[0]) == 0:
        raise SpecError(name, value, "a non-empty matrix with rows of equal length")
    return rows


@dataclass(frozen=True)
class Spec:
    """One parity case.

    Fields:
        sizes: layer widths ``(n0, n1, ..., nL)``; depth ``L = len(sizes) - 1 >= 1``.
        activation: hidden activation (one of `ACTIVATIONS`).
        head: output activation + loss (a key of `HEADS`).
        loss_form: ``"logits"`` or ``"probs"``; ``None`` picks the head's first form.
        dtype: ``"float32"`` or ``"float64"``; arrays are drawn in float64 and cast once.
        batch: number of examples ``m``.
        seed: seed of the NumPy generator that draws parameters and data.
        init: weight scale, ``"he"`` (2/n_in), ``"xavier"`` (2/(n_in+n_out)) or ``"normal"`` (1).
        regime: input regime: ``"normal"``, ``"kinks"`` (exact zeros in Z on purpose, exact
            dyadic arithmetic) or ``"saturated"`` (large output logits).
        inputs: optional explicit X, shape ``(n0, m)``, overriding the drawn inputs.
        targets: optional explicit Y, shape ``(nL, m)``; for ``softmax_ce`` either one-hot
            columns or one row of class indices in ``[0, nL)``.
        parameters: optional explicit ``{"W1": matrix, "b1": matrix, ...}`` for every layer
            (``W[l]`` of shape ``(n_l, n_{l-1})``, ``b[l]`` of ``(n_l, 1)``), used as given
            instead of the drawn (and regime-scaled) parameters; kept as a tuple of
            ``(name, matrix)`` pairs in the order W1, b1, W2, ... (`parameter_arrays`).
    """

    sizes: tuple[int, ...]
    activation: str = "relu"
    head: str = "linear_mse"
    loss_form: str | None = None
    dtype: str = "float64"
    batch: int = 8
    seed: int = 0
    init: str = "he"
    regime: str = "normal"
    inputs: tuple[tuple[float, ...], ...] | None = field(default=None, repr=False)
    targets: tuple[tuple[float, ...], ...] | None = field(default=None, repr=False)
    parameters: tuple[tuple[str, tuple[tuple[float, ...], ...]], ...] | None = field(
        default=None, repr=False)

    def __post_init__(self) -> None:  # noqa: C901 - one check per field, in field order
        set_ = object.__setattr__
        sizes = self.sizes
        if isinstance(sizes, (str, bytes)) or not hasattr(sizes, "__iter__"):
            raise SpecError("sizes", sizes, "a list of at least two positive integers")
        sizes = tuple(sizes)
        if len(sizes) < 2 or len(sizes) > _MAX_DEPTH + 1:
            raise SpecError("sizes", list(sizes),
                            f"a list of 2 to {_MAX_DEPTH + 1} positive integers (n0, ..., nL)")
        for i, n in enumerate(sizes):
            if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= _MAX_UNITS:
                raise SpecError(f"sizes[{i}]", n, f"an integer from 1 to {_MAX_UNITS}")
        set_(self, "sizes", sizes)

        _choice("activation", self.activation, ACTIVATIONS)
        _choice("head", self.head, tuple(HEADS))
        info = HEADS[self.head]
        form = info.forms[0] if self.loss_form is None else self.loss_form
        if not isinstance(form, str) or form not in info.forms:
            raise SpecError("loss_form", form, f"{' or '.join(info.forms)} for head {self.head}")
        set_(self, "loss_form", form)
        if sizes[-1] < info.min_outputs:
            raise SpecError("sizes[-1]", sizes[-1],
                            f"at least {info.min_outputs} outputs for head {self.head}")
        _choice("dtype", self.dtype, DTYPES)
        if isinstance(self.batch, bool) or not isinstance(self.batch, int) or not (
            1 <= self.batch <= _MAX_BATCH
        ):
            raise SpecError("batch", self.batch, f"an integer from 1 to {_MAX_BATCH}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not (
            0 <= self.seed <= _MAX_SEED
        ):
            raise SpecError("seed", self.seed, "a non-negative integer below 2**63")
        _choice("init", self.init, INITS)
        _choice("regime", self.regime, REGIMES)
        if self.inputs is not None:
            set_(self, "inputs", self._check_inputs(self.inputs))
        if self.targets is not None:
            set_(self, "targets", self._check_targets(self.targets))
        if self.parameters is not None:
            set_(self, "parameters", self._check_parameters(self.parameters))

    # -- explicit data -------------------------------------------------------------------
    def _check_inputs(self, value: Any) -> tuple[tuple[float, ...], ...]:
        rows = _matrix("inputs", value)
        if len(rows) != self.sizes[0] or len(rows[0]) != self.batch:
            raise SpecError("inputs", f"{len(rows)}x{len(rows[0])} matrix",
                            f"shape (n0, m) = ({self.sizes[0]}, {self.batch})")
        for i, row in enumerate(rows):
            for j, v in enumerate(row):
                if not math.isfinite(v):
                    raise SpecError(f"inputs[{i}][{j}]", v, "a finite number")
        return rows

    def _check_targets(self, value: Any) -> tuple[tuple[float, ...], ...]:
        rows = _matrix("targets", value)
        n_out, m = self.sizes[-1], self.batch
        kind = HEADS[self.head].targets
        for i, row in enumerate(rows):
            for j, v in enumerate(row):
                if not math.isfinite(v):
                    raise SpecError(f"targets[{i}][{j}]", v, "a finite number")
        if kind == "onehot" and len(rows) == 1 and n_out > 1:
            if len(rows[0]) != m:
                raise SpecError("targets", f"{len(rows[0])} labels", f"{m} class indices")
            for j, v in enumerate(rows[0]):
                if v != int(v) or not 0 <= v < n_out:
                    raise SpecError(f"targets[0][{j}]", v,
                                    f"a class index in [0, {n_out}) for head {self.head}")
            return rows
        if len(rows) != n_out or len(rows[0]) != m:
            raise SpecError("targets", f"{len(rows)}x{len(rows[0])} matrix",
                            f"shape (nL, m) = ({n_out}, {m})")
        if kind == "binary":
            for i, row in enumerate(rows):
                for j, v in enumerate(row):
                    if not 0.0 <= v <= 1.0:
                        raise SpecError(f"targets[{i}][{j}]", v,
                                        f"a label in [0, 1] for head {self.head}")
        if kind == "onehot":
            for j in range(m):
                col = [rows[i][j] for i in range(n_out)]
                if any(v < 0.0 or v > 1.0 for v in col) or abs(sum(col) - 1.0) > 1e-9:
                    raise SpecError(f"targets[:][{j}]", col,
                                    f"a probability column summing to 1 for head {self.head}")
        return rows

    def _check_parameters(self, value: Any
                          ) -> tuple[tuple[str, tuple[tuple[float, ...], ...]], ...]:
        items = value.items() if isinstance(value, Mapping) else value
        expected = "a table of W1, b1, ..., WL, bL matrices"
        try:
            given = dict(items)
        except (TypeError, ValueError):
            raise SpecError("parameters", value, expected) from None
        names = [f"{p}{layer}" for layer in range(1, self.depth + 1) for p in ("W", "b")]
        for key in given:
            if key not in names:
                raise SpecError(f"parameters.{key}", given[key],
                                f"a parameter of this network ({', '.join(names)})")
        out = []
        for key in names:
            if key not in given:
                raise SpecError(f"parameters.{key}", None, "a matrix (every layer's W and b)")
            rows = _matrix(f"parameters.{key}", given[key])
            layer = int(key[1:])
            shape = (self.sizes[layer], self.sizes[layer - 1] if key[0] == "W" else 1)
            if (len(rows), len(rows[0])) != shape:
                raise SpecError(f"parameters.{key}", f"{len(rows)}x{len(rows[0])} matrix",
                                f"shape {shape}")
            for i, row in enumerate(rows):
                for j, v in enumerate(row):
                    if not math.isfinite(v):
                        raise SpecError(f"parameters.{key}[{i}][{j}]", v, "a finite number")
            out.append((key, rows))
        return tuple(out)

    @property
    def parameter_arrays(self) -> dict[str, tuple[tuple[float, ...], ...]]:
        """The explicit parameters by name (``{}`` when the spec draws them)."""
        return dict(self.parameters or ())

    # -- derived -------------------------------------------------------------------------
    @property
    def depth(self) -> int:
        """Number of layers L."""
        return len(self.sizes) - 1

    @property
    def case_id(self) -> str:
        """A stable, readable identifier: unique for specs that differ in any field."""
        parts = [
            self.activation,
            f"{self.head}.{self.loss_form}",
            "f32" if self.dtype == "float32" else "f64",
            "x".join(map(str, self.sizes)),
            f"m{self.batch}",
            f"s{self.seed}",
            self.init,
            self.regime,
        ]
        if self.parameters is not None:
            parts.append(f"data{_data_digest(self.inputs, self.targets, self.parameters)}")
        elif self.inputs is not None or self.targets is not None:
            parts.append(f"data{_data_digest(self.inputs, self.targets)}")
        return "-".join(parts)

    def replace(self, **changes: Any) -> Spec:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)


def _data_digest(*arrays: Any) -> str:
    import hashlib

    h = hashlib.sha256(repr(arrays).encode())
    return h.hexdigest()[:8]
