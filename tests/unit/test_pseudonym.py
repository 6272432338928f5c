"""Keyed-hash (pseudonymised) identifiers: hashing, parsing the spec entry, matching, wrong-key guard."""

from __future__ import annotations

import hmac
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from optout.clearance import KEEP, Reason
from optout.errors import InputError
from optout.nhs_number import check_digit_ok
from optout.pseudonym import (
    Key,
    PseudonymClearance,
    PseudonymKeyError,
    check_matches,
    decode_hex,
    hash_numbers,
    hex_digests,
    load_key,
)
from optout.spec_pseudonym import Pseudonymisation
from optout.store import CheckResult

SECRET = "not-a-real-key-0123456789"


def valid_numbers(count: int, start: int = 9_000_000_000) -> np.ndarray:
    candidates = np.arange(start, start + count * 20, dtype=np.int64)
    return candidates[check_digit_ok(candidates)][:count]


def reference_hex(number: int, secret: str = SECRET) -> str:
    return hmac.new(secret.encode(), f"{number:010d}".encode(), "sha256").hexdigest()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.integers(min_value=0, max_value=9_999_999_999), max_size=20), st.binary(min_size=1, max_size=100))
def test_hash_numbers_is_hmac_sha256_of_the_ten_digit_text(numbers: list[int], secret: bytes) -> None:
    digests = hash_numbers(np.array(numbers, dtype=np.int64), Key(secret), workers=1)
    assert [d.tobytes() for d in digests] == [hmac.digest(secret, f"{n:010d}".encode(), "sha256") for n in numbers]


def test_parallel_hashing_matches_one_process() -> None:
    numbers = valid_numbers(250_000)
    key = Key(SECRET)
    assert np.array_equal(hash_numbers(numbers, key, workers=2), hash_numbers(numbers[:], key, workers=1))


def test_parallel_hashing_never_forks_the_caller(monkeypatch: pytest.MonkeyPatch) -> None:
    """A reader thread may be running: workers come from a fork server, never from forking this process."""
    import os
    import threading

    def refuse() -> int:
        raise AssertionError("os.fork called while a thread runs")

    reading = threading.Event()
    reader = threading.Thread(target=reading.wait, daemon=True)
    reader.start()
    monkeypatch.setattr(os, "fork", refuse)
    try:
        numbers, key = valid_numbers(250_000), Key(SECRET)
        assert np.array_equal(hash_numbers(numbers, key, workers=2), hash_numbers(numbers, key, workers=1))
    finally:
        reading.set()
        reader.join()


def test_hex_round_trip_accepts_either_case_and_blanks() -> None:
    numbers = valid_numbers(3)
    text = hex_digests(hash_numbers(numbers, Key(SECRET))).to_pylist()
    assert text[0] == reference_hex(int(numbers[0]))
    values = [text[0], f"  {text[1].upper()} ", None, "", "NULL", "n/a", "xyz", text[2][:-1] + "g"]
    decoded = decode_hex(pa.array(values))
    assert decoded.missing.tolist() == [False, False, True, True, True, True, False, False]
    assert decoded.well_formed.tolist() == [True, True, False, False, False, False, False, False]
    by_row = dict(zip(decoded.rows.tolist(), decoded.digests, strict=True))
    assert by_row[0].tobytes().hex() == text[0] and by_row[1].tobytes().hex() == text[1]


def test_key_never_shows_in_repr_and_fingerprints_differ() -> None:
    key = Key(SECRET)
    assert SECRET not in repr(key) and SECRET not in str(key)
    assert key.fingerprint != Key(SECRET + "x").fingerprint and len(key.fingerprint) == 16


def test_long_keys_are_hashed_first_as_hmac_does() -> None:
    secret = b"k" * 100
    digest = hash_numbers(np.array([9434765919]), Key(secret), workers=1)[0].tobytes()
    assert digest == hmac.digest(secret, b"9434765919", "sha256")


