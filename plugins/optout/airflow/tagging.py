"""Purpose tags on tasks, the DAG-level marker, and the extract graph the policy and operators share.

A tag lives in the task's ``params`` under ``"optout"`` (plain strings, so it survives DAG serialisation
and shows in the UI's task details) and in a line of its ``doc_md`` for people. The policy reads it at
parse time; the gate reads it again at send time. This module stays light: the policy imports it while
every DAG file is parsed, so it must not pull in pyarrow, pandas or Great Expectations.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from optout.errors import InputError
from optout.purpose import LegalBasis, Purpose, check_exemption, parse_legal_basis, parse_purpose

CPI_TAG = "confidential-patient-information"
"""Put this in a DAG's ``tags`` when it handles confidential patient information: the policy then
requires every export-type task in it to carry a purpose."""

PARAM = "optout"
ROLE_FILTER = "filter"
ROLE_VALIDATE = "validate"


@dataclass(frozen=True)
class PurposeTag:
    """Why a task's data leaves, which extract it sends, and (when exempt) the recorded legal basis."""

    purpose: Purpose
    extract: str | None = None
    legal_basis: LegalBasis | None = None
    legal_reference: str | None = None
    gated: bool = False

    def as_param(self) -> dict[str, Any]:
        """Plain JSON values: what survives serialisation and what the UI shows."""
        return {k: v if v is None or isinstance(v, bool) else str(v) for k, v in asdict(self).items()}

    def describe(self) -> str:
        """One line for ``doc_md``: what a reviewer looks for in the UI."""
        text = f"**Opt-out purpose:** `{self.purpose.value}`"
        if self.legal_basis is not None:
            text += f", legal basis `{self.legal_basis.value}` (ref. {self.legal_reference})"
        if self.extract:
            text += f", extract `{Path(self.extract).name}`"
        return text + (", sent through the opt-out gate" if self.gated else "")


def extract_key(spec: str | os.PathLike[str]) -> str:
    """How tasks name the same extract: the spec's path, normalised (absolute paths are the safe habit)."""
    return os.path.normpath(os.fspath(spec))


def make_tag(
    purpose: str | Purpose,
    *,
    extract: str | os.PathLike[str] | None = None,
    legal_basis: str | LegalBasis | None = None,
    reference: str | None = None,
    gated: bool = False,
    task: Any = None,
) -> PurposeTag:
    """Validate a tag: the purpose and legal basis must be known, ``exempt`` needs both basis and reference.

    Errors name ``task`` so the DAG import error points at the line to fix.
    """
    try:
        parsed = parse_purpose(purpose)
        basis = parse_legal_basis(legal_basis) if legal_basis is not None else None
        check_exemption(parsed, basis, reference)
    except InputError as exc:
        if task is None:
            raise
        raise InputError(f"task {task.task_id!r}: {exc}") from None
    key = extract_key(extract) if extract is not None else None
    return PurposeTag(parsed, key, basis, reference.strip() if reference else None, gated)


def tag_task(task: Any, tag: PurposeTag) -> None:
    """Store ``tag`` on ``task``: in ``params`` for machines, in ``doc_md`` for people."""
    task.params[PARAM] = tag.as_param()
    line = tag.describe()
    task.doc_md = f"{task.doc_md}\n\n{line}" if task.doc_md else line


def purpose(
    task: Any,
    purpose: str | Purpose,
    *,
    legal_basis: str | LegalBasis | None = None,
    reference: str | None = None,
    extract: str | os.PathLike[str] | None = None,
) -> Any:
    """Tag ``task`` (an operator, or the output of a ``@task`` call) with why its data is used.

    Returns what it was given, so it can wrap a constructor or a ``@task`` call in place.

    ``direct_care`` needs nothing more. Secondary uses must also be sent through the gate
    (:func:`optout.airflow.operators.export.gate` or ``GatedExportOperator``): the policy refuses them
    otherwise. ``exempt`` needs ``legal_basis`` and ``reference`` (the approval's ID).
    """
    operator = as_operator(task)
    tag_task(operator, make_tag(purpose, extract=extract, legal_basis=legal_basis, reference=reference, task=operator))
    return task


def as_operator(task: Any) -> Any:
    """The operator behind a ``@task`` call's output (an XComArg), or ``task`` itself."""
    return getattr(task, "operator", task)


def read_tag(task: Any) -> PurposeTag | None:
    """The task's tag, validated again (a hand-written ``params`` entry gets the same checks)."""
    params = getattr(task, "params", None)
    if params is None or PARAM not in params:
        return None
    raw = params.get_param(PARAM).value  # the stored value: resolving would run JSON-schema checks per task
    if not isinstance(raw, dict) or "purpose" not in raw:
        raise InputError(f"task {task.task_id!r}: params['optout'] must be set with optout's purpose(task, ...)")
    return make_tag(
        raw["purpose"],
        extract=raw.get("extract"),
        legal_basis=raw.get("legal_basis"),
        reference=raw.get("legal_reference"),
        gated=bool(raw.get("gated")),
        task=task,
    )


def handles_cpi(dag: Any) -> bool:
    """The DAG-level marker: the DAG is tagged :data:`CPI_TAG`."""
    return CPI_TAG in (getattr(dag, "tags", None) or ())


def role(task: Any) -> str | None:
    """``filter`` or ``validate`` for the enforcement operators, None for everything else."""
    return getattr(task, "optout_role", None)


def upstream(task: Any) -> Iterator[Any]:
    """Every task upstream of ``task``, however far."""
    return iter(task.get_flat_relatives(upstream=True))


def on_extract(tasks: Iterable[Any], kind: str, key: str) -> list[Any]:
    """The ``filter``/``validate`` tasks among ``tasks`` that work on the extract ``key``."""
    return [t for t in tasks if role(t) == kind and extract_key(t.spec) == key]
