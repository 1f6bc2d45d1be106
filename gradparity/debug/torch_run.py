"""Run a recovered PyTorch MLP on a case: the model's own forward, its own backward.

`run_recovered` runs the user's forward (the eval-mode copy) on the case's inputs under
the same recorder that recovered it (`gradparity.debug.torch_trace`); every tensor on the
path gets a gradient hook the moment it is produced, so dJ/dZ and dJ/dA are what the
model's autograd (custom ``autograd.Function`` backwards included) sends back, even when an
in-place activation overwrites Z afterwards. J is the user's loss (divided by its scale to
the seed's J) or the seed's J of the head. An exception in the forward or the backward
becomes a finding on the quantity being computed.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from gradparity.adapters.torch_autograd import _readable
from gradparity.core.errors import UsageError
from gradparity.debug.quantities import key, walk_order
from gradparity.debug.torch_loss import LossChoice
from gradparity.debug.torch_model import ModuleRun, import_torch
from gradparity.debug.torch_trace import Recovered, Step, _function_location, run_forward
from gradparity.debug.user_code import Location, innermost_user_frame


@dataclass
class RecoveredRun(ModuleRun):
    scale: float = 1.0
    scale_text: str = ""
    output: str = ""  # what the model printed


def _owner(step: Step) -> str:
    if step.custom is not None:
        return f"{step.custom.__name__}.backward"
    if step.module:
        return f"module [{step.module}] {step.text}"
    return step.text


def _location(step: Step) -> Location | None:
    if step.custom is not None:
        return _function_location(step.custom) or step.location
    return step.location


def _exception_text(exc: BaseException) -> str:
    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
    return f"{type(exc).__name__}: {msg}" if msg else type(exc).__name__


def _signature(rec: Any) -> list[tuple[str, str]]:
    return [(s.kind, s.name) for s in rec.steps]


def run_recovered(model: Any, recovered: Recovered, choice: LossChoice, case: Any,
                  label: str) -> RecoveredRun:
    """Forward and backward of ``model`` (already the eval-mode copy in the case dtype)."""
    torch, _, F = import_torch()
    from gradparity.adapters.torch_autograd import _loss, _outputs

    spec = case.spec
    L, m, form = spec.depth, case.m, spec.loss_form
    tdtype = getattr(torch, spec.dtype)
    order = walk_order(L, forward=True, output_dA=form == "probs", input_dA=True)
    run = RecoveredRun()
    owned: dict[str, Step] = {}
    for i, lin in enumerate(recovered.linears, 1):
        for k in (key("Z", i), key("dW", i), key("db", i), key("dA", i - 1)):
            owned[k] = lin
    for i, act in enumerate(recovered.activations, 1):
        if act.text:
            owned[key("A", i)] = act
            owned[key("dZ", i)] = act
    if recovered.output_step is not None:
        owned[key("A", L)] = recovered.output_step
        if form == "probs":
            owned[key("dZ", L)] = recovered.output_step
    for k, s in owned.items():
        run.owners[k] = _owner(s)
        loc = _location(s)
        if loc is not None:
            run.locations[k] = loc

    params = dict(model.named_parameters())
    for p in params.values():  # frozen layers too: their gradients are what is checked
        p.requires_grad_(True)
        p.grad = None
    x = torch.tensor(_readable(case.X.T), dtype=tdtype).requires_grad_(True)
    grads: dict[int, Any] = {}

    def hook(idx: int, t: Any) -> None:
        def store(g: Any) -> None:
            grads[idx] = g.detach().clone()
        t.register_hook(store)

    def stop(at: str, text: str, exc: BaseException) -> RecoveredRun:
        loc = innermost_user_frame(exc.__traceback__) or run.locations.get(at)
        owner = f" ({run.owners[at]})" if at in run.owners else ""
        run.errors[at] = (f"your module raised {text}{owner}", loc)
        for k in order[order.index(at) + 1:]:
            if k not in run.values:
                run.not_computed[k] = f"not computed: your module raised at {at}"
        return run

    with torch.enable_grad():
        rec, out, failure = run_forward(model, x, label, hook)
        run.output = rec.output
        if failure is not None:
            done = {s.index for s in rec.steps}
            at = next((k for k, s in owned.items() if s.index not in done
                       and k[0] in "ZA"), order[0])
            at = min((k for k in order if k[0] in "ZA" and k in owned
                      and owned[k].index not in done), key=order.index, default=at)
            return stop(at, _exception_text(failure), failure)
        from gradparity.debug.torch_trace import structure_of

        again = structure_of(rec, out, label)
        if [(s.kind, s.name) for s in again.steps] != [(s.kind, s.name)
                                                      for s in recovered.steps]:
            raise UsageError(f"{label}: its forward took another path on the case's inputs "
                             "than on a first batch (data-dependent control flow); an MLP "
                             "runs the same layers on every input")
        # forward values, column-major
        for i, lin in enumerate(again.linears, 1):
            run.values[key("Z", i)] = _np(rec.records[lin.index].value.T)
        for i, act in enumerate(again.activations, 1):
            if act.text:
                run.values[key("A", i)] = _np(rec.records[act.index].value.T)
            else:
                run.values[key("A", i)] = run.values[key("Z", i)]
        z_last = rec.records[again.linears[-1].index].value
        if again.output_step is not None:
            a_val = rec.records[again.output_step.index].value
            if again.output == "log_softmax":
                a_val = torch.exp(a_val)
        else:
            a_val = _outputs(torch)[spec.head](z_last)
        run.values[key("A", L)] = _np(a_val.T)

        y = torch.tensor(_readable(case.Y.T), dtype=tdtype)
        labels = (None if case.labels is None
                  else torch.tensor(_readable(case.labels), dtype=torch.int64))
        if choice.fn is None:
            z_t = out if again.output == "identity" else None
            if z_t is not None and z_t.dim() == 1:
                z_t = z_t[:, None]
            if again.output == "identity":
                a_t = _outputs(torch)[spec.head](z_t)
                loss = _loss(torch, F, spec.head, "logits" if form == "logits" else form,
                             z_t, a_t, y, labels, m)
            elif again.output == "log_softmax":
                loss = F.nll_loss(out, labels, reduction="sum") / m if labels is not None \
                    else -(y * out).sum() / m
            else:
                a_t = out if out.dim() == 2 else out[:, None]
                loss = _loss(torch, F, spec.head, "probs", None, a_t, y, labels, m)
            run.scale = 1.0
        else:
            target = _target(choice, out, y, labels, torch)
            try:
                loss = choice.fn(out, target)
            except Exception as exc:  # noqa: BLE001 - the user's loss raised
                raise UsageError(f"{label}: the loss {choice.name} raised "
                                 f"{_exception_text(exc)} on the output {tuple(out.shape)} "
                                 "and the case's targets") from None
            if not isinstance(loss, torch.Tensor) or loss.numel() != 1:
                raise UsageError(f"{label}: the loss {choice.name} did not return one number")
            run.scale = choice.scale
            if choice.kind == "custom":
                run.scale, run.scale_text = _fit_scale(choice, out, y, labels, spec, torch, F,
                                                       label)
        run.loss = _np(loss.detach()) / run.scale
        failure2: BaseException | None = None
        try:
            loss.backward()
        except Exception as exc:  # noqa: BLE001 - the user's backward failed: a finding
            failure2 = exc

    s = run.scale

    def g(t: Any) -> np.ndarray | None:
        return None if t is None else _np(t) / s

    for i, lin in enumerate(again.linears, 1):
        v = g(grads.get(lin.index))
        if v is not None:
            run.values[key("dZ", i)] = v.T
        w, b = params[lin.weight], params[lin.bias]
        if w.grad is not None:
            gw = g(w.grad)
            run.values[key("dW", i)] = np.ascontiguousarray(gw.T) if lin.layout == "xW" else gw
        if b.grad is not None:
            run.values[key("db", i)] = g(b.grad).reshape(-1, 1)
    for i, act in enumerate(again.activations, 1):
        v = grads.get(act.index) if act.text else grads.get(again.linears[i - 1].index)
        if v is not None:
            run.values[key("dA", i)] = g(v).T
    if form == "probs" and again.output_step is not None:
        v = grads.get(again.output_step.index)
        if v is not None:
            v = v if v.dim() == 2 else v[:, None]
            run.values[key("dA", L)] = g(v).T
    if x.grad is not None:
        run.values["dA0"] = g(x.grad).T
    if failure2 is not None:
        grads_order = [k for k in order if k.startswith("d")]
        at = next((k for k in grads_order if k not in run.values), grads_order[0])
        return stop(at, _exception_text(failure2), failure2)
    return run


def _target(choice: LossChoice, out: Any, y: Any, labels: Any, torch: Any) -> Any:
    if choice.kind in ("ce", "nll") or (choice.kind == "custom" and choice.head == "softmax_ce"):
        return labels if labels is not None else y
    if out.dim() == 1:
        return y[:, 0]
    return y


def _fit_scale(choice: LossChoice, out: Any, y: Any, labels: Any, spec: Any, torch: Any,
               F: Any, label: str) -> tuple[float, str]:
    """The factor between a custom loss and the seed's J of the head, from d/d(output)."""
    from gradparity.adapters.torch_autograd import _loss

    m = spec.batch
    o1 = out.detach().clone().requires_grad_(True)
    user = choice.fn(o1, _target(choice, out, y, labels, torch))
    (gu,) = torch.autograd.grad(user, o1)
    o2 = out.detach().clone().requires_grad_(True)
    o2v = o2 if o2.dim() == 2 else o2[:, None]
    if spec.loss_form == "logits" and spec.head == "softmax_ce" and bool(
            (torch.logsumexp(o2v.detach(), 1).abs() < 1e-6).all()):  # log-probabilities
        ref = -(F.one_hot(labels, o2v.shape[1]).to(o2v.dtype) * o2v).sum() / m \
            if labels is not None else -(y * o2v).sum() / m
    elif spec.loss_form == "logits":
        from gradparity.adapters.torch_autograd import _outputs

        ref = _loss(torch, F, spec.head, "logits", o2v, _outputs(torch)[spec.head](o2v), y,
                    labels, m)
    else:
        ref = _loss(torch, F, spec.head, "probs", None, o2v, y, labels, m)
    (gr,) = torch.autograd.grad(ref, o2)
    gu, gr = gu.double().flatten(), gr.double().flatten()
    denom = float((gr * gr).sum())
    s = float((gu * gr).sum()) / denom if denom > 0 else float("nan")
    ok = np.isfinite(s) and s != 0 and bool(torch.allclose(gu, s * gr, rtol=1e-4,
                                                           atol=1e-8 * abs(s)))
    if not ok:
        raise UsageError(f"{label}: the loss {choice.name} is not a multiple of the seed's J "
                         f"of head {spec.head} (its gradient with respect to the output is "
                         "not proportional to it); pass --head or a torch loss")
    return s, (f"your loss {choice.name} = {s:.6g} x the seed's J of head {spec.head} "
               f"(measured from its gradient); your gradients compared after dividing by "
               f"{s:.6g}")


def _np(t: Any) -> np.ndarray:
    return np.array(t.detach().cpu().numpy(), order="C", copy=True)
