"""The rows of the tidy result table, without pandas: its columns (`COLUMNS`, in order)
and the row builders of a case's verdicts (`verdict_rows`) and of a whole-case status
(`status_row`). `gradparity.experiments.tables` turns rows into the DataFrame."""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from gradparity.core.spec import Spec
from gradparity.judge.verdict import TensorVerdict

SPEC_COLUMNS: tuple[str, ...] = (
    "case_id", "head", "loss_form", "activation", "dtype", "sizes", "depth", "batch",
    "seed", "init", "regime",
)
METRIC_COLUMNS: tuple[str, ...] = (
    "shape", "max_abs_err", "max_rel_err", "max_ulp", "cosine", "norm_err_eps",
    "worst_index", "worst_value", "worst_expected", "n_mismatch", "n_elements", "atol",
    "rtol",
)
ORACLE_COLUMNS: tuple[str, ...] = (
    "oracle", "err_oracle_eps", "worst_oracle_eps", "ref_err_oracle_eps",
    "ref_worst_oracle_eps",
)
VERDICT_COLUMNS: tuple[str, ...] = (
    "allclose_passed", "calibrated_passed", "policy", "passed", "status", "reason_code",
    "reason",
)
COLUMNS: tuple[str, ...] = (
    SPEC_COLUMNS + ("layer", "quantity", "backend", "against", "mode") + METRIC_COLUMNS
    + ORACLE_COLUMNS + VERDICT_COLUMNS
)
def spec_columns(spec: Spec) -> dict[str, object]:
    return {
        "case_id": spec.case_id, "head": spec.head, "loss_form": spec.loss_form,
        "activation": spec.activation, "dtype": spec.dtype,
        "sizes": "x".join(map(str, spec.sizes)), "depth": spec.depth, "batch": spec.batch,
        "seed": spec.seed, "init": spec.init, "regime": spec.regime,
    }


def verdict_rows(spec: Spec, backend: str, verdicts: Iterable[TensorVerdict], *,
                 oracle: str = "unavailable", policy: str = "allclose",
                 mode: str | Mapping[str, str] = "end_to_end") -> list[dict[str, object]]:
    """The table rows of one backend's verdicts. ``mode``: the ``mode`` column, or one per
    quantity (``end_to_end`` for the quantities it leaves out), as a backend's
    ``row_mode`` says how it computed them (e.g. ``jacfwd``, ``per_example_mean``)."""
    base = spec_columns(spec)
    rows = []
    for v in verdicts:
        row_mode = mode if isinstance(mode, str) else mode.get(v.quantity, "end_to_end")
        row = dict(base, layer=v.layer, quantity=v.quantity, backend=backend,
                   against=v.against, mode=row_mode)
        row.update(v.comparison.as_row())
        row.pop("passed")
        o, r = v.oracle, v.reference_oracle
        row.update(
            oracle=oracle if o is not None else "unavailable",
            err_oracle_eps=None if o is None else o.norm_eps,
            worst_oracle_eps=None if o is None else o.worst_eps,
            ref_err_oracle_eps=None if r is None else r.norm_eps,
            ref_worst_oracle_eps=None if r is None else r.worst_eps,
            allclose_passed=v.comparison.passed, calibrated_passed=v.calibrated_passed,
            policy=policy,
            passed=v.comparison.passed if v.passed is None else v.passed,
            status=v.status, reason_code=v.reason_code, reason=v.reason)
        rows.append(row)
    return rows


def status_row(spec: Spec, backend: str, status: str, reason: str) -> dict[str, object]:
    """A whole-case row (``error`` or ``skipped``): no layer, no metrics."""
    row: dict[str, object] = {c: None for c in COLUMNS}
    row.update(spec_columns(spec), backend=backend, against="reference", mode="end_to_end",
               quantity="*",
               passed=False, allclose_passed=False, status=status, reason_code=status,
               reason=reason)
    return row
