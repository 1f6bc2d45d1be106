"""The loss a user trains a PyTorch model with: the head it sets, and its scaling.

The seed's J is ``(1/m) sum_i loss_i`` (with 1/2 for squared errors). Torch's losses
reduce differently: ``CrossEntropyLoss(mean)`` is J; ``BCEWithLogitsLoss(mean)``,
``L1Loss(mean)`` and ``HuberLoss(mean)`` divide by ``m * n_out`` (J / n_out);
``MSELoss(mean)`` has no 1/2 (J x 2/n_out); ``reduction='sum'`` multiplies by m. The
user's gradients are divided by that factor before they are compared, and the report says
so.

The loss comes from (first found): ``--loss`` / ``loss=``; an ``nn`` loss object at the
top level of the user's file (``criterion = nn.CrossEntropyLoss()``); the one loss the
file's source names (training code under ``if __name__ == "__main__":`` included); else
the default for the model's output (logits: cross-entropy for several outputs, BCE with
logits for one; log_softmax: NLL; sigmoid: BCE; softmax: cross-entropy of the
probabilities; tanh: MSE).
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

from gradparity.core.errors import UsageError

#: torch loss class / function name -> loss kind
_CLASSES = {"CrossEntropyLoss": "ce", "NLLLoss": "nll", "BCEWithLogitsLoss": "bce_logits",
            "BCELoss": "bce", "MSELoss": "mse", "L1Loss": "l1", "HuberLoss": "huber",
            "SmoothL1Loss": "huber"}
_FUNCTIONS = {"cross_entropy": "ce", "nll_loss": "nll",
              "binary_cross_entropy_with_logits": "bce_logits", "binary_cross_entropy": "bce",
              "mse_loss": "mse", "l1_loss": "l1", "huber_loss": "huber",
              "smooth_l1_loss": "huber"}
_NAMES = {"ce": "CrossEntropyLoss", "nll": "NLLLoss", "bce_logits": "BCEWithLogitsLoss",
          "bce": "BCELoss", "mse": "MSELoss", "l1": "L1Loss", "huber": "HuberLoss"}

#: (model output, loss kind) -> (head, loss form)
_PAIRS = {
    ("identity", "ce"): ("softmax_ce", "logits"),
    ("log_softmax", "nll"): ("softmax_ce", "logits"),
    ("identity", "bce_logits"): ("sigmoid_bce", "logits"),
    ("sigmoid", "bce"): ("sigmoid_bce", "probs"),
    ("identity", "mse"): ("linear_mse", "logits"),
    ("sigmoid", "mse"): ("sigmoid_mse", "probs"),
    ("tanh", "mse"): ("tanh_mse", "probs"),
    ("identity", "l1"): ("linear_l1", "logits"),
    ("identity", "huber"): ("linear_huber", "logits"),
}
_DEFAULT_KIND = {"log_softmax": "nll", "sigmoid": "bce", "tanh": "mse"}
_SOURCE_RE = re.compile(r"\b(?:nn\.)?(" + "|".join(_CLASSES) + r")\s*\(([^)]*)\)|\bF\.("
                        + "|".join(_FUNCTIONS) + r")\s*\(")
_PREFERRED = ("criterion", "loss_fn", "loss_func", "loss_function", "lossfn", "loss")


@dataclass
class LossChoice:
    """How J is built from the model's output."""

    head: str
    form: str
    kind: str  # ce, nll, ... or "custom"
    reduction: str  # "mean", "sum", or "" (the seed's J)
    scale: float  # the user's loss = scale x the seed's J
    how: str  # how it was chosen
    fn: Callable[[Any, Any], Any] | None  # (output, target) -> scalar; None: the seed's J
    name: str  # nn.MSELoss(reduction='mean'), loss_fn, ...

    def convention(self, n_out: int, m: int) -> str:
        if self.fn is None:
            return ("true partials of the seed's J = (1/m) sum of losses (autograd of your "
                    "module); compared directly")
        if self.scale == 1.0 and not (self.kind in ("ce", "nll") and self.reduction == "mean"):
            return (f"your loss {self.name} = J x "
                    f"{_factor_text(self.kind, self.reduction, n_out, m)} = the seed's J here "
                    f"(n_out = {n_out}); true partials compared directly")
        if self.kind in ("ce", "nll") and self.reduction == "mean":
            return (f"your loss {self.name} is the seed's J = (1/m) sum of losses; true "
                    "partials compared directly")
        return (f"your loss {self.name} = J x {_factor_text(self.kind, self.reduction, n_out, m)}"
                f" = {self.scale:g} x the seed's J; your gradients compared after dividing by "
                f"{self.scale:g}")


def _factor_text(kind: str, reduction: str, n_out: int, m: int) -> str:
    if kind == "custom":
        return "a measured factor"
    if reduction == "sum":
        return "2m" if kind == "mse" else "m"
    if kind == "mse":
        return "2/n_out"
    return "1/n_out" if kind in ("bce", "bce_logits", "l1", "huber") else "1"