def test_parse_refuses_a_key_in_the_spec_and_needs_exactly_one_source() -> None:
    assert Pseudonymisation.parse({"key_env": "OPTOUT_KEY"}).key_env == "OPTOUT_KEY"
    assert Pseudonymisation.parse({"scheme": "HMAC-SHA256", "key_conn": "pseudo"}).key_conn == "pseudo"
    with pytest.raises(InputError, match=r"'tables\[0\].pseudonymised.key'.*never goes in the spec"):
        Pseudonymisation.parse({"key": "oops"}, field="tables[0].pseudonymised")
    with pytest.raises(InputError, match="exactly one"):
        Pseudonymisation.parse({"key_env": "A", "key_conn": "b"})
    with pytest.raises(InputError, match="exactly one"):
        Pseudonymisation.parse({})
    with pytest.raises(InputError, match="unknown scheme"):
        Pseudonymisation.parse({"scheme": "md5", "key_env": "A"})
    with pytest.raises(InputError, match="expected a mapping"):
        Pseudonymisation.parse("hmac-sha256")


def test_load_key_from_env_or_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTOUT_TEST_KEY", SECRET)
    assert load_key(Pseudonymisation(key_env="OPTOUT_TEST_KEY")).fingerprint == Key(SECRET).fingerprint
    monkeypatch.delenv("OPTOUT_TEST_KEY")
    with pytest.raises(PseudonymKeyError, match="OPTOUT_TEST_KEY") as raised:
        load_key(Pseudonymisation(key_env="OPTOUT_TEST_KEY"))
    assert raised.value.exit_code == 2
    conn = Pseudonymisation(key_conn="pseudo_key")
    with pytest.raises(PseudonymKeyError, match="only Airflow can read"):
        load_key(conn)
    assert load_key(conn, connection_secret=lambda conn_id: SECRET).fingerprint == Key(SECRET).fingerprint


def test_codes_give_the_same_reasons_as_plain_numbers() -> None:
    cohort = valid_numbers(10)
    cleared = cohort[:7]
    outsider = valid_numbers(1, start=8_000_000_000)[0]
    check = CheckResult(SimpleNamespace(id=1), cohort, cleared)  # type: ignore[arg-type]
    key = Key(SECRET)
    values = [reference_hex(int(cohort[0])), reference_hex(int(cohort[8])), reference_hex(int(outsider)), None, "abc"]
    codes = PseudonymClearance(check, key).codes(pa.array(values))
    assert codes.tolist() == [
        KEEP,
        Reason.OPTED_OUT.code,
        Reason.UNCHECKED.code,
        Reason.MISSING.code,
        Reason.MALFORMED.code,
    ]


def test_wrong_key_stops_with_a_message_naming_the_source_not_the_key() -> None:
    config = Pseudonymisation(key_env="OPTOUT_TEST_KEY")
    check_matches({"opted_out": 5, "unchecked": 40}, table="events", config=config, kept=60)
    with pytest.raises(PseudonymKeyError) as raised:
        check_matches({"unchecked": 98, "missing": 500}, table="events", config=config, kept=2)
    message = str(raised.value)
    assert "OPTOUT_TEST_KEY" in message and "2 of 100" in message and SECRET not in message
    check_matches({"missing": 10}, table="empty", config=config, kept=0)  # nothing to judge by


def test_wrong_key_turns_everyone_unchecked() -> None:
    cohort = valid_numbers(50)
    check = CheckResult(SimpleNamespace(id=2), cohort, cohort)  # type: ignore[arg-type]
    values = hex_digests(hash_numbers(cohort, Key("another key")))
    codes = PseudonymClearance(check, Key(SECRET)).codes(values)
    assert (codes == Reason.UNCHECKED.code).all()


