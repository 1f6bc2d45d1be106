"""The short human report of a debug session: the first divergence and its diagnosis, the
convention detected, then a per-layer table with a mark per quantity and framework."""

from __future__ import annotations

from gradparity.debug.localize import Check
from gradparity.debug.record import DebugRecord

_MARKS = {"pass": "ok", "fail": "FAIL", "error": "ERROR", "skipped": "-",
          "inherited": "inherited"}


def _mark(status: str | None) -> str:
    if status is None:
        return ""
    return _MARKS.get(status, status)


def _list(keys: list[str]) -> str:
    return ", ".join(keys)


def _network(r: DebugRecord) -> str:
    s = r.spec
    parts = ["-".join(map(str, s.sizes))]
    if s.depth > 1:
        parts.append(f"{s.activation} hidden layers")
    head = f"head {s.head}"
    if r.kind in ("torch", "jax") or s.loss_form == "probs":
        head += f" ({s.loss_form})"
    parts.append(head)
    return ", ".join(parts)


def _chosen(r: DebugRecord) -> str:
    return "; ".join(f"{what} {r.notes[what]}" for what in ("sizes", "activation", "head")
                     if r.notes.get(what))


def _frameworks_line(r: DebugRecord) -> str:
    ran = [f for f in r.frameworks if f.status == "ran"]
    parts = []
    if ran:
        bad = {f.name: f.failing for f in ran}
        n = max(len(f.verdicts) for f in ran)
        names = ", ".join(f.name for f in ran)
        if not any(bad.values()):
            parts.append(f"reference = {names} on all {n} tensors")
        else:
            for name, rows in bad.items():
                if rows:
                    parts.append(f"{name} disagrees with the reference on "
                                 f"{_list([v.key for v in rows][:6])}")
    for f in r.frameworks:
        if f.status != "ran":
            parts.append(f"{f.name} {f.status}: {f.reason}")
    return "; ".join(parts) if parts else "none run"


def _finding_block(c: Check, indent: str = "  ") -> list[str]:
    lines = []
    if c.location is not None:
        lines.append(f"{indent}where      {c.location.short}")
        if c.location.source:
            lines.append(f"{indent}           {c.location.source}")
        for via in getattr(c.location, "via", ()):
            lines.append(f"{indent}           called from {via.short}: {via.source}")
    if c.diagnosis is not None:
        lines.append(f"{indent}diagnosis  {c.diagnosis.text}")
        for alt in c.diagnosis.also:
            lines.append(f"{indent}           (also fits: {alt})")
    reason = c.reason
    if c.status == "fail" and c.scale != 1.0 and c.comparison is not None \
            and not c.comparison.shape_error and "NaN" not in reason:
        reason += f" (yours divided by m = {c.scale:g})"
    lines.append(f"{indent}{'values' if c.status == 'fail' else 'error':<11}{reason}")
    return lines


def _inherited_from(r: DebugRecord, root: str) -> list[str]:
    return [c.key for c in r.checks if c.status == "inherited" and c.root == root]


def _same(a: Check, b: Check) -> bool:
    return (a.diagnosis is not None and b.diagnosis is not None
            and a.diagnosis.code == b.diagnosis.code and a.diagnosis.code != "unknown")


def _table(r: DebugRecord) -> list[str]:
    ran = [f for f in r.frameworks if f.status == "ran"]
    fw_status: dict[str, dict[str, str]] = {f.name: f.statuses for f in ran}
    versus = {c.key: c.status for c in r.versus}
    first = r.first
    cols = ["layer", "quantity", "yours"]
    if r.versus:
        cols.append(f"yours vs {r.versus_name}")
    cols += [f.name for f in ran]
    rows = []
    for c in r.checks:
        mark = _mark(c.status)
        if c is first:
            mark += " <- first divergence"
        elif c.status == "inherited":
            mark = f"inherited from {c.root}"
        elif c.is_finding:
            mark += " (separate)"
        if c.diagnosis is not None:
            mark += f"  [{c.diagnosis.code}]"
        if c.status == "skipped" and c.root:
            mark = f"- (implied, from {c.root})"
        elif c.status == "skipped" and c.reason.startswith("not computed"):
            mark = "not run"
        row = [str(c.layer), c.quantity, mark]
        if r.versus:
            row.append(_mark(versus.get(c.key)))
        row += [_mark(fw_status[f.name].get(c.key)) for f in ran]
        rows.append(row)
    widths = [max(len(cols[i]), *(len(row[i]) for row in rows)) for i in range(len(cols))]
    out = ["  " + "  ".join(c.ljust(w) for c, w in zip(cols, widths, strict=True)).rstrip()]
    for row in rows:
        cells = [row[0].rjust(widths[0])] + [v.ljust(w) for v, w in
                                             zip(row[1:], widths[1:], strict=True)]
        out.append("  " + "  ".join(cells).rstrip())
    return out


