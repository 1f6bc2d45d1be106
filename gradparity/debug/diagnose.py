"""Why is a tensor wrong? Test known mistakes against the user's value; report the one that fits.

Each candidate is the expected tensor (the seed's equation for that quantity, evaluated on
the values the user's code had at that point) with one known mistake applied:

* a constant factor: m (the 1/m average missing), 1/m (applied twice), 2, 1/2, -1 (sign
  flip), and their products with a sign or with m;
* a layout mistake: the transpose; for db a sum over the wrong axis, a lost
  ``keepdims=True``, a sum over every element, or no sum at all;
* an off-by-one layer index: a neighbouring layer's A, Z, W, dZ, dA or of the quantity
  itself; Z where A belongs;
* an activation-derivative mistake (dZ): g'(A) instead of g'(Z), g' at another layer's Z,
  the derivative of another activation, g(Z) instead of g'(Z), the factor missing, or the
  output-based formula (sigmoid' = A (1 - A), tanh' = 1 - A^2) evaluated with Z; at the
  output: the output activation's derivative missing (sigmoid + MSE) or multiplied in a
  second time (sigmoid + cross-entropy, where A - Y already includes it);
* in the forward pass: the bias missing, another activation, no activation;
* at an exact kink (Z = 0 for relu, leaky_relu): another value of g'(0) than the
  reference's. That is a convention (``kink_convention``), reported as status ``kink``.

Layout and index mistakes are also tried combined with each constant factor. A candidate
fits when it equals the user's tensor element by element to a tolerance far tighter than
the differences between candidates (`DIAGNOSIS_TOLERANCE`). When nothing fits, a constant
factor fitted by least squares is reported if it explains the tensor; otherwise the
diagnosis is ``unknown``, with what is known (how many elements differ, the cosine).

When the quantity an error sits in is not in the user's ``grads`` (e.g. dZ[l] is not
stored, only dW[l] and db[l]), the candidates for that hidden quantity are pushed through
the equation of the reported one; the fitting candidate then also predicts the hidden
value (`Diagnosis.implies`), so that the other quantities made from it are recognised as
inherited.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

import numpy as np

from gradparity.core.spec import HEADS, LEAKY_SLOPE
from gradparity.debug.equations import Getter, Net, evaluate
from gradparity.debug.quantities import key, split
from gradparity.reference.activations import ACTIVATION_FUNCS
from gradparity.reference.heads import HEAD_FUNCS, softmax

Array = np.ndarray

#: (rtol, atol relative to the tensor's largest element) for "this candidate fits".
DIAGNOSIS_TOLERANCE: dict[str, tuple[float, float]] = {
    "float64": (1e-6, 1e-9),
    "float32": (1e-3, 1e-5),
}

#: The code of a difference at a non-differentiable point: a convention, not a finding.
KINK = "kink_convention"

#: Diagnosis codes (a ``+`` joins a layout or index mistake with a constant factor).
CODES: dict[str, str] = {
    KINK: "another derivative at a kink (relu'(0) = 1): a convention, not a bug",
    "missing_1_over_m": "m times the true value: the 1/m average is missing",
    "extra_1_over_m": "1/m of the true value: the 1/m average is applied twice",
    "missing_1_over_m_twice": "m^2 times the true value",
    "extra_1_over_m_twice": "1/m^2 of the true value",
    "factor_2": "twice the true value",
    "factor_half": "half the true value",
    "sign_flip": "the sign is flipped",
    "transpose": "the transpose",
    "missing_transpose": "a matrix product without the transpose of one operand",
    "lost_keepdims": "a sum without keepdims=True",
    "wrong_axis_sum": "a sum over the wrong axis",
    "sum_all": "a sum over every element",
    "no_sum": "the sum over examples is missing",
    "off_by_one": "a neighbouring layer's value (off-by-one layer index)",
    "z_for_a": "Z (pre-activation) where A belongs",
    "derivative_at_A": "the activation derivative taken at A instead of Z",
    "derivative_wrong_layer": "the activation derivative taken at another layer's Z",
    "wrong_activation_derivative": "the derivative of another activation",
    "activation_not_derivative": "the activation g(Z) where g'(Z) belongs",
    "missing_derivative": "the activation derivative factor is missing",
    "a_form_at_z": "an output-based derivative formula evaluated with Z",
    "other_a_form": "another activation's output-based derivative formula on this "
    "activation's output",
    "output_derivative_at_hidden": "the output layer's derivative applied at a hidden layer",
    "hidden_derivative_at_output": "the hidden layers' derivative applied at the output layer",
    "output_derivative_missing": "the output activation's derivative is missing",
    "output_derivative_extra": "the output activation's derivative is applied twice",
    "wrong_loss_derivative": "the derivative of another loss",
    "missing_bias": "the bias is missing",
    "wrong_activation": "another activation",
    "activation_missing": "no activation",
    "integer_dtype": "an integer array: the values were cast to integers (truncated)",
    "low_precision": "a lower-precision float array than the session's dtype",
    "scaled": "a constant multiple with no known cause",
    "unknown": "no known cause fits",
}


@dataclass(frozen=True)
class Diagnosis:
    """The explanation that fits a wrong tensor.

    Attributes:
        code: a key of `CODES` (``+`` joins two), e.g. ``"derivative_at_A"``.
        text: one sentence for the user, naming the tensors involved.
        also: other explanations that fit as well (ambiguous cases), most likely first.
        hidden: the unreported quantity the mistake sits in (e.g. ``"dZ2"``), if any.
        implies: the hidden quantity's value under this explanation.
    """

    code: str
    text: str
    also: tuple[str, ...] = ()
    hidden: str | None = None
    implies: tuple[tuple[str, Array], ...] = field(default=(), repr=False, compare=False)

    @property
    def known(self) -> bool:
        """True when a named cause fits (not ``unknown`` or a bare ``scaled``)."""
        return self.code not in ("unknown", "scaled")


@dataclass(frozen=True)
class _Candidate:
    code: str
    text: str
    value: Array | None
    implies: tuple[tuple[str, Array], ...] = ()
    hidden: str | None = None


# -- constant factors ------------------------------------------------------------------------
def _scales(m: int) -> list[tuple[float, str, str, str]]:
    """(factor, code, sentence, short phrase), one entry per distinct factor != 1."""
    raw = [
        (float(m), "missing_1_over_m",
         f"m = {m} times the true value: the 1/m average is missing",
         "m times as large (the 1/m is missing)"),
        (1.0 / m, "extra_1_over_m",
         f"1/m = 1/{m} of the true value: the 1/m average is applied twice",
         "1/m as large (the 1/m is applied twice)"),
        (2.0, "factor_2",
         "twice the true value: a stray factor 2 (e.g. the squared error's derivative "
         "without its 1/2)", "twice as large"),
        (0.5, "factor_half", "half the true value: a stray factor 1/2", "half as large"),
        (-1.0, "sign_flip", "the negative of the true value: the sign is flipped (e.g. Y - A "
         "where A - Y belongs)",
         "with the sign flipped"),
        (-float(m), "sign_flip+missing_1_over_m",
         f"-m = -{m} times the true value: the sign is flipped and the 1/m is missing",
         "with the sign flipped and m times as large"),
        (-1.0 / m, "sign_flip+extra_1_over_m",
         "-1/m of the true value: the sign is flipped and the 1/m is applied twice",
         "with the sign flipped and 1/m as large"),
        (float(m * m), "missing_1_over_m_twice",
         f"m^2 = {m * m} times the true value: the 1/m is missing twice",
         "m^2 times as large"),
        (1.0 / (m * m), "extra_1_over_m_twice",
         "1/m^2 of the true value: the 1/m is applied three times",
         "1/m^2 as large"),
    ]
    out: dict[float, tuple[float, str, str, str]] = {}
    for k, code, text, short in raw:
        if k == 1.0:
            continue
        if k in out:  # m = 2: "m times" and "twice" are the same factor
            k0, c0, t0, s0 = out[k]
            out[k] = (k0, c0, f"{t0} (or: {text})", s0)
            continue
        out[k] = (k, code, text, short)
    return list(out.values())


# -- fitting ---------------------------------------------------------------------------------
def fits(actual: Array, candidate: Array | None, dtype: str) -> bool:
    """``candidate`` equals ``actual`` element by element (same shape; NaN where NaN)."""
    if candidate is None:
        return False
    c = np.asarray(candidate)
    if c.shape != actual.shape or c.dtype.kind not in "fiub":
        return False
    a64 = actual.astype(np.float64)
    c64 = c.astype(np.float64)
    fin_a, fin_c = np.isfinite(a64), np.isfinite(c64)
    if not np.array_equal(fin_a, fin_c):
        return False
    if not np.array_equal(a64[~fin_a], c64[~fin_c], equal_nan=True):
        return False
    if not fin_a.any():
        return True
    a, cc = a64[fin_a], c64[fin_c]
    scale = max(float(np.max(np.abs(a))), float(np.max(np.abs(cc))))
    if scale == 0.0:
        return True
    rtol, atol_rel = DIAGNOSIS_TOLERANCE.get(dtype, DIAGNOSIS_TOLERANCE["float32"])
    return bool(np.all(np.abs(a - cc) <= rtol * np.abs(cc) + atol_rel * scale))


def _safe(fn: Callable[[], Array]) -> Array | None:
    try:
        with np.errstate(all="ignore"):
            v = fn()
    except (TypeError, ValueError, AttributeError, KeyError, IndexError):
        return None
    return None if v is None else np.asarray(v)


# -- candidates per quantity ----------------------------------------------------------------
def _valid(layer: int, net: Net, *, lo: int = 0) -> bool:
    return lo <= layer <= net.depth


def _structural(k: str, get: Getter, net: Net, expected: Array) -> Iterator[_Candidate]:
    """Layout, index and derivative mistakes for quantity ``k`` (no constant factors)."""
    q, l_ = split(k)
    L, g = net.depth, net.activation

    if expected.ndim == 2 and q != "db":
        hint = (f"np.dot(A{l_ - 1}, dZ{l_}.T) where np.dot(dZ{l_}, A{l_ - 1}.T) belongs"
                if q == "dW" else "rows and columns swapped")
        yield _Candidate("transpose", f"the transpose of {k}: {hint}", expected.T)

    if q == "dW":
        dZ = get(key("dZ", l_))
        for j in (l_, l_ - 2):
            if _valid(j, net):
                yield _Candidate("off_by_one",
                                 f"uses A{j} where A{l_ - 1} belongs (off-by-one layer index): "
                                 f"np.dot(dZ{l_}, A{j}.T)",
                                 _safe(lambda j=j: dZ @ get(key("A", j)).T))
        if l_ > 1:
            yield _Candidate("z_for_a", f"uses Z{l_ - 1} (before the activation) where "
                             f"A{l_ - 1} belongs: np.dot(dZ{l_}, Z{l_ - 1}.T)",
                             _safe(lambda: dZ @ get(key("Z", l_ - 1)).T))
        if l_ < L:
            yield _Candidate("off_by_one", f"uses dZ{l_ + 1} where dZ{l_} belongs (off-by-one "
                             f"layer index): np.dot(dZ{l_ + 1}, A{l_ - 1}.T)",
                             _safe(lambda: get(key("dZ", l_ + 1)) @ get(key("A", l_ - 1)).T))
            yield _Candidate("off_by_one", f"holds dW{l_ + 1}, the value of the layer above "
                             "(off-by-one layer index)", _safe(lambda: get(key("dW", l_ + 1))))
        yield _Candidate("missing_transpose", f"np.dot(dZ{l_}, A{l_ - 1}) without the "
                         f"transpose of A{l_ - 1}",
                         _safe(lambda: dZ @ get(key("A", l_ - 1))))

    elif q == "db":
        dZ = get(key("dZ", l_))
        n = expected.shape[0]
        yield _Candidate("lost_keepdims", f"np.sum(dZ{l_}, axis=1) without keepdims=True: "
                         f"shape ({n},) where ({n}, 1) belongs",
                         _safe(lambda: np.sum(dZ, axis=1)))
        yield _Candidate("wrong_axis_sum", "summed over axis 0 (the units) where axis=1 (the "
                         "examples) belongs", _safe(lambda: np.sum(dZ, axis=0, keepdims=True)))
        yield _Candidate("wrong_axis_sum", "summed over axis 0 (the units) where axis=1 (the "
                         "examples) belongs, and without keepdims",
                         _safe(lambda: np.sum(dZ, axis=0)))
        yield _Candidate("wrong_axis_sum", "summed over axis 0 (the units) where axis=1 (the "
                         "examples) belongs", _safe(lambda: np.sum(dZ, axis=0).reshape(-1, 1)))
        yield _Candidate("sum_all", f"summed over every element of dZ{l_} (np.sum without "
                         "axis=1): one number", _safe(lambda: np.sum(dZ)))
        yield _Candidate("no_sum", f"dZ{l_} itself: the sum over the examples (axis=1) is "
                         "missing", _safe(lambda: np.array(dZ)))
        yield _Candidate("transpose", f"a row where a column belongs: shape (1, {n}) where "
                         f"({n}, 1) belongs", expected.T)
        if l_ < L:
            yield _Candidate("off_by_one", f"uses dZ{l_ + 1} where dZ{l_} belongs (off-by-one "
                             "layer index)",
                             _safe(lambda: np.sum(get(key("dZ", l_ + 1)), axis=1,
                                                  keepdims=True)))
            yield _Candidate("off_by_one", f"holds db{l_ + 1}, the value of the layer above "
                             "(off-by-one layer index)", _safe(lambda: get(key("db", l_ + 1))))

    elif q == "dA" and l_ == L:
        Z, A = get(key("Z", L)), get(key("A", L))
        out_name, mine = HEADS[net.head].output, HEADS[net.head].loss
        names = {"bce": "the cross-entropy's", "mse": "the squared error's",
                 "ce": "the cross-entropy's", "l1": "the L1 loss's", "huber": "the Huber loss's"}
        for other in HEADS.values():
            if other.output != out_name or other.loss == mine or other.name not in HEAD_FUNCS:
                continue
            yield _Candidate("wrong_loss_derivative", f"{names.get(other.loss, other.loss)} "
                             f"derivative where {names.get(mine, mine)} belongs: your backprop "
                             "differentiates another loss than your cost computes",
                             _safe(lambda other=other: HEAD_FUNCS[other.name].dA(
                                 Z, A, net.Y, net.m)))
    elif q == "dA" and l_ < L:
        layer = l_ + 1  # dA[l-1] = W[l]^T dZ[l]
        dZ = get(key("dZ", layer))
        for j in (layer - 1, layer + 1):
            if 1 <= j <= L:
                yield _Candidate("off_by_one", f"uses W{j} where W{layer} belongs (off-by-one "
                                 f"layer index): np.dot(W{j}.T, dZ{layer})",
                                 _safe(lambda j=j: net.parameters[key("W", j)].T @ dZ))
        if layer < L:
            yield _Candidate("off_by_one", f"uses dZ{layer + 1} where dZ{layer} belongs "
                             f"(off-by-one layer index): np.dot(W{layer}.T, dZ{layer + 1})",
                             _safe(lambda: net.parameters[key("W", layer)].T
                                   @ get(key("dZ", layer + 1))))
        yield _Candidate("missing_transpose", f"np.dot(W{layer}, dZ{layer}) without the "
                         f"transpose of W{layer}",
                         _safe(lambda: net.parameters[key("W", layer)] @ dZ))

    elif q == "dZ" and l_ < L:
        yield from _hidden_dZ(l_, get, net, g)

    elif q == "dZ":
        yield from _output_dZ(get, net)

    elif q == "Z":
        W, b = net.parameters[key("W", l_)], net.parameters[key("b", l_)]
        A_prev = get(key("A", l_ - 1))
        yield _Candidate("missing_bias", f"np.dot(W{l_}, A{l_ - 1}) without + b{l_}",
                         _safe(lambda: W @ A_prev))
        if l_ > 1:
            yield _Candidate("z_for_a", f"uses Z{l_ - 1} where A{l_ - 1} belongs: the "
                             f"activation of layer {l_ - 1} is skipped",
                             _safe(lambda: W @ get(key("Z", l_ - 1)) + b))
        if l_ > 1:
            yield _Candidate("off_by_one", f"uses A{l_ - 2} where A{l_ - 1} belongs "
                             "(off-by-one layer index)",
                             _safe(lambda: W @ get(key("A", l_ - 2)) + b))
        for j in (l_ - 1, l_ + 1):
            if 1 <= j <= L:
                yield _Candidate("off_by_one", f"uses W{j}, b{j} where W{l_}, b{l_} belong "
                                 "(off-by-one layer index)",
                                 _safe(lambda j=j: net.parameters[key("W", j)] @ A_prev
                                       + net.parameters[key("b", j)]))

    elif q == "A":
        Z = get(key("Z", l_))
        out_name = HEADS[net.head].output
        want = out_name if l_ == L else g
        forwards = {n: a.forward for n, a in ACTIVATION_FUNCS.items()}
        forwards["softmax"] = softmax
        for name, f in forwards.items():
            if name == want or name == "identity":
                continue
            where = ("the hidden activation" if (l_ == L and name == g) else
                     "the output activation" if (l_ < L and name == out_name) else "")
            extra = f" ({where})" if where else ""
            yield _Candidate("wrong_activation", f"{name}(Z{l_}){extra} where {want}(Z{l_}) "
                             "belongs", _safe(lambda f=f: f(Z)))
        if want != "identity":
            yield _Candidate("activation_missing", f"Z{l_} itself: {want} is not applied",
                             _safe(lambda: np.array(Z)))
        for j in (l_ - 1, l_ + 1):
            if 1 <= j <= L:
                f = forwards[want]
                yield _Candidate("off_by_one", f"{want}(Z{j}) where {want}(Z{l_}) belongs "
                                 "(off-by-one layer index)",
                                 _safe(lambda j=j, f=f: f(get(key("Z", j)))))


def _hidden_dZ(layer: int, get: Getter, net: Net, g: str) -> Iterator[_Candidate]:
    L = net.depth
    act = ACTIVATION_FUNCS[g]
    dA, Z, A = get(key("dA", layer)), get(key("Z", layer)), get(key("A", layer))
    n_kink = int(act.at_kink(Z).sum()) if act.kinks and Z is not None else 0
    if n_kink:
        for alt in (1.0, 0.5, 0.0, LEAKY_SLOPE):
            if alt != act.kink_derivative:
                yield _Candidate(KINK, f"{g}'(0) = {alt:g} at the {n_kink} element(s) where "
                                 f"Z{layer} is exactly 0, where the reference takes "
                                 f"{act.kink_derivative:g}: a convention at the kink, not a bug",
                                 _safe(lambda alt=alt: dA * act.prime(Z, at_kink=alt)))
    yield _Candidate("derivative_at_A", f"{g}'(A{layer}) where {g}'(Z{layer}) belongs: the "
                     "derivative is taken at the activation's output instead of its input",
                     _safe(lambda: dA * act.prime(A)))
    for j in (layer + 1, layer - 1):
        if 1 <= j <= L:
            yield _Candidate("derivative_wrong_layer", f"{g}'(Z{j}) where {g}'(Z{layer}) "
                             f"belongs: the derivative is taken at layer {j}'s Z (off-by-one "
                             "layer index)", _safe(lambda j=j: dA * act.prime(get(key("Z", j)))))
    yield _Candidate("activation_not_derivative", f"{g}(Z{layer}) where {g}'(Z{layer}) "
                     "belongs: the activation itself instead of its derivative (deriv=True "
                     "forgotten?)", _safe(lambda: dA * act.forward(Z)))
    yield _Candidate("missing_derivative", f"dA{layer} itself: the factor {g}'(Z{layer}) is "
                     "missing", _safe(lambda: np.array(dA)))
    if g == "sigmoid":
        yield _Candidate("a_form_at_z", f"sigmoid' written as A (1 - A) but evaluated with "
                         f"Z{layer}: Z{layer} (1 - Z{layer})", _safe(lambda: dA * Z * (1 - Z)))
    if g == "tanh":
        yield _Candidate("a_form_at_z", f"tanh' written as 1 - A^2 but evaluated with "
                         f"Z{layer}: 1 - Z{layer}^2", _safe(lambda: dA * (1 - Z * Z)))
    if g == "tanh":
        yield _Candidate("other_a_form", f"A{layer} (1 - A{layer}) where 1 - A{layer}^2 "
                         f"belongs: sigmoid's derivative formula applied to tanh's output",
                         _safe(lambda: dA * A * (1 - A)))
    if g == "sigmoid":
        yield _Candidate("other_a_form", f"1 - A{layer}^2 where A{layer} (1 - A{layer}) "
                         f"belongs: tanh's derivative formula applied to sigmoid's output",
                         _safe(lambda: dA * (1 - A * A)))
    out = HEADS[net.head].output
    if out != g and net.h.output_prime is not None and L > layer:
        ZL, AL = get(key("Z", L)), get(key("A", L))
        yield _Candidate("output_derivative_at_hidden", f"{out}'(Z{L}), the output layer's "
                         f"derivative, where {g}'(Z{layer}) belongs: the output activation's "
                         f"derivative is applied at hidden layer {layer}",
                         _safe(lambda: dA * net.h.output_prime(ZL)))
        if out == "sigmoid":
            yield _Candidate("output_derivative_at_hidden", f"A{L} (1 - A{L}), the output "
                             f"layer's derivative, where {g}'(Z{layer}) belongs: the output "
                             f"activation's derivative is applied at hidden layer {layer}",
                             _safe(lambda: dA * AL * (1 - AL)))
    for name, other in ACTIVATION_FUNCS.items():
        if name != g:
            yield _Candidate("wrong_activation_derivative", f"{name}'(Z{layer}) where "
                             f"{g}'(Z{layer}) belongs: the derivative of {name}, not of {g}",
                             _safe(lambda other=other: dA * other.prime(Z)))
    if layer + 1 < L or (layer + 1 == L and net.output_dA_reported):
        yield _Candidate("off_by_one", f"uses dA{layer + 1} where dA{layer} belongs "
                         "(off-by-one layer index)",
                         _safe(lambda: get(key("dA", layer + 1)) * act.prime(Z)))


def _output_dZ(get: Getter, net: Net) -> Iterator[_Candidate]:
    L, h, Y, m = net.depth, net.h, net.Y, net.m
    Z, A = get(key("Z", L)), get(key("A", L))
    out = HEADS[net.head].output
    residual = _safe(lambda: (A - Y) / m)
    if h.canonical and h.output_prime is not None:
        yield _Candidate("output_derivative_extra", f"(A{L} - Y) * {out}'(Z{L}): with "
                         f"{net.head}, A - Y already includes {out}'s derivative; it is "
                         "multiplied in a second time",
                         _safe(lambda: residual * h.output_prime(Z)))
    if not h.canonical:
        loss = HEADS[net.head].loss
        if h.output_prime is not None:
            yield _Candidate("output_derivative_missing", f"(A{L} - Y) without the factor "
                             f"{out}'(Z{L}): dZ = A - Y holds only for the canonical pairs "
                             "(sigmoid + cross-entropy, softmax + cross-entropy, linear + MSE)",
                             residual)
            dA = _safe(lambda: h.dA(Z, A, Y, m))
            yield _Candidate("derivative_at_A", f"{out}'(A{L}) where {out}'(Z{L}) belongs: the "
                             "output derivative is taken at A instead of Z",
                             _safe(lambda: dA * h.output_prime(A)))
            if out == "sigmoid":
                yield _Candidate("a_form_at_z", f"sigmoid' written as A (1 - A) but evaluated "
                                 f"with Z{L}", _safe(lambda: dA * Z * (1 - Z)))
            if out == "tanh":
                yield _Candidate("a_form_at_z", f"tanh' written as 1 - A^2 but evaluated "
                                 f"with Z{L}", _safe(lambda: dA * (1 - Z * Z)))
        else:
            what = {"l1": "sign(A - Y)", "huber": "clip(A - Y, -1, 1)"}.get(loss, "its own")
            yield _Candidate("wrong_loss_derivative", f"(A{L} - Y), the squared error's "
                             f"derivative, where the {loss} loss's {what} belongs", residual)
    if (net.output_dA_reported or not h.canonical) and h.output_prime is not None:
        dA_out = get(key("dA", L)) if net.output_dA_reported else _safe(
            lambda: h.dA(Z, A, Y, m))
        yield _Candidate("derivative_at_A", f"{out}'(A{L}) where {out}'(Z{L}) belongs: the "
                         "output derivative is taken at A instead of Z",
                         _safe(lambda: dA_out * h.output_prime(A)))
        if out == "sigmoid":
            yield _Candidate("other_a_form", f"1 - A{L}^2 where A{L} (1 - A{L}) belongs: "
                             "tanh's derivative formula applied to sigmoid's output",
                             _safe(lambda: dA_out * (1 - A * A)))
        if out == "tanh":
            yield _Candidate("other_a_form", f"A{L} (1 - A{L}) where 1 - A{L}^2 belongs: "
                             "sigmoid's derivative formula applied to tanh's output",
                             _safe(lambda: dA_out * A * (1 - A)))
    g = net.activation
    hidden = ACTIVATION_FUNCS.get(g)
    if hidden is not None and g != out and (net.output_dA_reported or not h.canonical):
        dA_L = get(key("dA", L)) if net.output_dA_reported else _safe(lambda: h.dA(Z, A, Y, m))
        yield _Candidate("hidden_derivative_at_output", f"{g}'(Z{L}) where {out}'(Z{L}) "
                         f"belongs: the hidden layers' derivative ({g}) is applied at the "
                         "output layer", _safe(lambda: dA_L * hidden.prime(Z)))
    if net.output_dA_reported and h.output_prime is not None:
        dA_out = get(key("dA", L))
        yield _Candidate("missing_derivative", f"dA{L} itself: the factor {out}'(Z{L}) is "
                         "missing", _safe(lambda: np.array(dA_out)))
    if out != "identity":
        yield _Candidate("z_for_a", f"(Z{L} - Y) where (A{L} - Y) belongs: the output "
                         f"activation {out} is not applied", _safe(lambda: (Z - Y) / m))


def _with_scales(cands: list[_Candidate], m: int) -> Iterator[_Candidate]:
    for c in cands:
        if c.value is None:
            continue
        for k, code, _text, short in _scales(m):
            yield _Candidate(f"{c.code}+{code}", f"{c.text}; and {short}",
                             _safe(lambda c=c, k=k: k * c.value), c.implies, c.hidden)


def _direct(k: str, expected: Array, get: Getter, net: Net, dtype: str) -> tuple[list, list]:
    scale = [_Candidate(code, f"{k} is {text}", _safe(lambda f=f: f * expected))
             for f, code, text, _ in _scales(net.m)]
    # a "mistake" that gives the right value here (the transpose of a 1x1, relu'(A) for
    # relu'(Z), a neighbour layer equal to this one) cannot explain a difference
    structural = [c for c in _structural(k, get, net, expected)
                  if c.value is not None and not fits(c.value, expected, dtype)]
    return scale, structural


def _hidden_candidates(k: str, hidden: str, get: Getter, net: Net, dtype: str
                       ) -> Iterator[_Candidate]:
    """Candidates for the unreported ``hidden`` quantity, pushed through ``k``'s equation."""
    expected_hidden = evaluate(hidden, get, net)
    if expected_hidden is None:
        return
    scale, structural = _direct(hidden, expected_hidden, get, net, dtype)
    for c in [*structural, *scale, *_with_scales(structural, net.m)]:
        if c.value is None:
            continue
        v = c.value

        def through(kk: str, v=v) -> Array | None:
            return v if kk == hidden else get(kk)

        yield _Candidate(c.code, f"{c.text} (in {hidden}, which your grads does not hold)",
                         evaluate(k, through, net), ((hidden, v),), hidden)


