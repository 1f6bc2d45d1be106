"""`assert_grads_match`: gradient parity as a test assertion.

    import gradparity as gp
    gp.assert_grads_match(gp.Spec((4, 16, 3), activation="gelu", head="softmax_ce",
                                  dtype="float32"), ["torch", "jax"], rtol=1e-5, atol=1e-6)

Every tensor (forward values, loss, dZ/dW/db/dA of every layer) of every backend is judged
against the NumPy reference exactly as `gradparity run` judges it (`run_specs`: same
verdicts, same oracle, same table). Differences with a named cause (``kink``,
``saturation``, ``rounding``) pass; ``fail``, ``error`` and ``skipped`` (framework not
installed) raise an ``AssertionError`` whose message follows
``torch.testing.assert_close``'s layout, after a header line naming the backend pair,
layer, quantity, head, dtype and case::

    torch vs reference: layer 3, quantity dW (dW3), head linear_mse (logits), float32, case ...
    Tensor-likes are not close!

    Mismatched elements: 4 / 8 (50.0%)
    Greatest absolute difference: 0.0714 at index (1, 2) (up to 1e-05 allowed)
    Greatest relative difference: 7 at index (0, 3) (up to 1.3e-06 allowed)
    Worst element: index (1, 2), actual 0.0817, expected 0.0102
    Verdict: fail: 4/8 elements outside atol=1e-05, rtol=1.3e-06

The first failing tensor of a backend is shown in full (in backprop order it is the one
the bug reaches first); the others are named.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gradparity.adapters.registry import DEFAULT_BACKENDS
from gradparity.core.errors import UsageError
from gradparity.core.spec import Spec
from gradparity.judge.status import FAILING
from gradparity.reference.case import Case

if TYPE_CHECKING:
    import pandas as pd

    from gradparity.adapters.base import Backend
    from gradparity.ci.baseline import BaselineCase
    from gradparity.experiments.runner import CaseResult
    from gradparity.judge.verdict import TensorVerdict

#: Failing (case, backend) pairs shown in full in a message; the rest are listed.
MAX_SHOWN = 5
#: An assertion also fails when a framework it asked for did not run.
_FAILING_STATUSES = FAILING | {"skipped"}


@dataclass
class Problem:
    """One (case, backend) that does not match: failing verdicts, or an error/skip."""

    case_id: str
    spec: Spec
    backend: str
    verdicts: list[TensorVerdict] = field(default_factory=list)
    status: str = "fail"
    reason: str = ""
    exception: BaseException | None = None

    def message(self) -> str:
        s = self.spec
        where = f"head {s.head} ({s.loss_form}), {s.dtype}, case {self.case_id}"
        if not self.verdicts:
            return f"{self.backend} vs reference: {where}: {self.status}: {self.reason}"
        first, *rest = self.verdicts
        text = (f"{self.backend} vs {first.against}: layer {first.layer}, quantity "
                f"{first.quantity} ({first.key}), {where}\n"
                f"{first.comparison.message('Tensor-likes')}\n"
                f"Verdict: {first.status}: {first.reason}")
        if rest:
            text += "\nAlso failing for this case and backend: " + ", ".join(
                v.key for v in rest)
        return text


@dataclass
class ParityResult:
    """What `check_grads` found: the table (as `run_specs` gives it), the problems, and
    what a baseline needs (its cases)."""

    table: pd.DataFrame
    problems: list[Problem]
    cases: list[BaselineCase]

    @property
    def ok(self) -> bool:
        return not self.problems

    def _repr_html_(self) -> str:
        """In Jupyter: the verdict, then the table's view (statuses, tolerances, plot)."""
        import html

        from gradparity.experiments.notebook import result_view

        colour = "#1b7f3b" if self.ok else "#b00020"
        head = f'<pre style="color:{colour}">{html.escape(self.message())}</pre>'
        return result_view(self.table, head=head)

    def message(self) -> str:
        if not self.problems:
            return "Gradients match."
        shown = self.problems[:MAX_SHOWN]
        blocks = [p.message() for p in shown]
        if len(self.problems) > 1:
            n_cases = len({p.case_id for p in self.problems})
            blocks.insert(0, f"Gradients do not match: {len(self.problems)} case/backend "
                          f"pairs in {n_cases} case(s).")
        more = self.problems[MAX_SHOWN:]
        if more:
            blocks.append(f"... and {len(more)} more: " + ", ".join(
                f"{p.case_id} ({p.backend})" for p in more))
        return "\n\n".join(blocks)


def _as_cases(spec_or_model: Any) -> list[Spec | Case]:
    items = spec_or_model if isinstance(spec_or_model, (list, tuple)) else [spec_or_model]
    if not items:
        raise ValueError("spec_or_model: expected a Spec, a list of Specs or a Case, got an "
                         "empty list")
    for x in items:
        if not isinstance(x, (Spec, Case)):
            raise TypeError(f"spec_or_model: expected a Spec, a list of Specs or a Case, "
                            f"got {type(x).__name__}")
    return list(items)


