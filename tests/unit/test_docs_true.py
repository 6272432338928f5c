"""The README and docs/ stay true: every repository path they mention exists, the README's DAG snippet
loads through a DagBag with the cluster policy, and every command its CLI block shows is a real command."""

from __future__ import annotations

import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from typer.testing import CliRunner

from optout.cli import app
from tests.unit.filter_data import valid_numbers

ROOT = Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
# Files the README's walk-through asks the reader to create.
EXAMPLE = "diabetes_audit"
# Made by `make demo` / `make airflow`, not kept in the repository.
GENERATED = ("var/",)
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
INLINE = re.compile(r"`([^`\s]+)`")
LINK = re.compile(r"\]\(([^)\s#]+)(?:#[^)]*)?\)")


def _blocks(text: str, language: str | None = None) -> list[str]:
    return [body for lang, body in FENCE.findall(text) if language is None or lang == language]


def _missing_paths(doc: Path) -> list[str]:
    """Inline code naming something in the repository (from its root) and relative link targets (from the
    document's folder), outside code blocks, that do not exist."""
    prose = FENCE.sub("", doc.read_text())
    tops = {p.name for p in ROOT.iterdir()} - {".git"}
    missing = []
    for token in INLINE.findall(prose):
        token = token.rstrip(".,:;")
        if EXAMPLE in token or token.startswith(GENERATED) or any(c in token for c in "*?{<$"):
            continue
        if token.startswith("optout/"):
            path = ROOT / "plugins" / token
        elif "/" in token and token.split("/")[0] in tops:
            path = ROOT / token
        else:
            continue  # a name, an option, a command: not a path
        if not path.exists():
            missing.append(token)
    for target in LINK.findall(prose):
        if "://" not in target and not target.startswith("mailto:") and not (doc.parent / target).exists():
            missing.append(target)
    return missing


@pytest.mark.parametrize("doc", DOCS, ids=lambda p: p.name)
def test_every_mentioned_path_exists(doc: Path) -> None:
    missing = _missing_paths(doc)
    assert not missing, f"{doc.name} mentions paths that do not exist: {missing}"


def test_the_readme_dag_snippet_loads_with_the_policy(tmp_path: Path, airflow_db: Path) -> None:
    """The walk-through's spec and DAG, written where it says, load through a DagBag under the policy."""
    from airflow.dag_processing.dagbag import DagBag

    readme = (ROOT / "README.md").read_text()
    (spec,) = [b for b in _blocks(readme, "yaml") if f"name: {EXAMPLE}" in b]
    (dag,) = [b for b in _blocks(readme, "python") if f'DAG("{EXAMPLE}"' in b]
    (tmp_path / "include" / "specs").mkdir(parents=True)
    (tmp_path / "include" / "specs" / f"{EXAMPLE}.yaml").write_text(spec)
    data = tmp_path / "include" / "data"
    data.mkdir()
    people = pa.table({"nhs_number": [str(n) for n in valid_numbers(1)], "person_id": [1]})
    pq.write_table(people, data / "patients.parquet")
    pq.write_table(pa.table({"person_id": [1], "clinic": ["A"]}), data / "appointments.parquet")
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / f"{EXAMPLE}.py").write_text(dag)
    bag = DagBag(dag_folder=str(tmp_path / "dags"))
    assert not bag.import_errors, bag.import_errors
    assert sorted(bag.dags[EXAMPLE].task_ids) == ["export", "filter", "validate"]


def _commands(readme: str) -> list[list[str]]:
    """``optout check request INPUT...`` -> ``["check", "request"]``: words before the first argument."""
    (block,) = [b for b in _blocks(readme, "") if b.lstrip().startswith("optout ")]
    commands = []
    for line in block.splitlines():
        words = []
        for word in line.split()[1:]:
            if not re.fullmatch(r"[a-z][a-z-]*", word):
                break
            words.append(word)
        commands.append(words)
    return commands


def test_every_cli_line_of_the_readme_is_a_command() -> None:
    commands = _commands((ROOT / "README.md").read_text())
    assert ["filter"] in commands and ["check", "request"] in commands
    runner = CliRunner()
    for words in commands:
        result = runner.invoke(app, [*words, "--help"])
        assert result.exit_code == 0, f"`optout {' '.join(words)}` is not a command: {result.output}"