def render(r: DebugRecord) -> str:
    """The report (plain text, ends with a newline)."""
    title = {"torch": "your PyTorch module", "jax": "your JAX function"}.get(r.kind,
                                                                         "your backprop")
    lines = [f"gradparity debug: {r.source} ({title})"]
    if r.notes.get("api"):
        lines.append(f"  api         {r.notes['api']}")
    lines.append(f"  network     {_network(r)}")
    if r.notes.get("network"):
        lines.append(f"  recovered   {r.notes['network']}")
    if _chosen(r):
        lines.append(f"  chosen      {_chosen(r)}")
    s = r.spec
    lines.append(f"  case        {s.dtype}, m = {s.batch} examples, seed {s.seed}; forward: "
                 f"{r.notes.get('forward', '')}")
    for what in ("data", "import", "keys", "cost"):
        if r.notes.get(what):
            lines.append(f"  {what:<11} {r.notes[what]}")
    lines.append(f"  convention  {r.convention.text}")
    lines.append(f"  frameworks  {_frameworks_line(r)}")
    lines.append(f"  tolerance   atol={r.tolerance.atol:g}, rtol={r.tolerance.rtol:g}")
    lines.append("")

    for p in r.problems:
        lines.append(f"Problem: {p.text}")
        if p.location is not None:
            lines.append(f"  where      {p.location}")
    if r.problems:
        lines.append("")

    first = r.first
    findings = r.findings
    if first is not None:
        lines.append(f"First divergence: {first.key}")
        lines += _finding_block(first)
        inh = _inherited_from(r, first.key)
        if inh:
            source = first.key
            if first.diagnosis is not None and first.diagnosis.hidden:
                source = f"{first.diagnosis.hidden}, as diagnosed"
            lines.append(f"  inherited  {_list(inh)} (they follow from your {source})")
        rest = findings[1:]
        if rest:
            lines.append("")
            lines.append("Other findings (not inherited from an earlier one):")
            for c in rest:
                same = " - same diagnosis as " + first.key if _same(c, first) else ""
                lines.append(f"  {c.key}{same}")
                lines += _finding_block(c, indent="    ")
                inh = _inherited_from(r, c.key)
                if inh:
                    lines.append(f"    inherited  {_list(inh)}")
        lines.append("")
    elif not r.problems:
        n = sum(1 for c in r.checks if c.status == "pass")
        conv = [c for c in r.checks if c.status not in ("pass", "skipped", "inherited")]
        if not conv:
            lines.append(f"All {n} quantities your code computes agree with the reference.")
        else:
            lines.append(f"No bug found: {n} quantities agree with the reference, and these "
                         "differ only by a convention:")
            for c in conv:
                lines.append(f"  {c.key} ({c.status}): {c.reason}")
                inh = _inherited_from(r, c.key)
                if inh:
                    lines.append(f"    inherited  {_list(inh)}")
        lines.append("")

    lines += _table(r)
    lines.append("")
    bad_versus = [c.key for c in r.versus if c.is_finding]
    summary = []
    if findings:
        summary.append(f"{len(findings)} finding{'s' if len(findings) != 1 else ''} "
                       f"(first: {first.key if first else '-'})")
        if r.inherited:
            summary.append(f"{len(r.inherited)} inherited")
    if r.problems:
        summary.append(f"{len(r.problems)} problem{'s' if len(r.problems) != 1 else ''}")
    if bad_versus:
        summary.append(f"differs from {r.versus_name} on {_list(bad_versus[:6])}")
    if not r.frameworks_agree:
        summary.append("a framework disagrees with the reference")
    if not summary:
        summary.append("everything agrees")
    lines.append(f"Result: {'; '.join(summary)}. Exit {r.exit_code}.")
    if r.user_output.strip():
        shown = r.user_output.strip().splitlines()
        lines.append("")
        lines.append(f"Your code printed {len(shown)} line{'s' if len(shown) != 1 else ''}:")
        lines += [f"  | {ln if len(ln) <= 200 else ln[:197] + '...'}" for ln in shown[:10]]
        if len(shown) > 10:
            lines.append(f"  | ... {len(shown) - 10} more")
    return "\n".join(lines) + "\n"

