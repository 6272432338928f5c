"""The cluster policy on DAGs built in memory (the DagBag tests in tests/integration run it for real)."""

from __future__ import annotations

from pathlib import Path

import pytest
from airflow.exceptions import AirflowClusterPolicyViolation
from airflow.providers.standard.operators.bash import BashOperator
from airflow.providers.standard.operators.empty import EmptyOperator
from airflow.providers.standard.operators.python import PythonOperator
from airflow.sdk import DAG, BaseOperator, task

from optout.airflow.operators.export import GatedExportOperator, gate
from optout.airflow.operators.filter import OptOutFilterOperator
from optout.airflow.operators.validate import OptOutValidateOperator
from optout.airflow.policy import (
    DEFAULT_EXPORT_OPERATORS,
    dag_policy,
    export_operators,
    is_grandfathered,
    problems,
)
from optout.airflow.tagging import CPI_TAG, NO_CPI_TAG, internal, no_cpi, purpose
from optout.errors import InputError

SPECS = Path(__file__).resolve().parents[2] / "include" / "specs"
SPEC = str(SPECS / "research_extract.yaml")
OTHER = str(SPECS / "direct_care_share.yaml")
EXEMPT = str(SPECS / "exempt_disclosure.yaml")


class SFTPOperator(BaseOperator):
    """Named like the real one: the policy matches export operators by class name."""

    template_fields = ("local_filepath",)

    def __init__(self, *, local_filepath: str = "", **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self.local_filepath = local_filepath

    def execute(self, context: object) -> None: ...


class NightlySFTPOperator(SFTPOperator):
    """A subclass counts as an export too."""


class QuietEmpty(EmptyOperator):
    """A subclass of a no-op runs code of its own: it needs a role."""


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
        checked >> GatedExportOperator(task_id="export", spec=SPEC, purpose="research", recipient="Uni of Leeds")
        checked >> gate(
            SFTPOperator(task_id="sftp"), spec=SPEC, purpose="research", recipient="Partner", sends=("local_filepath",)
        )
        internal(share(), "counts rows for the run log")
        EmptyOperator(task_id="done")
    dag_policy(dag)
    assert problems(dag) == []


def test_a_dag_without_a_scope_does_not_load() -> None:
    with DAG(dag_id="weather", schedule=None) as dag:
        EmptyOperator(task_id="noop")
    (problem,) = problems(dag)
    assert "does not declare whether it handles confidential patient information" in problem
    assert "tags=[CPI_TAG]" in problem and "no_cpi(dag" in problem


def test_no_cpi_needs_a_reason_and_no_opt_out_tasks() -> None:
    with DAG(dag_id="weather", schedule=None, tags=[NO_CPI_TAG]) as dag:
        SFTPOperator(task_id="sftp")
    assert problems(dag) == [
        f"it is tagged {NO_CPI_TAG!r} without a reason: declare it with no_cpi(dag, 'why it holds none')"
    ]
    no_cpi(dag, "Met Office forecasts only")
    assert problems(dag) == []
    assert "**No confidential patient information:** Met Office forecasts only" in dag.doc_md
    with dag:
        OptOutFilterOperator(task_id="filter", spec=SPEC)
    (problem,) = problems(dag)
    assert "uses the opt-out (OptOutFilterOperator) in a DAG that says it handles no" in problem


def test_both_scopes_is_refused() -> None:
    with DAG(dag_id="both", schedule=None, tags=[CPI_TAG, NO_CPI_TAG]) as dag:
        pass
    assert problems(dag) == [f"it is tagged both {CPI_TAG!r} and {NO_CPI_TAG!r}: keep the one that is true"]


def test_unscoped_dags_are_grandfathered_by_glob(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("AIRFLOW__OPTOUT__UNSCOPED_DAGS", "legacy_*, reports")
    assert is_grandfathered("legacy_weather") and is_grandfathered("reports") and not is_grandfathered("other")
    with DAG(dag_id="legacy_weather", schedule=None) as dag:
        BashOperator(task_id="copy", bash_command="true")
    assert problems(dag) == []
    with dag:
        purpose(share(), "research", extract=SPEC)  # a purpose is checked wherever it appears
    (problem,) = problems(dag)
    assert "is not sent through the opt-out gate" in problem


@pytest.mark.parametrize(
    "make",
    [
        lambda: BashOperator(task_id="t", bash_command="cp raw.csv /mnt/partner/"),
        lambda: PythonOperator(task_id="t", python_callable=print),
        lambda: share.override(task_id="t")(),
        lambda: QuietEmpty(task_id="t"),
        lambda: SFTPOperator(task_id="t"),
    ],
)
def test_every_task_in_a_cpi_dag_needs_a_role(make) -> None:  # type: ignore[no-untyped-def]
    with DAG(dag_id="roles", schedule=None, tags=[CPI_TAG]) as dag:
        make()
    (problem,) = problems(dag)
    assert problem.startswith("task 't' (")
    assert "has no opt-out role in a DAG tagged 'confidential-patient-information'" in problem
    assert "GatedExportOperator" in problem and "internal(task, 'why')" in problem


def test_mapped_tasks_are_checked_by_their_operator_class() -> None:
    with DAG(dag_id="mapped", schedule=None, tags=[CPI_TAG]) as dag:
        BashOperator.partial(task_id="t").expand(bash_command=["cp a /mnt", "cp b /mnt"])
    (problem,) = problems(dag)
    assert "task 't' (BashOperator) has no opt-out role" in problem


@pytest.mark.parametrize("operator", [SFTPOperator, NightlySFTPOperator])
def test_an_export_cannot_be_internal(operator: type[BaseOperator]) -> None:
    with DAG(dag_id="untagged", schedule=None, tags=[CPI_TAG]) as dag:
        internal(operator(task_id="sftp"), "only to our own server")
    (problem,) = problems(dag)
    assert problem.startswith(f"task 'sftp' is an export ({operator.__name__}) and cannot be internal")


def test_internal_needs_words() -> None:
    with DAG(dag_id="why", schedule=None), pytest.raises(InputError, match="give the reason in words"):
        internal(share(), " ")


def test_guards_on_another_extract_do_not_count() -> None:
    dag, checked = _guarded("other", spec=OTHER)
    with dag:
        checked >> GatedExportOperator(task_id="export", spec=SPEC, purpose="research", recipient="Uni")
    with pytest.raises(AirflowClusterPolicyViolation, match="has no opt-out filter upstream for extract"):
        dag_policy(dag)


def test_relative_and_absolute_spellings_are_one_extract(tmp_path: Path) -> None:
    dag, checked = _guarded("spelled", spec="../../include/specs/research_extract.yaml")
    dag.fileloc = __file__
    with dag:
        checked >> GatedExportOperator(task_id="export", spec=SPEC, purpose="research", recipient="Uni")
    assert problems(dag) == []


def test_templated_specs_agree_by_their_text() -> None:
    dag, checked = _guarded("templated", spec="{{ params.spec }}")
    with dag:
        checked >> GatedExportOperator(task_id="export", spec="{{ params.spec }}", purpose="research", recipient="Uni")
    assert problems(dag) == []
    with dag:
        checked >> GatedExportOperator(task_id="literal", spec=SPEC, purpose="research", recipient="Uni")
    (problem,) = problems(dag)
    assert "task 'literal' (research) has no opt-out filter upstream for extract 'research_extract'" in problem


def test_a_broken_spec_is_refused_when_parsed(tmp_path: Path) -> None:
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: x\npurpose: research\ntables: []\n")
    with DAG(dag_id="broken", schedule=None, tags=[CPI_TAG]) as dag:
        OptOutFilterOperator(task_id="filter", spec=str(broken))
    (problem,) = problems(dag)
    assert "task 'filter'" in problem and "field 'tables': expected a list of one or more tables" in problem


def test_validation_must_follow_the_filter() -> None:
    with DAG(dag_id="order", schedule=None, tags=[CPI_TAG]) as dag:
        validate = OptOutValidateOperator(task_id="validate", spec=SPEC)
        filtered = OptOutFilterOperator(task_id="filter", spec=SPEC)
        export = GatedExportOperator(task_id="export", spec=SPEC, purpose="research", recipient="Uni")
        validate >> filtered >> export
    assert problems(dag) == ["task 'export' (research): validation 'validate' must run after filter 'filter'"]


def test_a_purpose_other_than_the_specs_is_refused() -> None:
    with DAG(dag_id="relabelled", schedule=None, tags=[CPI_TAG]) as dag:
        filtered = OptOutFilterOperator(task_id="filter", spec=SPEC)
        filtered >> GatedExportOperator(task_id="export", spec=SPEC, purpose="direct_care", recipient="GP")
    (problem,) = problems(dag)
    assert "whose spec names purpose 'research', for purpose 'direct_care'" in problem


def test_exempt_basis_and_reference_come_from_the_spec() -> None:
    with DAG(dag_id="exempt", schedule=None, tags=[CPI_TAG]) as dag:
        copied = OptOutFilterOperator(task_id="copy", spec=EXEMPT)
        copied >> GatedExportOperator(task_id="same", spec=EXEMPT, purpose="exempt", recipient="High Court")
        copied >> GatedExportOperator(
            task_id="other", spec=EXEMPT, purpose="exempt", legal_basis="ons", reference="ONS-1", recipient="ONS"
        )
    (problem,) = problems(dag)
    assert problem.startswith("task 'other' (exempt): legal_basis 'ons' differs from the spec's 'court_order'")


def test_an_exemption_for_rows_without_a_number_needs_the_validation(tmp_path: Path) -> None:
    """Every row with a number is filtered as for research, so it is proved before it leaves."""
    spec = tmp_path / "no_number.yaml"
    spec.write_text(
        "name: no_number\npurpose: exempt\nlegal_basis: no_nhs_number_disproportionate\nlegal_reference: NN-1\n"
        "tables:\n  - name: patients\n    path: patients.csv\n    nhs_number: nhs_number\n",
        encoding="utf-8",
    )
    with DAG(dag_id="no_number", schedule=None, tags=[CPI_TAG]) as dag:
        copied = OptOutFilterOperator(task_id="filter", spec=str(spec))
        copied >> GatedExportOperator(task_id="send", spec=str(spec), purpose="exempt", recipient="Registry")
    (problem,) = problems(dag)
    assert "has a filter but no validation upstream" in problem


def test_direct_care_is_gated_too() -> None:
    with DAG(dag_id="care", schedule=None, tags=[CPI_TAG]) as dag:
        purpose(share(), "direct_care")
    (problem,) = problems(dag)
    assert "task 'share' (direct_care) is not sent through the opt-out gate" in problem
    with DAG(dag_id="care2", schedule=None, tags=[CPI_TAG]) as dag:
        copied = OptOutFilterOperator(task_id="copy", spec=OTHER)
        copied >> GatedExportOperator(task_id="share", spec=OTHER, purpose="direct_care", recipient="GP practice")
    assert problems(dag) == []


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda: SFTPOperator(task_id="t"), "must name the fields that hold the paths it sends"),
        (lambda: share.override(task_id="t")(), "the gate cannot see what code sends"),
        (lambda: BashOperator(task_id="t", bash_command="cp"), "the gate cannot see what code sends"),
    ],
)
def test_gate_needs_the_fields_that_name_what_leaves(make, message: str) -> None:  # type: ignore[no-untyped-def]
    with DAG(dag_id="gated", schedule=None), pytest.raises(InputError, match=message):
        gate(make(), spec=SPEC, purpose="research", recipient="Partner", sends=())


