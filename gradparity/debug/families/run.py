"""A debug session on a learner's code of any API family (see `gradparity.debug.families`).

The steps: find the family; read the network's sizes from the code; draw a case (or take
the learner's data); run the learner's forward and cost on it to read the hidden and output
activations and the head (from the cost's value); run forward and backward again, traced,
on the final case; walk the quantities the learner returned with the session's machinery
(first divergence, inherited, diagnosis, convention); point each finding at the deepest
line that made the wrong value; and, when most quantities fail in a way no single slip
explains, say that the setup is probably wrong and which flags fix it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import replace
from typing import Any

import numpy as np

from gradparity.core.errors import UsageError
from gradparity.core.spec import HEADS, Spec
from gradparity.debug import conventions
from gradparity.debug.diagnose import fits
from gradparity.debug.equations import Net
from gradparity.debug.families import infer
from gradparity.debug.families.base import Context, Family, FamilyOutput
from gradparity.debug.families.trace import Traced
from gradparity.debug.localize import Check, UserValues, as_array, localize
from gradparity.debug.quantities import key, split, walk_order
from gradparity.debug.result import DebugResult, Problem
from gradparity.debug.user_code import Location
from gradparity.reference.activations import ACTIVATION_FUNCS
from gradparity.reference.case import Case, make_case
from gradparity.reference.mlp import input_gradient

#: Examples of the learner's data a session uses by default (--batch to change).
DATA_EXAMPLES = 256

_DERIVATIVE_CODES = ("derivative_at_A", "derivative_wrong_layer", "wrong_activation_derivative",
                     "activation_not_derivative", "a_form_at_z", "other_a_form",
                     "output_derivative_at_hidden", "hidden_derivative_at_output")


def _spec(sizes: Sequence[int], activation: str, head: str, loss_form: str | None,
          dtype: str, batch: int, seed: int, X: np.ndarray | None, Y: np.ndarray | None
          ) -> Spec:
    inputs = None if X is None else np.asarray(X, dtype=np.float64).tolist()
    targets = None if Y is None else np.asarray(Y, dtype=np.float64).tolist()
    if loss_form is not None and loss_form not in HEADS[head].forms:
        loss_form = None
    return Spec(tuple(sizes), activation=activation, head=head, loss_form=loss_form,
                dtype=dtype, batch=batch, seed=seed, inputs=inputs, targets=targets)


def _targets_for(head: str, Y: np.ndarray | None, n_out: int) -> np.ndarray | None:
    """The learner's labels in the head's target form (class indices -> one-hot)."""
    if Y is None:
        return None
    Y = np.asarray(Y, dtype=np.float64)
    if HEADS[head].targets == "onehot" and Y.shape[0] == 1 and n_out > 1:
        labels = Y[0].astype(int)
        return np.eye(n_out)[:, labels]
    return Y


def _cost_match(probe, case: Case, dtype: str):
    L = case.spec.depth
    Z, A = probe.cache.get(f"Z{L}"), probe.cache.get(f"A{L}")
    if Z is None or A is None or probe.cost is None:
        return None, None
    out = probe.output_name or infer.output_activation(Z, A, dtype)
    Y = case.Y
    return out, infer.match_cost(probe.cost, np.asarray(Z), np.asarray(A), Y, out,
                                 per_example=probe.cost_per_example)


def _infer_setup(family: Family, ctx: Context, case: Case, activation: str | None,
                 head: str | None, notes: dict[str, str]) -> tuple[str, str, float]:
    """Hidden activation, head and the learner's cost scale, read from the learner's forward
    and cost on ``case``."""
    spec, L = case.spec, case.spec.depth
    probe = family.probe(ctx, case)
    act = activation
    if act is None:
        pairs = [(probe.cache.get(f"Z{layer}"), probe.cache.get(f"A{layer}"))
                 for layer in range(1, L)]
        found = probe.hidden_name
        if found is None and pairs and all(z is not None and a is not None for z, a in pairs):
            found = infer.activation_of(pairs, spec.dtype)
        if found is not None:
            act = found
            notes["activation"] = "inferred from your forward"
        else:
            act = spec.activation
            if L > 1:
                notes["activation"] = (f"default of the family: {act} (--activation to change)"
                                       if not pairs or probe.problem else
                                       "default: your forward's A = g(Z) matches no activation"
                                       " (--activation to set it)")
    else:
        notes["activation"] = "given"
    scale = 1.0
    chosen = head
    out, match = _cost_match(probe, case, spec.dtype)
    if head is None:
        if match is not None:
            chosen = match.head
            notes["head"] = f"from your cost ({probe.cost_fn_name}: {match.text})"
        elif out is not None:
            by_out = {"sigmoid": "sigmoid_bce", "softmax": "softmax_ce",
                      "identity": "linear_mse", "tanh": "tanh_mse"}
            chosen = by_out[out]
            if family.default_head in HEADS and HEADS[family.default_head].output == out:
                chosen = family.default_head
            notes["head"] = "inferred from your forward" + (
                f" (your {probe.cost_fn_name} matches no known loss)"
                if probe.cost is not None else "")
        else:
            chosen = spec.head
            notes["head"] = f"default of the family: {chosen} (--head to change)"
    else:
        notes["head"] = "given"
        if match is not None and match.head != head:
            notes["head"] += f" (your {probe.cost_fn_name} computes {match.head})"
    if match is not None and match.head == chosen and match.scale != 1.0:
        scale = match.scale
        notes["cost"] = (f"your {probe.cost_fn_name} is {match.text}: {scale:g} times the "
                         "harness's J; your gradients are compared after dividing by "
                         f"{scale:g}")
    if probe.problem:
        notes.setdefault("probe", probe.problem)
    return act or spec.activation, chosen or spec.head, scale


def _rebuild(case: Case, activation: str, head: str, Y_user: np.ndarray | None,
             loss_form: str | None) -> Case:
    spec = case.spec
    if activation == spec.activation and head == spec.head:
        return case
    targets = _targets_for(head, Y_user, spec.sizes[-1])
    changes: dict[str, Any] = {"activation": activation, "head": head,
                               "loss_form": loss_form if loss_form in HEADS[head].forms
                               else None}
    if targets is not None:
        changes["targets"] = targets.tolist()
    new = make_case(spec.replace(**changes))
    return replace(new, parameters=case.parameters, X=case.X)


# -- where ---------------------------------------------------------------------------------
def _user_forms(v: np.ndarray, m: int) -> list[np.ndarray]:
    """A true-partial value as the learner may hold it: scaled by m (per example), in the
    row-major layout (transposed, or a bias row), or one example's column."""
    out = []
    for s in (1.0, float(m)):
        w = v * s
        out += [w, w.T]
        if w.ndim == 2:
            out += [w[:, :1], w[:, 0]]  # one example's column, as a column or 1-D
    return out


