"""The cluster policy (entry point ``airflow.policy``): deny by default, as every DAG is parsed.

A mistake shows as a DAG import error naming the DAG or task and what to add. The rules:

1. Every DAG declares its scope: ``tags=[CPI_TAG]`` (it handles confidential patient information) or
   ``no_cpi(dag, reason)``. A DAG declaring neither does not load, unless its id matches a glob in
   ``[optout] unscoped_dags`` (``AIRFLOW__OPTOUT__UNSCOPED_DAGS``, comma-separated), which grandfathers it.
2. In a CPI DAG every task has a role: an export (``purpose(...)`` and the gate), ``internal(task,
   reason)``, or it runs only our code or one of Airflow's no-op and control-flow operators (exact classes;
   a subclass runs code of its own and needs a role). Export-type operators (class names in ``[optout]
   export_operators``) cannot be internal.
3. Every export is sent through the gate, with the opt-out filter of the same extract upstream (it writes
   the manifest the gate checks, and copies direct care and exemptions unfiltered); secondary uses also
   need the validation between the two.
4. A spec whose path is known is read now: a broken spec is an import error, the export's purpose must
   be the spec's, and a legal basis or reference given to the operator must be the spec's.

What this cannot see (arbitrary Python inside a task, callbacks, a reason that is not true) is written in
``docs/decisions/0005-deny-by-default.md``, with what the gate and the ledger catch at run time.
Only light modules are imported here: parsing must not load pandas, pyarrow or Great Expectations.
"""

from __future__ import annotations

import fnmatch
from typing import Any

from airflow.exceptions import AirflowClusterPolicyViolation
from airflow.policies import hookimpl

from optout.airflow.tagging import (
    CPI_TAG,
    GATE_MARK,
    NO_CPI_TAG,
    PARAM,
    ROLE_FILTER,
    ROLE_VALIDATE,
    PurposeTag,
    declares_no_cpi,
    extract_id,
    handles_cpi,
    is_defined_as_named,
    is_ours,
    no_cpi_reason,
    on_extract,
    parsed_spec,
    read_internal,
    read_tag,
    role,
    spec_conflict,
    upstream,
    written_spec,
)
from optout.errors import InputError

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
_STANDARD = "airflow.providers.standard"
NO_ROLE_NEEDED = frozenset(
    {
        f"{_STANDARD}.operators.empty.EmptyOperator",
        f"{_STANDARD}.operators.smooth.SmoothOperator",
        f"{_STANDARD}.operators.latest_only.LatestOnlyOperator",
        f"{_STANDARD}.operators.datetime.BranchDateTimeOperator",
        f"{_STANDARD}.operators.weekday.BranchDayOfWeekOperator",
        f"{_STANDARD}.operators.trigger_dagrun.TriggerDagRunOperator",
        f"{_STANDARD}.sensors.external_task.ExternalTaskSensor",
        f"{_STANDARD}.sensors.external_task.ExternalTaskMarker",
        f"{_STANDARD}.sensors.date_time.DateTimeSensor",
        f"{_STANDARD}.sensors.date_time.DateTimeSensorAsync",
        f"{_STANDARD}.sensors.time.TimeSensor",
        f"{_STANDARD}.sensors.time.TimeSensorAsync",
        f"{_STANDARD}.sensors.time_delta.TimeDeltaSensor",
        f"{_STANDARD}.sensors.time_delta.TimeDeltaSensorAsync",
        f"{_STANDARD}.sensors.time_delta.WaitSensor",
        f"{_STANDARD}.sensors.weekday.DayOfWeekSensor",
        f"{_STANDARD}.sensors.filesystem.FileSensor",
    }
)
"""Airflow operators that move no data, by exact class: Python-callable branches and sensors run the
DAG author's code and need a role like any other task."""
HOW_TO = "see docs/add-optout-to-your-dag.md"


def export_operators() -> frozenset[str]:
    """Class names that count as exports: ``[optout] export_operators``, else the defaults."""
    from airflow.configuration import conf

    return frozenset(_listed(conf.get("optout", "export_operators", fallback="")) or DEFAULT_EXPORT_OPERATORS)


