"""docs/architecture.md keeps the map true: every module it lists exists, and every module is listed."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "plugins" / "optout"


def _listed() -> set[str]:
    text = (ROOT / "docs" / "architecture.md").read_text()
    section = text[text.index("## Modules\n") :]
    section = section[: section.index("\n### ")]
    return set(re.findall(r"^\| `([^`]+)` \|", section, re.M))


def _modules() -> set[str]:
    found = {path.relative_to(PACKAGE).as_posix() for path in PACKAGE.rglob("*.py")}
    return {name for name in found if not name.endswith("__init__.py") or name == "homes/__init__.py"}


def test_every_listed_module_exists() -> None:
    assert sorted(name for name in _listed() if not (PACKAGE / name).exists()) == []


def test_every_module_is_listed_with_its_job() -> None:
    assert sorted(_modules() - _listed()) == []
