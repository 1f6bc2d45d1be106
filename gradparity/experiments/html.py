"""Small HTML pieces shared by the report page and the notebook views: escaped tables,
embedded PNG images, sections. No JavaScript, no external resource: a page built from them
shows the same with no network."""

from __future__ import annotations

import base64
import html
from collections.abc import Iterable

import numpy as np
import pandas as pd

STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1250px;
       color: #1a1a1a; line-height: 1.4; }
h1 { font-size: 1.6em; } h2 { border-bottom: 1px solid #ccc; margin-top: 1.8em; }
table.gp { border-collapse: collapse; font-size: 0.85em; margin: 0.6em 0 1.2em; }
table.gp th, table.gp td { border: 1px solid #ccc; padding: 2px 7px; text-align: right; }
table.gp th { background: #f0f0f0; }
table.gp td.text { text-align: left; }
figure { margin: 1em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.85em; color: #444; max-width: 1100px; }
pre { background: #f7f7f7; padding: 0.6em; overflow-x: auto; font-size: 0.8em; }
.note { color: #444; font-size: 0.9em; }
"""


def esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _cell(v: object, floatfmt: str) -> tuple[str, bool]:
    """(text, is_number)"""
    if v is None or v is pd.NA or (isinstance(v, float) and np.isnan(v)):
        return "", True
    if isinstance(v, (bool, np.bool_)):
        return str(bool(v)), False
    if isinstance(v, (float, np.floating)):
        return format(float(v), floatfmt), True
    if isinstance(v, (int, np.integer)):
        return str(int(v)), True
    return str(v), False


def table(df: pd.DataFrame, *, index: bool = False, floatfmt: str = ".3g",
          max_rows: int | None = None) -> str:
    """An escaped HTML table (numbers right-aligned, text left)."""
    if df is None or df.empty:
        return '<p class="note">(empty)</p>'
    frame = df.reset_index() if index else df
    shown = frame if max_rows is None else frame.head(max_rows)
    head = "".join(f"<th>{esc(c)}</th>" for c in frame.columns)
    body = []
    for row in shown.itertuples(index=False):
        cells = []
        for v in row:
            text, number = _cell(v, floatfmt)
            cells.append(f'<td>{esc(text)}</td>' if number else
                         f'<td class="text">{esc(text)}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    more = ""
    if max_rows is not None and len(frame) > max_rows:
        more = f'<p class="note">... {len(frame) - max_rows} more rows</p>'
    return (f'<table class="gp"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}'
            f"</tbody></table>{more}")


def image(png: bytes, *, alt: str, caption: str = "") -> str:
    """A PNG embedded as a data URI, with its caption."""
    data = base64.b64encode(png).decode("ascii")
    cap = f"<figcaption>{esc(caption)}</figcaption>" if caption else ""
    return f'<figure><img alt="{esc(alt)}" src="data:image/png;base64,{data}">{cap}</figure>'


def section(title: str, parts: Iterable[str], *, anchor: str = "") -> str:
    a = f' id="{esc(anchor)}"' if anchor else ""
    return f"<section{a}><h2>{esc(title)}</h2>\n" + "\n".join(parts) + "\n</section>"


def paragraph(text: str, *, note: bool = False) -> str:
    cls = ' class="note"' if note else ""
    return f"<p{cls}>{esc(text)}</p>"


def pre(text: str) -> str:
    return f"<pre>{esc(text)}</pre>"


def details(summary: str, body: str) -> str:
    """A collapsed block (HTML's own ``<details>``, no script)."""
    return f"<details><summary>{esc(summary)}</summary>{body}</details>"


def page(title: str, body: Iterable[str]) -> str:
    """A whole self-contained page."""
    return ("<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\">"
            f"<title>{esc(title)}</title><style>{STYLE}</style></head><body>\n"
            f"<h1>{esc(title)}</h1>\n" + "\n".join(body) + "\n</body></html>\n")
