"""When a reply looks wrong: the statistics that decide whether a new opted-out share is held back.

A reply is *held* (quarantined for a governance officer) when its opted-out share is implausible on its
own, or moved against the last published version by more than chance and cohort churn explain. Both
tests scale with the cohort: in a 50-person cohort four opt-outs are 8 % and mean nothing, while in a
5,000,000-person cohort a one-point rise is 50,000 people and means the reply is broken (or the world
changed, which a person should confirm).

- **Too high on its own**: the Wilson score lower bound of the share (at ``z``) is above ``max_share``
  (25 %; nationally about 5-6 % of people opt out). An empty or truncated reply looks like this.
- **Moved too far**: a two-proportion z-test of the new share against the last published one gives
  ``|z|`` above ``z`` *and* the shares differ by more than ``floor`` (absolute). The floor keeps a huge
  cohort's ordinary nightly drift (a few hundredths of a point is still "significant" at 5 M) from
  holding every reply; the test keeps a small cohort's noise from doing so.

Settings (environment, with their defaults): ``OPTOUT_QUARANTINE_Z`` = 4.0 (about 1 in 16,000 by chance),
``OPTOUT_QUARANTINE_FLOOR`` = 0.005 (half a percentage point), ``OPTOUT_QUARANTINE_MAX_SHARE`` = 0.25.
The reason a reply was held is returned as one sentence (counts and shares only) for the version's record.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass

from optout.errors import InputError

DEFAULT_Z = 4.0
DEFAULT_FLOOR = 0.005
DEFAULT_MAX_SHARE = 0.25


@dataclass(frozen=True)
class Thresholds:
    """How sure the tests must be before a reply is held, and the absolute floor of a change."""

    z: float = DEFAULT_Z
    floor: float = DEFAULT_FLOOR
    max_share: float = DEFAULT_MAX_SHARE

    def __post_init__(self) -> None:
        if not self.z > 0:
            raise InputError("the quarantine z must be above zero", field="OPTOUT_QUARANTINE_Z")
        if not 0 <= self.floor <= 1:
            raise InputError("the quarantine floor is a share between 0 and 1", field="OPTOUT_QUARANTINE_FLOOR")
        if not 0 < self.max_share <= 1:
            raise InputError("the largest share is between 0 and 1", field="OPTOUT_QUARANTINE_MAX_SHARE")

    @classmethod
    def from_env(cls) -> Thresholds:
        """The settings ``OPTOUT_QUARANTINE_Z``, ``_FLOOR`` and ``_MAX_SHARE``, else the defaults."""
        return cls(
            z=_number("OPTOUT_QUARANTINE_Z", DEFAULT_Z),
            floor=_number("OPTOUT_QUARANTINE_FLOOR", DEFAULT_FLOOR),
            max_share=_number("OPTOUT_QUARANTINE_MAX_SHARE", DEFAULT_MAX_SHARE),
        )


@dataclass(frozen=True)
class Share:
    """Opted-out people out of a cohort."""

    opted_out: int
    cohort: int

    @property
    def value(self) -> float:
        return self.opted_out / self.cohort if self.cohort else 0.0


def wilson_lower(share: Share, z: float) -> float:
    """The Wilson score interval's lower bound: the smallest share the counts make plausible."""
    n = share.cohort
    if not n:
        return 0.0
    p = share.value
    centre = p + z * z / (2 * n)
    spread = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, (centre - spread) / (1 + z * z / n))


def two_proportion_z(new: Share, old: Share) -> float:
    """The pooled two-proportion z statistic of ``new`` against ``old`` (0 when it cannot be computed)."""
    if not new.cohort or not old.cohort:
        return 0.0
    pooled = (new.opted_out + old.opted_out) / (new.cohort + old.cohort)
    variance = pooled * (1 - pooled) * (1 / new.cohort + 1 / old.cohort)
    if variance <= 0:
        return 0.0 if new.value == old.value else math.copysign(math.inf, new.value - old.value)
    return (new.value - old.value) / math.sqrt(variance)


def hold_reason(
    new: Share, previous: Share | None, thresholds: Thresholds, *, previous_version: int | None = None
) -> str | None:
    """Why the reply must be held, or None when it may be published."""
    lower = wilson_lower(new, thresholds.z)
    if lower > thresholds.max_share:
        return (
            f"opted-out share {new.value:.2%} ({new.opted_out:,} of {new.cohort:,}) is at least {lower:.2%} "
            f"allowing for chance, above the {thresholds.max_share:.2%} any real reply shows (an empty or "
            "truncated reply looks like this)"
        )
    if previous is None:
        return None
    change = new.value - previous.value
    z = two_proportion_z(new, previous)
    if abs(z) > thresholds.z and abs(change) > thresholds.floor:
        against = f"version {previous_version}" if previous_version is not None else "the last published version"
        return (
            f"opted-out share {new.value:.2%} ({new.opted_out:,} of {new.cohort:,}) against {previous.value:.2%} "
            f"({previous.opted_out:,} of {previous.cohort:,}) in {against}: a change of {abs(change) * 100:.2f} "
            f"points, above the {thresholds.floor * 100:.2f}-point floor, and z = {abs(z):.1f}, above "
            f"{thresholds.z:g} (more than chance explains for cohorts of these sizes)"
        )
    return None


def _number(name: str, default: float) -> float:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        return float(text)
    except ValueError:
        raise InputError(f"{name} must be a number", field=name) from None


# Never holds a reply: for fixtures and tests that build versions by hand, never for a real refresh.
ANY_SHARE = Thresholds(floor=1.0, max_share=1.0)
