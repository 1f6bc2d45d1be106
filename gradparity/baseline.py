"""Baselines: a run's per-tensor statuses and error metrics, kept to gate later runs on.

A baseline is a JSON text file (strict JSON, sorted keys, one case and one row per line,
floats written with ``repr`` so they read back bit for bit) holding:

* ``cases``: every field of every spec (explicit ``inputs``/``targets`` included), the
  backends it ran on and its tolerances, so the file alone is enough to run it again;
* ``rows``: one per (case_id, backend, against, layer, quantity), with the status, the
  compared metrics (`COMPARED_METRICS`) and a floor for each (`FLOOR_COLUMNS`);
* ``environment``: versions, BLAS, CPU (`gradparity.environment`), to warn when a check runs
  on a different stack. No timestamps: saving the same run twice gives the same bytes.

`compare_with_baseline` reports, for a new table of the same cases, every

* ``new_failure``: status ``fail`` or ``error`` where the baseline had another status;
* ``missing``: a baseline row the new run did not produce (or a backend now skipped);
* ``new_row``: a row of a baseline case and backend that the baseline does not have;
* ``grew``: a compared metric above ``factor * max(before, floor)`` (default factor 4).

Only `COMPARED_METRICS` (``max_abs_err``, ``norm_err_eps``) are compared; other columns
of a table are ignored, so tables may gain columns without touching baselines. A baseline
holds end-to-end rows: rows of a table whose ``mode`` is not ``end_to_end`` (the
``layer_own`` rows of ``gradparity run --layer-own``) are left out.
``max_rel_err`` and ``max_ulp`` are left out on purpose: they are dominated by elements
near zero, where two correct results differ by a large relative amount.

The floors (`tensor_floors`) keep rounding noise from counting as a regression. A floor is
the larger of one unit in the last place (one ULP of the tensor's largest element for
``max_abs_err``; 1 for ``norm_err_eps``, which one ULP in every element cannot exceed) and
the tensor's *reordering noise*: how far the reference moves when the same network is
evaluated with its features, hidden units and examples permuted, so that every sum runs in
another order. A tensor whose sums cancel gets a floor that large, an exactly computed
one keeps the ULP floor. On the default suite, backends fed permuted networks (a stand-in
for a framework release that sums in another order) raise no regression at factor 4 for
torch and 2 of 4,414 rows for jax, while swapping torch's rows for jax's (a real change of
numerics: other kink conventions, GELU and saturated-tanh formulas) raises 545.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gradparity.errors import SpecError, UsageError
from gradparity.spec import Spec

if TYPE_CHECKING:
    import pandas as pd

    from gradparity.case import Case
    from gradparity.gradients import GradientSet

FORMAT = "gradparity-baseline"
VERSION = 1
#: Metrics a check compares, with their floors (see the module doc).
COMPARED_METRICS: tuple[str, ...] = ("max_abs_err", "norm_err_eps")
#: Floor of norm_err_eps, in units of eps.
NORM_FLOOR_EPS = 1.0
#: Floor of max_abs_err, in ULPs of the tensor's largest element.
ABS_FLOOR_ULPS = 1.0
DEFAULT_FACTOR = 4.0
KEY_COLUMNS: tuple[str, ...] = ("case_id", "backend", "against", "layer", "quantity")
#: The floor column of each compared metric (stored per row, see `tensor_floors`).
FLOOR_COLUMNS: dict[str, str] = {"max_abs_err": "abs_floor", "norm_err_eps": "norm_floor"}
ROW_COLUMNS: tuple[str, ...] = (
    *KEY_COLUMNS, "status", *COMPARED_METRICS, *(FLOOR_COLUMNS[m] for m in COMPARED_METRICS))
_FLOAT_COLUMNS = (*COMPARED_METRICS, *FLOOR_COLUMNS.values())
#: Environment entries whose change a check warns about (they can change the numbers).
ENVIRONMENT_KEYS: tuple[str, ...] = (
    "gradparity", "python", "numpy", "torch", "jax", "jaxlib", "blas", "platform", "cpu",
)
REGRESSION_COLUMNS: tuple[str, ...] = (
    "kind", "case_id", "backend", "against", "layer", "quantity", "metric", "before", "after",
    "ratio", "limit", "status_before", "status_after", "detail",
)
KINDS: tuple[str, ...] = ("new_failure", "missing", "new_row", "grew")
_KIND_LABELS = {"new_failure": "new failure", "missing": "missing row", "new_row": "new row",
                "grew": "grew"}
_FAILING = frozenset({"fail", "error"})
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
    """Cases, rows (tuples in `ROW_COLUMNS` order) and the environment they came from."""

    cases: list[BaselineCase]
    rows: list[tuple[Any, ...]]
    environment: dict[str, str] = field(default_factory=dict)
    source: str = ""

    def case(self, case_id: str) -> BaselineCase | None:
        for c in self.cases:
            if c.case_id == case_id:
                return c
        return None

    def table(self) -> pd.DataFrame:
        """The rows as a DataFrame (`ROW_COLUMNS` plus the case's ``dtype``)."""
        import pandas as pd

        df = pd.DataFrame(self.rows, columns=list(ROW_COLUMNS))
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
                       rows=[r for r in self.rows if (r[0], r[1]) in keep])

    def merged(self, newer: Baseline) -> Baseline:
        """This baseline updated with ``newer``: its cases replace ours (in place; new ones
        go last) and its (case_id, backend) rows replace ours. A case whose tolerances,
        policy or arrays changed keeps none of its old rows."""
        settings = {c.case_id: (c.rerun, c.rtol, c.atol, c.policy) for c in self.cases}
        incoming = {c.case_id: c for c in newer.cases}
        reset = {cid for cid, c in incoming.items()
                 if cid in settings and settings[cid] != (c.rerun, c.rtol, c.atol, c.policy)}
        replaced = {(r[0], r[1]) for r in newer.rows}
        rows = [r for r in self.rows if r[0] not in reset and (r[0], r[1]) not in replaced]
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
        rows.sort(key=lambda r: order[r[0]])  # stable: keeps backprop order within a case
        return Baseline(cases=cases, rows=rows, environment=dict(newer.environment),
                        source=newer.source or self.source)