def unscoped_dags() -> tuple[str, ...]:
    """DAG id globs grandfathered without a scope: ``[optout] unscoped_dags`` (none by default)."""
    from airflow.configuration import conf

    return _listed(conf.get("optout", "unscoped_dags", fallback=""))


def is_grandfathered(dag_id: str, globs: tuple[str, ...] | None = None) -> bool:
    """The DAG id matches a glob in ``[optout] unscoped_dags`` (the governance page lists these DAGs)."""
    return any(fnmatch.fnmatchcase(dag_id, glob) for glob in (unscoped_dags() if globs is None else globs))


def _listed(text: str) -> tuple[str, ...]:
    return tuple(name.strip() for name in text.split(",") if name.strip())


def operator_class(task: Any) -> type:
    """The class whose code the task runs (a mapped task's operator class, not ``MappedOperator``)."""
    cls = getattr(task, "operator_class", None)
    return cls if isinstance(cls, type) else type(task)


def is_export(task: Any, names: frozenset[str]) -> bool:
    return any(cls.__name__ in names for cls in operator_class(task).__mro__)


def needs_no_role(task: Any) -> bool:
    """The task runs only our code, or one of Airflow's no-op and control-flow operators, unsubclassed.

    Judged by the class object itself: a class that sets its ``__module__`` or ``__qualname__`` to look
    like one of these is not the class that name leads to.
    """
    cls = operator_class(task)
    if is_ours(cls):
        return True
    return f"{cls.__module__}.{cls.__qualname__}" in NO_ROLE_NEEDED and is_defined_as_named(cls)


def is_gated(task: Any) -> bool:
    """The task really runs the gate: our ``GatedExportOperator`` itself, or an operator ``gate()`` hooked.

    A ``params`` entry saying ``gated`` is only a claim; a subclass of the export operator runs its own
    ``execute`` and may skip the check.
    """
    cls = type(task)
    if operator_class(task) is not cls:
        return False  # mapped: the hooks and checks of the task built at run time are not the ones seen here
    if cls.__name__ == "GatedExportOperator" and is_ours(cls):
        return True
    return bool(getattr(getattr(task, "pre_execute", None), GATE_MARK, False))


def problems(dag: Any) -> list[str]:
    """Every violation in ``dag``, one sentence each saying what to add."""
    cpi, no_cpi = handles_cpi(dag), declares_no_cpi(dag)
    if cpi and no_cpi:
        return [f"it is tagged both {CPI_TAG!r} and {NO_CPI_TAG!r}: keep the one that is true"]
    if no_cpi:
        return _no_cpi_problems(dag)
    if not cpi and not is_grandfathered(dag.dag_id):
        return [
            "it does not declare whether it handles confidential patient information: add "
            "tags=[CPI_TAG] (from optout.airflow.tagging import CPI_TAG) if it reads or sends data about "
            "patients, or no_cpi(dag, 'why it holds none') if it does not"
        ]
    names = export_operators()
    found = _dag_wide_roles(dag)
    for task in dag.tasks:
        try:
            found.extend(_task_problems(task, names, cpi))
        except InputError as exc:
            found.append(f"task {task.task_id!r}: {exc}" if task.task_id not in str(exc) else str(exc))
    return found


def _dag_wide_roles(dag: Any) -> list[str]:
    """A role given to the whole DAG (its ``params`` or ``default_args``) would reach every task unread."""
    default_params = (getattr(dag, "default_args", None) or {}).get("params") or {}
    if PARAM in (getattr(dag, "params", None) or {}) or PARAM in default_params:
        return [
            f"params[{PARAM!r}] is set for the whole DAG: give each task its own role with internal(task, 'why') "
            "or purpose(...) and the gate"
        ]
    return []


def _no_cpi_problems(dag: Any) -> list[str]:
    found = []
    if no_cpi_reason(getattr(dag, "doc_md", None)) is None:
        found.append(f"it is tagged {NO_CPI_TAG!r} without a reason: declare it with no_cpi(dag, 'why it holds none')")
    for task in dag.tasks:
        if role(task) or _has_optout_params(task):
            found.append(
                f"task {task.task_id!r} uses the opt-out ({type(task).__name__}) in a DAG that says it handles no "
                f"confidential patient information: tag the DAG {CPI_TAG!r} instead"
            )
    return found


