"""The cluster policy on DAGs built in memory (the DagBag tests in tests/integration run it for real)."""

from __future__ import annotations

import pytest
from airflow.exceptions import AirflowClusterPolicyViolation
from airflow.sdk import DAG, BaseOperator, task

from optout.airflow.operators.export import GatedExportOperator, gate
from optout.airflow.operators.filter import OptOutFilterOperator
from optout.airflow.operators.validate import OptOutValidateOperator
from optout.airflow.policy import DEFAULT_EXPORT_OPERATORS, dag_policy, export_operators, problems
from optout.airflow.tagging import CPI_TAG, purpose

SPEC = "/specs/research.yaml"
OTHER = "/specs/other.yaml"


class SFTPOperator(BaseOperator):
    """Named like the real one: the policy matches export operators by class name."""

    def execute(self, context: object) -> None: ...


class NightlySFTPOperator(SFTPOperator):
    """A subclass counts as an export too."""


@task
def share() -> None: ...


def _guarded(dag_id: str, spec: str = SPEC) -> tuple[DAG, BaseOperator]:
    dag = DAG(dag_id=dag_id, schedule=None, tags=[CPI_TAG])
    with dag:
        filtered = OptOutFilterOperator(task_id="filter", spec=spec)
        chain = filtered >> OptOutValidateOperator(task_id="validate", spec=spec)
    return dag, chain


def test_filtered_validated_gated_research_passes() -> None:
    dag, checked = _guarded("ok")
    with dag:
        checked >> GatedExportOperator(task_id="export", spec=SPEC, purpose="research")
        checked >> gate(SFTPOperator(task_id="sftp"), spec=SPEC, purpose="planning", sends=("local_filepath",))
        purpose(share(), "direct_care")
    dag_policy(dag)
    assert problems(dag) == []


def test_guards_on_another_extract_do_not_count() -> None:
    dag, checked = _guarded("other", spec=OTHER)
    with dag:
        checked >> GatedExportOperator(task_id="export", spec=SPEC, purpose="research")
    with pytest.raises(AirflowClusterPolicyViolation, match="has no opt-out filter upstream"):
        dag_policy(dag)


def test_validation_must_follow_the_filter() -> None:
    with DAG(dag_id="order", schedule=None) as dag:
        validate = OptOutValidateOperator(task_id="validate", spec=SPEC)
        filtered = OptOutFilterOperator(task_id="filter", spec=SPEC)
        export = GatedExportOperator(task_id="export", spec=SPEC, purpose="research")
        validate >> filtered >> export
    assert problems(dag) == ["task 'export' (research): validation 'validate' must run after filter 'filter'"]


def test_secondary_use_needs_its_extract_named() -> None:
    dag, checked = _guarded("unnamed")
    with dag:
        checked >> purpose(share(), "research")
    assert problems(dag) == [
        "task 'share' (research) does not say which extract it sends: give extract=<the spec's path>"
    ]


def test_exempt_passes_without_filter_when_gated() -> None:
    with DAG(dag_id="exempt", schedule=None, tags=[CPI_TAG]) as dag:
        GatedExportOperator(task_id="export", spec=SPEC, purpose="exempt", legal_basis="ons", reference="ONS-1")
    assert problems(dag) == []


@pytest.mark.parametrize("operator", [SFTPOperator, NightlySFTPOperator])
def test_untagged_export_in_a_cpi_dag_is_refused(operator: type[BaseOperator]) -> None:
    with DAG(dag_id="untagged", schedule=None, tags=[CPI_TAG]) as dag:
        operator(task_id="sftp")
    (problem,) = problems(dag)
    assert problem.startswith(f"task 'sftp' is an export ({operator.__name__}) in a DAG tagged")


def test_untagged_export_outside_cpi_dags_is_not_our_business() -> None:
    with DAG(dag_id="weather", schedule=None) as dag:
        SFTPOperator(task_id="sftp")
    assert problems(dag) == []


def test_export_operators_are_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert export_operators() == frozenset(DEFAULT_EXPORT_OPERATORS)
    monkeypatch.setenv("AIRFLOW__OPTOUT__EXPORT_OPERATORS", " FileDropOperator , GatedExportOperator,")
    assert export_operators() == {"FileDropOperator", "GatedExportOperator"}
    with DAG(dag_id="configured", schedule=None, tags=[CPI_TAG]) as dag:
        SFTPOperator(task_id="sftp")
    assert problems(dag) == []