def _find(traces: Sequence[Traced], values: Sequence[np.ndarray], dtype: str
          ) -> Location | None:
    for t in traces:
        loc = t.find(values, lambda a, b: fits(a, b, dtype))
        if loc is not None:
            return loc
    return None


def _producer(traces: Sequence[Traced], obj: Any) -> Location | None:
    for t in traces:
        loc = t.producer(obj)
        if loc is not None:
            return loc
    return None


def _refine_where(checks: list[Check], out: FamilyOutput, raw: Mapping[str, Any],
                  case: Case, net: Net, factor: float) -> None:
    """Each finding points at the deepest line that made the wrong value."""
    m, dtype = case.m, case.spec.dtype
    user_vals: dict[str, Any] = {c.key: as_array(out.values.get(c.key)) for c in checks}
    for c in checks:  # what the diagnoses say the learner's hidden values are
        if c.diagnosis is not None:
            for hk, hv in c.diagnosis.implies:
                user_vals.setdefault(f"~{hk}", hv)
    for c in checks:
        if c.status != "fail":
            continue
        loc: Location | None = None
        d = c.diagnosis
        if d is not None and d.hidden and d.implies:
            hv = dict(d.implies).get(d.hidden)
            if hv is not None:
                loc = _find(out.traces, _user_forms(np.asarray(hv), m) + _user_forms(
                    np.asarray(hv) / m, m), dtype)
                loc = _deeper_factor(c, d.hidden, np.asarray(hv), out, case, net,
                                     user_vals, factor) or loc
        if loc is None and c.key in raw:
            loc = _producer(out.traces, raw[c.key])
        if loc is None and c.key in out.values:
            U = as_array(out.values[c.key])
            if U is not None:
                loc = _find(out.traces, [U], dtype)
        if c.quantity == "dZ" and d is not None:
            U = as_array(out.values.get(c.key))
            if U is not None:
                loc = _deeper_factor(c, c.key, U / factor, out, case, net, user_vals,
                                     factor) or loc
        if loc is not None:
            c.location = loc


