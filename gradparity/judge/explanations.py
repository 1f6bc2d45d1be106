"""The explanations the judge tries on a tensor outside tolerance, and the failure reasons.

* kinks: elements at (or straddling) a non-differentiable point, explained when the backend
  agrees with the reference evaluated with its own conventions at its own forward values;
* saturation: a composed head whose output rounded to 0 or 1 (`saturated_examples`), and the
  rounded-A budget of dJ/dA[L] (`output_explanation`);
* output-form rounding: derivatives taken from rounded outputs (`uses_output_form`);
* precision: a float64 tensor with float32-sized errors (`dtype_problem`,
  `precision_problem`);
* failures: nonfinite, convention (a constant factor or a transpose) or mismatch, and the
  calibrated rule's rounding (`failure_reason`).

`gradparity.judge.verdict` (end to end) and `gradparity.judge.layer_own` (each layer on the
reference's upstream values) apply them in the same order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import numpy as np

from gradparity.core import blocks as _blocks
from gradparity.core.gradients import GradientSet
from gradparity.judge.compare import TensorComparison, compare_arrays, compare_many
from gradparity.judge.policy import CalibratedRule
from gradparity.judge.tolerances import Tolerance
from gradparity.reference.activations import ACTIVATION_FUNCS
from gradparity.reference.case import Case
from gradparity.reference.heads import HEAD_FUNCS
from gradparity.reference.mlp import REFERENCE_KINKS
from gradparity.reference.oracle import OracleError, hi_lo, oracle_error


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


def compare_tensor(actual: GradientSet, expected: GradientSet, layer: int, quantity: str,
             tol: Tolerance, dtype: str) -> TensorComparison:
    a = actual.get(layer, quantity)
    e = expected.get(layer, quantity)
    if e is None:
        raise KeyError(f"reference has no {quantity}{layer}")
    if a is None:
        return compare_arrays(np.full((0,), np.nan), e, rtol=tol.rtol, atol=tol.atol,
                              dtype=dtype)
    return compare_arrays(a, e, rtol=tol.rtol, atol=tol.atol, dtype=dtype)


def compare_tensors(actual: GradientSet, expected: GradientSet,
                    order: list[tuple[int, str]], tol: Tolerance,
                    dtype: str) -> list[TensorComparison]:
    """`compare_tensor` of every (layer, quantity) in ``order``, the small tensors
    measured together (`compare_many`)."""
    pairs = []
    for layer, quantity in order:
        a, e = actual.get(layer, quantity), expected.get(layer, quantity)
        if e is None:
            raise KeyError(f"reference has no {quantity}{layer}")
        pairs.append((np.full((0,), np.nan) if a is None else a, e))
    return compare_many(pairs, rtol=tol.rtol, atol=tol.atol, dtype=dtype)


def kink_reason(spec, kinks: Mapping[str, int], conv: Mapping[str, float],
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


OUTPUT_FORM_TEXT = (
    "derivative taken from the rounded output, as autodiff does (s(1 - s), 1 - tanh^2): "
    "agrees with the reference evaluated that way; the reference's sech^2-style form is "
    "more accurate for large |z|")


def uses_output_form(spec) -> bool:
    return (spec.activation in ("sigmoid", "tanh", "silu", "gelu_tanh")
            or spec.head in ("sigmoid_mse", "tanh_mse") or spec.loss_form == "probs")


def explained_by(actual: GradientSet, alt: GradientSet | None, oracle: GradientSet | None,
                  layer: int, q: str, tol: Tolerance, case: Case, rule: CalibratedRule
                  ) -> bool:
    """``actual`` agrees with ``alt``: under allclose (no ``oracle`` given), or under the
    calibrated policy by being as close to the ``oracle`` as ``alt`` is (the calibrated
    rule with ``alt`` in the reference's place)."""
    if alt is None:
        return False
    if oracle is None or oracle.get(layer, q) is None:
        return compare_tensor(actual, alt, layer, q, tol, case.spec.dtype).passed
    o = oracle.get(layer, q)
    e_b = oracle_error(actual.get(layer, q), o, case.dtype)
    e_a = oracle_error(alt.get(layer, q), o, case.dtype)
    return rule.passes(e_b.norm_eps, e_a.norm_eps) and rule.passes(e_b.worst_eps,
                                                                    e_a.worst_eps)


#: The reference's median element error (in eps of float64) stays far below this; a
#: float64 tensor computed in float32 has median relative errors near float32's eps
#: (~1e8 float64 eps). The largest float64 normwise error on the default suite is 482.
PRECISION_LOSS_EPS = 2.0**20


def _median_rel_eps(x: np.ndarray | None, o: np.ndarray, eps: float) -> float:
    if x is None or np.shape(x) != np.shape(o):
        return 0.0
    # in float64: the oracle as hi + lo (exact for long double's 64 bits), so x - o is
    # (x - hi) - lo, exact or rounded once: a relative error of the relative error of
    # about float64's eps, where this median is compared with thresholds 2**10 apart
    hi, lo = hi_lo(np.asarray(o))
    keep = np.abs(hi) > np.finfo(np.float64).tiny
    if not keep.any():
        return 0.0
    with np.errstate(invalid="ignore", over="ignore"):
        d = np.asarray(x, dtype=np.float64)[keep] - hi[keep]
        if lo is not None:
            d -= lo[keep]
        rel = np.abs(d) / np.abs(hi[keep])
    return float(np.median(rel) / eps)


def _median_rel_outside(x: np.ndarray | None, o: np.ndarray, low: float, high: float
                        ) -> bool:
    """True when the median relative error of ``x`` against ``o`` (as `_median_rel_eps`
    takes it, times eps) is surely outside ``[low, high]``: more than half of the elements
    are below ``low / 2``, or above ``high * 2`` (the factor 2 covers any rounding of the
    exact median's test). Counts, in place of a sort, block by block
    (`gradparity.core.blocks`): the count below stops as soon as it is more than half of
    all the elements (the usual answer, about half a pass), the count above runs only
    when the count below did not answer."""
    if x is None or np.shape(x) != np.shape(o):
        return True  # _median_rel_eps is 0 then: below any positive band
    hi, lo = hi_lo(np.asarray(o))
    hi = hi.reshape(-1)
    lo = None if lo is None else lo.reshape(-1)
    xf = np.asarray(x).reshape(-1)
    tiny = np.finfo(np.float64).tiny
    size = hi.size
    kept = below = 0
    with np.errstate(invalid="ignore", over="ignore"):
        for part in _blocks.blocks(size):
            # |d| < (low / 2) |hi| among the kept elements (|hi| > tiny); the products
            # round, which the factor 2 of margin absorbs
            d, abs_hi, keep = _rel_parts(xf[part], hi[part], None if lo is None
                                         else lo[part], tiny)
            kept += int(np.count_nonzero(keep))
            below += int(np.count_nonzero((d < (0.5 * low) * abs_hi) & keep))
            if below >= size // 2 + 1:  # more than half of all: of the kept ones too
                return True
        if kept == 0 or below >= kept // 2 + 1:
            return True
        above = 0
        for part in _blocks.blocks(size):
            d, abs_hi, keep = _rel_parts(xf[part], hi[part], None if lo is None
                                         else lo[part], tiny)
            above += int(np.count_nonzero((d > (2.0 * high) * abs_hi) & keep))
    return above >= kept // 2 + 1


def _rel_parts(x: np.ndarray, hi: np.ndarray, lo: np.ndarray | None, tiny: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(|x - hi - lo|, |hi|, |hi| > tiny)`` of one block, in float64."""
    d = np.asarray(x, dtype=np.float64) - hi
    if lo is not None:
        d -= lo
    np.abs(d, out=d)
    abs_hi = np.abs(hi)
    return d, abs_hi, abs_hi > tiny


def dtype_problem(actual: GradientSet, layer: int, q: str, case: Case) -> str:
    a = actual.get(layer, q)
    if a is not None and np.asarray(a).dtype != case.dtype:
        return (f"returned {np.asarray(a).dtype} for a {case.spec.dtype} case: computed or "
                "stored in another precision")
    return ""


def precision_problem(actual: GradientSet, reference: GradientSet,
                       other_forms: Callable[[], list[GradientSet]],
                       oracle: GradientSet | None, layer: int, q: str, case: Case) -> str:
    """Why a tensor that passed cannot have been computed in float64, or ``""``: for
    float64 cases, a median element error within a factor 64 of float32's eps while the
    reference's (in either derivative form) is tiny. atol/rtol cannot see this: float32
    rounding is within their 1e-7. The median ignores isolated kink elements; the band
    ignores O(1) differences (a derivative rounded to 0 at saturation)."""
    a = actual.get(layer, q)
    o = None if oracle is None else oracle.get(layer, q)
    if o is None or case.spec.dtype != "float64":
        return ""
    eps = float(np.finfo(np.float64).eps)
    eps32 = float(np.finfo(np.float32).eps)
    if _median_rel_outside(a, o, eps32 / 64, eps32 * 64):
        return ""  # the usual answer, without the median's sort
    got = _median_rel_eps(a, o, eps)
    if not eps32 / 64 <= got * eps <= eps32 * 64:  # not float32-like (a kink's O(1) isn't)
        return ""
    # explained when any legitimate way of computing it is as far from the oracle
    ref = max(_median_rel_eps(r.get(layer, q), o, eps) for r in [reference, *other_forms()])
    if ref < PRECISION_LOSS_EPS / 1024:
        return (f"typical element {got:.3g} eps (float64) from the {oracle_label(case)} "
                f"oracle where the reference's is {ref:.3g}: values at float32 precision, "
                "as if computed in float32 and cast up")
    return ""


def oracle_label(case: Case) -> str:
    from gradparity.reference.oracle import oracle_name

    return oracle_name(case.dtype)


def oracle_errors(actual: GradientSet, reference: GradientSet, oracle: GradientSet | None,
                   layer: int, q: str, case: Case) -> tuple[OracleError, OracleError] | None:
    if oracle is None:
        return None
    o = oracle.get(layer, q)
    r = reference.get(layer, q)
    if o is None or r is None:
        return None
    return (oracle_error(actual.get(layer, q), o, case.dtype),
            oracle_error(r, o, case.dtype))


#: Constant factors a backend may differ by, with what usually causes them.
def _known_factors(m: int, n_out: int) -> list[tuple[float, str]]:
    return [
        (float(m), "m: per-example values (the 1/m average left out)"),
        (1.0 / m, "1/m: averaged once too often"),
        (2.0, "2: MSE without the 1/2"),
        (0.5, "1/2"),
        (-1.0, "-1: sign flip"),
        (2.0 / n_out, "2/n_out: a mean over m*n_out without the 1/2 (torch MSELoss(mean))"),
        (1.0 / n_out, "1/n_out: a mean over outputs as well as examples"),
        (float(n_out), "n_out"),
    ]


def failure_reason(actual: GradientSet, reference: GradientSet, layer: int, q: str,
                   c: TensorComparison, tol: Tolerance, case: Case,
                   errs: tuple[OracleError, OracleError] | None, calibrated: bool | None,
                   rule: CalibratedRule) -> tuple[str, str]:
    """(reason_code, reason) of a failing, unexplained tensor: ``rounding`` when one of the
    two rules accepts it, else nonfinite / convention / mismatch."""
    code, reason = _classify_failure(actual, reference, layer, q, c, tol, case)
    if code == "nonfinite":  # never "rounding": an infinite error has no budget
        return code, reason
    if c.passed and errs is not None:  # failed the calibrated rule only
        e_b, e_r = errs
        return "rounding", (
            f"within atol/rtol, but less accurate than the reference: error vs the "
            f"{oracle_label(case)} oracle {e_b.norm_eps:.3g} eps normwise, "
            f"{e_b.worst_eps:.3g} worst, exceeds {rule.describe()} (reference: "
            f"{e_r.norm_eps:.3g}, {e_r.worst_eps:.3g})")
    if code == "mismatch" and calibrated and errs is not None:
        e_b, e_r = errs
        return "rounding", (
            f"{reason}; but its error vs the {oracle_label(case)} oracle "
            f"({e_b.norm_eps:.3g} eps normwise, {e_b.worst_eps:.3g} worst) is within "
            f"{rule.describe()} (reference: {e_r.norm_eps:.3g}, {e_r.worst_eps:.3g}): "
            "rounding, which --policy calibrated accepts")
    return code, reason


def _classify_failure(actual: GradientSet, reference: GradientSet, layer: int, q: str,
                      c: TensorComparison, tol: Tolerance, case: Case) -> tuple[str, str]:
    """(reason_code, reason) of a failing tensor: nonfinite, convention or mismatch."""
    base = c.shape_error or (
        f"{c.n_mismatch}/{c.n_elements} elements outside atol={c.atol:g}, rtol={c.rtol:g}")
    a, e = actual.get(layer, q), reference.get(layer, q)
    if a is None or e is None or c.passed:
        return "mismatch", base
    a64, e64 = np.asarray(a, dtype=np.float64), np.asarray(e, dtype=np.float64)
    if a64.shape == e64.shape:
        text = _nonfinite_text(a64, e64)
        if text:
            return "nonfinite", f"{text}; {base}"
    if a64.ndim == 2 and a64.shape == e64.T.shape and a64.shape != e64.shape and (
            compare_arrays(a64, e64.T, rtol=tol.rtol, atol=tol.atol).passed):
        return "convention", f"layout: the backend's {q}{layer} is the reference's transpose"
    if a64.shape == e64.shape and a64.size:
        ee = float(np.vdot(e64, e64))
        if ee > 0 and np.isfinite(ee):
            k = float(np.vdot(a64, e64)) / ee
            for factor, why in _known_factors(case.m, case.spec.sizes[-1]):
                if abs(factor - 1.0) > 1e-9 and abs(k - factor) <= 1e-3 * abs(factor) and (
                        compare_arrays(
                        a64, factor * e64, rtol=tol.rtol, atol=tol.atol).passed):
                    return "convention", f"scale: backend = reference x {why}"
    return "mismatch", base


def _nonfinite_text(a: np.ndarray, e: np.ndarray) -> str:
    """Where ``a`` and ``e`` disagree about being finite (or hold different non-finite
    values: NaN against inf, +inf against -inf), counted both ways; ``""`` if nowhere."""
    fa, fe = np.isfinite(a), np.isfinite(e)
    parts = []
    n = int((~fa & fe).sum())
    if n:
        parts.append(f"{n} non-finite values where the reference is finite")
    n = int((fa & ~fe).sum())
    if n:
        parts.append(f"{n} finite values where the reference is NaN or inf")
    with np.errstate(invalid="ignore"):
        n = int((~fa & ~fe & ~((a == e) | (np.isnan(a) & np.isnan(e)))).sum())
    if n:
        parts.append(f"{n} non-finite values unlike the reference's")
    return ", ".join(parts)


def agrees_where_untainted(actual: GradientSet, alt: GradientSet, layer: int, q: str,
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


def output_explanation(case: Case, reference: GradientSet, c: TensorComparison,
                        layer: int, q: str, sat: np.ndarray) -> str:
    """``saturation``/``rounding`` when every mismatch of dA[L] or dZ[L] sits in a
    saturated example or, for dA[L], within the rounded-A budget; else ``""``."""
    spec = case.spec
    mask = c.mismatch_mask
    if (layer != spec.depth or q not in ("dA", "dZ") or c.shape_error or mask is None
            or mask.ndim != 2 or c.diff is None or not mask.any()):
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


def budget_text(case: Case, reference: GradientSet, c: TensorComparison, layer: int) -> str:
    cond = _budget(case, reference, c, layer)
    eps_ = float(np.finfo(case.dtype).eps)
    worst = float(np.max(np.where(c.mismatch_mask, cond, 0.0))) if cond is not None else 0.0
    return (f"dA{layer} evaluated from rounded Z{layer}, A{layer}: relative error budget "
            f"up to {2 * eps_ * worst:.2g}; all {c.n_mismatch} mismatches within it")
