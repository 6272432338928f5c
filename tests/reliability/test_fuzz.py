"""Hypothesis throws every shape of input at the parsers: each either returns a well-formed answer or
raises InputError, and no message ever repeats an NHS number. ``FUZZ_EXAMPLES`` scales the cases."""

from __future__ import annotations

import os
import string
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from rel_support import cohort_numbers, find_numbers

from optout.cohort import read_cohort
from optout.errors import InputError
from optout.ndop import parse_reply
from optout.nhs_number import Status, check_digit_ok, normalise
from optout.spec import load_spec

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "300"))
FUZZ = settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
REQUESTED = cohort_numbers(40, seed=11)
OTHERS = cohort_numbers(80, seed=12)
NUMBERS = np.union1d(REQUESTED, OTHERS)

number_text = st.sampled_from([str(n) for n in np.concatenate([REQUESTED, OTHERS])])
shaped = st.one_of(  # NHS numbers of every shape: spaced, dashed, padded, float-like, cut, extended
    number_text,
    number_text.map(lambda n: f"{n[:3]} {n[3:6]} {n[6:]}"),
    number_text.map(lambda n: f"{n[:3]}-{n[3:6]}-{n[6:]}"),
    number_text.map(lambda n: f"\t {n}\u00a0"),
    number_text.map(lambda n: f"{n}.0"),
    number_text.map(lambda n: f"{n[:1]}.{n[1:]}e9"),
    number_text.map(lambda n: n[:-1]),
    number_text.map(lambda n: n + "7"),
    number_text.map(lambda n: "0" + n),
    st.text(alphabet=string.digits + " -.eE+,\t\r\n\"'", max_size=16),
    st.text(max_size=12),
)


@FUZZ
@given(st.lists(shaped, max_size=30))
def test_normalise_never_guesses(values: list[str]) -> None:
    result = normalise(values)
    assert len(result) == len(values)
    valid = result.status == Status.VALID
    assert check_digit_ok(result.numbers[valid]).all()
    assert (result.numbers[~valid] == 0).all()
    for text, number, ok in zip(values, result.numbers, valid, strict=True):
        if ok:  # a valid result keeps exactly the ten digits that were written
            assert "".join(c for c in text.split(".")[0] if c.isdigit()) == f"{number:010d}"


line = st.one_of(
    number_text.map(lambda n: n + ","),
    number_text,
    number_text.map(lambda n: n + ",\r"),
    shaped,
    st.binary(max_size=14).map(lambda b: b.decode("latin-1")),
    st.just(""),
)


@FUZZ
@given(st.lists(line, max_size=40), st.sampled_from(["", "\n"]), st.booleans())
def test_reply_parses_or_names_a_line(lines: list[str], end: str, bom: bool) -> None:
    data = ("\ufeff" if bom else "") + "\n".join(lines) + end
    try:
        cleared = parse_reply(data.encode("utf-8", "surrogatepass"), REQUESTED, name="reply.dat")
    except InputError as exc:
        assert exc.path == "reply.dat" and exc.line is not None and exc.line >= 1
        assert find_numbers(str(exc), NUMBERS) == 0
        return
    assert np.isin(cleared, REQUESTED).all()
    assert (np.diff(cleared) > 0).all()


@FUZZ
@given(st.binary(max_size=300))
def test_reply_of_random_bytes(data: bytes) -> None:
    try:
        cleared = parse_reply(data, REQUESTED, name="reply.dat")
    except InputError as exc:
        assert find_numbers(str(exc), NUMBERS) == 0
        return
    assert np.isin(cleared, REQUESTED).all()


@FUZZ
@given(st.lists(st.lists(st.one_of(shaped, st.text(max_size=6)), min_size=1, max_size=4), max_size=12))
@example(rows=[["UTF8"], ["9990064776", "9990064776"]])  # a ragged row whose text was read as an encoding error
def test_cohort_csv_reads_or_names_where(tmp_path: Path, rows: list[list[str]]) -> None:
    import csv

    path = tmp_path / "cohort.csv"
    with path.open("w", newline="", encoding="utf-8", errors="surrogatepass") as handle:
        writer = csv.writer(handle)
        writer.writerow(["nhs_number", "a", "b", "c"][: max(map(len, rows), default=1)])
        writer.writerows(rows)
    try:
        cohort = read_cohort(path, "nhs_number")
    except InputError as exc:
        assert exc.path == str(path) and (exc.line or exc.field)
        assert find_numbers(str(exc), NUMBERS) == 0
        return
    counts = cohort.counts
    assert counts["valid"] + counts["missing"] + counts["malformed"] + counts["bad_check_digit"] == counts["rows"]
    assert check_digit_ok(cohort.numbers).all()


scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.text(max_size=12), st.floats(allow_nan=False))
keys = st.sampled_from(["name", "purpose", "legal_basis", "legal_reference", "tables", "output", "x", "path"])
table = st.dictionaries(
    st.sampled_from(["name", "path", "nhs_number", "person_key", "output", "table", "query", "oops"]),
    st.one_of(scalar, st.sampled_from(["t.csv", "../t.csv", "/abs/t.parquet", "t.xlsx", "a/../../b.csv", "x"])),
    max_size=6,
)
document = st.one_of(
    st.dictionaries(
        keys,
        st.one_of(scalar, st.sampled_from(["research", "direct_care", "exempt", "planning"]), st.lists(table)),
        max_size=6,
    ),
    st.lists(scalar, max_size=3),
    scalar,
)


@FUZZ
@given(document)
def test_spec_loads_or_names_the_key(tmp_path: Path, doc: object) -> None:
    path = tmp_path / "spec.yaml"
    path.write_text(yaml.safe_dump(doc))
    try:
        spec = load_spec(path)
    except InputError as exc:
        assert exc.path == str(path)
        return
    for entry in spec.tables:
        assert ".." not in Path(entry.output_name).parts and not Path(entry.output_name).is_absolute()


@pytest.fixture(scope="module", autouse=True)
def _report() -> Iterator[None]:
    yield
    print(f"fuzz: {EXAMPLES} examples for each of 5 properties ({5 * EXAMPLES} cases)")