def scale_of(kind: str, reduction: str, n_out: int, m: int) -> float:
    if reduction == "sum":
        return 2.0 * m if kind == "mse" else float(m)
    if kind == "mse":
        return 2.0 / n_out
    if kind in ("bce", "bce_logits", "l1", "huber"):
        return 1.0 / n_out
    return 1.0


def _from_object(obj: Any, nn: Any, F: Any, where: str) -> tuple[str, str, Callable, str]:
    """(kind, reduction, fn, name) of an nn loss object or a torch.nn.functional loss."""
    cls = type(obj).__name__
    if isinstance(obj, nn.Module) and cls in _CLASSES:
        kind = _CLASSES[cls]
        reduction = getattr(obj, "reduction", "mean")
        if reduction not in ("mean", "sum"):
            raise UsageError(f"{where}: {cls}(reduction={reduction!r}) does not give one "
                             "number; expected reduction 'mean' or 'sum'")
        for attr in ("weight", "pos_weight"):
            if getattr(obj, attr, None) is not None:
                raise UsageError(f"{where}: {cls} with {attr} is not a gradparity head "
                                 "(unweighted losses only)")
        if float(getattr(obj, "label_smoothing", 0.0) or 0.0) != 0.0:
            raise UsageError(f"{where}: {cls} with label_smoothing is not a gradparity head")
        if kind == "huber" and float(getattr(obj, "delta", getattr(obj, "beta", 1.0))) != 1.0:
            raise UsageError(f"{where}: {cls} with delta/beta other than 1 is not a "
                             "gradparity head (linear_huber has delta 1)")
        return kind, reduction, obj, f"nn.{cls}(reduction={reduction!r})"
    name = getattr(obj, "__name__", "")
    if getattr(F, name, None) is obj and name in _FUNCTIONS:
        return _FUNCTIONS[name], "mean", obj, f"F.{name}(reduction='mean')"
    if callable(obj):
        return "custom", "", obj, getattr(obj, "__name__", type(obj).__name__)
    raise UsageError(f"{where}: expected a torch loss (nn.CrossEntropyLoss(), nn.MSELoss(), "
                     f"...) or a function (output, target) -> loss, got {type(obj).__name__}")


def _parse_text(text: str, nn: Any, where: str) -> Any:
    """``"MSELoss"``, ``"nn.MSELoss(reduction='sum')"`` -> the loss object."""
    m = re.fullmatch(r"\s*(?:nn\.|torch\.nn\.)?(\w+)\s*(?:\((.*)\))?\s*", text)
    if not m or m.group(1) not in _CLASSES:
        return None
    red = re.search(r"reduction\s*=\s*['\"](\w+)['\"]", m.group(2) or "")
    return getattr(nn, m.group(1))(reduction=red.group(1) if red else "mean")


def _from_source(module: ModuleType | None, nn: Any, F: Any
                 ) -> list[tuple[tuple[str, str, Callable, str], str]]:
    """The losses the file's source names (with their reductions), and where, in order."""
    if module is None:
        return []
    try:
        lines, _ = inspect.getsourcelines(module)
    except (OSError, TypeError):
        return []
    found: dict[str, tuple[Any, int, str]] = {}
    for i, line in enumerate(lines, 1):
        code = line.split("#", 1)[0]
        for mt in _SOURCE_RE.finditer(code):
            red = re.search(r"reduction\s*=\s*['\"](\w+)['\"]", code)
            reduction = red.group(1) if red else "mean"
            if reduction not in ("mean", "sum"):
                continue
            if mt.group(1):
                obj = getattr(nn, mt.group(1))(reduction=reduction)
                kind = _CLASSES[mt.group(1)]
                name = f"nn.{mt.group(1)}(reduction={reduction!r})"
            else:
                fname = mt.group(3)
                kind = _FUNCTIONS[fname]
                f = getattr(F, fname)
                obj = (lambda _f, _r: (lambda out, y: _f(out, y, reduction=_r)))(f, reduction)
                name = f"F.{fname}(reduction={reduction!r})"
            found.setdefault(f"{kind}/{reduction}", ((kind, reduction, obj, name), i,
                                                     line.strip()))
    return [(got, f"named in your file (line {line}: {text})")
            for got, line, text in found.values()]


