"""The proof in plain English, for people: one sentence per expectation (shown in the Data Docs, as each
GX expectation's ``description``) and one sentence per disclosure (beside its Data Docs link on the
governance page). Counts and names only: never a number or a cell.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from optout.purpose import Purpose

if TYPE_CHECKING:
    from optout.ledger import Disclosure

# One per column of the proof's frame of counts (see ``optout.validation``): what "passed" means.
DESCRIPTIONS = {
    "uncleared_number_rows": "0 rows of people who opted out, or whose number was never checked, remain",
    "version_matches": "The extract was proved against the same opt-out list version it was filtered with",
    "leaked_values": "0 NHS numbers that are not cleared appear in any scanned cell of the output",
    "unscannable_columns": "0 columns of the output could not be scanned for NHS numbers",
    "removed_person_rows": "0 rows remain of people removed from any table (by their person key)",
    "rows_mismatch": "The rows in each output are the rows the manifest says were kept",
    "hash_ok": "Each output file is byte for byte the file the manifest names (its sha256 matches)",
    "unexpected_files": "0 files are in the extract's folder that the manifest does not list",
    "tables_mismatch": "The extract holds exactly the tables its spec names",
    "schema_changed": "Each output keeps its input's columns and types",
    "list_fresh_at_filter": "The opt-out list was fresh when the extract was filtered",
    "list_is_current": "The opt-out list used is still the current one",
}


def disclosure_sentence(disclosure: Disclosure) -> str:
    """What the proof of one disclosure showed, in one sentence a governance officer can repeat."""
    if disclosure.purpose in (Purpose.DIRECT_CARE.value, Purpose.EXEMPT.value):
        return "Not filtered: the opt-out does not apply to this purpose; the files sent are the files checked."
    if not disclosure.validation_ok:
        return "The proof failed: people who may not be used could be in this extract; see the Data Docs."
    opted = disclosure.removed_rows.get("opted_out", 0)
    removed = disclosure.rows_in - disclosure.rows_out
    return (
        f"Proved against list version {disclosure.version_id}: 0 rows of people who opted out remain "
        f"({_n(opted)} opted-out rows and {_n(removed)} rows in all, of {_n(disclosure.removed_people)} people, "
        "were removed), and the files sent are the files proved."
    )


def _n(count: int) -> str:
    return f"{count:,}"
