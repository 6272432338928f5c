"""A small document model the evidence pack is built in once and rendered twice (PDF and HTML).

Blocks are plain text, tables of strings and charts (PNG for the PDF, SVG for the HTML): whatever a
renderer shows came from the same cells, so the two formats cannot tell different stories.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime


@dataclass(frozen=True)
class Table:
    caption: str
    header: list[str]
    rows: list[list[str]]
    empty: str = "None in this period."
    numeric: tuple[int, ...] = ()  # columns aligned right


@dataclass(frozen=True)
class Chart:
    caption: str
    png: bytes
    svg: str


@dataclass(frozen=True)
class Alert:
    """A sentence shown in red: something governance staff must act on."""

    text: str


Block = str | Table | Chart | Alert


@dataclass
class Section:
    title: str
    blocks: list[Block] = field(default_factory=list)

    def add(self, *blocks: Block) -> Section:
        self.blocks.extend(blocks)
        return self


@dataclass(frozen=True)
class Document:
    title: str
    organisation: str
    period: str
    generated_at: datetime
    sections: list[Section]
