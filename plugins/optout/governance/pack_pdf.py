"""The evidence pack as a paginated PDF (reportlab): a cover with the organisation's name and a table of
contents with page numbers, one section per chapter, the organisation and page number on every page.

reportlab rather than matplotlib's PdfPages: tables flow over pages with their header repeated, text
wraps, and the table of contents gets real page numbers (two passes, ``multiBuild``).
"""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any
from xml.sax.saxutils import escape

from reportlab.lib import colors
from reportlab.lib.pagesizes import A4
from reportlab.lib.styles import ParagraphStyle, getSampleStyleSheet
from reportlab.lib.units import mm
from reportlab.pdfbase.pdfmetrics import stringWidth
from reportlab.platypus import Image, KeepTogether, PageBreak, Paragraph, Spacer, TableStyle
from reportlab.platypus import Table as RLTable
from reportlab.platypus.doctemplate import SimpleDocTemplate
from reportlab.platypus.tableofcontents import TableOfContents

from optout.atomic import write_bytes
from optout.governance.document import Alert, Chart, Document, Table

_BLUE, _GREY, _RED, _PALE = "#005eb8", "#4c6272", "#d5281b", "#f0f4f5"
_TIME = re.compile(r"\d\d [A-Z][a-z]{2} \d{4} \d\d:\d\d [A-Z]{3,4}")
_CELL_FONT, _PADDING, _LONG_WORD = 7.5, 13, 21  # cell font (pt), cell padding (pt), longest name kept whole


def write_pdf(document: Document, path: Path) -> None:
    """Render ``document`` and swap it into ``path`` whole."""
    write_bytes(path, render_pdf(document))


def render_pdf(document: Document) -> bytes:
    base = getSampleStyleSheet()
    styles = {
        "title": ParagraphStyle("title", parent=base["Title"], textColor=colors.HexColor(_BLUE), fontSize=26),
        "org": ParagraphStyle("org", parent=base["Heading2"], alignment=1, textColor=colors.HexColor(_GREY)),
        "h1": ParagraphStyle("h1", parent=base["Heading1"], textColor=colors.HexColor(_BLUE)),
        "body": ParagraphStyle("body", parent=base["BodyText"], fontSize=9.5, leading=13),
        "cell": ParagraphStyle("cell", parent=base["BodyText"], fontSize=_CELL_FONT, leading=9),
        "caption": ParagraphStyle("caption", parent=base["BodyText"], fontSize=8.5, textColor=colors.HexColor(_GREY)),
        "alert": ParagraphStyle("alert", parent=base["BodyText"], textColor=colors.HexColor(_RED), fontSize=10),
    }
    out = io.BytesIO()
    doc = _Template(out, document, pagesize=A4, leftMargin=16 * mm, rightMargin=16 * mm, topMargin=18 * mm)
    toc = TableOfContents()
    toc.levelStyles = [ParagraphStyle("toc", parent=styles["body"], fontSize=11, leading=18)]
    story: list[Any] = [
        Spacer(1, 50 * mm),
        Paragraph(_esc(document.title), styles["title"]),
        Paragraph(_esc(document.organisation), styles["org"]),
        Spacer(1, 6 * mm),
        Paragraph(f"Period: {_esc(document.period)}", styles["org"]),
        Paragraph(f"Made {document.generated_at:%d %B %Y %H:%M} UTC", styles["org"].clone("made", fontSize=10)),
        Spacer(1, 20 * mm),
        Paragraph("Contents", styles["h1"]),
        toc,
        PageBreak(),
    ]
    width = A4[0] - 32 * mm
    for number, section in enumerate(document.sections, 1):
        heading = Paragraph(f"{number}. {_esc(section.title)}", styles["h1"])
        heading.toc_text = f"{number}. {section.title}"  # type: ignore[attr-defined]
        story.append(heading)
        for block in section.blocks:
            story.extend(_block(block, styles, width))
            story.append(Spacer(1, 4 * mm))
        story.append(PageBreak())
    doc.multiBuild(story[:-1])
    return out.getvalue()


def _block(block: object, styles: dict[str, Any], width: float) -> list[Any]:
    if isinstance(block, Alert):
        return [Paragraph(f"<b>{_esc(block.text)}</b>", styles["alert"])]
    if isinstance(block, Chart):
        image = Image(io.BytesIO(block.png))
        scale = width / image.imageWidth
        image.drawWidth, image.drawHeight = width, image.imageHeight * scale
        return [KeepTogether([image, Paragraph(_esc(block.caption), styles["caption"])])]
    if isinstance(block, Table):
        return _table(block, styles, width)
    return [Paragraph(_esc(str(block)), styles["body"])]


