"""A single self-contained HTML report: tables, figures (embedded as base64 PNG) and notes."""

from __future__ import annotations

import base64
import html
import os
from pathlib import Path
from typing import Sequence

import pandas as pd

from dmlrepro import DmlReproError
from dmlrepro.io import write_text
from dmlrepro.reporting.tables import markdown_columns

__all__ = ["write_html_report", "markdown_to_html"]

_CSS = """
body { font-family: -apple-system, "Segoe UI", Helvetica, Arial, sans-serif; max-width: 1200px;
       margin: 2em auto; padding: 0 1em; color: #222; line-height: 1.45; }
h1 { border-bottom: 2px solid #444; padding-bottom: .2em; }
h2 { margin-top: 2em; border-bottom: 1px solid #bbb; }
table { border-collapse: collapse; font-size: 0.88em; margin: 0.8em 0; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
th { background: #f0f0f0; }
tr:nth-child(even) td { background: #fafafa; }
figure { margin: 1em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #555; }
.notes li { margin: 0.2em 0; }
"""


def _esc(text) -> str:
    return html.escape(str(text), quote=True)


def _split_row(line: str) -> list[str]:
    s = line.strip()
    if s.startswith("|"):
        s = s[1:]
    if s.endswith("|"):
        s = s[:-1]
    return [c.strip() for c in s.split("|")]


def _is_separator(line: str) -> bool:
    cells = _split_row(line)
    return bool(cells) and all(c and set(c) <= set(":-") for c in cells)


def markdown_to_html(md: str) -> str:
    """Render the small Markdown subset ``write_table`` produces: ``#``/``##`` headings, a pipe
    table, ``- `` bullet lists and plain paragraphs. Headings are demoted two levels (h3, h4)
    to nest under the report's section headings. All text is HTML-escaped."""
    out: list[str] = []
    lines = md.splitlines()
    i = 0
    while i < len(lines):
        line = lines[i]
        s = line.strip()
        if not s:
            i += 1
        elif s.startswith("#"):
            level = len(s) - len(s.lstrip("#"))
            tag = f"h{min(6, level + 2)}"
            out.append(f"<{tag}>{_esc(s[level:].strip())}</{tag}>")
            i += 1
        elif s.startswith("|"):
            block = []
            while i < len(lines) and lines[i].strip().startswith("|"):
                block.append(lines[i])
                i += 1
            out.append(_pipe_table_html(block))
        elif s.startswith("- "):
            items = []
            while i < len(lines) and lines[i].strip().startswith("- "):
                items.append(f"<li>{_esc(lines[i].strip()[2:])}</li>")
                i += 1
            out.append('<ul class="notes">' + "".join(items) + "</ul>")
        else:
            para = []
            while i < len(lines) and lines[i].strip() and not lines[i].strip().startswith(("#", "|", "- ")):
                para.append(lines[i].strip())
                i += 1
            out.append(f"<p>{_esc(' '.join(para))}</p>")
    return "\n".join(out)


def _pipe_table_html(block: list[str]) -> str:
    header = _split_row(block[0])
    body = block[2:] if len(block) > 1 and _is_separator(block[1]) else block[1:]
    rows = ["<tr>" + "".join(f"<th>{_esc(c)}</th>" for c in header) + "</tr>"]
    for line in body:
        rows.append("<tr>" + "".join(f"<td>{_esc(c)}</td>" for c in _split_row(line)) + "</tr>")
    return "<table>\n" + "\n".join(rows) + "\n</table>"


def _df_html(df: pd.DataFrame) -> str:
    shown = df[markdown_columns(df)]
    return shown.to_html(index=False, escape=True, border=0, na_rep="–")


def write_html_report(
    out_html: str | os.PathLike,
    tables: Sequence[tuple[str, str | os.PathLike | pd.DataFrame]],
    figures: Sequence[tuple[str, str | os.PathLike, str]],
    notes: Sequence[str] = (),
    title: str = "dmlrepro: reproduction report",
) -> Path:
    """Write one HTML file with every table (a Markdown file from ``write_table`` or a
    DataFrame; ``*_mean``/``*_std`` helper columns are left out), every figure embedded as a
    base64 PNG with its caption, and a notes list, in the order given (the workflow puts the
    claims table first). A Markdown file titled by its file name (``claims``) is headed by its own
    ``# title`` instead. Returns the path written."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{_esc(title)}</title>",
        f"<style>{_CSS}</style></head><body>",
        f"<h1>{_esc(title)}</h1>",
    ]
    for tbl_title, src in tables:
        parts.append(f'<section class="table"><h2>{_esc(tbl_title)}</h2>')
        if isinstance(src, pd.DataFrame):
            parts.append(_df_html(src))
        else:
            p = Path(src)
            if not p.is_file():
                raise DmlReproError(f"report table {tbl_title!r}: Markdown file not found: {p}")
            md = p.read_text(encoding="utf-8")
            first, _, rest = md.partition("\n")
            heading = first.strip().lstrip("#").strip() if first.startswith("# ") else None
            if heading is not None and str(tbl_title).strip() in (heading, p.stem):
                # the file's own title repeats the section heading, or is better than its file name
                parts[-1] = f'<section class="table"><h2>{_esc(heading)}</h2>'
                md = rest
            parts.append(markdown_to_html(md))
        parts.append("</section>")
    if figures:
        parts.append("<h2>Figures</h2>")
    for fig_title, png, caption in figures:
        p = Path(png)
        if not p.is_file():
            raise DmlReproError(f"report figure {fig_title!r}: PNG not found: {p}")
        data = base64.b64encode(p.read_bytes()).decode("ascii")
        parts.append(
            f'<figure><h3>{_esc(fig_title)}</h3><img alt="{_esc(fig_title)}" src="data:image/png;base64,{data}">'
            f"<figcaption>{_esc(caption)}</figcaption></figure>"
        )
    if notes:
        parts.append('<h2>Notes</h2><ul class="notes">' + "".join(f"<li>{_esc(n)}</li>" for n in notes) + "</ul>")
    parts.append("</body></html>\n")
    out = Path(out_html)
    write_text(out, "\n".join(parts))
    return out