def test_gate_refuses_fields_that_are_not_templated() -> None:
    with DAG(dag_id="gated", schedule=None), pytest.raises(InputError, match=r"sends=\['path'\] are not template"):
        gate(SFTPOperator(task_id="t"), spec=SPEC, purpose="research", recipient="Partner", sends=("path",))


@pytest.mark.parametrize("recipient", ["", "/mnt/partner", "./out", "C:\\share"])
def test_a_recipient_is_an_organisation_not_a_folder(recipient: str) -> None:
    with DAG(dag_id="to", schedule=None), pytest.raises(InputError, match="names the organisation"):
        GatedExportOperator(task_id="export", spec=SPEC, purpose="research", recipient=recipient)


def test_export_operators_are_configurable(monkeypatch: pytest.MonkeyPatch) -> None:
    assert export_operators() == frozenset(DEFAULT_EXPORT_OPERATORS)
    monkeypatch.setenv("AIRFLOW__OPTOUT__EXPORT_OPERATORS", " FileDropOperator , GatedExportOperator,")
    assert export_operators() == {"FileDropOperator", "GatedExportOperator"}
    with DAG(dag_id="configured", schedule=None, tags=[CPI_TAG]) as dag:
        internal(SFTPOperator(task_id="sftp"), "to our own archive")
    assert problems(dag) == []


