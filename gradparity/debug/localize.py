"""The first divergence: walk the quantities in the order the code computes them.

Each quantity of the user's code gets one `Check`:

* ``pass``: equal to the reference within tolerance (dZ and dA after the convention's
  scaling, see `gradparity.debug.conventions`);
* ``inherited``: different from the reference, but equal to what the seed's equations give
  when fed the user's own upstream values: not a bug of its own (``root`` names the finding
  it follows from);
* ``fail``: a finding: different from both, or the wrong shape, or NaN/inf where the
  reference is finite; it gets a `Diagnosis`;
* ``error``: a finding without a value: the user's code raised while computing it, it is
  missing, or it is not an array;
* ``skipped``: not reported by the user (optional intermediates) or not computed because
  the code raised earlier. Its value for the equations downstream is implied: by the seed's
  equations from the user's upstream values, or by the diagnosis of a reported quantity
  made from it (`Diagnosis.implies`);
* ``kink``: different only where Z is exactly at a non-differentiable point, with another
  derivative there than the reference's (e.g. relu'(0) = 1): a convention, not a finding;
  what follows from it is marked inherited;
* an explained status (``kink``, ``saturation``, ``rounding``) when a framework verdict
  gives one (PyTorch modules): a named convention difference, not a finding.

The first ``fail``/``error`` in the walk is the first divergence; every later quantity is
either inherited or a separate finding.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gradparity.debug.diagnose import (
    INTEGER_CODES,
    KINK,
    Diagnosis,
    diagnose,
    dtype_diagnosis,
    fits,
)
from gradparity.debug.equations import Net, evaluate, inputs_of
from gradparity.debug.quantities import PER_EXAMPLE_QUANTITIES, split
from gradparity.debug.user_code import Location
from gradparity.judge.compare import TensorComparison, compare_arrays
from gradparity.judge.status import FAILING
from gradparity.judge.tolerances import Tolerance

Array = np.ndarray

#: Statuses of a quantity of the user's code that make it a finding: a failing row's.
FINDING = FAILING


@dataclass
class Check:
    """The verdict on one quantity of the user's code."""

    key: str
    status: str
    reason: str = ""
    comparison: TensorComparison | None = None
    diagnosis: Diagnosis | None = None
    location: Location | None = None
    root: str | None = None  # inherited: the finding it follows from
    reported: bool = True
    scale: float = 1.0  # the user's value was divided by this before comparing
    compensates: bool = False  # passes although its own upstream is wrong

    @property
    def quantity(self) -> str:
        return split(self.key)[0]

    @property
    def layer(self) -> int:
        return split(self.key)[1]

    @property
    def is_finding(self) -> bool:
        return self.status in FINDING


@dataclass
class UserValues:
    """What the user's code produced, for the walk.

    Attributes:
        values: raw values by key (the forward cache's Z/A, the grads' dZ/dW/db/dA).
        locations: the line that stored each key last.
        errors: ``{key: (message, location)}`` for quantities that raised or are unusable.
        not_computed: ``{key: reason}`` for quantities the code never reached.
        required: keys whose absence is a finding (dW, db; Z, A of a user forward).
        explained: ``{key: (status, reason)}`` from a framework verdict (modules only).
        container, forward_container: how the report names where the gradients and the
            forward values live (``"grads"``, ``"cache"``).
    """

    values: Mapping[str, Any]
    locations: Mapping[str, Location] = field(default_factory=dict)
    errors: Mapping[str, tuple[str, Location | None]] = field(default_factory=dict)
    not_computed: Mapping[str, str] = field(default_factory=dict)
    required: frozenset[str] = frozenset()
    explained: Mapping[str, tuple[str, str]] = field(default_factory=dict)
    container: str = "grads"
    forward_container: str = "cache"

    def where(self, k: str) -> str:
        return self.forward_container if split(k)[0] in ("Z", "A") else self.container


def as_array(value: Any) -> Array | None:
    """A numeric NumPy array, or None (a tensor is accepted through ``__array__``)."""
    try:
        a = np.asarray(value)
    except Exception:  # noqa: BLE001 - anything that is not array-like
        return None
    if a.dtype == object or a.dtype.kind not in "biuf":
        return None
    return a


