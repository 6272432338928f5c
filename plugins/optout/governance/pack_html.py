"""The evidence pack as one self-contained HTML file: the same document as the PDF, charts as inline SVG
(with real text), every value escaped. Also what the governance page offers for download."""

from __future__ import annotations

import re
from html import escape

from optout.governance.document import Alert, Chart, Document, Table

_SVG_START = re.compile(r"^.*?(<svg\b)", re.DOTALL)


def render_html(document: Document) -> str:
    toc = "".join(
        f'<li><a href="#s{i}">{escape(section.title)}</a></li>' for i, section in enumerate(document.sections, 1)
    )
    parts = [
        f'<!doctype html><html lang="en-GB"><head><meta charset="utf-8"><title>{escape(document.title)}: '
        f"{escape(document.organisation)}</title><style>{_CSS}</style></head><body><main>",
        f"<header><h1>{escape(document.title)}</h1><p class=org>{escape(document.organisation)}</p>"
        f"<p>Period: {escape(document.period)}. Made {document.generated_at:%d %B %Y %H:%M} UTC.</p></header>",
        f'<nav aria-label="Contents"><h2>Contents</h2><ol>{toc}</ol></nav>',
    ]
    for i, section in enumerate(document.sections, 1):
        parts.append(f'<section id="s{i}"><h2>{i}. {escape(section.title)}</h2>')
        parts.extend(block_html(block) for block in section.blocks)
        parts.append("</section>")
    parts.append("</main></body></html>")
    return "\n".join(parts)


def block_html(block: object) -> str:
    if isinstance(block, Alert):
        return f'<p class="alert"><strong>{escape(block.text)}</strong></p>'
    if isinstance(block, Chart):
        svg = _SVG_START.sub(r"\1", block.svg, count=1)  # drop the XML prolog and doctype
        caption = escape(block.caption)
        return f'<figure role="img" aria-label="{caption}">{svg}<figcaption>{caption}</figcaption></figure>'
    if isinstance(block, Table):
        return table_html(block)
    return f"<p>{escape(str(block))}</p>"


def table_html(table: Table) -> str:
    if not table.rows:
        return f"<h3>{escape(table.caption)}</h3><p>{escape(table.empty)}</p>"
    head = "".join(f'<th scope="col">{escape(h)}</th>' for h in table.header)
    body = "".join(
        "<tr>"
        + "".join(
            f'<td class="num">{escape(v)}</td>' if i in table.numeric else f"<td>{escape(v)}</td>"
            for i, v in enumerate(row)
        )
        + "</tr>"
        for row in table.rows
    )
    return (
        f"<table><caption>{escape(table.caption)}</caption><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    )


_CSS = """body{font-family:system-ui,-apple-system,"Segoe UI",Arial,sans-serif;color:#212b32;margin:0}
main{max-width:64rem;margin:0 auto;padding:1rem 1.5rem}h1{color:#005eb8}.org{font-size:1.2rem;color:#4c6272}
h2{border-bottom:2px solid #d8dde0;margin-top:2rem}table{border-collapse:collapse;margin:.5rem 0 1rem}
caption{text-align:left;font-weight:600;padding:.25rem 0}th,td{border:1px solid #d8dde0;padding:.25rem .5rem;
text-align:left;font-size:.9rem}thead th{background:#f0f4f5}td.num{text-align:right;font-variant-numeric:tabular-nums}
.alert{color:#a00000}figure{margin:1rem 0}figure svg{max-width:100%;height:auto}figcaption{color:#4c6272}
@media print{section{break-before:page}}"""
