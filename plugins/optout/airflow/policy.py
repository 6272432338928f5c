"""The cluster policy (entry point ``airflow.policy``): an unguarded secondary-use export never loads.

Checked on every DAG as it is parsed, so a mistake shows as a DAG import error naming the task and what
to add. A task is checked when it carries a purpose tag, or when it is an export-type operator in a DAG
marked as handling confidential patient information (``tags=[CPI_TAG]``):

- ``direct_care`` passes;
- ``exempt`` must carry its legal basis and reference and be sent through the gate;
- every other purpose must be sent through the gate, with an ``OptOutFilterOperator`` and then an
  ``OptOutValidateOperator`` on the same extract upstream of it.

Export-type operators are named by class (any class in the task's MRO) in ``[optout] export_operators``
(``AIRFLOW__OPTOUT__EXPORT_OPERATORS``, comma-separated); the default lists ours and the common transfers.
Only light modules are imported here: parsing must not load pandas, pyarrow or Great Expectations.
"""

from __future__ import annotations

from typing import Any

from airflow.exceptions import AirflowClusterPolicyViolation
from airflow.policies import hookimpl

from optout.airflow.tagging import (
    CPI_TAG,
    ROLE_FILTER,
    ROLE_VALIDATE,
    PurposeTag,
    handles_cpi,
    on_extract,
    read_tag,
    upstream,
)
from optout.errors import InputError
from optout.purpose import Purpose

DEFAULT_EXPORT_OPERATORS = (
    "GatedExportOperator",
    "SFTPOperator",
    "SFTPToS3Operator",
    "S3ToSFTPOperator",
    "LocalFilesystemToS3Operator",
    "S3CreateObjectOperator",
    "SqlToS3Operator",
    "LocalFilesystemToGCSOperator",
    "LocalFilesystemToWasbOperator",
    "GenericTransfer",
    "EmailOperator",
)
HOW_TO = "see docs/add-optout-to-your-dag.md"


def export_operators() -> frozenset[str]:
    """Class names that count as exports: ``[optout] export_operators``, else the defaults."""
    from airflow.configuration import conf

    configured = conf.get("optout", "export_operators", fallback="")
    names = [name.strip() for name in configured.split(",") if name.strip()]
    return frozenset(names or DEFAULT_EXPORT_OPERATORS)


def is_export(task: Any, names: frozenset[str]) -> bool:
    return any(cls.__name__ in names for cls in type(task).__mro__)


def problems(dag: Any) -> list[str]:
    """Every violation in ``dag``, one sentence each saying what to add."""
    names = export_operators()
    found: list[str] = []
    for task in dag.tasks:
        try:
            tag = read_tag(task)
        except InputError as exc:
            found.append(str(exc))
            continue
        if tag is None:
            if handles_cpi(dag) and is_export(task, names):
                found.append(
                    f"task {task.task_id!r} is an export ({type(task).__name__}) in a DAG tagged {CPI_TAG!r} "
                    "but has no purpose: add purpose(task, 'direct_care') if it is direct care, otherwise "
                    "filter, validate and send it through the gate with its purpose"
                )
            continue
        found.extend(_task_problems(task, tag))
    return found


def _task_problems(task: Any, tag: PurposeTag) -> list[str]:
    name = f"task {task.task_id!r} ({tag.purpose.value})"
    if tag.purpose is Purpose.DIRECT_CARE:
        return []
    if tag.extract is None:
        return [f"{name} does not say which extract it sends: give extract=<the spec's path>"]
    if not tag.gated:
        return [
            f"{name} is not sent through the opt-out gate: use GatedExportOperator, or "
            f"gate(task, spec=..., purpose={tag.purpose.value!r}) for an existing export operator"
        ]
    if tag.purpose is Purpose.EXEMPT:
        return []
    return _guard_problems(task, name, tag.extract)


def _guard_problems(task: Any, name: str, key: str) -> list[str]:
    """The filter and the validation of this extract must both run before the task, in that order."""
    before = list(upstream(task))
    filters = on_extract(before, ROLE_FILTER, key)
    validations = on_extract(before, ROLE_VALIDATE, key)
    spec = f"spec={key!r}"
    if not filters:
        elsewhere = on_extract(task.dag.tasks, ROLE_FILTER, key)
        if elsewhere:
            return [
                f"{name}: the filter {elsewhere[0].task_id!r} of its extract is not upstream of it; "
                f"set {elsewhere[0].task_id} >> <validate> >> {task.task_id}"
            ]
        return [
            f"{name} has no opt-out filter upstream: add OptOutFilterOperator({spec}) >> "
            f"OptOutValidateOperator({spec}) >> {task.task_id}"
        ]
    if not validations:
        return [
            f"{name} has a filter but no validation upstream: add OptOutValidateOperator({spec}) between "
            f"{filters[0].task_id!r} and {task.task_id!r}"
        ]
    if not any(f.task_id in v.get_flat_relative_ids(upstream=True) for v in validations for f in filters):
        return [f"{name}: validation {validations[0].task_id!r} must run after filter {filters[0].task_id!r}"]
    return []


@hookimpl
def dag_policy(dag: Any) -> None:
    """Refuse a DAG whose secondary-use exports are not filtered, validated and gated."""
    found = problems(dag)
    if found:
        raise AirflowClusterPolicyViolation(
            f"DAG {dag.dag_id!r} breaks the National Data Opt-out policy ({HOW_TO}): " + "; ".join(found)
        )
