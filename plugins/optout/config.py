"""Settings read from the environment, with the embedded defaults a fresh machine runs on."""

from __future__ import annotations

import os
import re
from datetime import timedelta
from pathlib import Path

import platformdirs

from optout.errors import InputError

DEFAULT_MAX_AGE = timedelta(hours=48)
DEFAULT_KEEP_VERSIONS = 7
_DURATION = re.compile(r"^\s*(\d+)\s*([smhdw])\s*$", re.IGNORECASE)
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


def data_dir() -> Path:
    """Per-user data folder (``OPTOUT_HOME`` overrides), created owner-only."""
    folder = Path(os.environ.get("OPTOUT_HOME") or platformdirs.user_data_dir("optout"))
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    return folder


def store_url() -> str:
    """``OPTOUT_STORE_URL``, else a SQLite file in :func:`data_dir`."""
    return os.environ.get("OPTOUT_STORE_URL") or f"sqlite:///{data_dir() / 'store.sqlite'}"


def parse_duration(text: str, *, field: str = "OPTOUT_MAX_AGE") -> timedelta:
    """``90s``, ``30m``, ``48h``, ``7d`` or ``2w`` as a timedelta."""
    match = _DURATION.match(str(text))
    if not match:
        raise InputError(f"{text!r} is not a duration; write a number and a unit: 90s, 30m, 48h, 7d", field=field)
    amount, unit = int(match.group(1)), match.group(2).lower()
    if amount <= 0:
        raise InputError(f"{text!r} must be longer than zero", field=field)
    return timedelta(**{_UNITS[unit]: amount})


def max_age() -> timedelta:
    """How old the current version may be before every secondary-use export refuses (see
    :func:`optout.freshness.max_age`: the store's setting, which the environment may only shorten)."""
    from optout.freshness import max_age as limit

    return limit()


def format_duration(delta: timedelta) -> str:
    """Short human form used in messages: ``2d 3h``, ``45m``, ``12s``."""
    seconds = int(delta.total_seconds())
    days, rest = divmod(abs(seconds), 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    parts = [f"{days}d" if days else "", f"{hours}h" if hours else "", f"{minutes}m" if minutes and not days else ""]
    text = " ".join(p for p in parts if p) or f"{secs}s"
    return f"-{text}" if seconds < 0 else text
