"""NumberSet: exact membership of valid NHS numbers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from optout.lookup import NumberSet
from optout.nhs_number import check_digit_ok


def _valid(count: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    bodies = rng.integers(100_000_000, 999_999_999, count * 2)
    candidates = bodies[:, None] * 10 + np.arange(10)
    ok = check_digit_ok(candidates.ravel()).reshape(candidates.shape)
    has = ok.any(axis=1)
    return np.unique(candidates[has, ok[has].argmax(axis=1)])[:count]


def test_members_and_strangers() -> None:
    numbers = _valid(1000)
    inside, outside = numbers[:500], numbers[500:]
    found = NumberSet(inside)
    assert len(found) == 500
    assert found.contains(inside).all()
    assert not found.contains(outside).any()


def test_wrong_check_digit_with_a_member_prefix_is_not_a_member() -> None:
    numbers = _valid(10)
    found = NumberSet(numbers)
    near = numbers - numbers % 10 + (numbers % 10 + 1) % 10
    assert not found.contains(near).any()
    assert found.contains(near, known_valid=True).all()  # caller's promise: only valid numbers asked


def test_out_of_range_values_are_not_members() -> None:
    found = NumberSet(_valid(5))
    assert not found.contains(np.array([-1, 0, 10**11, 2**62])).any()


def test_refuses_invalid_members() -> None:
    with pytest.raises(ValueError, match="valid NHS numbers only"):
        NumberSet(np.array([9434765918]))


@given(st.lists(st.integers(0, 999), unique=True, max_size=50))
def test_matches_python_set(picks: list[int]) -> None:
    pool = _valid(1000, seed=1)
    chosen = pool[picks]
    found = NumberSet(chosen)
    assert found.contains(pool).tolist() == [n in set(chosen.tolist()) for n in pool.tolist()]


def test_built_step_by_step_as_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """A long list is set a step at a time (no full-size temporaries); repeats across steps count once."""
    from optout import lookup

    numbers = _valid(1000, seed=2)
    whole = NumberSet(numbers)
    monkeypatch.setattr(lookup, "_BUILD_STEP", 7)
    stepped = NumberSet(np.r_[numbers[::-1], numbers[:10]])
    assert len(stepped) == len(whole) == 1000
    assert np.array_equal(stepped._bits, whole._bits)
