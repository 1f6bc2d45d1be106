"""Baselines: a run's per-tensor statuses and accuracies, kept to gate later runs on.

A baseline is a JSON text file (strict JSON, sorted keys, one case and one row per line,
floats written with ``repr`` so they read back bit for bit) holding:

* ``cases``: every field of every spec (explicit ``inputs``/``targets`` included), the
  backends it ran on and its tolerances, so the file alone is enough to run it again;
* ``rows``: one `BaselineRow` per (case_id, backend, against, layer, quantity): the status,
  the reason code and the tensor's accuracy against the higher-precision oracle
  (`gradparity.reference.oracle`), for the backend and for the same-dtype reference;
* ``environment``: versions, BLAS, CPU and its SIMD features, kernel variables and threads
  (`gradparity.experiments.environment`), so that a check on another machine can say so. No
  timestamps: saving the same run twice gives the same bytes.

The regression rule is about accuracy, not about one machine's last bits. Every machine
rounds differently (CPU vendor and SIMD width, OpenBLAS and torch kernel choice, XLA's
ISA, thread counts); the NumPy reference and the oracle move with it. So a check never
compares a backend's numbers with the baseline's numbers. It compares the backend's
*error against the oracle*, in units of the dtype's eps, with what it was when the
baseline was saved, and with the error that the calibrated rule allows on the machine
that runs the check (`gradparity.judge.policy`, ``multiplier x reference error + floor``, from
the reference's own error measured now). `compare_with_baseline` reports:

* ``new_failure``: status ``fail`` or ``error`` where the baseline had another status;
* ``new_reason``: a tensor that passed (or differed only by ``rounding``) now has another
  named reason (``kink``, ``saturation``, ``convention``): the numbers changed in kind;
* ``missing``: a baseline row the new run did not produce (or a backend now skipped);
* ``new_row``: a row of a baseline case and backend that the baseline does not have;
* ``grew``: an oracle error (``err_oracle_eps`` normwise, ``worst_oracle_eps`` worst
  element) above ``max(factor x before, multiplier x reference error now + floor)``, or
  non-finite where it was finite.

A tensor is therefore flagged only when the backend got less accurate than both its
baseline (by ``factor``, default 4) and the rounding budget of this machine. Where no
oracle exists (float64 on a platform whose ``long double`` is float64) the rule falls back
to ``norm_err_eps`` against the reference with the same limit. A baseline holds
end-to-end rows: the ``layer_own`` rows of ``gradparity run --layer-own`` are left out.
``README.md`` ("Across machines") shows the measurements behind the rule:
``scripts/portability_matrix.py``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from gradparity.core.errors import SpecError, UsageError
from gradparity.core.spec import Spec
from gradparity.judge.policy import DEFAULT_RULE, CalibratedRule
from gradparity.judge.status import FAILING, STATUSES, worst_status

if TYPE_CHECKING:
    import pandas as pd

FORMAT = "gradparity-baseline"
VERSION = 2
DEFAULT_FACTOR = 4.0
KEY_COLUMNS: tuple[str, ...] = ("case_id", "backend", "against", "layer", "quantity")
#: The oracle errors a check compares, each with the reference's error that sets its budget.
COMPARED_METRICS: dict[str, str] = {"err_oracle_eps": "ref_err_oracle_eps",
                                    "worst_oracle_eps": "ref_worst_oracle_eps"}
#: Compared (against the reference) only where the oracle is unavailable.
FALLBACK_METRIC = "norm_err_eps"
_FLOAT_COLUMNS: tuple[str, ...] = (*COMPARED_METRICS, *COMPARED_METRICS.values(),
                                   FALLBACK_METRIC)


class BaselineRow(NamedTuple):
    """One tensor (or one whole-case row: ``layer`` None, ``quantity`` ``"*"``)."""

    case_id: str
    backend: str
    against: str
    layer: int | None
    quantity: str
    status: str
    reason_code: str
    err_oracle_eps: float | None
    worst_oracle_eps: float | None
    ref_err_oracle_eps: float | None
    ref_worst_oracle_eps: float | None
    norm_err_eps: float | None


ROW_COLUMNS: tuple[str, ...] = BaselineRow._fields
#: Environment entries that never change numbers (left out of differences).
_NOT_NUMERICAL = frozenset({"pandas", "gradparity"})
REGRESSION_COLUMNS: tuple[str, ...] = (
    "kind", "case_id", "backend", "against", "layer", "quantity", "metric", "before", "after",
    "ratio", "limit", "status_before", "status_after", "detail",
)
KINDS: tuple[str, ...] = ("new_failure", "new_reason", "missing", "new_row", "grew")
_KIND_LABELS = {"new_failure": "new failure", "new_reason": "new reason",
                "missing": "missing row", "new_row": "new row", "grew": "grew"}
#: Statuses that say a tensor agrees up to rounding; leaving them for another named reason
#: is a ``new_reason``.
_AGREEING = frozenset({"pass", "rounding"})
_WHOLE_CASE = "*"  # quantity of a whole-case row (error, skipped)


class BaselineError(UsageError):
    """A baseline file that cannot be read or written; the message is one line."""


@dataclass(frozen=True)
class BaselineCase:
    """One case of a baseline: its spec, backends, tolerances and verdict policy.

    ``rerun`` is False for cases whose arrays did not come from the spec (a `Case` with
    the user's own parameters, checked through the pytest plugin): their rows can be
    compared, but ``gradparity check`` cannot run them again. Their ``case_id`` is the
    spec's with ``-arrays<digest>`` appended.
    """

    case_id: str
    spec: Spec
    backends: tuple[str, ...]
    rtol: float
    atol: float
    rerun: bool = True
    policy: str = "allclose"


@dataclass
class Baseline:
    """Cases, rows (`BaselineRow`) and the environment they came from.

    ``kernels`` names the other kernel configurations the cases also ran under when the
    baseline was saved, with their environment variables (`gradparity.ci.kernels`): each
    row's errors are then the largest, and its status the worst, over those runs and the
    main one. Empty when the rows come from one run.
    """

    cases: list[BaselineCase]
    rows: list[BaselineRow]
    environment: dict[str, str] = field(default_factory=dict)
    source: str = ""
    kernels: dict[str, dict[str, str]] = field(default_factory=dict)

    def case(self, case_id: str) -> BaselineCase | None:
        for c in self.cases:
            if c.case_id == case_id:
                return c
        return None

    def table(self) -> pd.DataFrame:
        """The rows as a DataFrame (`ROW_COLUMNS` plus the case's ``dtype``)."""
        import pandas as pd

        df = pd.DataFrame([tuple(r) for r in self.rows], columns=list(ROW_COLUMNS))
        dtypes = {c.case_id: c.spec.dtype for c in self.cases}
        df["dtype"] = df["case_id"].map(dtypes)
        for c in _FLOAT_COLUMNS:
            df[c] = pd.to_numeric(df[c], errors="coerce").astype("float64")
        df["layer"] = pd.array(df["layer"].tolist(), dtype="Int64")
        return df

    def restricted(self, pairs: Iterable[tuple[str, str]]) -> Baseline:
        """The cases and rows of these (case_id, backend) pairs only."""
        keep = set(pairs)
        ids = {c for c, _ in keep}
        return replace(self, cases=[c for c in self.cases if c.case_id in ids],
                       rows=[r for r in self.rows if (r.case_id, r.backend) in keep])

    def merged(self, newer: Baseline) -> Baseline:
        """This baseline updated with ``newer``: its cases replace ours (in place; new ones
        go last) and its (case_id, backend) rows replace ours. A case whose tolerances,
        policy or arrays changed keeps none of its old rows."""
        settings = {c.case_id: (c.rerun, c.rtol, c.atol, c.policy) for c in self.cases}
        incoming = {c.case_id: c for c in newer.cases}
        reset = {cid for cid, c in incoming.items()
                 if cid in settings and settings[cid] != (c.rerun, c.rtol, c.atol, c.policy)}
        replaced = {(r.case_id, r.backend) for r in newer.rows}
        rows = [r for r in self.rows
                if r.case_id not in reset and (r.case_id, r.backend) not in replaced]
        rows += newer.rows
        cases = []
        for old in self.cases:
            c = incoming.pop(old.case_id, None)
            if c is None:
                cases.append(old)
            elif old.case_id in reset:
                cases.append(c)
            else:
                cases.append(replace(c, backends=tuple(dict.fromkeys(old.backends
                                                                     + c.backends))))
        cases += incoming.values()
        order = {c.case_id: i for i, c in enumerate(cases)}
        rows.sort(key=lambda r: order[r.case_id])  # stable: keeps backprop order in a case
        return Baseline(cases=cases, rows=rows, environment=dict(newer.environment),
                        source=newer.source or self.source,
                        kernels={**self.kernels, **newer.kernels})


# -- building ------------------------------------------------------------------------------

def end_to_end(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``table`` a baseline holds: the whole network's, i.e. all but the
    ``layer_own`` rows (other modes, such as ``jacfwd`` or ``per_example_mean``, say how a
    backend computed a whole-network gradient)."""
    if "mode" not in table.columns:
        return table
    return table[table["mode"].astype(str) != "layer_own"]


def _none_if_na(v: Any) -> Any:
    try:
        import pandas as pd

        if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
            return None
    except TypeError:
        pass
    return v


def rows_from_table(table: pd.DataFrame, case_ids: Mapping[str, str] | None = None
                    ) -> list[BaselineRow]:
    """Baseline rows from a result table (any extra columns ignored; ``case_ids`` renames
    case ids, for cases with custom arrays)."""
    rename = case_ids or {}
    table = end_to_end(table)
    cols = [c for c in ROW_COLUMNS if c != "reason_code"]
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}")
    codes = (table["reason_code"] if "reason_code" in table.columns
             else [None] * len(table))
    rows = []
    for rec, code in zip(table[cols].itertuples(index=False, name=None), codes, strict=True):
        r = dict(zip(cols, (_none_if_na(v) for v in rec), strict=True))
        cid = str(r["case_id"])
        code = _none_if_na(code)
        rows.append(BaselineRow(
            case_id=rename.get(cid, cid), backend=str(r["backend"]), against=str(r["against"]),
            layer=None if r["layer"] is None else int(r["layer"]),
            quantity=str(r["quantity"]), status=str(r["status"]),
            reason_code="" if code is None else str(code),
            **{m: None if r[m] is None else float(r[m]) for m in _FLOAT_COLUMNS}))
    return rows


#: Columns `envelope` takes the largest value of: the errors a check compares.
ENVELOPE_COLUMNS: tuple[str, ...] = ("err_oracle_eps", "worst_oracle_eps", "norm_err_eps")


def envelope(tables: Sequence[pd.DataFrame]) -> pd.DataFrame:
    """The first table with, per tensor, the largest of `ENVELOPE_COLUMNS` over ``tables``
    (a non-finite value wins) and the worst status (with that run's reason) over them.

    Rows are the first table's, in its order: a tensor another run did not produce keeps
    the first table's values (``check`` reports missing rows on its own).
    """
    import numpy as np
    import pandas as pd

    if not tables:
        raise ValueError("envelope: no tables")
    first = tables[0]
    out = first.copy()
    if len(tables) == 1 or out.empty:
        return out

    def keys(t: pd.DataFrame) -> pd.MultiIndex:
        layer = pd.array(t["layer"].tolist(), dtype="Int64").fillna(-1).astype(int)
        return pd.MultiIndex.from_arrays([t["case_id"].astype(str), t["backend"].astype(str),
                                          t["against"].astype(str), layer,
                                          t["quantity"].astype(str)])

    index = keys(out)
    if not index.is_unique:
        raise ValueError("envelope: the first table has duplicate rows")
    statuses = [out["status"].astype(str).to_numpy()]
    reasons = [(out["reason_code"] if "reason_code" in out else pd.Series([""] * len(out)))
               .fillna("").astype(str).to_numpy(),
               (out["reason"] if "reason" in out else pd.Series([""] * len(out)))
               .fillna("").astype(str).to_numpy()]
    status = statuses[0].copy()
    code, reason = reasons[0].copy(), reasons[1].copy()
    for other in tables[1:]:
        o = other.set_axis(keys(other))
        o = o[~o.index.duplicated(keep="first")].reindex(index)
        found = o["status"].notna().to_numpy()
        for c in ENVELOPE_COLUMNS:
            if c not in out.columns or c not in o.columns:
                continue
            a = out[c].to_numpy(dtype=np.float64, na_value=np.nan)
            b = o[c].to_numpy(dtype=np.float64, na_value=np.nan)
            with np.errstate(invalid="ignore"):
                bigger = found & ((b > a) | (~np.isfinite(b) & ~np.isnan(b) & np.isfinite(a))
                                  | (np.isnan(a) & ~np.isnan(b)))
            out[c] = np.where(bigger, b, a)
        s = o["status"].astype(object).where(found, None).to_numpy()
        oc = (o["reason_code"] if "reason_code" in o else pd.Series([""] * len(o)))
        orr = (o["reason"] if "reason" in o else pd.Series([""] * len(o)))
        oc = oc.fillna("").astype(str).to_numpy()
        orr = orr.fillna("").astype(str).to_numpy()
        for i in np.flatnonzero(found):
            w = worst_status([status[i], str(s[i])])
            if w != status[i]:
                status[i], code[i], reason[i] = w, oc[i], orr[i]
    out["status"] = status
    if "reason_code" in out.columns:
        out["reason_code"] = [c or None for c in code]
    if "reason" in out.columns:
        out["reason"] = reason
    return out


def baseline_from_table(
    table: pd.DataFrame,
    cases: Sequence[BaselineCase],
    *,
    environment: Mapping[str, str] | None = None,
    source: str = "",
    kernels: Mapping[str, tuple[Mapping[str, str], pd.DataFrame]] | None = None,
) -> Baseline:
    """A baseline of ``cases`` from their result table; ``environment`` defaults to the
    table's ``attrs["environment"]``. ``kernels``: ``{name: (variables, table)}`` of the
    same cases run under other kernel configurations (`gradparity.ci.kernels`); the rows
    then hold the largest error and the worst status over all the tables."""
    env = dict(environment if environment is not None else table.attrs.get("environment", {}))
    others = dict(kernels or {})
    rows_table = envelope([table, *(t for _, t in others.values())]) if others else table
    return Baseline(cases=list(cases), rows=rows_from_table(rows_table),
                    environment={str(k): str(v) for k, v in sorted(env.items())},
                    source=source,
                    kernels={str(n): {str(k): str(v) for k, v in sorted(dict(var).items())}
                             for n, (var, _) in others.items()})


def cases_of(specs: Sequence[Spec], backends: Sequence[str], tolerances: Mapping[str, Any],
             policy: str = "allclose") -> list[BaselineCase]:
    """The `BaselineCase` of each spec run on ``backends`` with per-dtype ``tolerances``."""
    return [BaselineCase(s.case_id, s, tuple(backends), tolerances[s.dtype].rtol,
                         tolerances[s.dtype].atol, policy=policy)
            for s in specs]


# -- text format ---------------------------------------------------------------------------

def _enc_float(v: float | None) -> float | str | None:
    if v is None:
        return None
    v = float(v)
    if math.isnan(v):
        return "nan"
    if math.isinf(v):
        return "inf" if v > 0 else "-inf"
    return v


def _spec_dict(spec: Spec) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for f in fields(Spec):
        v = getattr(spec, f.name)
        if f.name in ("inputs", "targets"):
            if v is not None:
                out[f.name] = [list(row) for row in v]
        elif f.name == "parameters":
            if v is not None:
                out[f.name] = {k: [list(row) for row in rows] for k, rows in v}
        elif f.name == "sizes":
            out[f.name] = list(v)
        else:
            out[f.name] = v
    return out


def _line(obj: Any) -> str:
    return json.dumps(obj, sort_keys=True, allow_nan=False, ensure_ascii=False)


def dumps(baseline: Baseline) -> str:
    """The baseline as diff-friendly JSON text (keys sorted, one case/row per line)."""
    cases = [_line({"atol": c.atol, "backends": list(c.backends), "case_id": c.case_id,
                    "policy": c.policy, "rerun": c.rerun, "rtol": c.rtol,
                    "spec": _spec_dict(c.spec)})
             for c in baseline.cases]
    fl = {i for i, m in enumerate(ROW_COLUMNS) if m in _FLOAT_COLUMNS}
    rows = [_line([_enc_float(v) if i in fl else v for i, v in enumerate(tuple(r))])
            for r in baseline.rows]
    env = [f"{_line(k)}: {_line(v)}" for k, v in sorted(baseline.environment.items())]

    def block(items: list[str]) -> str:
        return "\n" + ",\n".join("    " + s for s in items) + "\n  " if items else ""

    parts = [
        f'  "cases": [{block(cases)}]',
        f'  "environment": {{{block(env)}}}',
        f'  "format": {_line(FORMAT)}',
        f'  "kernels": {_line(baseline.kernels)}',
        f'  "metrics": {_line(list(COMPARED_METRICS))}',
        f'  "row_columns": {_line(list(ROW_COLUMNS))}',
        f'  "rows": [{block(rows)}]',
        f'  "source": {_line(baseline.source)}',
        f'  "version": {VERSION}',
    ]
    return "{\n" + ",\n".join(parts) + "\n}\n"


def _err(where: str, problem: str) -> BaselineError:
    return BaselineError(f"baseline {where}: {problem}")


def _dec_float(v: Any, where: str, what: str) -> float | None:
    if v is None:
        return None
    if isinstance(v, bool):
        raise _err(where, f"{what}={v!r}: expected a number, null, 'inf', '-inf' or 'nan'")
    if isinstance(v, (int, float)):
        return float(v)
    if isinstance(v, str) and v in ("inf", "-inf", "nan"):
        return float(v)
    raise _err(where, f"{what}={v!r}: expected a number, null, 'inf', '-inf' or 'nan'")


def _dec_case(obj: Any, i: int, where: str) -> BaselineCase:
    at = f"cases[{i}]"
    if not isinstance(obj, dict):
        raise _err(where, f"{at}: expected an object")
    for key in ("case_id", "spec", "backends", "rtol", "atol"):
        if key not in obj:
            raise _err(where, f"{at}: no {key!r}")
    spec_d = obj["spec"]
    if not isinstance(spec_d, dict):
        raise _err(where, f"{at}.spec: expected an object of spec fields")
    names = {f.name for f in fields(Spec)}
    unknown = sorted(set(spec_d) - names)
    if unknown:
        raise _err(where, f"{at}.spec.{unknown[0]}: not a spec field "
                   f"(one of {', '.join(sorted(names))})")
    values = dict(spec_d)
    if isinstance(values.get("sizes"), list):
        values["sizes"] = tuple(values["sizes"])
    try:
        spec = Spec(**values)
    except SpecError as e:
        raise _err(where, f"{at}.spec.{e}") from None
    except TypeError as e:
        raise _err(where, f"{at}.spec: {e}") from None
    backends = obj["backends"]
    if (not isinstance(backends, list) or not backends
            or not all(isinstance(b, str) and b for b in backends)):
        raise _err(where, f"{at}.backends={backends!r}: expected a list of backend names")
    tol = {}
    for k in ("rtol", "atol"):
        v = _dec_float(obj[k], where, f"{at}.{k}")
        if v is None or not (0.0 <= v < math.inf):
            raise _err(where, f"{at}.{k}={obj[k]!r}: expected a finite number >= 0")
        tol[k] = v
    rerun = obj.get("rerun", True)
    if not isinstance(rerun, bool):
        raise _err(where, f"{at}.rerun={rerun!r}: expected true or false")
    from gradparity.judge.policy import POLICIES

    policy = obj.get("policy", "allclose")
    if policy not in POLICIES:
        raise _err(where, f"{at}.policy={policy!r}: expected one of {', '.join(POLICIES)}")
    cid = obj["case_id"]
    if not isinstance(cid, str):
        raise _err(where, f"{at}.case_id={cid!r}: expected a string")
    expected = spec.case_id
    if cid != expected and not (not rerun and cid.startswith(expected + "-arrays")):
        raise _err(where, f"{at}.case_id={cid!r}: does not match its spec "
                   f"(expected {expected!r})")
    return BaselineCase(cid, spec, tuple(backends), tol["rtol"], tol["atol"], rerun, policy)


def loads(text: str, *, where: str = "<text>") -> Baseline:
    """Parse and validate baseline text; every problem is a one-line `BaselineError`."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise _err(where, f"invalid JSON at line {e.lineno} column {e.colno}: {e.msg}") from None
    if not isinstance(data, dict) or data.get("format") != FORMAT:
        raise _err(where, f'not a gradparity baseline (no "format": "{FORMAT}")')
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise _err(where, f"version={version!r}: expected a positive integer")
    if version < VERSION:
        raise _err(where, f"format version {version} compares the last bits of one machine, "
                   f"which this gradparity no longer does (it reads version {VERSION}); "
                   "save the baseline again with 'gradparity baseline save'")
    if version > VERSION:
        raise _err(where, f"format version {version} is newer than this gradparity reads "
                   f"({VERSION}); upgrade gradparity")
    for key, kind in (("cases", list), ("rows", list), ("row_columns", list),
                      ("environment", dict)):
        if not isinstance(data.get(key), kind):
            raise _err(where, f"{key!r}: expected {'a list' if kind is list else 'an object'}")
    columns = data["row_columns"]
    absent = [c for c in ROW_COLUMNS if c not in columns]
    if absent:
        raise _err(where, f"row_columns lacks {absent[0]!r}")
    if len(set(columns)) != len(columns):
        raise _err(where, "row_columns has a duplicate name")
    pos = [columns.index(c) for c in ROW_COLUMNS]

    cases = [_dec_case(obj, i, where) for i, obj in enumerate(data["cases"])]
    by_id: dict[str, BaselineCase] = {}
    for i, c in enumerate(cases):
        if c.case_id in by_id:
            raise _err(where, f"cases[{i}]: duplicate case_id {c.case_id!r}")
        by_id[c.case_id] = c

    rows: list[BaselineRow] = []
    seen: set[tuple[Any, ...]] = set()
    for i, raw in enumerate(data["rows"]):
        at = f"rows[{i}]"
        if not isinstance(raw, list) or len(raw) != len(columns):
            raise _err(where, f"{at}: expected a list of {len(columns)} values "
                       f"({', '.join(columns)})")
        r = dict(zip(ROW_COLUMNS, (raw[p] for p in pos), strict=True))
        for c in ("case_id", "backend", "against", "quantity", "status"):
            if not isinstance(r[c], str) or not r[c]:
                raise _err(where, f"{at}.{c}={r[c]!r}: expected a non-empty string")
        if not isinstance(r["reason_code"], str):
            raise _err(where, f"{at}.reason_code={r['reason_code']!r}: expected a string")
        if r["case_id"] not in by_id:
            raise _err(where, f"{at}.case_id={r['case_id']!r}: not among the cases")
        layer = r["layer"]
        if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int)
                                  or layer < 0):
            raise _err(where, f"{at}.layer={layer!r}: expected an integer >= 0 or null")
        if (layer is None) != (r["quantity"] == _WHOLE_CASE):
            raise _err(where, f"{at}: layer is null exactly when quantity is '*'")
        values = {m: _dec_float(r[m], where, f"{at}.{m}") for m in _FLOAT_COLUMNS}
        _check_row_values(where, at, r, values, by_id[r["case_id"]])
        row = BaselineRow(r["case_id"], r["backend"], r["against"], layer, r["quantity"],
                          r["status"], r["reason_code"], **values)
        key = tuple(row[:len(KEY_COLUMNS)])
        if key in seen:
            raise _err(where, f"{at}: duplicate row {_key_text(key)}")
        seen.add(key)
        rows.append(row)
    _check_backends_have_rows(where, cases, rows)
    env = data["environment"]
    source = data.get("source", "")
    kernels = data.get("kernels", {})
    if not isinstance(kernels, dict) or not all(
            isinstance(v, dict) and all(isinstance(x, str) for x in v.values())
            for v in kernels.values()):
        raise _err(where, "'kernels': expected an object of objects of strings "
                   '(e.g. {"legacy": {"OMP_NUM_THREADS": "1"}})')
    return Baseline(cases=cases, rows=rows,
                    environment={str(k): str(v) for k, v in env.items()},
                    source=source if isinstance(source, str) else "",
                    kernels={str(n): dict(v) for n, v in kernels.items()})


def _check_row_values(where: str, at: str, r: Mapping[str, Any],
                      values: Mapping[str, float | None], case: BaselineCase) -> None:
    """One row's status is a known one, its backend one of its case's, and its errors
    non-negative numbers or null (``inf`` only for a row that did not pass; never NaN): a
    corrupted file must not switch the gate off."""
    if r["status"] not in STATUSES:
        raise _err(where, f"{at}.status={r['status']!r}: expected one of "
                   f"{', '.join(STATUSES)}")
    if r["backend"] not in case.backends:
        raise _err(where, f"{at}.backend={r['backend']!r}: not among the backends of its "
                   f"case ({', '.join(case.backends)})")
    for name, v in values.items():
        if v is None:
            continue
        if math.isnan(v) or v < 0 or (math.isinf(v) and r["status"] == "pass"):
            expected = ("a finite number >= 0 or null" if r["status"] == "pass"
                        else "a number >= 0, 'inf' or null")
            raise _err(where, f"{at}.{name}={_enc_float(v)!r}: expected {expected}")


def _check_backends_have_rows(where: str, cases: Sequence[BaselineCase],
                              rows: Sequence[BaselineRow]) -> None:
    """Every backend a case lists has rows: dropping a backend from a case must not drop
    its rows from the check silently (the reverse is caught per row)."""
    have = {(r.case_id, r.backend) for r in rows}
    for i, c in enumerate(cases):
        for b in c.backends:
            if (c.case_id, b) not in have:
                raise _err(where, f"cases[{i}].backends: {b!r} has no rows for case "
                           f"{c.case_id!r}")


def _key_text(key: Sequence[Any]) -> str:
    case_id, backend, against, layer, q = key
    tensor = q if layer is None or q == "loss" else f"{q}{layer}"
    return f"{case_id} {backend} {tensor}" + ("" if against == "reference" else
                                              f" vs {against}")


def load_baseline(path: str | Path) -> Baseline:
    """Read a baseline file; a missing, unreadable or invalid file is a `BaselineError`."""
    p = Path(path)
    where = repr(str(p))
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise _err(where, "no such file") from None
    except IsADirectoryError:
        raise _err(where, "is a directory, expected a file") from None
    except UnicodeDecodeError:
        raise _err(where, "not UTF-8 text") from None
    except OSError as e:
        raise _err(where, e.strerror or str(e)) from None
    return loads(text, where=where)


def save_baseline(baseline: Baseline, path: str | Path, *, force: bool = False) -> Path:
    """Write ``baseline`` atomically; an existing file is replaced only with ``force``."""
    from gradparity.experiments.io import text_writer, write_file_atomically

    p = Path(path)
    if p.is_dir():
        raise _err(repr(str(p)), "is a directory, expected a file name")
    if p.exists() and not force:
        raise _err(repr(str(p)), "exists; use --force to replace it")
    return write_file_atomically(p, text_writer(dumps(baseline)))


# -- running and comparing -----------------------------------------------------------------

def rerunnable(baseline: Baseline) -> tuple[Baseline, list[str]]:
    """The part of ``baseline`` that ``check`` can run again, and notes on what is not:
    cases with custom arrays, and backends that are not built in."""
    from gradparity.adapters.registry import BACKENDS

    pairs, notes = [], []
    custom = [c.case_id for c in baseline.cases if not c.rerun]
    if custom:
        notes.append(f"{len(custom)} case(s) with custom arrays cannot be run again "
                     "(checked by the pytest plugin only)")
    unknown: set[str] = set()
    for c in baseline.cases:
        if not c.rerun:
            continue
        for b in c.backends:
            if b in BACKENDS:
                pairs.append((c.case_id, b))
            else:
                unknown.add(b)
    if unknown:
        notes.append(f"backend(s) {', '.join(sorted(unknown))} are not built in; their rows "
                     "are not checked")
    return baseline.restricted(pairs), notes


def rerun_baseline(baseline: Baseline, *, progress: Callable[..., None] | None = None,
                   concurrent: bool = False) -> pd.DataFrame:
    """Run every case of ``baseline`` again, on its backends with its tolerances and policy
    (``concurrent``: see `run_specs`).

    Every case must be rerunnable (see `rerunnable`). Rows come back in the baseline's
    case order; the table's ``attrs["environment"]`` is the current environment (with the
    frameworks' settings of the processes that computed).
    """
    import pandas as pd

    from gradparity.core.spec import DTYPES
    from gradparity.experiments.environment import environment
    from gradparity.experiments.runner import run_specs
    from gradparity.judge.tolerances import Tolerance

    groups: dict[tuple[tuple[str, ...], float, float, str], list[Spec]] = {}
    for c in baseline.cases:
        if not c.rerun:
            raise ValueError(f"case {c.case_id} has custom arrays and cannot be run again")
        groups.setdefault((c.backends, c.rtol, c.atol, c.policy), []).append(c.spec)
    total = sum(len(v) for v in groups.values())
    done = 0
    tables = []
    for (backends, rtol, atol, policy), specs in groups.items():
        offset = done

        def report(i: int, _n: int, spec: Spec, statuses: dict[str, str],
                   _offset: int = offset) -> None:
            if progress is not None:
                progress(_offset + i, total, spec, statuses)

        tol = {d: Tolerance(rtol=rtol, atol=atol) for d in DTYPES}
        tables.append(run_specs(specs, backends=list(backends), tolerances=tol,
                                progress=report, policy=policy, concurrent=concurrent))
        done += len(specs)
    if not tables:
        return run_specs([], backends=[])
    df = pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]
    if len(tables) > 1:
        order = {c.case_id: i for i, c in enumerate(baseline.cases)}
        rank = df["case_id"].map(order)
        df = df.iloc[rank.argsort(kind="stable")].reset_index(drop=True)
    df.attrs["environment"] = dict(sorted(
        (tables[0].attrs.get("environment") or environment()).items()))
    return df


def check_factor(factor: float, *, name: str = "factor") -> float:
    """``factor`` if it is a finite number >= 1, else a one-line `UsageError` naming
    ``name``."""
    if not (isinstance(factor, (int, float)) and not isinstance(factor, bool)
            and math.isfinite(factor) and factor >= 1.0):
        raise UsageError(f"{name}={factor!r}: expected a finite number >= 1")
    return float(factor)


def differing_keys(before: Mapping[str, str], after: Mapping[str, str]) -> list[str]:
    """Environment entries that differ and can change numbers (versions, BLAS, CPU, SIMD
    features, kernel variables, threads), in a stable order."""
    keys = sorted((set(before) | set(after)) - _NOT_NUMERICAL)
    return [k for k in keys if (before.get(k) or "") != (after.get(k) or "")]


def environment_differences(before: Mapping[str, str], after: Mapping[str, str], *,
                            labels: tuple[str, str] = ("in the baseline", "now")
                            ) -> list[str]:
    """``"torch: 2.13.0 in the baseline, 2.14.0 now"`` for each entry that differs
    (`differing_keys`); an entry one side did not record reads ``not recorded``."""
    return [f"{k}: {before.get(k) or 'not recorded'} {labels[0]}, "
            f"{after.get(k) or 'not recorded'} {labels[1]}"
            for k in differing_keys(before, after)]


def accuracy_limits(before: Any, ref_now: Any, *, factor: float, rule: CalibratedRule
                    ) -> Any:
    """``max(factor x before, rule.multiplier x ref_now + rule.floor_eps)``, elementwise
    (NumPy arrays or floats). A non-finite reference error gives no budget (the factor
    alone decides)."""
    import numpy as np

    before = np.asarray(before, dtype=np.float64)
    ref_now = np.asarray(ref_now, dtype=np.float64)
    with np.errstate(invalid="ignore", over="ignore"):
        budget = np.where(np.isfinite(ref_now), rule.multiplier * ref_now + rule.floor_eps,
                          rule.floor_eps)
        return np.fmax(factor * before, budget)


def compare_with_baseline(baseline: Baseline | pd.DataFrame, table: pd.DataFrame, *,
                          factor: float = DEFAULT_FACTOR, rule: CalibratedRule = DEFAULT_RULE,
                          machine: Sequence[str] = ()) -> pd.DataFrame:
    """Regressions of ``table`` against ``baseline`` (see the module doc).

    Both sides are compared in full: restrict the baseline first (`Baseline.restricted`)
    to compare part of it. ``table`` is a result table (`run_specs`); only `KEY_COLUMNS`,
    ``status``, ``reason_code``, ``reason`` and the oracle errors are read. ``machine``
    names the environment entries that differ from the baseline's (`differing_keys`); each
    regression then says so in its ``detail``. Returns one row per problem with
    `REGRESSION_COLUMNS`, ordered by kind, then case and backprop order.
    """
    import numpy as np
    import pandas as pd

    check_factor(factor)
    failing = FAILING
    before = baseline.table() if isinstance(baseline, Baseline) else baseline.copy()
    table = end_to_end(table)
    after = table[[c for c in (*KEY_COLUMNS, "status", "reason_code", "reason",
                               *_FLOAT_COLUMNS) if c in table.columns]].copy()
    for c in ("reason", "reason_code"):
        if c not in after.columns:
            after[c] = ""
    for c in _FLOAT_COLUMNS:
        if c not in after.columns:
            after[c] = np.nan
    for c in ("case_id", "backend", "against", "quantity", "status"):
        before[c] = before[c].astype(str)
        after[c] = after[c].astype(str)
    for df in (before, after):
        df["reason_code"] = df["reason_code"].fillna("").astype(str)
        df["_layer"] = pd.array(df["layer"].tolist(), dtype="Int64").fillna(-1).astype(int)
        df["_pos"] = np.arange(len(df))
    keys = ["case_id", "backend", "against", "_layer", "quantity"]
    m = before.merge(after, on=keys, how="outer", suffixes=("_b", "_a"), indicator=True)
    case_rank = {c: i for i, c in enumerate(dict.fromkeys(
        list(before["case_id"]) + list(after["case_id"])))}

    out: list[dict[str, Any]] = []

    def entry(kind: str, r: Mapping[str, Any], **kw: Any) -> None:
        layer = int(r["_layer"])
        e = {"kind": kind, "case_id": r["case_id"], "backend": r["backend"],
             "against": r["against"], "layer": None if layer < 0 else layer,
             "quantity": r["quantity"], "metric": "", "before": np.nan, "after": np.nan,
             "ratio": np.nan, "limit": np.nan, "status_before": "", "status_after": "",
             "detail": "", "_pos": r.get("_pos_b") if kind != "new_row" else r.get("_pos_a")}
        e.update(kw)
        out.append(e)

    both = m[m["_merge"] == "both"].reset_index(drop=True)
    if len(both):
        def col(name: str) -> np.ndarray:
            return both[name].to_numpy(dtype=np.float64, na_value=np.nan)

        # Where neither side has an oracle error, the fallback metric is compared instead.
        no_oracle = np.isnan(col("err_oracle_eps_b")) & np.isnan(col("err_oracle_eps_a"))
        checks = [(metric, ref, ~no_oracle) for metric, ref in COMPARED_METRICS.items()]
        checks.append((FALLBACK_METRIC, None, no_oracle))
        for metric, ref, where in checks:
            b, a = col(f"{metric}_b"), col(f"{metric}_a")
            r_now = col(f"{ref}_a") if ref is not None else np.full(len(b), np.nan)
            limit = accuracy_limits(b, r_now, factor=factor, rule=rule)
            with np.errstate(invalid="ignore"):
                worse = (a > limit) | (~np.isfinite(a) & np.isfinite(b))
            grew = where & ~np.isnan(b) & worse
            for i in np.flatnonzero(grew):
                r = both.iloc[i]
                ratio = (a[i] / b[i]) if b[i] > 0 else (np.inf if a[i] > 0 else np.nan)
                entry("grew", r, metric=metric, before=b[i], after=a[i], ratio=ratio,
                      limit=limit[i], status_before=r["status_b"], status_after=r["status_a"])
        newly = both["status_a"].isin(failing) & ~both["status_b"].isin(failing)
        for _, r in both[newly].iterrows():
            entry("new_failure", r, metric="status", status_before=r["status_b"],
                  status_after=r["status_a"], detail=str(r["reason"] or ""))
        reason = (both["status_b"].isin(_AGREEING) & ~both["status_a"].isin(_AGREEING)
                  & ~both["status_a"].isin(failing))
        for _, r in both[reason].iterrows():
            entry("new_reason", r, metric="status", status_before=r["status_b"],
                  status_after=r["status_a"], detail=str(r["reason"] or ""))

    only_b = m[m["_merge"] == "left_only"]
    only_a = m[m["_merge"] == "right_only"]
    group = ["case_id", "backend", "against"]
    parts_b = {tuple(k): g for k, g in only_b.groupby(group, sort=False)}
    parts_a = {tuple(k): g for k, g in only_a.groupby(group, sort=False)}
    empty = m.iloc[:0]
    for key in dict.fromkeys([*parts_b, *parts_a]):
        rb, ra = parts_b.get(key, empty), parts_a.get(key, empty)
        whole_b = rb[rb["quantity"] == _WHOLE_CASE]
        whole_a = ra[ra["quantity"] == _WHOLE_CASE]
        if len(whole_a) and len(rb) and not len(whole_b):
            # The new run has one whole-case row (error, skipped) instead of the tensors.
            wa = whole_a.iloc[0]
            worst = worst_status(rb["status_b"], default="")
            status = str(wa["status_a"])
            if status in failing and worst in failing:
                continue  # failing before, failing now
            entry("new_failure" if status in failing else "missing",
                  dict(rb.iloc[0], _layer=-1, quantity=_WHOLE_CASE), metric="status",
                  status_before=worst, status_after=status,
                  detail=f"{len(rb)} baseline rows not produced: {status}: {wa['reason']}")
            continue
        if len(whole_b) and len(ra) and not len(whole_a):
            # The baseline has a whole-case row; the new run has the tensors.
            wb = whole_b.iloc[0]
            if wb["status_b"] in failing:
                continue  # an error fixed: not a regression
            entry("new_row", dict(ra.iloc[0], _layer=-1, quantity=_WHOLE_CASE),
                  status_before=str(wb["status_b"]),
                  status_after=worst_status(ra["status_a"], default=""),
                  detail=f"{len(ra)} rows not in the baseline (it has {wb['status_b']} "
                         "for this case and backend)")
            continue
        for _, r in rb.iterrows():
            entry("missing", r, status_before=r["status_b"])
        for _, r in ra.iterrows():
            if r["status_a"] in failing:
                entry("new_failure", r, metric="status", status_after=r["status_a"],
                      detail="not in the baseline: " + str(r["reason"] or ""))
            else:
                entry("new_row", r, status_after=r["status_a"])

    reg = pd.DataFrame(out, columns=[*REGRESSION_COLUMNS, "_pos"])
    if reg.empty:
        return reg.drop(columns="_pos")
    if machine:
        note = f"[this machine differs from the baseline's: {', '.join(machine)}]"
        reg["detail"] = [f"{d} {note}".strip() for d in reg["detail"]]
    reg["_kind"] = reg["kind"].map({k: i for i, k in enumerate(KINDS)})
    reg["_case"] = reg["case_id"].map(case_rank)
    reg = reg.sort_values(["_kind", "_case", "backend", "_pos", "metric"], kind="stable",
                          na_position="first")
    reg = reg.drop(columns=["_kind", "_case", "_pos"]).reset_index(drop=True)
    reg["layer"] = pd.array(reg["layer"].tolist(), dtype="Int64")
    return reg


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        if math.isnan(v):
            return ""
        return "inf" if math.isinf(v) else f"{v:.4g}"
    return str(v)


def format_regressions(reg: pd.DataFrame, *, limit: int = 40) -> str:
    """The regression table as aligned text: kind, case, backend, tensor, metric, before,
    after, ratio (after / before) and the limit it broke."""
    import pandas as pd

    if reg.empty:
        return "no regressions\n"
    header = ("kind", "case_id", "backend", "tensor", "metric", "before", "after", "ratio",
              "limit")
    lines = []
    for r in reg.head(limit).itertuples(index=False):
        layer = None if pd.isna(r.layer) else int(r.layer)
        tensor = r.quantity if layer is None or r.quantity == "loss" else f"{r.quantity}{layer}"
        if r.against != "reference":
            tensor += f" vs {r.against}"
        if r.kind == "grew":
            before, after = _fmt(r.before), _fmt(r.after)
            ratio, lim = _fmt(r.ratio), _fmt(r.limit)
        else:
            before = r.status_before or "-"
            after = r.status_after or "-"
            ratio = lim = ""
        lines.append((_KIND_LABELS[r.kind], r.case_id, r.backend, tensor, r.metric or "-",
                      before, after, ratio, lim, r.detail))
    widths = [max(len(h), *(len(x[i]) for x in lines)) for i, h in enumerate(header)]
    right = {5, 6, 7, 8}

    def fmt(cells: Sequence[str]) -> str:
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths, strict=False))).rstrip()

    text = [fmt(header)] + [
        fmt(x[:9]) + (f"  {x[9]}" if x[9] else "") for x in lines]
    if len(reg) > limit:
        text.append(f"... {len(reg) - limit} more")
    return "\n".join(text) + "\n"


