"""The quarantine statistics: small cohorts' noise passes, a large cohort's real jump is held."""

from __future__ import annotations

import math

import numpy as np
import pytest

from optout.errors import InputError, SuspiciousReplyError
from optout.quarantine import ANY_SHARE, Share, Thresholds, hold_reason, two_proportion_z, wilson_lower
from optout.store import Store

DEFAULTS = Thresholds()


def test_a_small_cohort_with_a_few_opt_outs_is_not_held() -> None:
    assert hold_reason(Share(4, 50), Share(2, 50), DEFAULTS) is None
    assert hold_reason(Share(4, 50), Share(0, 50), DEFAULTS) is None
    assert hold_reason(Share(4, 50), None, DEFAULTS) is None
    assert hold_reason(Share(13, 50), None, DEFAULTS) is None  # 26 %, but 50 people cannot show it is real


def test_a_national_cohort_whose_share_rises_one_point_is_held() -> None:
    reason = hold_reason(Share(300_000, 5_000_000), Share(250_000, 5_000_000), DEFAULTS, previous_version=7)
    assert reason is not None
    assert "6.00% (300,000 of 5,000,000) against 5.00%" in reason and "version 7" in reason
    assert "1.00 points" in reason and "z = " in reason


def test_a_national_cohorts_ordinary_drift_stays_under_the_floor() -> None:
    # 2,500 more opt-outs in 5 M people is "significant" (z ~ 3.5-4.5) but only 0.05 points.
    assert hold_reason(Share(252_500, 5_000_000), Share(250_000, 5_000_000), DEFAULTS) is None


def test_an_empty_or_truncated_reply_is_held_even_without_a_previous_version() -> None:
    reason = hold_reason(Share(1000, 1000), None, DEFAULTS)
    assert reason is not None and "empty or" in reason
    assert hold_reason(Share(500_000, 1_000_000), None, DEFAULTS) is not None
    assert hold_reason(Share(50, 50), None, DEFAULTS) is not None  # everyone opted out: not chance


def test_statistics() -> None:
    assert two_proportion_z(Share(90, 1000), Share(50, 1000)) == pytest.approx(3.5, abs=0.1)
    assert two_proportion_z(Share(0, 10), Share(0, 10)) == 0
    assert two_proportion_z(Share(10, 10), Share(0, 10)) > 4
    assert two_proportion_z(Share(0, 0), Share(1, 10)) == 0
    assert wilson_lower(Share(0, 100), 4) == 0
    assert 0.4 < wilson_lower(Share(50, 100), 2) < 0.5
    assert math.isclose(wilson_lower(Share(0, 0), 4), 0)


def test_thresholds_come_from_the_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPTOUT_QUARANTINE_Z", "2.5")
    monkeypatch.setenv("OPTOUT_QUARANTINE_FLOOR", "0.01")
    assert Thresholds.from_env() == Thresholds(z=2.5, floor=0.01)
    monkeypatch.setenv("OPTOUT_QUARANTINE_Z", "high")
    with pytest.raises(InputError, match="OPTOUT_QUARANTINE_Z must be a number"):
        Thresholds.from_env()
    with pytest.raises(InputError):
        Thresholds(z=0)
    assert hold_reason(Share(1, 1), None, ANY_SHARE) is None


def test_the_store_keeps_the_reason_a_reply_was_held(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from optout.nhs_number import synthetic

    store = Store(f"sqlite:///{tmp_path / 's.db'}")
    cohort = np.sort(synthetic(20_000))
    first = store.record_request(cohort)
    store.import_reply(first.id, cohort[1000:])  # 5 %
    second = store.record_request(cohort)
    with pytest.raises(SuspiciousReplyError, match="quarantined"):
        store.import_reply(second.id, cohort[2000:])  # 10 %
    held = store.find_request(local_id=second.local_id)
    assert held.status == "quarantined"
    assert "10.00% (2,000 of 20,000) against 5.00%" in held.note