def _deeper_factor(c: Check, k: str, value: np.ndarray, out: FamilyOutput, case: Case,
                   net: Net, user_vals: Mapping[str, Any], factor: float) -> Location | None:
    """For a wrong dZ = dA * g'(Z): the line that made the wrong factor (a helper's
    ``sigmoid_prime`` or ``cost_derivative``), when the learner's code made it apart."""
    d = c.diagnosis
    if d is None:
        return None
    q, layer = split(k)
    if q != "dZ":
        return None
    Z = as_array(out.values.get(key("Z", layer)))
    if Z is None:
        Z = _ref_forward(case, layer)
    if Z is None:
        return None
    code = d.code.split("+")[0]
    m = case.m
    with np.errstate(all="ignore"):
        if layer < net.depth or HEADS[net.head].output != "identity":
            gprime = (ACTIVATION_FUNCS[net.activation].prime(Z) if layer < net.depth
                      else net.h.output_prime(Z) if net.h.output_prime is not None else None)
        else:
            gprime = None
        dA = as_array(user_vals.get(key("dA", layer)))
        if dA is not None:
            dA = dA / factor
        cands: list[np.ndarray] = []
        right: np.ndarray | None = None
        if code in _DERIVATIVE_CODES:
            if dA is None and layer < net.depth:
                W = net.parameters.get(key("W", layer + 1))
                up = key("dZ", layer + 1)
                dz_up = as_array(user_vals.get(up))
                dz_up = dz_up / factor if dz_up is not None else as_array(
                    user_vals.get(f"~{up}"))
                if dz_up is None:
                    dz_up = _ref_grad(case, net, up)
                dA = (input_gradient(W, dz_up) if W is not None and dz_up is not None
                      else None)
            elif dA is None and not net.h.canonical:
                A_out = net.h.forward(Z)
                dA = net.h.dA(Z, A_out, net.Y, m)
            if dA is not None and dA.shape == value.shape:
                safe = np.where(dA != 0, dA, np.nan)
                ratio = value / safe
                if np.isfinite(ratio).sum() >= max(1, ratio.size // 2):
                    cands = [np.where(np.isfinite(ratio), ratio, 0.0)]
                    right = gprime  # the derivative factor that belongs there
        elif layer == net.depth and gprime is not None and gprime.shape == value.shape \
                and not net.h.canonical:  # dZ = dA * out'(Z): the factor dA may be apart
            cands = [value / gprime]
            ref_dz = _ref_grad(case, net, key("dZ", layer))
            right = ref_dz / gprime if ref_dz is not None else None
    if cands and right is not None and right.shape == cands[0].shape \
            and _fits_masked(cands[0], right, case.spec.dtype):
        return None  # that factor is right: the slip is where the product is made
    if not cands:
        return None
    forms: list[np.ndarray] = []
    for v in cands:
        forms += _user_forms(v, m)
    dtype = case.spec.dtype
    for t in out.traces:
        for r in t.records:
            s = r.snapshot
            if s is None or s.dtype.kind != "f":
                continue
            for f in forms:
                if s.shape == f.shape and _fits_masked(s, f, dtype):
                    return r.where
    return None


def _fits_masked(a: np.ndarray, b: np.ndarray, dtype: str) -> bool:
    mask = np.isfinite(b) & (b != 0)
    if mask.sum() < max(1, b.size // 2):
        return False
    return fits(a[mask], b[mask], dtype)


def _reference(case: Case):
    from gradparity.reference.mlp import reference_gradients

    return reference_gradients(case)


def _ref_forward(case: Case, layer: int) -> np.ndarray | None:
    return _reference(case).forward.get(key("Z", layer))


def _ref_grad(case: Case, net: Net, k: str) -> np.ndarray | None:
    return _reference(case).grads.get(k)


# -- the session ---------------------------------------------------------------------------
def _walk(case: Case, out: FamilyOutput, tol, order: list[str]) -> tuple[Any, list[Check]]:
    from gradparity.debug.session import _reference_values

    L = case.spec.depth
    _, reference = _reference_values(case)
    user = UserValues(values=out.values, locations=out.locations, errors=out.errors,
                      not_computed=out.not_computed, required=frozenset(out.required))
    net = Net(L, case.spec.activation, case.spec.head, case.Y, case.parameters,
              output_dA_reported=f"dA{L}" in out.values)

    def walk(factor: float) -> list[Check]:
        return localize(order, net=net, reference=reference, user=user, factor=factor,
                        tolerance=tol, dtype=case.spec.dtype, backprop_cache=out.backprop_cache)

    reported = any(split(k)[0] in ("dZ", "dA") and as_array(v) is not None
                   for k, v in out.values.items() if k in order)
    convention, checks = conventions.detect(case.m, L, walk, reported)
    _diagnose_raised(checks, out, reference, net, case, convention.factor)
    return (convention, net), checks


def _diagnose_raised(checks: list[Check], out: FamilyOutput, reference: Mapping[str, Any],
                     net: Net, case: Case, factor: float) -> None:
    """An assert that fired on a wrong value (``assert db.shape == b.shape``): the value it
    saw is diagnosed too."""
    from gradparity.debug.diagnose import diagnose
    from gradparity.debug.quantities import PER_EXAMPLE_QUANTITIES

    for c in checks:
        v = out.raised_values.get(c.key)
        if c.status != "error" or v is None:
            continue
        E = reference.get(c.key)
        if E is None:
            continue
        U = np.asarray(v, dtype=np.float64)
        if c.quantity in PER_EXAMPLE_QUANTITIES:
            U = U / factor
        d = diagnose(c.key, U, np.asarray(E), reference.get, net, dtype=case.spec.dtype)
        if d.known:
            c.diagnosis = d


def _order(L: int, out: FamilyOutput) -> list[str]:
    return walk_order(L, forward=out.forward, output_dA=f"dA{L}" in out.values,
                      input_dA="dA0" in out.values)


def _scale_values(out: FamilyOutput, scale: float) -> None:
    if scale == 1.0:
        return
    for k, v in list(out.values.items()):
        a = as_array(v)
        if a is not None and split(k)[0] in ("dZ", "dW", "db", "dA"):
            with np.errstate(all="ignore"):
                out.values[k] = a / scale


def _dtype_problems(out: FamilyOutput, case: Case, raw: Mapping[str, Any]) -> list[Problem]:
    want = case.spec.dtype
    drift = [k for k, dt in out.dtypes.items() if dt and dt != want and dt.startswith("float")]
    if not drift:
        return []
    k = drift[0]
    loc = _producer(out.traces, raw.get(k))
    first = None
    for t in out.traces:
        for r in t.records:
            if r.snapshot is not None and r.snapshot.dtype.kind == "f" \
                    and str(r.snapshot.dtype) != want:
                first = r.where
                break
        if first is not None:
            break
    got = out.dtypes[k]
    return [Problem(f"dtype drift: your inputs and parameters are {want} but "
                    f"{', '.join(drift[:4])}{' ...' if len(drift) > 4 else ''} "
                    f"{'is' if len(drift) == 1 else 'are'} {got} (the first {got} array of "
                    "your code is made here)", first or loc)]


_GUESS_CODES = {
    "activation": ("wrong_activation_derivative", "a_form_at_z", "other_a_form",
                   "activation_not_derivative"),
    "head": ("output_derivative_missing", "output_derivative_extra", "wrong_loss_derivative",
             "hidden_derivative_at_output", "z_for_a"),
}


def _missing_layer(out: FamilyOutput, case: Case, notes: Mapping[str, str]
                   ) -> Problem | None:
    """The learner's code reads a parameter the guessed network does not have."""
    import re

    for msg, loc in out.errors.values():
        m = re.search(r"KeyError: '([Wb])(\d+)'", msg)
        if m and int(m.group(2)) > case.spec.depth and notes.get("sizes", "") != "given":
            return Problem(f"your code reads {m.group(1)}{m.group(2)}: the network has more "
                           f"layers than the {case.spec.depth} guessed "
                           f"({notes.get('sizes', '')}); give them with --sizes "
                           "N0,N1,...,NL", loc)
    return None


def _wrong_setup(checks: list[Check], notes: Mapping[str, str] | None = None) -> bool:
    """Most quantities fail with no single cause, or a guessed activation or head is what
    the findings contradict."""
    if any(c.is_finding and "NaN or inf" in c.reason for c in checks):
        return False  # a NaN is a bug of its own, whatever the setup
    for what, codes in _GUESS_CODES.items():
        if notes is not None and notes.get(what, "").startswith("default"):
            if any(c.diagnosis is not None and c.diagnosis.code.split("+")[0] in codes
                   for c in checks if c.is_finding):
                return True
    reported = [c for c in checks if c.reported and c.quantity in ("dW", "db", "dZ", "dA")]
    bad = [c for c in reported if c.is_finding]
    if len(reported) < 2 or len(bad) * 2 < len(reported):
        return False
    codes = {c.diagnosis.code for c in bad if c.diagnosis is not None}
    unknown = sum(1 for c in bad if c.diagnosis is None or not c.diagnosis.known)
    return unknown * 2 >= len(bad) or len(codes) >= 3


def debug_family(
    family: Family,
    ctx: Context,
    *,
    sizes: Sequence[int] | None = None,
    activation: str | None = None,
    head: str | None = None,
    loss_form: str | None = None,
    dtype: str | None = None,
    batch: int | None = None,
    seed: int = 0,
    X: Any = None,
    Y: Any = None,
    backends: Sequence[str] = (),
    rtol: float | None = None,
    atol: float | None = None,
    notes: dict[str, str] | None = None,
    suggest: bool = True,
) -> DebugResult:
    """Run a debug session on the learner's code of ``family`` (see the module doc).

    ``X`` and ``Y`` are the learner's data in the reference layout (``(n0, m)``; ``Y``
    ``(nL, m)`` or class indices ``(1, m)``); their dtype is the case's unless ``dtype``.
    """
    from gradparity.core.spec import ACTIVATIONS, DTYPES
    from gradparity.debug.session import (
        _check_backends,
        _check_choice,
        _framework_runs,
        _reference_values,
        _tolerance,
    )

    notes = dict(notes or {})
    _check_choice("activation", activation, ACTIVATIONS)
    _check_choice("head", head, tuple(HEADS))
    Xa = None if X is None else np.asarray(X)
    Ya = None if Y is None else np.asarray(Y)
    if Xa is not None and Ya is not None:
        n = Xa.shape[1]
        keep = min(n, batch if batch is not None else DATA_EXAMPLES)
        if keep < n:
            Xa, Ya = Xa[:, :keep], Ya[:, :keep]
            notes["data"] = notes.get("data", "yours") + (
                f"; the first {keep} of your {n} examples" + ("" if batch is not None
                                                             else " (--batch to change)"))
    if dtype is None:
        dtype = (str(Xa.dtype) if Xa is not None and str(Xa.dtype) in DTYPES
                 else family.dtype(ctx) or "float64")
    _check_choice("dtype", dtype, DTYPES)
    backends = _check_backends(backends)
    tol = _tolerance(dtype, rtol, atol)

    fixed = family.sizes(ctx)
    if sizes is not None:
        chosen_sizes, notes["sizes"] = tuple(sizes), "given"
        if fixed is not None and tuple(fixed[0]) != chosen_sizes:
            raise UsageError(f"sizes={','.join(map(str, sizes))}: your {fixed[1]} gives "
                             f"{','.join(map(str, fixed[0]))}")
    elif fixed is not None:
        chosen_sizes, notes["sizes"] = tuple(fixed[0]), fixed[1]
    else:
        from_file = family.file_sizes(ctx)
        found = (infer.literal_sizes(ctx.tree, family.name)
                 or (infer.SourceSizes(*from_file) if from_file else None)
                 or infer.namespace_sizes(ctx.namespace, family.name)
                 or (infer.namespace_sizes(vars(ctx.module), family.name, "file")
                     if ctx.module is not None else None))
        base = list(family.default_sizes)
        if found is not None:
            s = list(found.sizes)
            if len(s) == len(base):
                s = [v if v else b for v, b in zip(s, base, strict=True)]
            chosen_sizes, notes["sizes"] = tuple(s), found.where
        else:
            depth = family.depth(ctx)
            if depth is not None and depth != len(base) - 1:
                hidden = base[1] if len(base) > 2 else 4
                base = [base[0], *([hidden] * (depth - 1)), base[-1]]
            chosen_sizes, notes["sizes"] = tuple(base), (
                f"default of the family: {','.join(map(str, base))} (--sizes to change)"
                if depth is None else f"{depth} layers, as your code reads W1 to W{depth}; "
                f"widths default (--sizes to change)")
    if Xa is None and sizes is None and fixed is None and not getattr(family, "row_major",
                                                                        False):
        dims = infer.data_dims({**(vars(ctx.module) if ctx.module is not None else {}),
                                **ctx.namespace})
        if dims is not None and (dims[0] != chosen_sizes[0] or dims[1] != chosen_sizes[-1]) \
                and notes["sizes"].startswith(("default", "hidden width")):
            chosen_sizes = (dims[0], *chosen_sizes[1:-1], dims[1])
            notes["sizes"] += f"; n0 = {dims[0]}, nL = {dims[1]} from your X and Y"
    if Xa is not None:
        n0 = Xa.shape[0]
        if n0 != chosen_sizes[0]:
            if sizes is not None or fixed is not None:
                raise UsageError(f"data: X has {n0} features (rows) where the network takes "
                                 f"{chosen_sizes[0]}")
            chosen_sizes = (n0, *chosen_sizes[1:])
            notes["sizes"] += f"; n0 = {n0} from your data"
        if Ya is not None and sizes is None and fixed is None:
            n_out = int(Ya.max()) + 1 if (Ya.shape[0] == 1 and family.name == "cs231n") \
                else Ya.shape[0]
            if n_out != chosen_sizes[-1]:
                chosen_sizes = (*chosen_sizes[:-1], n_out)
                notes["sizes"] += f"; nL = {n_out} from your data"
    m = batch if batch is not None else (Xa.shape[1] if Xa is not None else 8)
    act0 = activation or family.default_activation
    head0 = head or family.default_head
    if HEADS[head0].min_outputs > chosen_sizes[-1]:
        head0 = "sigmoid_bce"
    case = make_case(_spec(chosen_sizes, act0, head0, loss_form, dtype, m, seed, Xa,
                           _targets_for(head0, Ya, chosen_sizes[-1])))

    act, hd, scale = _infer_setup(family, ctx, case, activation, head, notes)
    if HEADS[hd].min_outputs > chosen_sizes[-1]:
        hd = head0
    case = _rebuild(case, act, hd, Ya, loss_form)

    out = family.run(ctx, case)
    raw = {**out.values, **out.objects}
    notes.update(out.notes)
    _scale_values(out, scale)
    L = case.spec.depth
    order = _order(L, out)
    (convention, net), checks = _walk(case, out, tol, order)
    _refine_where(checks, out, raw, case, net, convention.factor)
    for c in checks:
        if c.diagnosis is not None:
            c.diagnosis = family.explain(c.diagnosis, c.key, raw.get(c.key))
        if c.status == "fail" and c.comparison is not None and c.comparison.shape_error:
            E = case.parameters.get(c.quantity[1:] + c.key[2:]) if c.quantity in (
                "dW", "db") else None
            shape = E.shape if E is not None else ()
            text = family.shape_reason(c.key, raw.get(c.key), shape)
            if text:
                c.reason = text
    ref, _ = _reference_values(case)
    frameworks = _framework_runs(case, ref, backends, tol)
    problems = list(out.problems) + _dtype_problems(out, case, raw)
    more = _missing_layer(out, case, notes)
    if more is not None:
        problems.insert(0, more)
    if suggest and _wrong_setup(checks, notes):
        read = {w: notes.get(w, "") for w in ("activation", "head")}
        fixed_act = activation or (case.spec.activation if not read["activation"].startswith(
            "default") else None)
        fixed_head = head or (case.spec.head if not read["head"].startswith("default")
                              else None)
        hint = _suggest(family, ctx, case, out, tol, fixed_act, fixed_head, loss_form)
        if hint is not None:
            problems.insert(0, hint)
    return DebugResult("numpy", ctx.label, case.spec, case, checks, convention, frameworks,
                       tol, problems=problems, notes=notes, user_output=out.output)


#: the activations a search for the learner's setup tries, in this order
SETUP_ACTIVATIONS = ("relu", "tanh", "sigmoid", "leaky_relu", "identity")


def _suggest(family: Family, ctx: Context, case: Case, out: FamilyOutput, tol,
             activation: str | None, head: str | None, loss_form: str | None
             ) -> Problem | None:
    """Most quantities fail: try the other activations and heads, keep the setup under which
    the learner's code agrees best, and print its flags."""
    spec = case.spec
    n_bad = None
    best: tuple[int, str, str] | None = None
    heads = setup_heads(spec)
    for a in SETUP_ACTIVATIONS if activation is None else (activation,):
        if a not in ACTIVATION_FUNCS:
            continue
        for h in heads if head is None else (head,):
            try:
                c2 = _rebuild(case, a, h, None, loss_form)
                o2 = family.run(ctx, c2)
                (_, _), ch = _walk(c2, o2, tol, _order(c2.spec.depth, o2))
            except Exception:  # noqa: BLE001 - a setup the learner's code cannot run
                continue
            bad = sum(1 for c in ch if c.is_finding)
            if a == spec.activation and h == spec.head:
                n_bad = bad
            if best is None or bad < best[0]:
                best = (bad, a, h)
    if best is None or (n_bad is not None and best[0] >= n_bad) or best[0] > 0:
        return None  # no other setup makes the code agree: its findings are real
    return setup_problem(spec, best, activation, head)


def setup_heads(spec: Spec) -> list[str]:
    """The heads a search for the learner's setup tries: those the output size allows."""
    return [h for h in ("sigmoid_bce", "sigmoid_mse", "linear_mse", "softmax_ce", "tanh_mse")
            if HEADS[h].min_outputs <= spec.sizes[-1]]


def setup_problem(spec: Spec, best: tuple[int, str, str], activation: str | None,
                  head: str | None) -> Problem:
    """The setup under which the learner's code agrees best (``best``: its number of
    findings, activation and head), as flags; only what the user did not give is named."""
    flags = f"--sizes {','.join(map(str, spec.sizes))}"
    if activation is None and spec.depth > 1:
        flags += f" --activation {best[1]}"
    if head is None:
        flags += f" --head {best[2]}"
    tail = ("; your code agrees with the reference there" if best[0] == 0
            else f"; {best[0]} finding(s) remain there")
    return Problem("the network setup is probably wrong (guessed, or most quantities fail "
                   f"in a way no single slip explains). Try: {flags}{tail}")