def regression_counts(reg: pd.DataFrame) -> str:
    """``"1 new failure, 2 grew"`` (kinds in `KINDS` order, non-zero only)."""
    counts = reg["kind"].value_counts() if not reg.empty else {}
    parts = []
    for k in KINDS:
        n = int(counts.get(k, 0)) if len(reg) else 0
        if n:
            label = _KIND_LABELS[k]
            parts.append(f"{n} {label}" + ("s" if n > 1 and k in ("new_failure", "missing",
                                                                 "new_row", "new_reason")
                                                 else ""))
    return ", ".join(parts) or "no regressions"


# -- diff of two results -------------------------------------------------------------------

DIFF_COLUMNS: tuple[str, ...] = (
    "change", "case_id", "backend", "against", "layer", "quantity", "status_a", "status_b",
    "err_a", "err_b", "ref_err_a", "ref_err_b", "worst_a", "worst_b", "limit_a", "limit_b",
)
#: ``change`` values of `diff_results`, worst first.
CHANGES: tuple[str, ...] = ("beyond_budget", "status", "only_a", "only_b", "within_budget",
                            "same")


@dataclass
class Comparable:
    """Rows and environment of a result folder or a baseline file (what `diff` reads)."""

    label: str
    rows: pd.DataFrame
    environment: dict[str, str]