def choose_loss(loss: Any, output: str, n_out: int, m: int, module: ModuleType | None,
                head: str | None, label: str) -> LossChoice:
    """The head and scaling set by the user's loss (or by ``head``, or the default).

    A loss given explicitly that does not fit the model's output is a `UsageError`; losses
    found in the file are tried in turn and one that does not fit is skipped (and named)."""
    from gradparity.debug.torch_model import import_torch

    _, nn, F = import_torch()
    if head is not None and loss is None:
        return _seed_head(head, output, n_out, label, "given (--head)")
    if loss is not None:
        how = "given"
        obj = loss
        if isinstance(loss, str):
            obj = _parse_text(loss, nn, f"loss={loss!r}")
            if obj is None:
                target = getattr(module, loss, None) if module is not None else None
                if target is None:
                    raise UsageError(f"--loss={loss!r}: expected a torch loss class such as "
                                     "CrossEntropyLoss or MSELoss(reduction='sum'), or the "
                                     "name of a loss object or function in your file")
                obj = target
                how = f"given ({loss} in your file)"
        parsed = _from_object(obj, nn, F, f"{label}: loss "
                              f"{getattr(obj, '__name__', type(obj).__name__)}")
        return _pair(parsed, how, output, n_out, m, head, label)
    found: list[tuple[tuple[str, str, Callable, str], str]] = []
    if module is not None:
        names = [n for n in _PREFERRED if n in vars(module)]
        names += [n for n in vars(module) if n not in names]
        for n in names:
            v = getattr(module, n)
            if isinstance(v, nn.Module) and type(v).__name__ in _CLASSES:
                found.append((_from_object(v, nn, F, f"{label}: {n}"),
                              f"from your file ({n})"))
        found += _from_source(module, nn, F)
    skipped = []
    for parsed, how in found:
        try:
            return _pair(parsed, how, output, n_out, m, head, label)
        except UsageError as exc:
            skipped.append((parsed[3], str(exc).split(": ", 2)[-1]))
    kind = _DEFAULT_KIND.get(output)
    if kind is None and output == "identity":
        kind = "ce" if n_out > 1 else "bce_logits"
    note = ""
    if skipped:
        names = ", ".join(dict.fromkeys(n for n, _ in skipped))
        note = f"; {names} in your file does not fit: {skipped[0][1]}"
    if output == "softmax":
        return _seed_head("softmax_ce", output, n_out, label,
                          "default for a softmax output (cross-entropy of the "
                          f"probabilities){note}", form="probs")
    pair = _PAIRS[(output, kind)]
    return LossChoice(pair[0], pair[1], kind, "", 1.0,
                      f"default for {_output_text(output, n_out)} (--loss to change){note}",
                      None, "")


def _pair(parsed: tuple[str, str, Callable, str], how: str, output: str, n_out: int, m: int,
          head: str | None, label: str) -> LossChoice:
    kind, reduction, fn, name = parsed
    if kind == "custom":
        default = choose_loss(None, output, n_out, m, None, head, label)
        return LossChoice(default.head, default.form, "custom", "", float("nan"),
                          f"{how}: {name}, head {default.head} fitted to its gradient", fn,
                          name)
    if output == "softmax" and kind in ("ce", "nll"):
        why = ("CrossEntropyLoss applies softmax again" if kind == "ce"
               else "NLLLoss expects log-probabilities")
        raise UsageError(f"{label}: the forward ends with softmax and the loss is {name}: {why}"
                         " (end with the Linear for CrossEntropyLoss, or log_softmax for "
                         "NLLLoss)")
    pair = _PAIRS.get((output, kind))
    if pair is None:
        raise UsageError(f"{label}: {_output_text(output, n_out)} with {name} is no gradparity "
                         "head; supported pairs: logits + CrossEntropyLoss / BCEWithLogitsLoss "
                         "/ MSELoss / L1Loss / HuberLoss, log_softmax + NLLLoss, sigmoid + "
                         "BCELoss / MSELoss, tanh + MSELoss")
    if pair[0] == "softmax_ce" and n_out < 2:
        raise UsageError(f"{label}: {name} needs at least 2 outputs, the model has {n_out}")
    return LossChoice(pair[0], pair[1], kind, reduction, scale_of(kind, reduction, n_out, m),
                      how, fn, name)


def _output_text(output: str, n_out: int) -> str:
    if output == "identity":
        return f"logits ({n_out} output{'s' if n_out != 1 else ''})"
    return f"a {output} output"


def _seed_head(head: str, output: str, n_out: int, label: str, how: str,
               form: str | None = None) -> LossChoice:
    from gradparity.core.spec import HEADS

    info = HEADS[head]
    want = {"identity": "identity", "sigmoid": "sigmoid", "softmax": "softmax",
            "log_softmax": "softmax", "tanh": "tanh"}[output]
    if output != "identity" and info.output != want:
        raise UsageError(f"{label}: --head {head} applies {info.output}, but the forward ends "
                         f"with {output}")
    if output == "identity":
        f = "logits" if "logits" in info.forms else None
        if f is None:
            raise UsageError(f"{label}: --head {head} needs the model to end with "
                             f"{info.output} (it returns logits)")
    elif output == "log_softmax":
        f = "logits"
    else:
        f = form or ("probs" if "probs" in info.forms else info.forms[0])
    return LossChoice(head, f, "", "", 1.0, how, None, "")
