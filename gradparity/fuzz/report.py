"""The result folder of a search: the counterexamples as a suite file and a table, the
runner's rows of their cases, a summary by reason code, and hypothesis's example
database (replayed first by the next search into the same folder)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from gradparity.core.spec import Spec
from gradparity.experiments.environment import environment
from gradparity.experiments.io import (
    csv_writer,
    json_writer,
    text_writer,
    write_folder_atomically,
)
from gradparity.experiments.tables import make_table, markdown_table
from gradparity.experiments.toml_suite import dumps_cases
from gradparity.fuzz.search import Counterexample, SearchResult

#: The file of hypothesis's example database in a result folder.
DATABASE = "examples.json"
SUITE = "counterexamples.toml"
COLUMNS = ("case_id", "backend", "status", "reason_code", "tensor", "depth",
           "max_hidden_units", "batch", "dtype", "activation", "head", "loss_form",
           "found_at_example", "found_after_s", "data", "reason")


def hidden_units(spec: Spec) -> int:
    """The widest hidden layer (0 for a one-layer network)."""
    return max(spec.sizes[1:-1], default=0)


def counterexample_table(found: list[Counterexample]) -> pd.DataFrame:
    rows = [{"case_id": c.spec.case_id, "backend": c.backend, "status": c.status,
             "reason_code": c.reason_code, "tensor": c.tensor, "depth": c.spec.depth,
             "max_hidden_units": hidden_units(c.spec), "batch": c.spec.batch,
             "dtype": c.spec.dtype, "activation": c.spec.activation, "head": c.spec.head,
             "loss_form": c.spec.loss_form, "found_at_example": c.found_at_example,
             "found_after_s": round(c.found_after_s, 2), "data": c.recipe.describe(),
             "reason": c.reason} for c in found]
    return pd.DataFrame(rows, columns=list(COLUMNS))


def by_reason(found: list[Counterexample]) -> pd.DataFrame:
    """Counterexamples by backend, status and reason code."""
    t = counterexample_table(found)
    if t.empty:
        return pd.DataFrame(columns=["backend", "status", "reason_code", "counterexamples"])
    return (t.groupby(["backend", "status", "reason_code"], sort=True).size()
            .rename("counterexamples").reset_index())


def explain(c: Counterexample) -> str:
    """The counterexample in a few lines: the case, the first offending tensor and its
    worst element, the data that provoke it."""
    s = c.spec
    row = next((r for r in c.rows if r["backend"] == c.backend and r["status"] == c.status),
               {})
    lines = [f"{c.backend}: {c.status} ({c.reason_code or 'no code'}) at {c.tensor or '-'}",
             f"  case {s.case_id}: sizes {'x'.join(map(str, s.sizes))}, batch {s.batch}, "
             f"{s.dtype}, {s.activation}, {s.head}.{s.loss_form}",
             f"  data: {c.recipe.describe()}"]
    if row.get("worst_index") not in (None, ""):
        lines.append(f"  worst element {row.get('worst_index')}: got {row.get('worst_value')}"
                     f", expected {row.get('worst_expected')}")
    if c.reason:
        lines.append(f"  reason: {c.reason}")
    return "\n".join(lines)


def summary_markdown(result: SearchResult, *, budget: int, seed: int, backends: list[str],
                     strict: bool) -> str:
    found = result.counterexamples
    lines = [f"# gradparity fuzz: {len(found)} counterexample(s)", "",
             f"Budget {budget} generated cases, seed {seed}, backends {', '.join(backends)}"
             f"{', strict' if strict else ''}: {result.examples} cases run (with replays "
             f"and shrinking) in {result.seconds:.1f} s.", ""]
    if found:
        lines += ["## By reason code", "", markdown_table(by_reason(found), index=False),
                  "## Counterexamples", "", f"Rerun them: `gradparity run {SUITE}`.", "",
                  "```", "\n\n".join(explain(c) for c in found), "```", ""]
    return "\n".join(lines)


def write_search(out: str | Path, result: SearchResult, *, budget: int, seed: int,
                 backends: list[str], strict: bool, database: str) -> Path:
    """Write the result folder atomically; ``database`` is the example database's text."""
    found = result.counterexamples
    rows = [r for c in found for r in c.rows]
    comments = [explain(c) for c in found]
    runnable = [b for b in backends if "+" not in b]
    files = {
        "counterexamples.csv": csv_writer(counterexample_table(found)),
        "table.csv": csv_writer(make_table(rows, environment())),
        "summary.md": text_writer(summary_markdown(result, budget=budget, seed=seed,
                                                   backends=backends, strict=strict)),
        "environment.json": json_writer(environment()),
        DATABASE: text_writer(database),
    }
    if found:
        files[SUITE] = text_writer(dumps_cases(
            [c.spec for c in found], name="counterexamples",
            description=f"gradparity fuzz counterexamples (seed {seed})",
            backends=runnable if runnable == backends else None, comments=comments))
    return write_folder_atomically(out, files)