def load_comparable(path: str | Path, *, option: str = "A") -> Comparable:
    """A result folder (``table.csv``, or ``table.csv.gz``, and ``environment.json``, as
    ``gradparity run`` writes them) or a baseline file, as rows with `ROW_COLUMNS`;
    one-line `UsageError` otherwise."""
    import pandas as pd

    p = Path(path)
    if p.is_dir():
        table_path = p / "table.csv"
        if not table_path.is_file() and (p / "table.csv.gz").is_file():
            table_path = p / "table.csv.gz"
        if not table_path.is_file():
            raise UsageError(f"{option}={str(p)!r}: no table.csv in this folder, expected a "
                             "result folder of 'gradparity run' or a baseline file")
        try:
            table = pd.read_csv(table_path, keep_default_na=False, na_values=[""])
            rows = pd.DataFrame([tuple(r) for r in rows_from_table(table)],
                                columns=list(ROW_COLUMNS))
        except (ValueError, KeyError, pd.errors.ParserError, UnicodeDecodeError) as e:
            raise UsageError(f"{option}={str(table_path)!r}: not a result table "
                             f"({str(e).splitlines()[0] if str(e) else type(e).__name__})"
                             ) from None
        env: dict[str, str] = {}
        env_path = p / "environment.json"
        if env_path.is_file():
            try:
                raw = json.loads(env_path.read_text(encoding="utf-8"))
            except (ValueError, UnicodeDecodeError):
                raise UsageError(f"{option}={str(env_path)!r}: not JSON") from None
            if isinstance(raw, dict):
                env = {str(k): str(v) for k, v in raw.items()}
        return Comparable(str(p), rows, env)
    if p.is_file():
        b = load_baseline(p)
        return Comparable(str(p), b.table()[list(ROW_COLUMNS)], dict(b.environment))
    raise UsageError(f"{option}={str(p)!r}: no such file or folder, expected a result "
                     "folder or a baseline file")