def resolve_backends(backends: str | Backend | Sequence[str | Backend] | None
                     ) -> list[Backend]:
    """Backend objects for names (looked up as `run_specs` does) or objects."""
    from gradparity.adapters.base import Backend
    from gradparity.adapters.registry import BACKENDS
    from gradparity.experiments import runner

    if backends is None:
        backends = DEFAULT_BACKENDS
    if isinstance(backends, str) or not isinstance(backends, Sequence):
        backends = [backends]
    out = []
    for b in backends:
        if isinstance(b, str):
            if b not in BACKENDS:
                raise UsageError(f"backends={b!r}: expected one of {', '.join(BACKENDS)} "
                                 "or a backend object")
            out.append(runner.get_backend(b))
        elif isinstance(b, Backend):
            out.append(b)
        else:
            raise TypeError(f"backends: expected names or backend objects (name, available, "
                            f"unavailable_reason, gradients, kink_conventions, version), got "
                            f"{type(b).__name__}")
    if not out:
        raise ValueError("backends: expected at least one backend")
    names = [b.name for b in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise ValueError(f"backends: {dupes[0]!r} given twice")
    return out


def _problems(result: CaseResult) -> list[Problem]:
    """The (case, backend) pairs of one case that do not match."""
    out = []
    for r in result.backends:
        if r.verdicts is None:  # error or skipped: not judged
            out.append(Problem(result.case_id, result.spec, r.backend, status=r.status,
                               reason=r.reason, exception=r.exception))
            continue
        bad = [v for v in r.verdicts if v.status in _FAILING_STATUSES]
        if bad:
            out.append(Problem(result.case_id, result.spec, r.backend, verdicts=bad))
    return out


def check_grads(
    spec_or_model: Spec | Case | Sequence[Spec | Case],
    backends: str | Backend | Sequence[str | Backend] | None = DEFAULT_BACKENDS,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    policy: str = "allclose",
    **model_options: Any,
) -> ParityResult:
    """Judge every backend on every case; never raises for a mismatch (see
    `assert_grads_match`). A user's model (see `assert_grads_match`) is checked by
    `gradparity.debug.model_gate`."""
    from gradparity.debug.model_gate import is_user_model

    if is_user_model(spec_or_model):
        from gradparity.debug.model_gate import model_problems, run_model

        if policy != "allclose":
            raise UsageError(f"policy={policy!r}: a model check uses allclose")
        names = [backends] if isinstance(backends, str) else list(backends or ())
        result, framework = run_model(spec_or_model, names, rtol=rtol, atol=atol,
                                      **model_options)
        return ParityResult(table=result.table(), problems=model_problems(result, framework),
                            cases=[])
    if model_options:
        raise TypeError(f"{sorted(model_options)[0]}: an option of a model check only")
    from gradparity.ci.baseline import BaselineCase
    from gradparity.experiments.environment import environment
    from gradparity.experiments.notebook import result_table
    from gradparity.experiments.runner import evaluate_case
    from gradparity.experiments.tables import make_table
    from gradparity.judge.policy import check_policy
    from gradparity.judge.tolerances import resolve_tolerances

    items = _as_cases(spec_or_model)
    check_policy(policy)
    adapters = resolve_backends(backends)
    tol = resolve_tolerances(rtol=rtol, atol=atol)
    names = tuple(b.name for b in adapters)

    rows: list[dict[str, object]] = []
    problems: list[Problem] = []
    cases: list[BaselineCase] = []
    seen: set[str] = set()
    for item in items:
        result = evaluate_case(item, adapters, tolerances=tol, policy=policy)
        spec, case_id, t = result.spec, result.case_id, tol[result.spec.dtype]
        if result.reference is not None:
            if case_id in seen:
                raise ValueError(f"spec_or_model: case {case_id} given twice")
            seen.add(case_id)
        cases.append(BaselineCase(case_id, spec, names, t.rtol, t.atol, result.rerun, policy))
        rows += result.rows
        problems += _problems(result)
    table = result_table(make_table(rows, environment()))
    return ParityResult(table=table, problems=problems, cases=cases)


def assert_grads_match(
    spec_or_model: Spec | Case | Sequence[Spec | Case],
    backends: str | Backend | Sequence[str | Backend] | None = DEFAULT_BACKENDS,
    *,
    rtol: float | None = None,
    atol: float | None = None,
    policy: str = "allclose",
    **model_options: Any,
) -> pd.DataFrame:
    """Assert that every backend's loss, forward values and gradients match the reference.

    Args:
        spec_or_model: a `Spec`, a list of Specs, or a `Case` (your own parameters and
            data: build one with `make_case` and replace its arrays); or your own model:
            a torch ``nn.Module`` (instance, class or no-argument factory), a JAX function
            ``fn(params, X)`` / ``loss(params, X, Y)``, or ``"file.py:attr"``. A model is
            checked as ``gradparity debug`` checks it, per layer through its own forward
            and backward; ``model_options`` are ``loss``, ``params``, ``head``, ``dtype``,
            ``batch``, ``seed``, ``X``, ``Y`` (the model's own data) and ``backends`` name
            the frameworks run on the same case.
        backends: names (``"torch"``, ``"jax"``, ``"reference"``) or backend objects (the
            `Backend` protocol: ``name``, ``available()``, ``unavailable_reason()``,
            ``gradients(case)``, ``kink_conventions(dtype)``, ``version()``).
        rtol, atol: tolerances for every dtype; ``None`` keeps the per-dtype defaults
            (torch.testing's).
        policy: ``"allclose"`` (default) or ``"calibrated"`` (error against the
            higher-precision oracle; see `gradparity.judge.policy`), as ``gradparity run
            --policy``.

    Returns:
        The result table (one row per case x layer x quantity x backend).

    Raises:
        AssertionError: a tensor fails, a backend raises, or a backend is not installed;
            the message is laid out like ``torch.testing.assert_close``'s.
    """
    result = check_grads(spec_or_model, backends, rtol=rtol, atol=atol, policy=policy,
                         **model_options)
    if result.problems:
        first = result.problems[0]
        raise AssertionError(result.message()) from first.exception
    return result.table