def _unknown(k: str, actual: Array, expected: Array, dtype: str) -> Diagnosis:
    if actual.shape != expected.shape:
        return Diagnosis("unknown", f"shape {actual.shape} where {expected.shape} belongs; "
                         "no known mistake gives that shape from the expected value")
    a, e = actual.astype(np.float64), expected.astype(np.float64)
    if np.isfinite(a).all() and np.isfinite(e).all():
        ee = float(np.dot(e.ravel(), e.ravel()))
        if ee > 0:
            kk = float(np.dot(a.ravel(), e.ravel()) / ee)
            if kk != 0 and fits(actual, kk * expected, dtype):
                return Diagnosis("scaled", f"{k} is {kk:.6g} times the true value: a constant "
                                 "factor with no known cause")
    rtol, atol_rel = DIAGNOSIS_TOLERANCE.get(dtype, DIAGNOSIS_TOLERANCE["float32"])
    with np.errstate(invalid="ignore"):
        scale = float(np.nanmax(np.abs(e))) if e.size else 0.0
        bad = ~(np.abs(a - e) <= rtol * np.abs(e) + atol_rel * scale)
    n_bad, n = int(bad.sum()), int(bad.size)
    facts = []
    if not np.isfinite(a).all():
        facts.append(f"{int((~np.isfinite(a)).sum())}/{n} elements are NaN or inf")
    if 0 < n_bad <= max(1, n // 10):
        where = ", ".join(str(tuple(int(i) for i in ix)) for ix in np.argwhere(bad)[:3])
        more = ", ..." if n_bad > 3 else ""
        facts.append(f"only {n_bad}/{n} elements differ (at {where}{more}): a local slip (an "
                     "index or a mask), not a wrong formula")
    elif np.isfinite(a).all() and np.isfinite(e).all():
        na, ne = float(np.linalg.norm(a)), float(np.linalg.norm(e))
        if na > 0 and ne > 0:
            cos = float(np.dot(a.ravel(), e.ravel()) / (na * ne))
            facts.append(f"{n_bad}/{n} elements differ; cosine with the true value {cos:.3f}, "
                         f"norm ratio {na / ne:.3g}")
    text = "no known mistake fits"
    return Diagnosis("unknown", text + (": " + "; ".join(facts) if facts else ""))


def diagnose(
    k: str,
    actual: Array,
    expected: Array,
    get: Getter,
    net: Net,
    *,
    dtype: str,
    hidden: str | None = None,
    support: Callable[[tuple[tuple[str, Array], ...]], int] | None = None,
) -> Diagnosis:
    """The explanation of ``actual`` (the user's ``k``, true-partial units) that fits.

    Args:
        expected: ``k`` by the seed's equation from the user's own upstream values.
        get: the values the equations read (the user's where usable).
        hidden: the unreported quantity ``k`` is made from (e.g. ``"dZ2"`` for ``"dW2"``
            when the user's grads has no dZ2): its candidates are tried too.
        support: for a hidden candidate, how many *other* reported quantities agree with
            it (a candidate that explains more of them is preferred).
    """
    actual = np.asarray(actual)
    scale, structural = _direct(k, expected, get, net, dtype)
    ordered = [*scale, *structural, *_with_scales(structural, net.m)]
    direct = [c for c in ordered if fits(actual, c.value, dtype)]
    hidden_fit: list[_Candidate] = []
    if hidden is not None:
        hidden_fit = [c for c in _hidden_candidates(k, hidden, get, net, dtype)
                      if fits(actual, c.value, dtype)]
    chosen: _Candidate | None = None
    if hidden_fit and support is not None:
        ranked = sorted(enumerate(hidden_fit), key=lambda ic: (-support(ic[1].implies), ic[0]))
        if support(ranked[0][1].implies) > 0:
            chosen = ranked[0][1]
    matches = direct + hidden_fit
    if chosen is None and matches:
        chosen = matches[0]
    if chosen is None and actual.shape != expected.shape:
        # values too close to zero to tell apart (the softmax output's dZ summed over its
        # units): a layout mistake that gives exactly this shape, and only one, says it
        shaped = [c for c in structural if c.value is not None and c.value.shape == actual.shape
                  and c.code != "transpose"]
        codes = {c.code for c in shaped}
        if len(codes) == 1:
            c = shaped[0]
            return Diagnosis(c.code, f"{c.text} (from the shape {actual.shape}: the values are "
                             "too close to zero to tell)")
    if chosen is None:
        return _unknown(k, actual, expected, dtype)
    others: list[str] = []
    base = chosen.code.split("+")[0]
    for c in matches:
        if c is chosen or c.code.split("+")[0] == base or c.text in others:
            continue
        others.append(c.text)
    return Diagnosis(chosen.code, chosen.text, tuple(others[:2]), chosen.hidden, chosen.implies)


#: Diagnoses made from the dtype alone (not evidence for or against a convention).
DTYPE_CODES = frozenset({"integer_dtype", "low_precision"})
INTEGER_CODES = frozenset({"integer_dtype"})


def dtype_diagnosis(k: str, value: object, dtype: str) -> Diagnosis | None:
    """A diagnosis of the user's ``k`` from its dtype alone, or None: an integer (or
    boolean) array where gradients are floats, or a float narrower than the session's
    ``dtype`` (float32 values in a float64 session pass rtol=1e-7 but are not float64
    work)."""
    kind = getattr(getattr(value, "dtype", None), "kind", None)
    got = getattr(value, "dtype", None)
    if kind in ("i", "u", "b"):
        return Diagnosis("integer_dtype", f"your {k} is {got}: its values were cast to "
                         "integers (truncated toward zero), e.g. by .astype(int) or by storing "
                         f"into an integer array; keep it {dtype}")
    if kind == "f" and np.dtype(got).itemsize < np.dtype(dtype).itemsize:
        return Diagnosis("low_precision", f"your {k} is {got} in a {dtype} session: computed "
                         f"or stored in lower precision (a {got} array or .astype); its "
                         f"rounding error is that of {got}, not {dtype}")
    return None
