"""Purpose tags on tasks, the DAG-level scope, and the extract graph the policy and operators share.

A DAG declares its scope: :data:`CPI_TAG` (it handles confidential patient information) or
:func:`no_cpi` (it does not, and why). In a CPI DAG every task has a role: a purpose
(:func:`purpose`, an export), :func:`internal` (no data leaves, and why), or it is one of ours or one of
Airflow's no-op and control-flow operators.

A tag lives in the task's ``params`` under ``"optout"`` (plain strings, so it survives DAG serialisation
and shows in the UI's task details) and in a line of its ``doc_md`` for people. The policy reads it at
parse time; the gate reads it again at send time. This module stays light: the policy imports it while
every DAG file is parsed, so it must not pull in pyarrow, pandas or Great Expectations.

Two tasks work on the same extract when their specs have the same ``name`` (:func:`extract_id`): the
spec file is read when the DAG is parsed, so a relative and an absolute spelling of one spec agree and a
broken spec is a DAG import error. A templated spec (``"{{ params.spec }}"``) cannot be read before the
run: tasks then agree by the template's text, and the gate checks the rendered spec's name at send time.
"""

from __future__ import annotations

import functools
import os
import sys
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from optout.errors import InputError
from optout.purpose import LegalBasis, Purpose, check_exemption, parse_legal_basis, parse_purpose

CPI_TAG = "confidential-patient-information"
"""Put this in a DAG's ``tags`` when it handles confidential patient information: the policy then
requires every task in it to have a role (a purpose, internal, or one of ours or Airflow's no-ops)."""

NO_CPI_TAG = "no-confidential-patient-information"
"""The other scope: the DAG handles no confidential patient information. Declare it with
:func:`no_cpi`, which also records the reason (the policy refuses the tag without one)."""

PARAM = "optout"
NO_CPI_NOTE = "**No confidential patient information:** "
INTERNAL_NOTE = "**Opt-out role:** internal, no data leaves: "
TEMPLATE_MARKERS = ("{{", "{%")
ROLE_FILTER = "filter"
ROLE_VALIDATE = "validate"
GATE_MARK = "optout_gate"
"""Set by ``gate()`` on the pre-execute hook it installs: what the policy takes as proof a task is gated."""


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
    """A spec as written, tidied: a templated spec is kept as its text, a path is normalised."""
    text = os.fspath(spec).strip()
    return text if is_templated(text) else os.path.normpath(text)


def is_templated(spec: str) -> bool:
    """True when the spec's path is only known once the run renders it."""
    return any(marker in spec for marker in TEMPLATE_MARKERS)


def spec_file(spec: str, fileloc: str | None) -> Path:
    """The spec file; a relative path is taken from the DAG file's folder, wherever the task runs."""
    path = Path(spec).expanduser()
    if path.is_absolute() or not fileloc:
        return path
    return Path(fileloc).parent / path


def parsed_spec(spec: str, fileloc: str | None) -> Any:
    """The spec (``ExtractSpec``) a task names, read when the DAG is parsed; None if it is templated.

    :raises InputError: the spec is missing or broken (a DAG import error naming file and field).
    """
    if is_templated(spec):
        return None
    path = spec_file(spec, fileloc).resolve()
    try:
        stat = path.stat()
    except OSError:
        raise InputError("spec file not found", path=path) from None
    return _load(path, stat.st_mtime_ns, stat.st_size)


@functools.lru_cache(maxsize=256)
def _load(path: Path, mtime_ns: int, size: int) -> Any:
    """One read per spec file version: a DAG names the same spec in several tasks."""
    from optout.spec import load_spec

    return load_spec(path)


def extract_id(task: Any) -> str | None:
    """The identity of the extract ``task`` works on: its spec's ``name``, or a templated spec's text.

    None for a task that names no spec. Read from the spec as written (never the rendered value), so
    the same answer comes at parse time and inside a running task.
    """
    written = written_spec(task)
    if written is None:
        return None
    dag = getattr(task, "dag", None)
    loaded = parsed_spec(written, getattr(dag, "fileloc", None))
    return loaded.name if loaded is not None else f"template {written}"


def written_spec(task: Any) -> str | None:
    """The spec as the DAG file wrote it: our operators keep it apart from the rendered ``spec``."""
    written = getattr(task, "optout_spec", None)
    if written is not None:
        return str(written)
    tag = read_tag(task)
    return tag.extract if tag is not None else None


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
        if not (parsed is Purpose.EXEMPT and basis is None and reference is None):
            check_exemption(parsed, basis, reference)  # an exempt task may leave both to its spec
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


def spec_conflict(tag: PurposeTag, spec: Any) -> str | None:
    """Why ``tag`` disagrees with the spec it sends (``ExtractSpec``), or None.

    The purpose, legal basis and reference come from the spec alone: a task may repeat them, not change them.
    """
    if spec.purpose is not tag.purpose:
        return (
            f"it sends extract {spec.name!r}, whose spec names purpose {spec.purpose.value!r}, for purpose "
            f"{tag.purpose.value!r}: an extract is sent for the purpose its spec names"
        )
    for field, given, recorded in (
        ("legal_basis", tag.legal_basis, spec.legal_basis),
        ("reference", tag.legal_reference, spec.legal_reference),
    ):
        if given is not None and given != recorded:
            return (
                f"{field} {str(given)!r} differs from the spec's {str(recorded)!r}; the legal basis and reference "
                f"come from the spec: remove {field}= from the task"
            )
    return None


