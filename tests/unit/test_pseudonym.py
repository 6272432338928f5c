"""Keyed-hash (pseudonymised) identifiers: hashing, parsing the spec entry, matching, wrong-key guard."""

from __future__ import annotations

import hmac
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
    digests, missing, well_formed = decode_hex(pa.array(values))
    assert missing.tolist() == [False, False, True, True, True, True, False, False]
    assert well_formed.tolist() == [True, True, False, False, False, False, False, False]
    assert digests[1].tobytes().hex() == text[1]


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
