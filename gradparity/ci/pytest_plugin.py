"""pytest plugin: gradient-parity tests, gated on a baseline.

Registered through the ``pytest11`` entry point, so installing gradparity makes it
available in every pytest session. It adds:

* the ``gradparity_check`` fixture: a callable
  ``check(spec_or_model=None, backends=None, *, rtol=None, atol=None, policy=None)`` that runs
  `gradparity.ci.assertions.assert_grads_match` and, when the session has a baseline, also
  fails if agreement got worse than the baseline (see `gradparity.ci.baseline`);
* the ``gradparity`` marker, for parametrised parity tests::

      @pytest.mark.gradparity(sizes=[(4, 16, 3), (4, 16, 16, 3)], activation=["relu", "gelu"],
                              head="softmax_ce", dtype="float32", backends=["torch"])
      def test_parity(gradparity_check):
          gradparity_check()            # the spec of this item (one item per spec)

  Spec fields follow the rules of a ``[[sweep]]`` table in a TOML suite: a list is an axis
  of a cartesian product, ``loss_form`` left out means every form of the head. Specs can
  also be given directly: ``@pytest.mark.gradparity(spec1, spec2)``. ``backends``,
  ``rtol``, ``atol`` and ``policy`` become the defaults of ``gradparity_check`` in that
  test. The item's spec is the ``gradparity_spec`` fixture;
* options ``--gradparity-baseline FILE`` (or the ini option ``gradparity_baseline``) to
  compare every check with a baseline, ``--gradparity-update-baseline`` to write that file
  from the session's checks instead (cases not run in the session are kept), and
  ``--gradparity-factor F`` (default 4).

Importing this module imports pytest and the standard library only; NumPy, pandas and the
frameworks load when a check runs (or, for a baseline file, when the session starts).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    import pandas as pd

    from gradparity.ci.assertions import ParityResult
    from gradparity.ci.baseline import Baseline

_CHECK_OPTIONS = ("backends", "rtol", "atol", "policy")
_UPDATE_SOURCE = "pytest --gradparity-update-baseline"


class _Session:
    """The baseline options of one pytest session, and what its checks recorded."""

    def __init__(self, path: Path | None, update: bool, factor: float | None) -> None:
        self.path = path
        self.update = update
        self.factor = factor
        self.baseline: Baseline | None = None  # compare mode: the file; update: old file
        self.pairs: set[tuple[str, str]] = set()
        self.recorded: Baseline | None = None
        self.note = ""

    @classmethod
    def from_config(cls, config: pytest.Config) -> _Session:
        opt = config.getoption("gradparity_baseline", None)
        path = Path(opt) if opt else None
        if path is None:
            ini = config.getini("gradparity_baseline")
            if ini:
                path = config.rootpath / ini
        update = bool(config.getoption("gradparity_update_baseline", False))
        factor = config.getoption("gradparity_factor", None)
        if factor is not None and not (math.isfinite(factor) and factor >= 1.0):
            raise pytest.UsageError(f"--gradparity-factor={factor!r}: expected a finite "
                                    "number >= 1")
        if update and path is None:
            raise pytest.UsageError("--gradparity-update-baseline needs --gradparity-baseline "
                                    "FILE (or the gradparity_baseline ini option)")
        if update and getattr(config.option, "numprocesses", None):
            raise pytest.UsageError("--gradparity-update-baseline writes one file: run it "
                                    "without pytest-xdist's -n")
        state = cls(path, update, factor)
        if path is not None and (not update or path.exists()):
            from gradparity.ci.baseline import BaselineError, load_baseline

            try:
                state.baseline = load_baseline(path)
            except BaselineError as e:
                hint = "; delete it to start afresh" if update else (
                    "; create it with --gradparity-update-baseline" if not path.exists()
                    else "")
                raise pytest.UsageError(f"{e}{hint}") from None
            state.pairs = {(r.case_id, r.backend) for r in state.baseline.rows}
        return state

    # -- per check ------------------------------------------------------------------------
    def record(self, result: ParityResult) -> None:
        from gradparity.ci.baseline import Baseline, rows_from_table

        new = Baseline(cases=list(result.cases),
                       rows=rows_from_table(result.table),
                       environment=dict(result.table.attrs.get("environment", {})),
                       source=_UPDATE_SOURCE)
        self.recorded = new if self.recorded is None else self.recorded.merged(new)

    def regressions(self, result: ParityResult) -> str:
        """The regression report of ``result`` against the baseline, or ``""``."""
        from gradparity.ci.baseline import (
            DEFAULT_FACTOR,
            compare_with_baseline,
            differing_keys,
            format_regressions,
            regression_counts,
        )

        assert self.baseline is not None
        pairs = {(c.case_id, b) for c in result.cases for b in c.backends}
        absent = sorted(p for p in pairs if p not in self.pairs)
        if absent:
            listed = ", ".join(f"{c} ({b})" for c, b in absent[:5])
            more = f" and {len(absent) - 5} more" if len(absent) > 5 else ""
            return (f"not in the baseline {self.path}: {listed}{more}; add them with "
                    "--gradparity-update-baseline")
        changed = []
        for c in result.cases:
            old = self.baseline.case(c.case_id)
            if old is not None and (old.rtol, old.atol, old.policy) != (c.rtol, c.atol,
                                                                        c.policy):
                changed.append(f"{c.case_id} was saved with rtol={old.rtol:g}, "
                               f"atol={old.atol:g}, policy {old.policy}; this check uses "
                               f"rtol={c.rtol:g}, atol={c.atol:g}, policy {c.policy}")
        if changed:
            return (f"the baseline {self.path} does not apply: {changed[0]}"
                    + (f" (and {len(changed) - 1} more)" if len(changed) > 1 else "")
                    + "; update it with --gradparity-update-baseline")
        factor = DEFAULT_FACTOR if self.factor is None else self.factor
        machine = differing_keys(self.baseline.environment,
                                 result.table.attrs.get("environment", {}))
        reg = compare_with_baseline(self.baseline.restricted(pairs), result.table,
                                    factor=factor, machine=machine)
        if reg.empty:
            return ""
        return (f"Gradient agreement got worse than the baseline {self.path} "
                f"({regression_counts(reg)}; factor {factor:g}; before: the baseline, "
                f"after: this run):\n{format_regressions(reg)}")

    # -- end of session --------------------------------------------------------------------
    def write(self, exitstatus: int) -> None:
        from gradparity.ci.baseline import save_baseline

        if exitstatus in (pytest.ExitCode.INTERRUPTED, pytest.ExitCode.INTERNAL_ERROR,
                          pytest.ExitCode.USAGE_ERROR):
            self.note = f"baseline {self.path} not written: the session did not complete"
            return
        if self.recorded is None:
            self.note = f"baseline {self.path} not written: no gradparity check ran"
            return
        final = self.recorded if self.baseline is None else self.baseline.merged(
            self.recorded)
        assert self.path is not None
        save_baseline(final, self.path, force=True)
        self.note = (f"wrote baseline {self.path}: {len(final.cases)} cases, "
                     f"{len(final.rows)} rows ({len(self.recorded.cases)} cases from this "
                     "session)")


_STATE = pytest.StashKey[_Session]()


def pytest_addoption(parser: pytest.Parser) -> None:
    group = parser.getgroup("gradparity", "gradient parity (gradparity)")
    group.addoption("--gradparity-baseline", metavar="FILE", default=None,
                    help="compare every gradparity_check with this baseline file; fail when "
                    "agreement got worse")
    group.addoption("--gradparity-update-baseline", action="store_true", default=False,
                    help="write the --gradparity-baseline file from this session's checks "
                    "instead of comparing (cases not run are kept)")
    group.addoption("--gradparity-factor", type=float, default=None, metavar="F",
                    help="allowed growth of max_abs_err and norm_err_eps over the baseline "
                    "(default: 4)")
    parser.addini("gradparity_baseline", "baseline file of gradparity_check, relative to "
                  "the rootdir (--gradparity-baseline overrides it)", default="")


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers",
        "gradparity(*specs, backends=None, rtol=None, atol=None, policy=None, **spec_fields): "
        "one test item per gradparity Spec (given, or the cartesian product of spec-field "
        "lists); the test calls the gradparity_check fixture")
    config.stash[_STATE] = _Session.from_config(config)


def pytest_report_header(config: pytest.Config) -> str | None:
    state = config.stash.get(_STATE, None)
    if state is None or state.path is None:
        return None
    if state.update:
        return f"gradparity: writing baseline {state.path}"
    from gradparity.ci.baseline import DEFAULT_FACTOR

    assert state.baseline is not None
    factor = DEFAULT_FACTOR if state.factor is None else state.factor
    return (f"gradparity: baseline {state.path} ({len(state.baseline.cases)} cases), "
            f"factor {factor:g}")


def _marker_split(marker: pytest.Mark) -> tuple[list[Any], dict[str, Any], dict[str, Any]]:
    options = {k: v for k, v in marker.kwargs.items() if k in _CHECK_OPTIONS}
    fields = {k: v for k, v in marker.kwargs.items() if k not in _CHECK_OPTIONS}
    return list(marker.args), fields, options


def _lists(value: Any) -> Any:
    """Tuples to lists, recursively (the shapes a TOML sweep table has)."""
    if isinstance(value, (list, tuple)):
        return [_lists(v) for v in value]
    return value


def marker_specs(args: list[Any], fields: dict[str, Any]) -> list[Any]:
    """The specs of a ``gradparity`` marker: its Spec arguments, or the sweep of its
    spec-field keywords."""
    from gradparity.core.errors import UsageError
    from gradparity.core.spec import Spec

    where = "@pytest.mark.gradparity"
    specs: list[Spec] = []
    for a in args:
        items = a if isinstance(a, (list, tuple)) else [a]
        for s in items:
            if not isinstance(s, Spec):
                raise UsageError(f"{where}: positional arguments must be Specs, got "
                                 f"{type(s).__name__}")
            specs.append(s)
    if specs and fields:
        raise UsageError(f"{where}: give Specs or spec fields ({', '.join(sorted(fields))}), "
                         "not both")
    if fields:
        from gradparity.experiments.toml_suite import expand_sweep

        table = {k: _lists(v) for k, v in fields.items()
                 if not (k == "loss_form" and v is None)}
        sizes = table.get("sizes")
        if isinstance(sizes, list) and sizes and not isinstance(sizes[0], list):
            table["sizes"] = [sizes]
        specs = expand_sweep(where, table)
    if not specs:
        raise UsageError(f"{where}: needs Specs or spec fields (sizes=..., activation=...)")
    return specs


class _BadMarker:
    """The parameter of the one item a bad ``gradparity`` marker becomes: that item
    errors with ``message`` (one line), the rest of the session runs."""

    def __init__(self, message: str) -> None:
        self.message = message


def marker_options(options: dict[str, Any]) -> None:
    """Check a marker's ``backends``, ``rtol``, ``atol`` and ``policy``: a `UsageError`
    (one line) names the first bad one."""
    from gradparity.core.errors import SpecError, UsageError, check_finite_nonnegative
    from gradparity.judge.policy import POLICIES

    where = "@pytest.mark.gradparity"
    for name in ("rtol", "atol"):
        if options.get(name) is not None:
            try:
                check_finite_nonnegative(name, options[name])
            except SpecError as e:
                raise UsageError(f"{where}: {e}") from None
    policy = options.get("policy")
    if policy is not None and (not isinstance(policy, str) or policy not in POLICIES):
        raise UsageError(f"{where}: policy={policy!r}: expected one of {', '.join(POLICIES)}")
    backends = options.get("backends")
    if backends is None:
        return
    from gradparity.adapters.base import Backend
    from gradparity.adapters.registry import BACKENDS

    items = [backends] if isinstance(backends, str) or not isinstance(
        backends, (list, tuple)) else list(backends)
    if not items:
        raise UsageError(f"{where}: backends=[]: expected at least one backend")
    for b in items:
        if isinstance(b, str) and b in BACKENDS or isinstance(b, Backend):
            continue
        raise UsageError(f"{where}: backends={b!r}: expected one of {', '.join(BACKENDS)} "
                         "or a backend object")


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    marker = metafunc.definition.get_closest_marker("gradparity")
    if marker is None or "gradparity_spec" not in metafunc.fixturenames:
        return  # a marked test without the fixture errors in pytest_runtest_setup
    from gradparity.core.errors import UsageError

    args, fields, options = _marker_split(marker)
    if "model" in fields:  # your own model(s): one item each; other fields are its options
        models = fields["model"] if isinstance(fields["model"], (list, tuple)) else [
            fields["model"]]
        metafunc.parametrize("gradparity_spec", models, ids=[
            m if isinstance(m, str) else getattr(m, "__name__", type(m).__name__)
            for m in models], indirect=True)
        return
    try:
        marker_options(options)
        specs = marker_specs(args, fields)
    except UsageError as e:  # this test errors; the session goes on
        metafunc.parametrize("gradparity_spec", [_BadMarker(str(e))], ids=["bad-marker"],
                             indirect=True)
        return
    metafunc.parametrize("gradparity_spec", specs, ids=[s.case_id for s in specs],
                         indirect=True)


def pytest_runtest_setup(item: pytest.Item) -> None:
    if (item.get_closest_marker("gradparity") is not None
            and "gradparity_spec" not in getattr(item, "fixturenames", ())):
        pytest.fail(f"{item.nodeid}: @pytest.mark.gradparity needs the gradparity_check "
                    "(or gradparity_spec) fixture", pytrace=False)


@pytest.fixture
def gradparity_spec(request: pytest.FixtureRequest) -> Any:
    """The `Spec` of this item of a ``@pytest.mark.gradparity`` test (else None)."""
    param = getattr(request, "param", None)
    if isinstance(param, _BadMarker):
        pytest.fail(param.message, pytrace=False)
    return param


class GradparityCheck:
    """The callable the ``gradparity_check`` fixture returns."""

    def __init__(self, state: _Session, spec: Any, options: dict[str, Any]) -> None:
        self._state = state
        self.spec = spec
        self.options = options

    def __call__(self, spec_or_model: Any = None, backends: Any = None, *,
                 rtol: float | None = None, atol: float | None = None,
                 policy: str | None = None) -> pd.DataFrame:
        """Assert parity (`assert_grads_match`) and, with a session baseline, no
        regression against it; returns the result table. Without ``spec_or_model``, the
        item's spec from ``@pytest.mark.gradparity``."""
        __tracebackhide__ = True
        from gradparity.adapters.registry import DEFAULT_BACKENDS
        from gradparity.ci.assertions import check_grads

        target = self.spec if spec_or_model is None else spec_or_model
        if target is None:
            pytest.fail("gradparity_check(): give a Spec, a list of Specs or a Case, or mark "
                        "the test with @pytest.mark.gradparity(...)", pytrace=False)
        from gradparity.core.errors import UsageError

        opts = self.options
        model_options = {k: v for k, v in opts.items()
                         if k not in _CHECK_OPTIONS and k != "model"}
        try:
            result = self._check(check_grads, target, backends, rtol, atol, policy,
                                 DEFAULT_BACKENDS,
                                 model_options if target is self.spec else {})
        except UsageError as e:
            problem = str(e)  # failed outside the handler: no chained traceback
        else:
            problem = ""
        if problem:
            pytest.fail(f"gradparity_check: {problem}", pytrace=False)
        if not result.cases:  # a model check: judged on its own, not against a baseline
            if result.problems:
                raise AssertionError(result.message())
            return result.table
        if self._state.update:
            self._state.record(result)
        if result.problems:
            raise AssertionError(result.message()) from result.problems[0].exception
        if not self._state.update and self._state.baseline is not None:
            text = self._state.regressions(result)
            if text:
                raise AssertionError(text)
        return result.table

    def _check(self, check_grads: Any, target: Any, backends: Any, rtol: float | None,
               atol: float | None, policy: str | None, default: Any,
               model_options: dict[str, Any]) -> ParityResult:
        opts = self.options
        return check_grads(
            target,
            backends if backends is not None else opts.get("backends") or default,
            rtol=rtol if rtol is not None else opts.get("rtol"),
            atol=atol if atol is not None else opts.get("atol"),
            policy=policy or opts.get("policy") or "allclose", **model_options)


@pytest.fixture
def gradparity_check(request: pytest.FixtureRequest, gradparity_spec: Any) -> GradparityCheck:
    """``check(spec_or_model=None, backends=None, *, rtol=None, atol=None, policy=None)``:
    assert that gradients match the reference (and the session's baseline, if any)."""
    marker = request.node.get_closest_marker("gradparity")
    options = _marker_split(marker)[2] if marker is not None else {}
    if marker is not None and "model" in marker.kwargs:
        options = {**options, **_marker_split(marker)[1]}
    return GradparityCheck(request.config.stash[_STATE], gradparity_spec, options)


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    state = session.config.stash.get(_STATE, None)
    if state is None or not state.update or hasattr(session.config, "workerinput"):
        return
    state.write(exitstatus)


def pytest_terminal_summary(terminalreporter: Any, exitstatus: int,
                            config: pytest.Config) -> None:
    state = config.stash.get(_STATE, None)
    if state is not None and state.note:
        terminalreporter.write_sep("-", "gradparity")
        terminalreporter.write_line(state.note)
