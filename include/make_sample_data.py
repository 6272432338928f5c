"""Write the small synthetic extract the example DAGs use (``include/sample/``).

Every NHS number is in the 999 test range and, unless it is one of the deliberate mistakes, passes
modulus 11: no real person's number can appear. Run ``python include/make_sample_data.py`` to rebuild;
the output is committed and deterministic.
"""

from __future__ import annotations

import csv
import random
from pathlib import Path

from optout.nhs_number import synthetic

SAMPLE = Path(__file__).resolve().parent / "sample"
PEOPLE = 40
OPTED_OUT = 6  # sent to the check, not returned: removed from secondary-use extracts
UNCHECKED = 2  # valid but never sent to the check: removed too
CONDITIONS = ("asthma", "diabetes", "copd", "hypertension", "ckd")


def main() -> None:
    rng = random.Random(20260401)
    numbers = [str(n) for n in synthetic(PEOPLE, start=999_000_000)]
    cohort = numbers[: PEOPLE - UNCHECKED]
    opted_out = sorted(rng.sample(cohort, OPTED_OUT))
    shown = list(numbers)
    shown[3] = f"{shown[3][:3]} {shown[3][3:6]} {shown[3][6:]}"  # spaced, as typed in a GP system: still valid
    patients = [
        {"person_id": f"P{index:03d}", "nhs_number": number, "age_band": rng.choice(("18-39", "40-64", "65+"))}
        for index, number in enumerate(shown, start=1)
    ]
    patients.append({"person_id": "P900", "nhs_number": "", "age_band": "40-64"})  # missing
    patients.append({"person_id": "P901", "nhs_number": "9990000001", "age_band": "65+"})  # bad check digit
    episodes = [
        {"person_id": row["person_id"], "episode": f"E{index:04d}", "condition": rng.choice(CONDITIONS)}
        for index, row in enumerate(patients * 2, start=1)
    ]
    SAMPLE.mkdir(parents=True, exist_ok=True)
    _write(SAMPLE / "patients.csv", patients)
    _write(SAMPLE / "episodes.csv", episodes)
    _write(SAMPLE / "cohort.csv", [{"nhs_number": n} for n in cohort])
    _write(SAMPLE / "opted_out.csv", [{"nhs_number": n} for n in opted_out])


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)


if __name__ == "__main__":
    main()
