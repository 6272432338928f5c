"""Governance settings from Airflow's ``[optout]`` section (``airflow.cfg`` or ``AIRFLOW__OPTOUT__<NAME>``).

Read at the moment they are used, never at import, and each in one place:

- ``organisation``: the name printed on the evidence pack and the data uses register;
- ``block_overdue_flows``: a flow past its review date (or never reviewed) may not send (default off);
- ``retain_outputs``, ``retain_validation``, ``retain_versions``: how long filtered extracts, their
  validation folders and the numbers of old list versions are kept (see :mod:`optout.governance.retention`).
"""

from __future__ import annotations

import os

from optout.errors import InputError

DEFAULT_ORGANISATION = "Our organisation"
_TRUE, _FALSE = {"1", "true", "yes", "on"}, {"0", "false", "no", "off", ""}


def option(name: str) -> str | None:
    """``[optout] name``, or None when it is not set."""
    try:
        from airflow.configuration import conf
    except ImportError:  # the library without Airflow: its environment variable still works
        return os.environ.get(f"AIRFLOW__OPTOUT__{name.upper()}")
    value = conf.get("optout", name, fallback=None)
    return None if value is None else str(value)


def flag(name: str) -> bool:
    """A yes/no option (default no); anything else is an error naming the option."""
    value = (option(name) or "").strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise InputError(f"{value!r} is not true or false", field=f"[optout] {name}")


def organisation() -> str:
    return (option("organisation") or "").strip() or DEFAULT_ORGANISATION


def block_overdue_flows() -> bool:
    return flag("block_overdue_flows")