def test_the_hashed_cohort_is_kept_on_disk_for_the_next_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """A second process (here: an emptied in-memory cache) reads the hashed cohort instead of hashing again;
    another cleared set or another key never reads it, and only the newest file is kept."""
    from optout import pseudonym, pseudonym_cache
    from optout.config import data_dir

    cohort = valid_numbers(50)
    check = CheckResult(SimpleNamespace(id=1), cohort, cohort[:40])  # type: ignore[arg-type]
    first = pseudonym.hashed_cohort(check, Key(SECRET))
    pseudonym._CACHE.clear()
    monkeypatch.setattr(pseudonym, "hash_numbers", None)  # hashing again would fail
    again = pseudonym.hashed_cohort(check, Key(SECRET))
    assert (again.digests == first.digests).all() and (again.cleared == first.cleared).all()
    monkeypatch.undo()
    other = CheckResult(SimpleNamespace(id=1), cohort, cohort[:30])  # type: ignore[arg-type]
    assert pseudonym_cache.name_of(other, Key(SECRET).fingerprint) != pseudonym_cache.name_of(
        check, Key(SECRET).fingerprint
    )
    assert pseudonym_cache.name_of(check, Key("another key").fingerprint) != pseudonym_cache.name_of(
        check, Key(SECRET).fingerprint
    )
    pseudonym._CACHE.clear()
    assert pseudonym.hashed_cohort(other, Key(SECRET)).cleared.sum() == 30
    kept = list((data_dir() / "cache").glob("hashed-cohort-*"))
    assert len(kept) == 1 and oct(kept[0].stat().st_mode & 0o777) == "0o600"


def _cache_file() -> Path:
    from optout.config import data_dir

    (found,) = (data_dir() / "cache").glob("hashed-cohort-*")
    return found


def _rebuilt_after(damage: Callable[[Path], None]) -> bool:
    """Damage the kept hashed cohort, then ask again from a fresh process's view: was it hashed again
    (and still right)?"""
    from optout import pseudonym

    cohort = valid_numbers(60)
    check = CheckResult(SimpleNamespace(id=7), cohort, cohort[:45])  # type: ignore[arg-type]
    pseudonym._CACHE.clear()
    first = pseudonym.hashed_cohort(check, Key(SECRET))
    damage(_cache_file())
    pseudonym._CACHE.clear()
    hashed = []
    real = pseudonym.hash_numbers
    pseudonym.hash_numbers = lambda *args, **kwargs: hashed.append(1) or real(*args, **kwargs)  # type: ignore[assignment]
    try:
        again = pseudonym.hashed_cohort(check, Key(SECRET))
    finally:
        pseudonym.hash_numbers = real
    assert np.array_equal(again.digests, first.digests) and np.array_equal(again.cleared, first.cleared)
    values = [reference_hex(int(cohort[0])), reference_hex(int(cohort[50])), reference_hex(int(cohort[59]) + 1)]
    assert PseudonymClearance(check, Key(SECRET)).codes(pa.array(values)).tolist() == [
        KEEP,
        Reason.OPTED_OUT.code,
        Reason.UNCHECKED.code,
    ]
    return bool(hashed)


