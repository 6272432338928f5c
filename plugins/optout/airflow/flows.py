"""What the DAGs declare about their flows, read from Airflow's serialized DAGs (what the scheduler runs).

A flow is a task tagged with an opt-out purpose and sent through the gate (``params["optout"]["gated"]``);
its recipient is the operator's ``recipient`` template field when it has one (``GatedExportOperator``),
otherwise the register takes it from the flow's last ledger entry. Only the raw serialized JSON is
read: no DAG file is imported and no operator is built.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any

from optout.airflow.tagging import CPI_TAG, NO_CPI_TAG, PARAM, no_cpi_reason
from optout.governance.flows import DeclaredFlow
from optout.governance.overview import NightlyState, Uncovered


def declared_flows(serialized: Iterable[Mapping[str, Any]]) -> list[DeclaredFlow]:
    """The gated export tasks of serialized DAGs (``DagSerialization.to_dict`` form, or the table's JSON)."""
    flows = []
    for data in serialized:
        dag = data.get("dag", data)
        tags = dag.get("tags") or []
        scope = "confidential patient information" if CPI_TAG in tags else "not declared"
        for item in dag.get("tasks") or []:
            task = item.get("__var", item)
            tag = _tag(task.get("params"))
            if tag is None or not tag.get("gated"):
                continue
            flows.append(
                DeclaredFlow(
                    dag_id=str(dag["dag_id"]),
                    task_id=str(task["task_id"]),
                    purpose=str(tag.get("purpose")),
                    extract=tag.get("extract"),
                    legal_basis=tag.get("legal_basis"),
                    legal_reference=tag.get("legal_reference"),
                    recipient=task.get("recipient") if isinstance(task.get("recipient"), str) else None,
                    scope=scope,
                )
            )
    return flows


def read_declared_flows() -> list[DeclaredFlow]:
    """The flows of every DAG Airflow knows (not stale), from its metadata database."""
    return declared_flows(_serialized())


def _serialized() -> list[dict[str, Any]]:
    """The latest serialized JSON of every DAG Airflow knows (not stale)."""
    import sqlalchemy as sa
    from airflow.models.dag import DagModel
    from airflow.models.serialized_dag import SerializedDagModel
    from airflow.utils.session import create_session

    with create_session() as session:
        dag_ids = list(session.scalars(sa.select(DagModel.dag_id).where(~DagModel.is_stale)))
        rows = SerializedDagModel.get_latest_serialized_dags(dag_ids=dag_ids, session=session)
        return [row.data for row in rows if isinstance(row.data, dict)]


def _tag(params: Any) -> dict[str, Any] | None:
    """The ``optout`` param's stored value, from the serialized ``[(name, {"default": ...}), ...]`` list."""
    if isinstance(params, Mapping):
        params = params.items()
    for name, param in params or ():
        if name != PARAM or not isinstance(param, Mapping):
            continue
        value = param.get("default", param.get("value"))
        if isinstance(value, Mapping) and "__var" in value:
            value = value["__var"]
        return dict(value) if isinstance(value, Mapping) else None
    return None


def refused_exports(since: datetime, until: datetime) -> list[datetime]:
    """When a declared flow's export task failed (the gate refuses by failing it), from Airflow's task history."""
    import sqlalchemy as sa
    from airflow.models.taskinstance import TaskInstance
    from airflow.utils.session import create_session
    from airflow.utils.state import TaskInstanceState

    pairs = {(flow.dag_id, flow.task_id) for flow in read_declared_flows()}
    if not pairs:
        return []
    ti = TaskInstance
    with create_session() as session:
        rows = session.execute(
            sa.select(ti.dag_id, ti.task_id, ti.end_date).where(
                ti.state == TaskInstanceState.FAILED,
                ti.end_date >= since,
                ti.end_date < until,
                ti.dag_id.in_({dag_id for dag_id, _ in pairs}),
            )
        ).all()
    return sorted(row.end_date for row in rows if (row.dag_id, row.task_id) in pairs)


def nightly_state(dag_id: str = "optout_nightly_refresh") -> NightlyState:
    """Paused or not, the next run, and the last run and failure of the nightly refresh, from Airflow."""
    import sqlalchemy as sa
    from airflow.models.dag import DagModel
    from airflow.models.dagrun import DagRun
    from airflow.utils.session import create_session
    from airflow.utils.state import DagRunState

    with create_session() as session:
        model = session.get(DagModel, dag_id)
        if model is None:
            return NightlyState(found=False)
        runs = sa.select(DagRun).where(DagRun.dag_id == dag_id)
        last = session.scalars(runs.order_by(DagRun.run_after.desc()).limit(1)).first()
        failed = session.scalars(
            runs.where(DagRun.state == DagRunState.FAILED).order_by(DagRun.run_after.desc()).limit(1)
        ).first()
        return NightlyState(
            found=True,
            paused=bool(model.is_paused),
            next_run=model.next_dagrun_create_after,
            last_state=str(last.state) if last else None,
            last_run=(last.end_date or last.run_after) if last else None,
            last_failure=(failed.end_date or failed.run_after) if failed else None,
        )


def uncovered(serialized: Iterable[Mapping[str, Any]], grandfathered: Iterable[str] = ()) -> list[Uncovered]:
    """DAGs and tasks the policy does not check: DAGs not tagged as handling confidential patient information,
    declared as not handling it (with their reason), or named in ``[optout] unscoped_dags`` (globs); and in a
    DAG that handles it, each task marked ``internal`` (the reason is the promise reviewers hold it to)."""
    from fnmatch import fnmatch

    globs = [g.strip() for g in grandfathered if g.strip()]
    found = []
    for data in serialized:
        dag = data.get("dag", data)
        dag_id, tags = str(dag["dag_id"]), dag.get("tags") or []
        if any(fnmatch(dag_id, g) for g in globs):
            found.append(Uncovered(dag_id, "grandfathered ([optout] unscoped_dags): not checked"))
        elif NO_CPI_TAG in tags:
            reason = no_cpi_reason(dag.get("doc_md"))
            found.append(Uncovered(dag_id, f"declared as handling no confidential patient information: {reason}"))
        elif CPI_TAG not in tags:
            found.append(Uncovered(dag_id, f"not tagged {CPI_TAG!r}: the policy does not check its tasks"))
        else:
            found.extend(_internal_tasks(dag_id, dag.get("tasks") or []))
    return sorted(found, key=lambda u: (u.dag_id, u.task_id or ""))


def _internal_tasks(dag_id: str, tasks: Iterable[Any]) -> Iterator[Uncovered]:
    """The tasks of a CPI DAG marked ``internal(task, reason)``: no data may leave through them, and only
    their reason says so (the policy cannot see what their code does)."""
    for item in tasks:
        task = item.get("__var", item)
        tag = _tag(task.get("params"))
        if tag is not None and set(tag) == {"internal"}:
            yield Uncovered(dag_id, f"internal (no data leaves): {tag['internal']}", task_id=str(task["task_id"]))


def read_uncovered() -> list[Uncovered]:
    """:func:`uncovered` over every DAG Airflow knows."""
    from optout.governance.settings import option

    return uncovered(_serialized(), (option("unscoped_dags") or "").split(","))