class SneakyExport(GatedExportOperator):
    """A subclass of the gated export runs its own ``execute``: it may send without the check."""

    def execute(self, context: object) -> dict[str, object]:
        return {}


class CopyClaimingToBeOurs(PythonOperator):
    """A DAG file's class that sets its module to look like one of ours."""


CopyClaimingToBeOurs.__module__ = "optout.airflow.operators.copy"


class LooksEmpty(BaseOperator):
    """A DAG file's class that takes the module and name of EmptyOperator."""

    def execute(self, context: object) -> None: ...


LooksEmpty.__module__ = EmptyOperator.__module__
LooksEmpty.__qualname__ = LooksEmpty.__name__ = "EmptyOperator"


def test_a_hand_written_gated_param_is_not_the_gate() -> None:
    """params['optout'] with gated=True on a PythonOperator was taken as a gated export; nothing ran the gate."""
    dag, checked = _guarded("claims")
    with dag:
        checked >> PythonOperator(
            task_id="send",
            python_callable=print,
            params={"optout": {"purpose": "research", "extract": SPEC, "gated": True}},
        )
    (problem,) = problems(dag)
    assert "task 'send' (research) says it is gated but does not run the gate" in problem


def test_a_subclass_of_the_gated_export_is_not_the_gate() -> None:
    dag, checked = _guarded("subclass")
    with dag:
        checked >> SneakyExport(task_id="send", spec=SPEC, purpose="research", recipient="Uni of Leeds")
    (problem,) = problems(dag)
    assert "says it is gated but does not run the gate (a subclass of GatedExportOperator" in problem


