"""`optout filter`, `optout verify`, `optout status`."""

from __future__ import annotations

import typer


def register(app: typer.Typer) -> None:
    """Add the top-level extract commands to the main app."""