def diff_results(a: pd.DataFrame, b: pd.DataFrame, *, factor: float = DEFAULT_FACTOR,
                 rule: CalibratedRule = DEFAULT_RULE) -> pd.DataFrame:
    """Tensor by tensor, how ``b`` differs from ``a`` (rows with `ROW_COLUMNS`).

    Errors are against each side's own oracle, in eps. A tensor whose errors differ is
    ``within_budget`` when each side is within the other's limit, the limit being
    `accuracy_limits` (``max(factor x other error, multiplier x own reference error +
    floor)``): both are as accurate as their own machine's rounding allows, or as each
    other. Otherwise it is ``beyond_budget``. ``status`` is a changed status, ``only_a`` /
    ``only_b`` a row on one side. Returns `DIFF_COLUMNS`, worst change first, then the
    largest change of the normwise error (in eps) first, then in ``a``'s order.
    """
    import numpy as np
    import pandas as pd

    check_factor(factor)
    sides = []
    for df in (a, b):
        df = df.copy()
        df["_layer"] = pd.array(df["layer"].tolist(), dtype="Int64").fillna(-1).astype(int)
        df["_pos"] = np.arange(len(df))
        sides.append(df)
    keys = ["case_id", "backend", "against", "_layer", "quantity"]
    m = sides[0].merge(sides[1], on=keys, how="outer", suffixes=("_a", "_b"), indicator=True)

    def col(name: str) -> np.ndarray:
        return m[name].to_numpy(dtype=np.float64, na_value=np.nan)

    out = pd.DataFrame({
        "case_id": m["case_id"], "backend": m["backend"], "against": m["against"],
        "layer": pd.array([None if x < 0 else int(x) for x in m["_layer"]], dtype="Int64"),
        "quantity": m["quantity"], "status_a": m["status_a"].fillna(""),
        "status_b": m["status_b"].fillna(""),
    })
    within = np.ones(len(m), dtype=bool)
    same = np.ones(len(m), dtype=bool)
    no_oracle = np.isnan(col("err_oracle_eps_a")) & np.isnan(col("err_oracle_eps_b"))
    for metric, ref in COMPARED_METRICS.items():
        short = "err" if metric == "err_oracle_eps" else "worst"
        ea, eb = col(f"{metric}_a"), col(f"{metric}_b")
        fa, fb = np.where(no_oracle, col(f"{FALLBACK_METRIC}_a"), ea), np.where(
            no_oracle, col(f"{FALLBACK_METRIC}_b"), eb)
        ra = np.where(no_oracle, np.nan, col(f"{ref}_a"))
        rb = np.where(no_oracle, np.nan, col(f"{ref}_b"))
        la = accuracy_limits(fb, ra, factor=factor, rule=rule)  # what a may be, given b
        lb = accuracy_limits(fa, rb, factor=factor, rule=rule)
        with np.errstate(invalid="ignore"):
            ok = ((fa <= la) | (np.isnan(fa) & np.isnan(fb))) & (
                (fb <= lb) | (np.isnan(fa) & np.isnan(fb)))
            ok |= np.isinf(fa) & np.isinf(fb)
        within &= ok
        same &= (fa == fb) | (np.isnan(fa) & np.isnan(fb))
        out[f"{short}_a"], out[f"{short}_b"] = ea, eb
        if short == "err":
            out["ref_err_a"], out["ref_err_b"] = col(f"{ref}_a"), col(f"{ref}_b")
            out["limit_a"], out["limit_b"] = la, lb
    merge = m["_merge"].to_numpy()
    status_changed = (out["status_a"] != out["status_b"]).to_numpy()
    change = np.select(
        [merge == "left_only", merge == "right_only", status_changed, ~within, same],
        ["only_a", "only_b", "status", "beyond_budget", "same"], default="within_budget")
    out.insert(0, "change", change)
    rank = {c: i for i, c in enumerate(CHANGES)}
    with np.errstate(all="ignore"):
        moved = np.abs(out["err_b"].to_numpy() - out["err_a"].to_numpy())
    moved = np.nan_to_num(moved, nan=0.0, posinf=np.finfo(np.float64).max)
    order = np.lexsort((m["_pos_b"].fillna(len(m)).to_numpy(),
                        m["_pos_a"].fillna(len(m)).to_numpy(), -moved,
                        out["change"].map(rank).to_numpy()))
    return out.iloc[order].reset_index(drop=True)[list(DIFF_COLUMNS)]