def _flip_a_bit(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[300] ^= 1  # inside the digests
    path.write_bytes(bytes(data))


def test_an_intact_kept_cohort_is_read_not_hashed_again() -> None:
    assert not _rebuilt_after(lambda path: None)


@pytest.mark.parametrize(
    "damage",
    [
        pytest.param(lambda path: path.write_bytes(path.read_bytes()[:-100]), id="truncated"),
        pytest.param(lambda path: path.write_bytes(b"not a zip file"), id="garbage"),
        pytest.param(_flip_a_bit, id="one bit flipped (CRC)"),
    ],
)
def test_a_damaged_kept_cohort_is_hashed_again_never_used(damage: Callable[[Path], None]) -> None:
    assert _rebuilt_after(damage)


def test_a_kept_cohort_out_of_order_is_hashed_again() -> None:
    """A whole, CRC-clean file whose digests are not in the layout's order (another release's layout, or
    written by hand) is refused by the layout check, never searched."""

    def shuffled(path: Path) -> None:
        with np.load(path) as saved:
            digests, cleared = saved["digests"], saved["cleared"]
        with path.open("wb") as handle:
            np.savez(handle, digests=digests[::-1], cleared=cleared[::-1])

    assert _rebuilt_after(shuffled)


def test_another_version_key_or_layout_never_reads_the_kept_cohort() -> None:
    from optout import pseudonym_cache

    cohort = valid_numbers(20)
    check = CheckResult(SimpleNamespace(id=1), cohort, cohort[:10])  # type: ignore[arg-type]
    name = pseudonym_cache.name_of(check, Key(SECRET).fingerprint)
    other = CheckResult(SimpleNamespace(id=1), cohort, cohort[:11])  # type: ignore[arg-type]
    assert name != pseudonym_cache.name_of(other, Key(SECRET).fingerprint)
    assert name != pseudonym_cache.name_of(check, Key("another key").fingerprint)
    old_layout = pseudonym_cache._LAYOUT
    try:
        pseudonym_cache._LAYOUT = b"layout 1"
        assert name != pseudonym_cache.name_of(check, Key(SECRET).fingerprint)
    finally:
        pseudonym_cache._LAYOUT = old_layout


def test_find_matches_whole_digests_when_first_words_collide() -> None:
    """Two people whose digests share their first 8 bytes are told apart by the other 24; a digest that
    shares only the first word with someone is not found."""
    from optout.pseudonym import HashedCohort

    rng = np.random.default_rng(5)
    digests = rng.integers(0, 256, size=(1000, 32), dtype=np.uint8)
    digests[1, :8] = digests[0, :8]  # a collision of first words
    digests[2, :8] = digests[0, :8]
    order = np.argsort(digests.view("<u8")[:, 0], kind="stable")
    cohort = HashedCohort(digests[order], np.ones(1000, dtype=bool))
    where = {bytes(row): index for index, row in enumerate(cohort.digests)}
    probe = digests.copy()
    stranger = digests[0].copy()
    stranger[31] ^= 1  # same first word as two people, differs at the end
    found = cohort.find(np.vstack([probe, stranger]))
    assert found[:1000].tolist() == [where[bytes(row)] for row in probe]
    assert found[1000] == -1
    assert (cohort.find(np.zeros((0, 32), dtype=np.uint8)) == np.zeros(0)).all()
    with pytest.raises(ValueError, match="ascending"):
        HashedCohort(digests[order][::-1], np.ones(1000, dtype=bool))


def test_codes_are_the_same_whatever_the_step_and_the_column_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    """Steps, slices, chunked and large_string columns, nulls and a few bad ids among good ones give one
    answer."""
    from optout import pseudonym

    cohort = valid_numbers(300)
    check = CheckResult(SimpleNamespace(id=3), cohort, cohort[:200])  # type: ignore[arg-type]
    text = [reference_hex(int(number)) for number in cohort]
    values = [text[i] if i % 7 else ("x" * 64 if i % 2 else None) for i in range(300)]
    values[5] = f" {text[5].upper()}  "
    expected = PseudonymClearance(check, Key(SECRET)).codes(pa.array(values))
    assert expected[5] == KEEP and expected[7] == Reason.MALFORMED.code and expected[14] == Reason.MISSING.code
    monkeypatch.setattr(pseudonym, "_STEP_ROWS", 16)
    clearance = PseudonymClearance(check, Key(SECRET))
    assert np.array_equal(clearance.codes(pa.array(values)), expected)
    assert np.array_equal(clearance.codes(pa.array(values, pa.large_string())), expected)
    assert np.array_equal(clearance.codes(pa.chunked_array([values[:100], values[100:]])), expected)
    assert np.array_equal(clearance.codes(pa.array(["pad", *values]).slice(1)), expected)