# -- building ------------------------------------------------------------------------------

#: Seeds of the permutations that measure a tensor's reordering noise (see `tensor_floors`).
REORDER_SEEDS: tuple[int, ...] = (1, 2, 3)


def _permuted_reference(case: Case, seed: int) -> GradientSet:
    """The reference on the same network with its input features, hidden units and
    examples permuted (a mathematically identical MLP whose sums run in another order),
    mapped back to the original order."""
    import numpy as np

    from gradparity.case import Case as _Case
    from gradparity.gradients import GradientSet as _GS
    from gradparity.reference.mlp import reference_gradients

    spec = case.spec
    rng = np.random.default_rng(seed)
    perm = [rng.permutation(n) for n in spec.sizes[:-1]] + [np.arange(spec.sizes[-1])]
    ex = rng.permutation(spec.batch)
    params = {}
    for layer in range(1, spec.depth + 1):
        params[f"W{layer}"] = np.ascontiguousarray(
            case.parameters[f"W{layer}"][perm[layer]][:, perm[layer - 1]])
        params[f"b{layer}"] = np.ascontiguousarray(case.parameters[f"b{layer}"][perm[layer]])
    permuted = _Case(spec=spec, X=np.ascontiguousarray(case.X[perm[0]][:, ex]),
                     Y=np.ascontiguousarray(case.Y[:, ex]), parameters=params,
                     labels=None if case.labels is None else case.labels[ex])
    g = reference_gradients(permuted)
    inv = [np.argsort(p) for p in perm]
    back = np.argsort(ex)

    def restore(key: str, a: np.ndarray) -> np.ndarray:
        q = key.rstrip("0123456789")
        layer = int(key[len(q):])
        if q == "dW":
            return a[inv[layer]][:, inv[layer - 1]]
        if q == "db":
            return a[inv[layer]]
        return a[inv[layer]][:, back]  # Z, A, dZ, dA: (n_l, m)

    return _GS(backend="reference", loss=g.loss,
               forward={k: restore(k, v) for k, v in g.forward.items()},
               grads={k: restore(k, v) for k, v in g.grads.items()})


