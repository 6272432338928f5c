"""People in an extract's outputs (``optout.headcount``): by key, else by number; only a count comes out."""

from __future__ import annotations

import pyarrow as pa
from filter_data import N, spaced

from optout.headcount import Headcount
from optout.spec import TableSpec
from optout.spec_pseudonym import Pseudonymisation

KEYED = TableSpec("patients", nhs_number="nhs", person_key="pid")
KEY_ONLY = TableSpec("notes", person_key="pid")
NUMBERS = TableSpec("events", nhs_number="nhs")


def _count(*batches: tuple[TableSpec, dict[str, list[object]]]) -> int | None:
    headcount = Headcount()
    for table, columns in batches:
        headcount.add(table, pa.RecordBatch.from_pydict(columns))
    return headcount.total()


def test_a_row_counts_by_key_and_a_row_without_one_by_its_number() -> None:
    # p1 twice and in a key-only table; a blank key counts by number (N[4], also in the keyless table).
    assert (
        _count(
            (KEYED, {"pid": ["p1", " p1 ", "p2", "", None], "nhs": [int(N[0]), int(N[0]), int(N[1]), int(N[4]), None]}),
            (KEY_ONLY, {"pid": ["p1", "p3"]}),
            (NUMBERS, {"nhs": [spaced(int(N[4])), str(N[5]), "not a number", None]}),
        )
        == 3 + 2
    )


def test_integer_and_text_keys_compare_as_text_and_batches_fold() -> None:
    batches = [(KEYED, {"pid": [1, 2], "nhs": [int(N[0]), int(N[1])]})] * 100
    assert _count(*batches, (KEY_ONLY, {"pid": ["1", "3"]})) == 3


def test_hashed_numbers_count_by_their_hash() -> None:
    hashed = TableSpec("hashed", nhs_number="h", pseudonymised=Pseudonymisation(key_env="K"))
    digest = "ab" * 32
    assert _count((hashed, {"h": [digest, digest.upper(), "short", None]})) == 1
