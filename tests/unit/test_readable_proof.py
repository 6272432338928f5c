"""The proof, readable by people: Data Docs say in plain English what each expectation proved, open
without the internet (no http(s) reference at all), hold no unexpected values; the governance page says
each disclosure's proof in one sentence beside its Data Docs link."""

from __future__ import annotations

import html
import json
import re
from pathlib import Path

from optout.governance import overview, render
from optout.offline_docs import offline_html
from optout.proof_text import DESCRIPTIONS
from tests.unit.test_governance_page import NOW, url  # noqa: F401 - a fixture
from tests.unit.test_validation import (  # noqa: F401 - extract is a fixture
    Extract,
    assert_no_number_leaked,
    extract,
    plant_row,
    validate,
    validation_dir,
)

URL = re.compile(r"https?://", re.I)


def _pages(docs: Path) -> dict[Path, str]:
    pages = {path: path.read_text() for path in docs.rglob("*.html")}
    assert len(pages) >= 3  # index, suite, one validation result
    return pages


def test_data_docs_describe_each_check_in_plain_english_and_open_offline(extract: Extract, tmp_path: Path) -> None:  # noqa: F811
    docs = tmp_path / "docs"
    assert validate(extract, data_docs_dir=docs).ok
    pages = _pages(docs)
    assert not {path.name for path, text in pages.items() if URL.search(text)}, "a page still calls the internet"
    assert not [path.name for path, text in pages.items() if "<script" in text]
    (result,) = [text for path, text in pages.items() if "validations" in path.parts]
    shown = html.unescape(result)
    assert not [sentence for sentence in DESCRIPTIONS.values() if sentence not in shown]
    assert "<style>" in result


def test_a_failed_proof_shows_counts_never_unexpected_values(extract: Extract, tmp_path: Path) -> None:  # noqa: F811
    opted = f"{extract.opted_out[0]:010d}"
    plant_row(extract, "patients", {"nhs_number": opted, "person_id": "p15", "name": "Name p15"})
    docs = tmp_path / "docs"
    result = validate(extract, data_docs_dir=docs)
    assert not result.ok
    checkpoint = json.loads(next(validation_dir(extract.out_dir).rglob("*.json")).read_text())
    text = json.dumps(checkpoint)
    assert "uncleared_number_rows" in text  # the failed check is there, with counts only: no value listed
    assert not re.search(r'"(partial_)?unexpected_(list|index_list|rows|counts)": \[[^\]]', text)
    assert_no_number_leaked(extract, validation_dir(extract.out_dir), docs)


def test_offline_html_keeps_content_and_drops_every_external_reference() -> None:
    page = (
        '<html><head><link rel="stylesheet" href="https://cdn.example/b.css"/>'
        "<style>.x { background: url('https://s3.example/logo.png') }</style></head>"
        '<body><img src="https://s3.example/logo.png?dataContextId=1"><script src="//cdn.example/j.js"></script>'
        '<script>$(".t").bootstrapTable()</script><a href="https://gx.example/news">Subscribe</a>'
        "<table><tr><td>0 rows remain</td></tr></table></body></html>"
    )
    offline = offline_html(page)
    assert not URL.search(offline) and "//cdn" not in offline
    assert "<script" not in offline and "<img" not in offline
    assert "0 rows remain" in offline and "Subscribe" in offline and offline.count("<style>") == 2


def test_the_page_says_each_disclosures_proof_in_one_sentence(url: str) -> None:  # noqa: F811
    page = html.unescape(render(overview(url, now=NOW)))
    assert "Proved against list version" in page and "0 rows of people who opted out remain" in page
    assert "The proof failed" in page