def tensor_floors(case: Case, reference: GradientSet, *,
                  seeds: Sequence[int] = REORDER_SEEDS) -> dict[tuple[int, str],
                                                                tuple[float, float]]:
    """``{(layer, quantity): (abs_floor, norm_floor)}`` for every tensor of the reference.

    The floor of a metric is the larger of one unit in the last place (``spacing`` of the
    tensor's largest finite |value| in the case's dtype for ``max_abs_err``; 1 for
    ``norm_err_eps``) and the tensor's reordering noise: the largest ``max_abs_err`` and
    ``norm_err_eps`` between the reference and the reference of the same network with its
    features, hidden units and examples permuted (one per seed). A backend that only sums
    in another order moves a tensor by about that much, which is no regression.
    """
    import numpy as np

    from gradparity.compare import compare_arrays
    from gradparity.gradients import backprop_order

    spec = case.spec
    dtype = np.dtype(spec.dtype)
    others = []
    for seed in seeds:
        try:
            others.append(_permuted_reference(case, seed))
        except Exception:  # noqa: BLE001 - no noise estimate: the ULP floors remain
            pass
    out: dict[tuple[int, str], tuple[float, float]] = {}
    for layer, q in backprop_order(spec.depth, with_output_dA=spec.loss_form == "probs"):
        x = reference.get(layer, q)
        if x is None:
            continue
        a = np.abs(np.asarray(x, dtype=np.float64))
        a = a[np.isfinite(a)]
        scale = float(a.max()) if a.size else 0.0
        abs_floor = ABS_FLOOR_ULPS * float(np.spacing(dtype.type(scale)))
        norm_floor = NORM_FLOOR_EPS
        for g in others:
            y = g.get(layer, q)
            if y is None or np.shape(y) != np.shape(x):
                continue
            with np.errstate(all="ignore"):
                c = compare_arrays(y, x, rtol=0.0, atol=0.0, dtype=spec.dtype)
            abs_floor = max(abs_floor, c.max_abs_err)
            norm_floor = max(norm_floor, c.norm_err_eps)
        out[(layer, q)] = (abs_floor, norm_floor)
    return out


def spec_floors(spec: Spec) -> dict[tuple[int, str], tuple[float, float]]:
    """`tensor_floors` of the reference on ``make_case(spec)`` (empty if it raises)."""
    from gradparity.case import make_case
    from gradparity.reference.mlp import reference_gradients

    try:
        case = make_case(spec)
        return tensor_floors(case, reference_gradients(case))
    except Exception:  # noqa: BLE001 - the run has recorded the error row already
        return {}


def end_to_end(table: pd.DataFrame) -> pd.DataFrame:
    """The rows of ``table`` a baseline holds: all, or those whose ``mode`` is
    ``end_to_end`` when the table has that column."""
    if "mode" not in table.columns:
        return table
    return table[table["mode"].astype(str) == "end_to_end"]


def _none_if_na(v: Any) -> Any:
    try:
        import pandas as pd

        if v is None or v is pd.NA or (isinstance(v, float) and math.isnan(v)):
            return None
    except TypeError:
        pass
    return v


def rows_from_table(table: pd.DataFrame,
                    floors: Mapping[str, Mapping[tuple[int, str], tuple[float, float]]],
                    case_ids: Mapping[str, str] | None = None) -> list[tuple[Any, ...]]:
    """Baseline rows from a result table (any extra columns ignored).

    ``floors`` maps a case_id to its `tensor_floors`; ``case_ids`` renames case ids (for
    cases with custom arrays).
    """
    rename = case_ids or {}
    rows = []
    table = end_to_end(table)
    cols = [c for c in ROW_COLUMNS if c not in FLOOR_COLUMNS.values()]
    missing = [c for c in cols if c not in table.columns]
    if missing:
        raise ValueError(f"table lacks columns {missing}")
    for rec in table[cols].itertuples(index=False, name=None):
        r = dict(zip(cols, (_none_if_na(v) for v in rec), strict=True))
        layer = None if r["layer"] is None else int(r["layer"])
        cid = str(r["case_id"])
        floor = (None, None) if layer is None else floors.get(cid, {}).get(
            (layer, str(r["quantity"])), (None, None))
        metrics = [None if r[m] is None else float(r[m]) for m in COMPARED_METRICS]
        rows.append((rename.get(cid, cid), str(r["backend"]), str(r["against"]), layer,
                     str(r["quantity"]), str(r["status"]), *metrics, *floor))
    return rows


