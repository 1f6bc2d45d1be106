"""Judge one backend's `GradientSet` against the reference: per-tensor rows with a status.

Statuses:
* ``pass``: within tolerance of the reference.
* ``kink``: outside tolerance of the reference, but within tolerance of the reference
  re-run with the backend's own derivative at the non-differentiable points (measured from
  the framework, e.g. leaky_relu'(0) = 1 in JAX vs 0.01 here). A convention difference,
  reported with the conventions named, not a bug.
* ``saturation``: a composed (``probs``) head whose output rounded to exactly 0 or 1; the
  mismatches sit in those examples, and everything upstream follows from the backend's own
  output gradient (checked by re-running reference backprop from the backend's dZ[L]).
* ``rounding``: dJ/dA[L] of a composed head (e.g. (A - Y) / (A (1 - A)) for BCE), which a
  framework evaluates from its own rounded Z[L] and A[L]; its relative error can reach
  eps / min(A, 1 - A) plus eps |Z| (see ``dA_condition`` in the heads), and every
  mismatch is within that budget (on top of atol/rtol), element by element.
* ``fail``: a real disagreement. ``error`` and ``skipped`` rows come from the runner.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

from gradparity.case import Case
from gradparity.compare import TensorComparison, compare_arrays
from gradparity.gradients import GradientSet, backprop_order
from gradparity.reference.activations import ACTIVATION_FUNCS
from gradparity.reference.heads import HEAD_FUNCS, SATURATION_P
from gradparity.reference.mlp import REFERENCE_KINKS, reference_gradients
from gradparity.tolerances import Tolerance

STATUSES: tuple[str, ...] = (
    "pass", "rounding", "kink", "saturation", "fail", "error", "skipped",
)
#: Statuses that make a run fail (exit code 1).
FAILING: frozenset[str] = frozenset({"fail", "error"})
#: Differences with a named, non-bug cause.
EXPLAINED: frozenset[str] = frozenset({"kink", "saturation", "rounding"})


@dataclass(frozen=True)
class TensorVerdict:
    """One (layer, quantity) of one backend: the metrics, a status and its reason."""

    layer: int
    quantity: str
    comparison: TensorComparison
    status: str
    reason: str = ""
    against: str = "reference"

    @property
    def key(self) -> str:
        return "loss" if self.quantity == "loss" else f"{self.quantity}{self.layer}"


def _near_kink(ref: np.ndarray, got: np.ndarray | None, at: np.ndarray) -> np.ndarray:
    """Elements exactly at the kink (0) in either backend, or on different sides of it."""
    mask = at.copy()
    if got is not None and got.shape == ref.shape:
        mask |= (got == 0) | (np.sign(got) != np.sign(ref))
    return mask


def kink_counts(case: Case, reference: GradientSet,
                actual: GradientSet | None = None) -> dict[str, int]:
    """Elements at (or, between two backends, straddling) a kink: ``{"Z1": n, ...,
    "residual": n}``, non-zero entries only."""
    spec = case.spec
    out: dict[str, int] = {}
    act = ACTIVATION_FUNCS[spec.activation]
    got = actual.forward if actual is not None else {}
    if act.kinks:
        for layer in range(1, spec.depth):
            z = reference.forward[f"Z{layer}"]
            n = int(_near_kink(z, got.get(f"Z{layer}"), act.at_kink(z)).sum())
            if n:
                out[f"Z{layer}"] = n
    head = HEAD_FUNCS[spec.head]
    if head.has_kink:
        L = spec.depth
        r = reference.forward[f"A{L}"] - case.Y
        a_got = got.get(f"A{L}")
        r_got = None if a_got is None or a_got.shape != r.shape else a_got - case.Y
        n = int(_near_kink(r, r_got, r == 0).sum())
        if n:
            out["residual"] = n
    return out


def saturated_examples(case: Case, reference: GradientSet) -> np.ndarray:
    """Boolean ``(m,)``: examples whose composed-head output is saturated."""
    spec = case.spec
    if spec.loss_form != "probs":
        return np.zeros(spec.batch, dtype=bool)
    a = reference.forward[f"A{spec.depth}"]
    return HEAD_FUNCS[spec.head].saturated(a, case.Y).any(axis=0)


def _compare(actual: GradientSet, expected: GradientSet, layer: int, quantity: str,
             tol: Tolerance, dtype: str) -> TensorComparison:
    a = actual.get(layer, quantity)
    e = expected.get(layer, quantity)
    if e is None:
        raise KeyError(f"reference has no {quantity}{layer}")
    if a is None:
        return compare_arrays(np.full((0,), np.nan), e, rtol=tol.rtol, atol=tol.atol,
                              dtype=dtype)
    return compare_arrays(a, e, rtol=tol.rtol, atol=tol.atol, dtype=dtype)


def _kink_reason(spec, kinks: Mapping[str, int], conv: Mapping[str, float],
                 backend: str) -> str:
    keys = ([spec.activation] if any(k.startswith("Z") for k in kinks) else []) + (
        [spec.head] if "residual" in kinks else [])
    differing = [
        f"{'|r|' if k == spec.head else k}'(0): reference {REFERENCE_KINKS[k]:g}, "
        f"{backend} {conv[k]:g}"
        for k in keys if k in conv and conv[k] != REFERENCE_KINKS[k]
    ]
    where = ", ".join(f"{k}: {n}" for k, n in kinks.items())
    lead = "; ".join(differing) if differing else (
        "same convention; rounding puts elements on different sides of the kink")
    return f"{lead} (elements at the kink: {where})"


def judge(
    case: Case,
    actual: GradientSet,
    reference: GradientSet,
    *,
    tolerance: Tolerance,
    kink_conventions: Mapping[str, float] | None = None,
) -> list[TensorVerdict]:
    """Rows for every (layer, quantity) in backprop order, with statuses and reasons."""
    spec = case.spec
    order = backprop_order(spec.depth, with_output_dA=spec.loss_form == "probs")
    base = [_compare(actual, reference, layer, q, tolerance, spec.dtype) for layer, q in order]
    if all(c.passed for c in base):
        return [TensorVerdict(layer, q, c, "pass")
                for (layer, q), c in zip(order, base, strict=True)]

    conv = dict(kink_conventions or {})
    forward_ok = all(c.passed for (_, q), c in zip(order, base, strict=True) if q in ("Z", "A"))
    backend_forward = actual.forward if forward_ok else None

    kinks = kink_counts(case, reference, actual) if forward_ok else {}
    kink_ref = kink_text = None
    if kinks:
        # The seed's equations at the backend's own forward values, with its kink
        # conventions: explains a different derivative choice at a kink, and elements
        # that rounding put on different sides of it.
        kink_ref = reference_gradients(case, kinks=conv, forward=backend_forward)
        kink_text = _kink_reason(spec, kinks, conv, actual.backend)

    sat = saturated_examples(case, reference)
    sat_ref = None
    dZL = actual.grads.get(f"dZ{spec.depth}")
    if sat.any() and dZL is not None and dZL.shape == reference.grads[f"dZ{spec.depth}"].shape:
        sat_ref = reference_gradients(case, kinks=conv, forward=backend_forward,
                                      dZ_output=dZL.astype(case.dtype))
    sat_text = (f"composed {spec.head} saturates: A{spec.depth} within {SATURATION_P:g} of "
                f"0 or 1 in {int(sat.sum())}/{spec.batch} examples ({spec.dtype})")

    out: list[TensorVerdict] = []
    for (layer, q), c in zip(order, base, strict=True):
        if c.passed:
            out.append(TensorVerdict(layer, q, c, "pass"))
            continue
        if kink_ref is not None and _compare(actual, kink_ref, layer, q, tolerance,
                                             spec.dtype).passed:
            out.append(TensorVerdict(layer, q, c, "kink", kink_text))
            continue
        explained = _output_explanation(case, reference, c, layer, q, sat)
        if explained:
            status = explained
            text = sat_text if status == "saturation" else _budget_text(case, reference, c,
                                                                         layer)
            out.append(TensorVerdict(layer, q, c, status, text))
            continue
        if sat_ref is not None and q not in ("Z", "A", "loss") and _agrees_where_untainted(
                actual, sat_ref, layer, q, tolerance, spec.dtype):
            out.append(TensorVerdict(layer, q, c, "saturation", sat_text))
            continue
        if sat.any() and q == "loss":
            out.append(TensorVerdict(layer, q, c, "saturation", sat_text))
            continue
        reason = c.shape_error or (
            f"{c.n_mismatch}/{c.n_elements} elements outside atol={c.atol:g}, "
            f"rtol={c.rtol:g}"
        )
        out.append(TensorVerdict(layer, q, c, "fail", reason))
    return out


def _agrees_where_untainted(actual: GradientSet, alt: GradientSet, layer: int, q: str,
                            tol: Tolerance, dtype: str) -> bool:
    """``actual`` agrees with ``alt`` wherever ``alt`` is not NaN. ``alt`` is backprop from
    the backend's own dZ[L]; its NaNs mark values that depend on a saturated example's
    non-finite output gradient, where select-style and multiply-style derivatives (jax's
    relu gives 0 for NaN * 0, NumPy gives NaN) legitimately differ."""
    a, e = actual.get(layer, q), alt.get(layer, q)
    if a is None or e is None or a.shape != e.shape:
        return False
    keep = ~np.isnan(e)
    return compare_arrays(a[keep], e[keep], rtol=tol.rtol, atol=tol.atol, dtype=dtype).passed


def _budget(case: Case, reference: GradientSet, c: TensorComparison, layer: int
            ) -> np.ndarray | None:
    """Per-element condition (units of eps) of dA[L] evaluated from rounded Z[L], A[L]."""
    spec = case.spec
    if spec.loss_form != "probs" or layer != spec.depth:
        return None
    return HEAD_FUNCS[spec.head].dA_rounding_budget(reference.forward[f"Z{layer}"],
                                                    reference.forward[f"A{layer}"])


def _output_explanation(case: Case, reference: GradientSet, c: TensorComparison,
                        layer: int, q: str, sat: np.ndarray) -> str:
    """``saturation``/``rounding`` when every mismatch of dA[L] or dZ[L] sits in a
    saturated example or, for dA[L], within the rounded-A budget; else ``""``."""
    spec = case.spec
    mask = c.mismatch_mask
    if (layer != spec.depth or q not in ("dA", "dZ") or c.shape_error or mask is None
            or mask.ndim != 2 or c.diff is None):
        return ""
    unexplained = mask & ~sat[None, :]
    cond = _budget(case, reference, c, layer) if q == "dA" else None
    if cond is not None:
        e = np.abs(reference.grads[f"dA{layer}"].astype(np.float64))
        eps_ = float(np.finfo(case.dtype).eps)
        with np.errstate(invalid="ignore"):
            allowed = c.atol + (c.rtol + 2.0 * eps_ * cond) * e
            unexplained &= ~(np.isfinite(cond) & (c.diff <= allowed))
    if unexplained.any():
        return ""
    return "saturation" if (mask & sat[None, :]).any() else "rounding"


def _budget_text(case: Case, reference: GradientSet, c: TensorComparison, layer: int) -> str:
    cond = _budget(case, reference, c, layer)
    eps_ = float(np.finfo(case.dtype).eps)
    worst = float(np.max(np.where(c.mismatch_mask, cond, 0.0))) if cond is not None else 0.0
    return (f"dA{layer} evaluated from rounded Z{layer}, A{layer}: relative error budget "
            f"up to {2 * eps_ * worst:.2g}; all {c.n_mismatch} mismatches within it")