@pytest.mark.parametrize("operator", [CopyClaimingToBeOurs, LooksEmpty])
def test_a_class_cannot_claim_to_be_ours_or_a_no_op_by_its_module(operator: type[BaseOperator]) -> None:
    with DAG(dag_id="spoof", schedule=None, tags=[CPI_TAG]) as dag:
        operator(task_id="t", **({"python_callable": print} if operator is CopyClaimingToBeOurs else {}))
    (problem,) = problems(dag)
    assert "task 't' (" in problem and "has no opt-out role" in problem


def test_a_task_that_sets_optout_role_is_not_the_filter() -> None:
    with DAG(dag_id="fake_filter", schedule=None, tags=[CPI_TAG]) as dag:
        fake = internal(PythonOperator(task_id="filter", python_callable=print), "writes a manifest")
        fake.optout_role, fake.optout_spec = "filter", SPEC  # type: ignore[attr-defined]
        (
            fake
            >> OptOutValidateOperator(task_id="validate", spec=SPEC)
            >> GatedExportOperator(task_id="send", spec=SPEC, purpose="research", recipient="Uni of Leeds")
        )
    (problem,) = problems(dag)
    assert "task 'send' (research) has no opt-out filter upstream" in problem


@pytest.mark.parametrize("where", ["params", "default_args"])
def test_a_role_given_to_the_whole_dag_is_refused(where: str) -> None:
    role = {"optout": {"internal": "everything stays inside"}}
    given = {"params": role} if where == "params" else {"default_args": {"params": role}}
    with DAG(dag_id="blanket", schedule=None, tags=[CPI_TAG], **given) as dag:  # type: ignore[arg-type]
        PythonOperator(task_id="send", python_callable=print)
    assert any("params['optout'] is set for the whole DAG" in problem for problem in problems(dag))


def test_our_operators_cannot_be_mapped() -> None:
    """A mapped export was never built at parse time: no tag, no validation upstream, and it loaded."""
    with DAG(dag_id="mapped_export", schedule=None, tags=[CPI_TAG]) as dag:
        OptOutFilterOperator(task_id="filter", spec=SPEC) >> GatedExportOperator.partial(
            task_id="send", purpose="research", recipient="Uni of Leeds"
        ).expand(spec=[SPEC])
    (problem,) = problems(dag)
    assert "task 'send' maps (GatedExportOperator).expand(...)" in problem