def baseline_from_table(
    table: pd.DataFrame,
    cases: Sequence[BaselineCase],
    *,
    floors: Mapping[str, Mapping[tuple[int, str], tuple[float, float]]] | None = None,
    environment: Mapping[str, str] | None = None,
    source: str = "",
) -> Baseline:
    """A baseline of ``cases`` from their result table.

    ``floors`` (case_id -> `tensor_floors`) default to the reference on each rerunnable
    case's spec; ``environment`` defaults to the table's ``attrs["environment"]``.
    """
    if floors is None:
        floors = {c.case_id: spec_floors(c.spec) for c in cases if c.rerun}
    env = dict(environment if environment is not None else table.attrs.get("environment", {}))
    return Baseline(cases=list(cases), rows=rows_from_table(table, floors),
                    environment={str(k): str(v) for k, v in sorted(env.items())},
                    source=source)


def make_baseline(
    specs: Sequence[Spec],
    *,
    backends: Sequence[str],
    tolerances: Mapping[str, Any] | None = None,
    policy: str = "allclose",
    source: str = "",
    progress: Callable[..., None] | None = None,
) -> tuple[Baseline, pd.DataFrame]:
    """Run ``specs`` (`run_specs`) and return the baseline and the run's table."""
    from gradparity.experiments.runner import run_specs
    from gradparity.tolerances import resolve_tolerances

    tol = dict(tolerances or resolve_tolerances())
    table = run_specs(specs, backends=backends, tolerances=tol, progress=progress,
                      policy=policy)
    cases = [BaselineCase(s.case_id, s, tuple(backends), tol[s.dtype].rtol, tol[s.dtype].atol,
                          policy=policy)
             for s in specs]
    return baseline_from_table(table, cases, source=source), table


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
    rows = [_line([_enc_float(v) if i in fl else v for i, v in enumerate(r)])
            for r in baseline.rows]
    env = [f"{_line(k)}: {_line(v)}" for k, v in sorted(baseline.environment.items())]

    def block(items: list[str]) -> str:
        return "\n" + ",\n".join("    " + s for s in items) + "\n  " if items else ""

    parts = [
        f'  "cases": [{block(cases)}]',
        f'  "environment": {{{block(env)}}}',
        f'  "format": {_line(FORMAT)}',
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
    from gradparity.policy import POLICIES

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

    rows: list[tuple[Any, ...]] = []
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
        if r["case_id"] not in by_id:
            raise _err(where, f"{at}.case_id={r['case_id']!r}: not among the cases")
        layer = r["layer"]
        if layer is not None and (isinstance(layer, bool) or not isinstance(layer, int)
                                  or layer < 0):
            raise _err(where, f"{at}.layer={layer!r}: expected an integer >= 0 or null")
        if (layer is None) != (r["quantity"] == _WHOLE_CASE):
            raise _err(where, f"{at}: layer is null exactly when quantity is '*'")
        values = [_dec_float(r[m], where, f"{at}.{m}") for m in _FLOAT_COLUMNS]
        _check_row_values(where, at, r, values, by_id[r["case_id"]])
        row = (r["case_id"], r["backend"], r["against"], layer, r["quantity"], r["status"],
               *values)
        key = row[:len(KEY_COLUMNS)]
        if key in seen:
            raise _err(where, f"{at}: duplicate row {_key_text(key)}")
        seen.add(key)
        rows.append(row)
    _check_backends_have_rows(where, cases, rows)
    env = data["environment"]
    source = data.get("source", "")
    return Baseline(cases=cases, rows=rows,
                    environment={str(k): str(v) for k, v in env.items()},
                    source=source if isinstance(source, str) else "")


def _check_row_values(where: str, at: str, r: Mapping[str, Any], values: Sequence[Any],
                      case: BaselineCase) -> None:
    """One row's status is a known one, its backend one of its case's, its metrics
    non-negative numbers (``inf`` only for a row that did not pass; never NaN) and its
    floors finite non-negative numbers (null only on a whole-case row): a corrupted
    file must not switch the gate off."""
    from gradparity.verdict import STATUSES

    if r["status"] not in STATUSES:
        raise _err(where, f"{at}.status={r['status']!r}: expected one of "
                   f"{', '.join(STATUSES)}")
    if r["backend"] not in case.backends:
        raise _err(where, f"{at}.backend={r['backend']!r}: not among the backends of its "
                   f"case ({', '.join(case.backends)})")
    for name, v in zip(_FLOAT_COLUMNS, values, strict=True):
        if v is None:
            if name in FLOOR_COLUMNS.values() and r["quantity"] != _WHOLE_CASE:
                raise _err(where, f"{at}.{name}=None: expected a finite number >= 0")
            continue
        is_floor = name in FLOOR_COLUMNS.values()
        if math.isnan(v) or v < 0 or (math.isinf(v) and (is_floor or r["status"] == "pass")):
            shown = _enc_float(v)
            expected = ("a finite number >= 0" if is_floor or r["status"] == "pass"
                        else "a number >= 0 or 'inf'")
            raise _err(where, f"{at}.{name}={shown!r}: expected {expected}")


def _check_backends_have_rows(where: str, cases: Sequence[BaselineCase],
                              rows: Sequence[tuple[Any, ...]]) -> None:
    """Every backend a case lists has rows: dropping a backend from a case must not drop
    its rows from the check silently (the reverse is caught per row)."""
    have = {(r[0], r[1]) for r in rows}
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
    from gradparity.io import text_writer, write_file_atomically

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


def rerun_baseline(baseline: Baseline, *, progress: Callable[..., None] | None = None
                   ) -> pd.DataFrame:
    """Run every case of ``baseline`` again, on its backends with its tolerances and policy.

    Every case must be rerunnable (see `rerunnable`). Rows come back in the baseline's
    case order; the table's ``attrs["environment"]`` is the current environment.
    """
    import pandas as pd

    from gradparity.environment import environment
    from gradparity.experiments.runner import run_specs
    from gradparity.spec import DTYPES
    from gradparity.tolerances import Tolerance

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
                                progress=report, policy=policy))
        done += len(specs)
    if not tables:
        return run_specs([], backends=[])
    df = pd.concat(tables, ignore_index=True) if len(tables) > 1 else tables[0]
    if len(tables) > 1:
        order = {c.case_id: i for i, c in enumerate(baseline.cases)}
        rank = df["case_id"].map(order)
        df = df.iloc[rank.argsort(kind="stable")].reset_index(drop=True)
    df.attrs["environment"] = dict(sorted(environment().items()))
    return df


