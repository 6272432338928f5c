"""Purpose tags: validated when written, kept through DAG serialisation, read back by the policy."""

from __future__ import annotations

import pytest
from airflow.sdk import DAG, task
from airflow.serialization.serialized_objects import DagSerialization

from optout.airflow.operators.export import GatedExportOperator
from optout.airflow.tagging import CPI_TAG, PurposeTag, handles_cpi, purpose, read_tag
from optout.errors import InputError
from optout.purpose import LegalBasis, Purpose

SPEC = "/specs/research.yaml"


@task
def share() -> None:
    """Stands in for any export."""


def test_tag_survives_serialisation_and_shows_in_task_details() -> None:
    with DAG(dag_id="tagged", schedule=None, tags=[CPI_TAG]) as dag:
        GatedExportOperator(
            task_id="export",
            spec=SPEC,
            purpose="exempt",
            legal_basis="copi_reg3",
            reference="REC 26/LO/0001",
            recipient="University of Leeds",
        )
    restored = DagSerialization.from_dict(DagSerialization.to_dict(dag)).get_task("export")
    assert restored.params["optout"] == {
        "purpose": "exempt",
        "extract": SPEC,
        "legal_basis": "copi_reg3",
        "legal_reference": "REC 26/LO/0001",
        "gated": True,
    }
    assert "**Opt-out purpose:** `exempt`, legal basis `copi_reg3` (ref. REC 26/LO/0001)" in restored.doc_md
    assert read_tag(dag.get_task("export")) == PurposeTag(
        Purpose.EXEMPT, SPEC, LegalBasis.COPI_REG3, "REC 26/LO/0001", gated=True
    )
    assert handles_cpi(dag)


def test_purpose_on_a_task_decorator_output_keeps_existing_doc() -> None:
    with DAG(dag_id="care", schedule=None):
        shared = purpose(share(), "Direct_Care ")
    assert read_tag(shared.operator) == PurposeTag(Purpose.DIRECT_CARE)
    assert shared.operator.doc_md.startswith("Stands in for any export.")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"purpose": "reserch"}, "task 'share': field 'purpose': unknown purpose 'reserch'; use one of: direct_care"),
        ({"purpose": "exempt", "reference": "X1"}, "purpose 'exempt' needs a legal_basis"),
        ({"purpose": "exempt", "legal_basis": "copi_reg3"}, "needs a legal_reference"),
        ({"purpose": "exempt", "legal_basis": "because", "reference": "X1"}, "unknown legal basis 'because'"),
        ({"purpose": "research", "legal_basis": "copi_reg3"}, "legal_basis only applies to purpose 'exempt'"),
        ({"purpose": "exempt", "legal_basis": "consent", "reference": "X1"}, "consent is given person by person"),
    ],
)
def test_bad_tags_are_refused_naming_the_task(kwargs: dict[str, str], message: str) -> None:
    with DAG(dag_id="bad", schedule=None), pytest.raises(InputError, match="task 'share'") as caught:
        purpose(share(), **kwargs)
    assert message in str(caught.value)


def test_hand_written_param_gets_the_same_checks() -> None:
    with DAG(dag_id="by_hand", schedule=None):
        shared = share.override(params={"optout": {"purpose": "planing"}})()
    with pytest.raises(InputError, match="unknown purpose 'planing'"):
        read_tag(shared.operator)