def format_diff(diff: pd.DataFrame, *, limit: int = 40) -> str:
    """The changed tensors as aligned text (worst first), ``same`` ones left out."""
    import pandas as pd

    shown = diff[~diff["change"].isin(["same"])]
    if shown.empty:
        return ""
    header = ("change", "case_id", "backend", "tensor", "status A", "status B", "err A",
              "err B", "limit B")
    lines = []
    for r in shown.head(limit).itertuples(index=False):
        layer = None if pd.isna(r.layer) else int(r.layer)
        tensor = r.quantity if layer is None or r.quantity == "loss" else f"{r.quantity}{layer}"
        lines.append((r.change.replace("_", " "), r.case_id, r.backend, tensor,
                      r.status_a or "-", r.status_b or "-", _fmt(float(r.err_a)),
                      _fmt(float(r.err_b)), _fmt(float(r.limit_b))))
    widths = [max(len(h), *(len(x[i]) for x in lines)) for i, h in enumerate(header)]
    right = {6, 7, 8}
    text = ["  ".join(c.rjust(w) if i in right else c.ljust(w)
                      for i, (c, w) in enumerate(zip(cells, widths, strict=True))).rstrip()
            for cells in [header, *lines]]
    if len(shown) > limit:
        text.append(f"... {len(shown) - limit} more")
    return "\n".join(text) + "\n"
