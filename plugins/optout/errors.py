"""Exception types. Each maps to one CLI exit code and says how to fix the problem.

Messages name the file, line and field; they never contain an NHS number or a person key.
"""

from __future__ import annotations

from pathlib import Path


class OptOutError(Exception):
    """Base class; ``exit_code`` is what the CLI returns."""

    exit_code = 1


class InputError(OptOutError, ValueError):
    """Bad input or usage (exit 2): the message names the file, line and field."""

    exit_code = 2

    def __init__(
        self,
        message: str,
        *,
        path: str | Path | None = None,
        line: int | None = None,
        field: str | None = None,
    ) -> None:
        self.path = str(path) if path is not None else None
        self.line = line
        self.field = field
        where = ", ".join(
            part
            for part in (
                f"file {self.path}" if self.path else "",
                f"line {line}" if line is not None else "",
                f"field {field!r}" if field else "",
            )
            if part
        )
        super().__init__(f"{where}: {message}" if where else message)


class PolicyRefusal(OptOutError, RuntimeError):
    """Refused by the opt-out policy (exit 1); nothing was written."""

    exit_code = 1


class NoVersionError(PolicyRefusal):
    """No published opt-out check result exists yet."""


class StaleListError(PolicyRefusal):
    """The current check result is older than the maximum age."""


class VerificationFailed(PolicyRefusal):
    """A filtered extract did not prove clean, or its files changed since the manifest."""


class SuspiciousReplyError(PolicyRefusal):
    """A reply failed a sanity gate and was quarantined for a governance officer to inspect."""


class ConcurrentUpdateError(PolicyRefusal):
    """Another process changed the store first; rerun."""
