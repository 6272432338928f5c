"""Why data is disclosed, and the recorded legal bases that exempt a disclosure from the opt-out.

The opt-out applies to every secondary use; direct care and recorded exemptions are not filtered.
Other secondary uses map onto these: audit and commissioning are ``planning``, a clinical trial
feasibility count is ``research``, a local evaluation of a service is ``service_evaluation``.
"""

from __future__ import annotations

from enum import StrEnum
from typing import TypeVar

from optout.errors import InputError

E = TypeVar("E", bound=StrEnum)


class Purpose(StrEnum):
    DIRECT_CARE = "direct_care"
    RESEARCH = "research"
    PLANNING = "planning"
    SERVICE_EVALUATION = "service_evaluation"
    EXEMPT = "exempt"

    @property
    def applies_opt_out(self) -> bool:
        """True for secondary uses: the extract must be filtered before it leaves."""
        return self in SECONDARY_USES


SECONDARY_USES = frozenset({Purpose.RESEARCH, Purpose.PLANNING, Purpose.SERVICE_EVALUATION})


class LegalBasis(StrEnum):
    """Exemptions from the national policy that a governance officer can record."""

    CONSENT = "consent"  # never a whole extract's: refused for purpose exempt, given per person by consented:
    LEGAL_REQUIREMENT = "legal_requirement"
    COURT_ORDER = "court_order"
    OVERRIDING_PUBLIC_INTEREST = "overriding_public_interest"
    COPI_REG3 = "copi_reg3"
    ANONYMISED = "anonymised"
    NO_NHS_NUMBER_DISPROPORTIONATE = "no_nhs_number_disproportionate"
    ONS = "ons"
    CANCER_REGISTRATION = "cancer_registration"
    CONGENITAL_ANOMALY_REGISTRATION = "congenital_anomaly_registration"  # the rare diseases register
    CAG_OPTOUT_DISAPPLIED = "cag_optout_disapplied"  # a CAG approval that set the opt-out aside: its reference
    INVOICE_VALIDATION = "invoice_validation"


def parse_purpose(value: object, *, path: str | None = None, field: str = "purpose") -> Purpose:
    """A :class:`Purpose` from text, or an :class:`InputError` that lists the accepted values."""
    return _parse(Purpose, "purpose", value, path, field)


def parse_legal_basis(value: object, *, path: str | None = None, field: str = "legal_basis") -> LegalBasis:
    """A :class:`LegalBasis` from text, or an :class:`InputError` that lists the accepted values."""
    return _parse(LegalBasis, "legal basis", value, path, field)


def _parse(kind: type[E], what: str, value: object, path: str | None, field: str) -> E:
    try:
        return kind(str(value).strip().lower())
    except ValueError:
        accepted = ", ".join(member.value for member in kind)
        raise InputError(f"unknown {what} {value!r}; use one of: {accepted}", path=path, field=field) from None


def check_exemption(
    purpose: Purpose,
    legal_basis: LegalBasis | None,
    reference: str | None,
    *,
    path: str | None = None,
) -> None:
    """An exempt disclosure must carry its legal basis and a reference (the approval's); others must carry
    none. Consent is never a whole extract's exemption: it is given person by person (``consented:``)."""
    if purpose is Purpose.EXEMPT:
        if legal_basis is None:
            raise InputError("purpose 'exempt' needs a legal_basis", path=path, field="legal_basis")
        if legal_basis is LegalBasis.CONSENT:
            raise InputError(
                "consent is given person by person, not for a whole extract: write the spec for the purpose the "
                "data is used for (research, planning, service_evaluation) and name who consented with "
                "`consented: {path: FILE, nhs_number: COLUMN}`; they are kept whatever their opt-out and everyone "
                "else is filtered",
                path=path,
                field="legal_basis",
            )
        if not (reference or "").strip():
            raise InputError(
                "purpose 'exempt' needs a legal_reference (the approval's ID)", path=path, field="legal_reference"
            )
    elif legal_basis is not None:
        raise InputError(
            f"legal_basis only applies to purpose 'exempt', not {purpose.value!r}", path=path, field="legal_basis"
        )