def internal(task: Any, reason: str) -> Any:
    """Mark ``task`` (an operator or a ``@task`` call's output) as internal: no data leaves through it.

    For a task in a :data:`CPI_TAG` DAG that moves or reads data inside the organisation. The reason is
    shown in the UI and on the governance page; the policy cannot see what the task's code does, so the
    reason is the promise reviewers hold it to. Returns what it was given.
    """
    operator = as_operator(task)
    text = _reason(reason, f"task {operator.task_id!r}: internal(task, reason)")
    operator.params[PARAM] = {"internal": text}
    line = INTERNAL_NOTE + text
    operator.doc_md = f"{operator.doc_md}\n\n{line}" if operator.doc_md else line
    return task


def read_internal(task: Any) -> str | None:
    """The reason a task was marked :func:`internal`, or None."""
    raw = _raw(task)
    if not isinstance(raw, dict) or "internal" not in raw:
        return None
    return _reason(raw["internal"], f"task {task.task_id!r}: internal(task, reason)")


def no_cpi(dag: Any, reason: str) -> Any:
    """Declare that ``dag`` handles no confidential patient information, and why; returns ``dag``.

    Adds :data:`NO_CPI_TAG` to its tags and a line to its docs (shown in the UI, kept in the serialised
    DAG, listed on the governance page). Use it inside the ``with DAG(...) as dag:`` block, or on the
    object a ``@dag`` function returns.
    """
    text = _reason(reason, f"DAG {dag.dag_id!r}: no_cpi(dag, reason)")
    tags = dag.tags
    if isinstance(tags, list):
        tags.append(NO_CPI_TAG)
    else:
        tags.add(NO_CPI_TAG)
    line = NO_CPI_NOTE + text
    dag.doc_md = f"{dag.doc_md}\n\n{line}" if dag.doc_md else line
    return dag


def no_cpi_reason(doc_md: str | None) -> str | None:
    """The reason recorded by :func:`no_cpi` in a DAG's docs (``dag.doc_md``, or a serialized DAG's), or None."""
    for line in (doc_md or "").splitlines():
        if line.startswith(NO_CPI_NOTE) and line[len(NO_CPI_NOTE) :].strip():
            return line[len(NO_CPI_NOTE) :].strip()
    return None


def _reason(value: object, where: str) -> str:
    if not isinstance(value, str) or len(value.strip()) < 3:
        raise InputError(f"{where}: give the reason in words (shown in the UI and on the governance page)")
    return " ".join(value.split())


def _raw(task: Any) -> Any:
    params = getattr(task, "params", None)
    if params is None or PARAM not in params:
        return None
    return params.get_param(PARAM).value  # the stored value: resolving would run JSON-schema checks per task


def read_tag(task: Any) -> PurposeTag | None:
    """The task's tag, validated again (a hand-written ``params`` entry gets the same checks)."""
    raw = _raw(task)
    if raw is None or (isinstance(raw, dict) and set(raw) == {"internal"}):
        return None
    if not isinstance(raw, dict) or "purpose" not in raw:
        raise InputError(
            f"task {task.task_id!r}: params['optout'] must be set with optout's purpose(task, ...) "
            "or internal(task, ...)"
        )
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


def declares_no_cpi(dag: Any) -> bool:
    """The DAG is tagged :data:`NO_CPI_TAG` (the policy also wants its reason)."""
    return NO_CPI_TAG in (getattr(dag, "tags", None) or ())


def role(task: Any) -> str | None:
    """``filter`` or ``validate`` for the enforcement operators, None for everything else.

    Only our own classes have a role: a task of another class (or a subclass written in a DAG file, which
    may run other code) that sets ``optout_role`` is not a filter or a validation.
    """
    return getattr(task, "optout_role", None) if is_ours(type(task)) else None


def is_ours(cls: type) -> bool:
    """``cls`` is one of optout's operator classes, not a class that only claims a module under ``optout.airflow``."""
    return cls.__module__.startswith("optout.airflow.") and is_defined_as_named(cls)


def is_defined_as_named(cls: type) -> bool:
    """The class is the one its module and qualified name lead to, so ``__module__`` set by hand does not pass."""
    found: Any = sys.modules.get(cls.__module__)
    for part in cls.__qualname__.split("."):
        found = getattr(found, part, None)
    return found is cls


def upstream(task: Any) -> Iterator[Any]:
    """Every task upstream of ``task``, however far."""
    return iter(task.get_flat_relatives(upstream=True))


def on_extract(tasks: Iterable[Any], kind: str, identity: str) -> list[Any]:
    """The ``filter``/``validate`` tasks among ``tasks`` that work on the extract ``identity``."""
    return [t for t in tasks if role(t) == kind and extract_id(t) == identity]
