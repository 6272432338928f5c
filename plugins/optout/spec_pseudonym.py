"""How a table's identifier column was hashed, as its spec says (``pseudonymised:``): the scheme and where
the key lives, never the key. Parsed with the spec, so it imports nothing heavy; the hashing itself is
:mod:`optout.pseudonym`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from optout.errors import InputError

PSEUDONYM_SCHEMES = ("hmac-sha256",)
_PSEUDONYM_KEYS = ("scheme", "key_env", "key_conn")


@dataclass(frozen=True)
class Pseudonymisation:
    """How a table's identifier column was hashed: the scheme and where the key lives.

    Exactly one of ``key_env`` (an environment variable name) and ``key_conn`` (an Airflow connection id,
    whose password is the key) is set.
    """

    scheme: str = "hmac-sha256"
    key_env: str | None = None
    key_conn: str | None = None

    @classmethod
    def parse(cls, value: Any, *, path: str | Path | None = None, field: str = "pseudonymised") -> Pseudonymisation:
        """Validate the spec's ``pseudonymised:`` mapping; a key written into the spec itself is refused."""
        if not isinstance(value, Mapping):
            raise InputError("expected a mapping: {scheme: hmac-sha256, key_env: NAME}", path=path, field=field)
        for name in value:
            if name in ("key", "secret", "password"):
                raise InputError(
                    "a key never goes in the spec file: name an environment variable (key_env) "
                    "or an Airflow connection (key_conn) that holds it",
                    path=path,
                    field=f"{field}.{name}",
                )
            if name not in _PSEUDONYM_KEYS:
                allowed = ", ".join(_PSEUDONYM_KEYS)
                raise InputError(f"unknown key {name!r}; allowed: {allowed}", path=path, field=f"{field}.{name}")
        scheme = str(value.get("scheme", PSEUDONYM_SCHEMES[0])).strip().lower()
        if scheme not in PSEUDONYM_SCHEMES:
            supported = ", ".join(PSEUDONYM_SCHEMES)
            raise InputError(f"unknown scheme {scheme!r}; supported: {supported}", path=path, field=f"{field}.scheme")
        key_env, key_conn = value.get("key_env"), value.get("key_conn")
        if (key_env is None) == (key_conn is None):
            raise InputError("give exactly one of key_env and key_conn", path=path, field=field)
        for name, given in (("key_env", key_env), ("key_conn", key_conn)):
            if given is not None and (not isinstance(given, str) or not given.strip()):
                raise InputError("expected a non-empty name", path=path, field=f"{field}.{name}")
        return cls(scheme, key_env.strip() if key_env else None, key_conn.strip() if key_conn else None)

    @property
    def key_source(self) -> str:
        """Where the key comes from, for messages (a name, never the key)."""
        return f"environment variable {self.key_env}" if self.key_env else f"Airflow connection {self.key_conn!r}"