def _value_reason(c: TensorComparison, actual: Array) -> str:
    if c.shape_error:
        return f"shape {tuple(actual.shape)} where {c.shape_error.split('expected ')[-1]} belongs"
    bad = ~np.isfinite(actual)
    if bad.any():
        first = tuple(int(i) for i in np.argwhere(bad)[0])
        return f"{int(bad.sum())}/{actual.size} elements are NaN or inf (first at {first})"
    return (f"{c.n_mismatch}/{c.n_elements} elements outside atol={c.atol:g}, rtol={c.rtol:g}; "
            f"worst at {c.worst_index}: yours {c.worst_value:.6g}, expected "
            f"{c.worst_expected:.6g}")


class _Walk:
    def __init__(self, net: Net, reference: Mapping[str, Array], user: UserValues,
                 factor: float, tolerance: Tolerance, dtype: str, order: list[str]) -> None:
        self.net, self.ref, self.user = net, reference, user
        self.factor, self.tol, self.dtype, self.order = factor, tolerance, dtype, order
        self.eff: dict[str, Array] = {}
        self.root: dict[str, str | None] = {}
        self.checks: dict[str, Check] = {}

    # values the equations read: the user's (true-partial units) where usable
    def get(self, k: str) -> Array | None:
        if k in self.eff:
            return self.eff[k]
        return self.ref.get(k)

    def scale_of(self, k: str) -> float:
        return self.factor if split(k)[0] in PER_EXAMPLE_QUANTITIES else 1.0

    def user_true(self, k: str) -> Array | None:
        if k not in self.user.values or k in self.user.errors:
            return None
        a = as_array(self.user.values[k])
        if a is None:
            return None
        with np.errstate(all="ignore"):
            return a / self.scale_of(k) if self.scale_of(k) != 1.0 else a

    def upstream_roots(self, k: str) -> list[str]:
        roots = [self.root.get(u) for u in inputs_of(k, self.net)]
        return [r for r in roots if r]

    def close(self, actual: Array, expected: Array) -> bool:
        return compare_arrays(actual, expected, rtol=self.tol.rtol, atol=self.tol.atol,
                              dtype=self.dtype).passed

    def implied(self, k: str) -> Array | None:
        v = evaluate(k, self.get, self.net)
        return v if v is not None else self.ref.get(k)

    def reset_forward(self, cache: Mapping[str, Array]) -> None:
        """The backprop saw ``cache`` (the harness's): forward findings do not reach it."""
        for k, v in cache.items():
            self.eff[k] = v
            self.root[k] = None

    # -- the hidden-upstream lookahead -------------------------------------------------------
    def hidden_input(self, k: str) -> str | None:
        q, _ = split(k)
        if q not in ("dW", "db", "dA"):
            return None
        for u in inputs_of(k, self.net):
            if split(u)[0] == "dZ" and u in self.checks and not self.checks[u].reported \
                    and u not in self.user.not_computed:
                return u
        return None

    def support(self, current: str, implies: tuple[tuple[str, Array], ...]) -> int:
        override = dict(implies)
        if not override:
            return 0

        def get(kk: str) -> Array | None:
            return override[kk] if kk in override else self.get(kk)

        n = 0
        for d in self.order:
            if d == current or not any(h in inputs_of(d, self.net) for h in override):
                continue
            u = self.user_true(d)
            if u is None:
                continue
            v = evaluate(d, get, self.net)
            if v is not None and fits(u, v, self.dtype):
                n += 1
        return n

    # -- one quantity ----------------------------------------------------------------------
    def step(self, k: str) -> Check:
        E = self.ref[k]
        scale = self.scale_of(k)
        roots = self.upstream_roots(k)
        user = self.user

        if k in user.errors:
            msg, loc = user.errors[k]
            self.eff[k], self.root[k] = self.implied(k), None
            return Check(k, "error", msg, location=loc, scale=scale)
        if k not in user.values:
            self.eff[k] = self.implied(k)
            self.root[k] = roots[0] if roots else None
            if k in user.not_computed:
                return Check(k, "skipped", user.not_computed[k], reported=False, scale=scale)
            if k in user.required:
                return Check(k, "error", f"{k} is missing from your {user.where(k)}",
                             reported=False, scale=scale)
            return Check(k, "skipped", f"not in your {user.where(k)} (optional)",
                         reported=False, scale=scale)

        loc = user.locations.get(k)
        U = self.user_true(k)
        if U is None:
            raw = user.values[k]
            self.eff[k], self.root[k] = self.implied(k), None
            return Check(k, "error", f"{k} is a {type(raw).__name__}, not a numeric array",
                         location=loc, scale=scale)
        cmp = compare_arrays(U, E, rtol=self.tol.rtol, atol=self.tol.atol, dtype=self.dtype)
        wrong_dtype = dtype_diagnosis(k, as_array(user.values[k]), self.dtype)
        if wrong_dtype is not None and (wrong_dtype.code in INTEGER_CODES
                                        or fits(U, E, "float32")):
            # integers, or right values at a lower precision: the dtype is the finding
            self.eff[k] = U if U.shape == E.shape else E
            self.root[k] = k
            reason = _value_reason(cmp, U) if not cmp.passed else (
                f"within atol={cmp.atol:g}, rtol={cmp.rtol:g}, but not {self.dtype} values")
            return Check(k, "fail", reason, cmp, wrong_dtype, loc, scale=scale)
        if cmp.passed:
            self.eff[k], self.root[k] = U, None
            # right only because a second mistake cancels the upstream one?
            local = self.implied(k) if roots else None
            off = local is not None and (local.shape != U.shape or not self.close(U, local))
            return Check(k, "pass", "", cmp, location=loc, scale=scale, compensates=off)
        if k in user.explained:
            status, reason = user.explained[k]
            self.eff[k], self.root[k] = U, None
            return Check(k, status, reason, cmp, location=loc, scale=scale)

        local = self.implied(k) if roots else E
        if roots and local is not None and local.shape == U.shape and self.close(U, local):
            self.eff[k], self.root[k] = U, roots[0]
            return Check(k, "inherited", f"follows from your {roots[0]}: the seed's equations "
                         f"give it from your upstream values", cmp, location=loc, root=roots[0],
                         scale=scale)
        expected = local if local is not None else E
        hidden = self.hidden_input(k)
        diag = diagnose(k, U, expected, self.get, self.net, dtype=self.dtype, hidden=hidden,
                        support=lambda imp: self.support(k, imp))
        self.eff[k] = U if U.shape == E.shape else expected
        self.root[k] = k
        if diag.code == KINK:  # a convention: downstream follows from it, nothing to fix
            return Check(k, "kink", diag.text, cmp, diag, loc, scale=scale)
        for hk, hv in diag.implies:
            self.eff[hk], self.root[hk] = hv, k
            if hk in self.checks:
                self.checks[hk].reason = (f"not in your {user.where(hk)}; its value follows "
                                          f"from the diagnosis of {k}")
                self.checks[hk].root = k
        return Check(k, "fail", _value_reason(cmp, U), cmp, diag, loc, scale=scale)

    def run(self, backprop_cache: Mapping[str, Array] | None) -> list[Check]:
        reset = False
        for k in self.order:
            if not reset and split(k)[0] not in ("Z", "A"):
                reset = True
                if backprop_cache is not None:
                    self.reset_forward(backprop_cache)
            self.checks[k] = self.step(k)
        return [self.checks[k] for k in self.order]


def localize(order: list[str], *, net: Net, reference: Mapping[str, Array], user: UserValues,
             factor: float, tolerance: Tolerance, dtype: str,
             backprop_cache: Mapping[str, Array] | None = None) -> list[Check]:
    """One `Check` per key of ``order``.

    Args:
        order: keys in the order the code computes them (`walk_order`).
        net: shapes, activation, head, parameters and targets for the equations.
        reference: the reference's true partials and forward values by key.
        user: what the user's code produced.
        factor: dZ and dA of the user are divided by this (m for per-example values).
        tolerance: atol/rtol for pass and inherited.
        backprop_cache: the forward cache the user's backprop ran on, when it is not the
            user's own forward (which then failed): forward findings do not propagate.
    """
    return _Walk(net, reference, user, factor, tolerance, dtype, order).run(backprop_cache)


def first_divergence(checks: list[Check]) -> Check | None:
    return next((c for c in checks if c.is_finding), None)
