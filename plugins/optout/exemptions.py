"""Exemptions applied person by person, as a view of one check result that every check then uses.

- **Consent** (``consented:`` in a research, planning or evaluation spec): people in the consented list
  with a valid NHS number are kept whatever their opt-out; everyone else is filtered for the purpose.
  The view's cleared set holds the consented numbers too, so the filter, the proof and the leak scan
  all keep exactly those people and nobody else.
- **no_nhs_number_disproportionate**: the rows (and people) with no usable NHS number pass; every row
  with one is filtered as for research. The view says ``keeps_unusable``: a missing, malformed or bad
  check-digit number keeps its row instead of removing it.

The filter (:func:`optout.filter.run_filter`) and the validation build the view with :func:`effective`
from the same spec, so both judge every row alike. The manifest counts the rows and people each kept.
"""

from __future__ import annotations

import threading
from functools import cached_property
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from optout.errors import InputError
from optout.lookup import NumberSet
from optout.nhs_number import Status, normalise
from optout.purpose import LegalBasis
from optout.resolver import OUTSIDE_AIRFLOW, Resolver
from optout.store import CheckResult

if TYPE_CHECKING:
    from optout.spec import ConsentList, ExtractSpec

KEPT_BY_CONSENT = "kept_by_consent"
KEPT_WITHOUT_NUMBER = "kept_without_number"


class KeptTally:
    """Rows and people one filter run kept under each exemption (filled by :class:`optout.cascade.Cascade`,
    the SQL run, or counted in Spark).

    Kept by consent: rows whose own NHS number is a consented person's that the list alone would have
    removed; people are those distinct numbers. Kept without a number: rows with no usable number (or, in
    a table of keys only, a person key never seen beside one) that were kept; people are their distinct
    person keys, and each row without a key counts as one person (nothing else tells them apart).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rows = {KEPT_BY_CONSENT: 0, KEPT_WITHOUT_NUMBER: 0}
        self._numbers: list[np.ndarray] = []
        self._keys: list[pa.Array] = []
        self._keyless = 0
        self._people = {KEPT_BY_CONSENT: 0, KEPT_WITHOUT_NUMBER: 0}  # already distinct (see counted)

    def consent(self, numbers: np.ndarray) -> None:
        with self._lock:
            self._rows[KEPT_BY_CONSENT] += len(numbers)
            self._numbers.append(numbers)

    def unusable(self, rows: int, keys: pa.Array | None) -> None:
        with self._lock:
            self._rows[KEPT_WITHOUT_NUMBER] += rows
            if keys is None:
                self._keyless += rows
                return
            present = keys.drop_null()
            self._keyless += rows - len(present)
            if len(present):
                self._keys.append(present)

    def counted(self, exemption: str, rows: int, people: int) -> None:
        """Rows an exemption kept and their distinct people, counted where the data lives (the Spark engine,
        once for the whole run: no number or key comes back to be told apart)."""
        with self._lock:
            self._rows[exemption] += rows
            self._people[exemption] += people

    def counts(self, *, consent: bool, unusable: bool) -> dict[str, dict[str, int]]:
        found = {}
        if consent:
            people = len(np.unique(np.concatenate(self._numbers))) if self._numbers else 0
            people += self._people[KEPT_BY_CONSENT]
            found[KEPT_BY_CONSENT] = {"rows": self._rows[KEPT_BY_CONSENT], "people": people}
        if unusable:
            keyed = len(pc.unique(pa.concat_arrays(self._keys))) if self._keys else 0
            people = keyed + self._keyless + self._people[KEPT_WITHOUT_NUMBER]
            found[KEPT_WITHOUT_NUMBER] = {"rows": self._rows[KEPT_WITHOUT_NUMBER], "people": people}
        return found


class ExemptView(CheckResult):
    """A check result as an extract with person-by-person exemptions sees it; numbers sorted unique."""

    def __init__(
        self,
        info: Any,
        cohort: np.ndarray,
        cleared: np.ndarray,
        *,
        consent_only: np.ndarray,
        keeps_unusable: bool,
        consents: bool,
    ) -> None:
        """``consent_only``: counted as kept by consent; ``consents``: the spec names a consented list."""
        super().__init__(info, cohort, cleared)
        self.consent_only = consent_only
        self.keeps_unusable = keeps_unusable
        self.consents = consents
        self.tally = KeptTally()

    @cached_property
    def consent_set(self) -> NumberSet:
        return NumberSet(self.consent_only)


def effective(spec: ExtractSpec, check_result: Any, resolver: Resolver | None = None) -> Any:
    """``check_result`` as ``spec`` applies it: unchanged without a person-by-person exemption.

    :param resolver: reads a consented table's connection when it is a connection id (default: URLs only).
    """
    keeps_unusable = spec.legal_basis is LegalBasis.NO_NHS_NUMBER_DISPROPORTIONATE
    if check_result is None or isinstance(check_result, ExemptView):
        return check_result
    if spec.consented is None and not keeps_unusable:
        return check_result
    cohort = np.asarray(check_result.cohort, dtype=np.int64)
    cleared = np.asarray(check_result.cleared, dtype=np.int64)
    consented = read_consented(spec.consented, spec, resolver) if spec.consented is not None else np.empty(0, np.int64)
    consent_only = np.setdiff1d(consented, cleared, assume_unique=True)
    return ExemptView(
        info=check_result.info,
        cohort=np.union1d(cohort, consented),
        cleared=np.union1d(cleared, consented),
        consent_only=consent_only,
        keeps_unusable=keeps_unusable,
        consents=spec.consented is not None,
    )


def kept_counts(check_result: Any) -> dict[str, dict[str, int]]:
    """What a filter run kept under each exemption it applied (empty without one), for the manifest."""
    if not isinstance(check_result, ExemptView):
        return {}
    return check_result.tally.counts(consent=check_result.consents, unusable=check_result.keeps_unusable)


def read_consented(consent: ConsentList, spec: ExtractSpec, resolver: Resolver | None = None) -> np.ndarray:
    """The valid NHS numbers of the consented list, sorted unique; a list without any is refused (it is
    more likely the wrong column than nobody consenting)."""
    if consent.path is not None:
        from optout.homes.files.read import read_batches

        values: list[Any] = []
        for batch in read_batches(consent.path, columns=[consent.nhs_number]):
            values.extend(batch.column(0).to_pylist())
    else:
        values = _table_column(consent, resolver or OUTSIDE_AIRFLOW)
    found = normalise(values)
    numbers = np.unique(found.numbers[found.status == Status.VALID])
    if len(numbers) == 0:
        raise InputError(
            f"the consented list has no valid NHS number in column {consent.nhs_number!r}",
            path=consent.path or spec.source,
            field="consented.nhs_number",
        )
    return numbers


def _table_column(consent: ConsentList, resolver: Resolver) -> list[Any]:
    import sqlalchemy as sa

    from optout import db

    assert consent.table is not None and consent.connection is not None
    schema, _, name = consent.table.rpartition(".")
    table = sa.table(name, sa.column(consent.nhs_number), schema=schema or None)
    with db.bound(resolver.database_url(consent.connection)) as engine, db.transaction(engine, snapshot=True) as conn:
        return list(conn.execute(sa.select(table.c[consent.nhs_number])).scalars())