def _has_optout_params(task: Any) -> bool:
    params = getattr(task, "params", None)
    return params is not None and "optout" in params


def _task_problems(task: Any, names: frozenset[str], cpi: bool) -> list[str]:
    if operator_class(task) is not type(task) and is_ours(operator_class(task)):
        return [
            f"task {task.task_id!r} maps ({operator_class(task).__name__}).expand(...): the opt-out operators "
            "cannot be mapped, their spec is read when the DAG is parsed; write one task per extract"
        ]
    tag = read_tag(task)
    if tag is not None:
        return _export_problems(task, tag)
    reason = read_internal(task)
    if reason is not None:
        if is_export(task, names):
            return [
                f"task {task.task_id!r} is an export ({operator_class(task).__name__}) and cannot be internal: "
                "filter, validate and send it through the gate with its purpose"
            ]
        return []
    if written_spec(task) is not None:
        extract_id(task)  # our filter and validation: the spec is read now, a broken one refused
    if not cpi or needs_no_role(task):
        return []
    kind = operator_class(task).__name__
    return [
        f"task {task.task_id!r} ({kind}) has no opt-out role in a DAG tagged {CPI_TAG!r}: if data leaves "
        "through it, send it with GatedExportOperator (or gate(...) with its purpose) after the filter and "
        "validation; if no data leaves, mark it internal(task, 'why')"
    ]


def _export_problems(task: Any, tag: PurposeTag) -> list[str]:
    name = f"task {task.task_id!r} ({tag.purpose.value})"
    if tag.extract is not None and tag.gated and not is_gated(task):
        return [
            f"{name} says it is gated but does not run the gate (a subclass of GatedExportOperator, or "
            f"params[{PARAM!r}] written by hand): use GatedExportOperator itself, or gate(task, spec=..., "
            "recipient=..., sends=...) around the export operator"
        ]
    if tag.extract is None or not tag.gated:
        return [
            f"{name} is not sent through the opt-out gate, so nothing checks or records what it sends: use "
            f"GatedExportOperator, or gate(task, spec=..., purpose={tag.purpose.value!r}, recipient=..., sends=...) "
            "for an existing export operator"
        ]
    spec = parsed_spec(tag.extract, getattr(task.dag, "fileloc", None))
    conflict = spec_conflict(tag, spec) if spec is not None else None
    if conflict:
        return [f"{name}: {conflict}"]
    return _guard_problems(task, name, tag, filtered=tag.purpose.applies_opt_out or bool(spec and spec.filtered))


def _guard_problems(task: Any, name: str, tag: PurposeTag, *, filtered: bool) -> list[str]:
    """The filter (and, for an extract that is filtered, the validation) of this extract run before the task,
    in order."""
    identity = extract_id(task)
    assert identity is not None
    before = list(upstream(task))
    filters = on_extract(before, ROLE_FILTER, identity)
    spec = f"spec={tag.extract!r}"
    if not filters:
        elsewhere = on_extract(task.dag.tasks, ROLE_FILTER, identity)
        if elsewhere:
            return [
                f"{name}: the filter {elsewhere[0].task_id!r} of its extract is not upstream of it; "
                f"set {elsewhere[0].task_id} >> <validate> >> {task.task_id}"
            ]
        return [
            f"{name} has no opt-out filter upstream for extract {identity!r}: add OptOutFilterOperator({spec}) >> "
            f"OptOutValidateOperator({spec}) >> {task.task_id} (a templated spec must be written the same in each)"
        ]
    if not filtered:
        return []
    validations = on_extract(before, ROLE_VALIDATE, identity)
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
    """Refuse a DAG without a scope, a task without a role, or an export that is not filtered and gated."""
    found = problems(dag)
    if found:
        raise AirflowClusterPolicyViolation(
            f"DAG {dag.dag_id!r} breaks the National Data Opt-out policy ({HOW_TO}): " + "; ".join(found)
        )