def _table(table: Table, styles: dict[str, Any], width: float) -> list[Any]:
    caption = Paragraph(f"<b>{_esc(table.caption)}</b>", styles["body"])
    if not table.rows:
        return [caption, Paragraph(_esc(table.empty), styles["body"])]
    right = styles["cell"].clone("right", alignment=2)
    cells = [[Paragraph(f"<b>{_esc(h)}</b>", styles["cell"]) for h in table.header]]
    for row in table.rows:
        cells.append([Paragraph(_esc(v), right if i in table.numeric else styles["cell"]) for i, v in enumerate(row)])
    grid = RLTable(cells, colWidths=_widths(table, width), repeatRows=1, hAlign="LEFT")
    grid.setStyle(
        TableStyle(
            [
                ("BACKGROUND", (0, 0), (-1, 0), colors.HexColor(_PALE)),
                ("GRID", (0, 0), (-1, -1), 0.4, colors.HexColor("#d8dde0")),
                ("VALIGN", (0, 0), (-1, -1), "TOP"),
                ("TOPPADDING", (0, 0), (-1, -1), 2),
                ("BOTTOMPADDING", (0, 0), (-1, -1), 2),
            ]
        )
    )
    return [caption, grid]


def _widths(table: Table, width: float) -> list[float]:
    """Each column gets room for its longest word (bold header included, with padding), and the rest of
    the width is shared by the length of its longest text (capped), so names wrap and numbers do not."""
    floors, natural = [], []
    for i, title in enumerate(table.header):
        texts = [title, *(row[i] for row in table.rows)]
        longest_word = max(_width(word, "Helvetica") for text in texts[1:] or [""] for word in _words(text))
        header_word = max(_width(word, "Helvetica-Bold") for word in title.split() or [""])
        floors.append(max(longest_word, header_word) + _PADDING)
        natural.append(min(max(len(t) for t in texts), 80))
    spare = width - sum(floors)
    if spare <= 0:
        return [width * f / sum(floors) for f in floors]
    return [f + spare * n / sum(natural) for f, n in zip(floors, natural, strict=True)]


def _cell(text: str) -> str:
    """Escaped; a time (``02 Dec 2026 16:30 GMT``) kept on one line, a long name may break after a ``/``."""
    if _TIME.fullmatch(text):
        return "&nbsp;".join(_esc(part) for part in text.split(" "))
    return _esc(text.replace("/", "/ ") if len(text) > _LONG_WORD and " " not in text else text)


def _width(text: str, font: str) -> float:
    return float(stringWidth(text, font, _CELL_FONT))


def _words(text: str) -> list[str]:
    if _TIME.fullmatch(text):
        return [text]
    return (text.replace("/", "/ ") if len(text) > _LONG_WORD and " " not in text else text).split() or [""]


def _esc(text: str) -> str:
    return escape(text)


class _Template(SimpleDocTemplate):
    """Headers, footers and table-of-contents entries (every h1 paragraph with ``toc_text``)."""

    def __init__(self, out: Any, document: Document, **kwargs: Any) -> None:
        super().__init__(out, title=document.title, author=document.organisation, **kwargs)
        self.document = document

    def afterFlowable(self, flowable: Any) -> None:
        text = getattr(flowable, "toc_text", None)
        if text:
            key = f"s{self.page}-{id(flowable)}"
            self.canv.bookmarkPage(key)
            self.canv.addOutlineEntry(text, key, level=0)
            self.notify("TOCEntry", (0, text, self.page, key))

    def handle_pageBegin(self) -> None:
        super().handle_pageBegin()
        canvas = self.canv
        canvas.saveState()
        canvas.setFont("Helvetica", 8)
        canvas.setFillColor(colors.HexColor(_GREY))
        width, height = self.pagesize
        canvas.drawString(self.leftMargin, height - 10 * mm, f"{self.document.organisation}: {self.document.title}")
        canvas.drawRightString(width - self.rightMargin, 10 * mm, f"page {canvas.getPageNumber()}")
        canvas.drawString(self.leftMargin, 10 * mm, f"Period: {self.document.period}")
        canvas.restoreState()