def environment_differences(baseline_env: Mapping[str, str], current: Mapping[str, str]
                            ) -> list[str]:
    """``"torch: 2.13.0 in the baseline, 2.14.0 now"`` for each `ENVIRONMENT_KEYS` entry
    that differs."""
    out = []
    for k in ENVIRONMENT_KEYS:
        a, b = baseline_env.get(k), current.get(k)
        if a is not None and b is not None and a != b:
            out.append(f"{k}: {a} in the baseline, {b} now")
        elif (a is None) != (b is None):
            out.append(f"{k}: {a or 'not recorded'} in the baseline, {b or 'not recorded'} now")
    return out


def compare_with_baseline(baseline: Baseline | pd.DataFrame, table: pd.DataFrame, *,
                          factor: float = DEFAULT_FACTOR) -> pd.DataFrame:
    """Regressions of ``table`` against ``baseline`` (see the module doc).

    Both sides are compared in full: restrict the baseline first (`Baseline.restricted`)
    to compare part of it. ``table`` is a result table (`run_specs`); only `KEY_COLUMNS`,
    ``status``, ``reason`` and `COMPARED_METRICS` are read. Returns one row per problem
    with `REGRESSION_COLUMNS`, ordered by kind, then case and backprop order.
    """
    import numpy as np
    import pandas as pd

    if not (factor >= 1.0 and math.isfinite(factor)):
        raise UsageError(f"factor={factor!r}: expected a finite number >= 1")
    before = baseline.table() if isinstance(baseline, Baseline) else baseline.copy()
    table = end_to_end(table)
    after = table[[c for c in (*KEY_COLUMNS, "status", "reason", *COMPARED_METRICS)
                   if c in table.columns]].copy()
    if "reason" not in after.columns:
        after["reason"] = ""
    for c in ("case_id", "backend", "against", "quantity", "status"):
        before[c] = before[c].astype(str)
        after[c] = after[c].astype(str)
    for df in (before, after):
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
        for metric in COMPARED_METRICS:
            b = both[f"{metric}_b"].to_numpy(dtype=np.float64, na_value=np.nan)
            a = both[f"{metric}_a"].to_numpy(dtype=np.float64, na_value=np.nan)
            with np.errstate(invalid="ignore", over="ignore"):
                floor = both[FLOOR_COLUMNS[metric]].to_numpy(dtype=np.float64,
                                                             na_value=0.0)
                limit = factor * np.maximum(b, np.nan_to_num(floor, nan=0.0))
                grew = ~np.isnan(b) & ((a > limit) | np.isnan(a))
            for i in np.flatnonzero(grew):
                r = both.iloc[i]
                ratio = (a[i] / b[i]) if b[i] > 0 else (np.inf if a[i] > 0 else np.nan)
                entry("grew", r, metric=metric, before=b[i], after=a[i], ratio=ratio,
                      limit=limit[i], status_before=r["status_b"], status_after=r["status_a"])
        newly = both["status_a"].isin(_FAILING) & ~both["status_b"].isin(_FAILING)
        for _, r in both[newly].iterrows():
            entry("new_failure", r, metric="status", status_before=r["status_b"],
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
            worst = _worst_status(rb["status_b"])
            status = str(wa["status_a"])
            if status in _FAILING and worst in _FAILING:
                continue  # failing before, failing now
            entry("new_failure" if status in _FAILING else "missing",
                  dict(rb.iloc[0], _layer=-1, quantity=_WHOLE_CASE), metric="status",
                  status_before=worst, status_after=status,
                  detail=f"{len(rb)} baseline rows not produced: {status}: {wa['reason']}")
            continue
        if len(whole_b) and len(ra) and not len(whole_a):
            # The baseline has a whole-case row; the new run has the tensors.
            wb = whole_b.iloc[0]
            if wb["status_b"] in _FAILING:
                continue  # an error fixed: not a regression
            entry("new_row", dict(ra.iloc[0], _layer=-1, quantity=_WHOLE_CASE),
                  status_before=str(wb["status_b"]),
                  status_after=_worst_status(ra["status_a"]),
                  detail=f"{len(ra)} rows not in the baseline (it has {wb['status_b']} "
                         "for this case and backend)")
            continue
        for _, r in rb.iterrows():
            entry("missing", r, status_before=r["status_b"])
        for _, r in ra.iterrows():
            if r["status_a"] in _FAILING:
                entry("new_failure", r, metric="status", status_after=r["status_a"],
                      detail="not in the baseline: " + str(r["reason"] or ""))
            else:
                entry("new_row", r, status_after=r["status_a"])

    reg = pd.DataFrame(out, columns=[*REGRESSION_COLUMNS, "_pos"])
    if reg.empty:
        return reg.drop(columns="_pos")
    reg["_kind"] = reg["kind"].map({k: i for i, k in enumerate(KINDS)})
    reg["_case"] = reg["case_id"].map(case_rank)
    reg = reg.sort_values(["_kind", "_case", "backend", "_pos", "metric"], kind="stable",
                          na_position="first")
    reg = reg.drop(columns=["_kind", "_case", "_pos"]).reset_index(drop=True)
    reg["layer"] = pd.array(reg["layer"].tolist(), dtype="Int64")
    return reg


def _worst_status(statuses: Iterable[str]) -> str:
    from gradparity.verdict import STATUSES

    rank = {s: i for i, s in enumerate(STATUSES)}
    return max(statuses, key=lambda s: rank.get(s, len(rank)), default="")


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
                                                                 "new_row") else ""))
    return ", ".join(parts) or "no regressions"
