"""How the CLI words versions and counts (one line each, counts only, never a number or key), and reads dates."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, datetime
from typing import TYPE_CHECKING

import typer

from optout.config import format_duration, max_age
from optout.errors import InputError

if TYPE_CHECKING:
    from optout.store import VersionInfo


def version_line(info: VersionInfo, now: datetime | None = None) -> str:
    """``version 7 published: cohort 1000, cleared 950, opted out 50 (5.0%), checked 2h ago, fresh``."""
    parts = [f"version {info.id} {info.status}: cohort {info.cohort_count:,}"]
    if info.cleared_count is not None:
        opted_out = info.cohort_count - info.cleared_count
        share = opted_out / info.cohort_count if info.cohort_count else 0.0
        parts.append(f"cleared {info.cleared_count:,}, opted out {opted_out:,} ({share:.1%})")
    if info.checked_at is not None:
        state = "fresh" if info.is_fresh(max_age(), now) else "STALE"
        age = format_duration(info.age(now))
        parts.append(f"checked {info.checked_at:%Y-%m-%d %H:%M} UTC, requested {age} ago, {state}")
    if info.note:
        parts.append(info.note)
    return ", ".join(parts)


def echo_counts(title: str, counts: Mapping[str, int]) -> None:
    """``cohort: rows 12, valid 10, missing 1, ...`` in one line."""
    typer.echo(f"{title}: " + ", ".join(f"{key.replace('_', ' ')} {value:,}" for key, value in counts.items()))


def parse_day(text: str, field: str) -> date:
    """A ``YYYY-MM-DD`` option of any command, or a clear error naming the option."""
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise InputError(f"{text!r} is not a date; write YYYY-MM-DD", field=field) from None
