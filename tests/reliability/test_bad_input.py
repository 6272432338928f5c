"""The hand-made corpus of nasty files (``corpus/``) through the real CLI.

Every bad file ends in exit 2 with one ``optout:`` line naming the file and the line or field, never a
traceback, and nothing recorded (the store is unchanged) or written (no output). Variants the format
allows (BOM, CRLF, no commas, duplicates, trailing blank lines, quoted newlines) are imported whole.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from rel_support import clean_error, cli_env, run_cli, store_snapshot

CORPUS = Path(__file__).resolve().parent / "corpus"
CLEARED = 9  # the corpus replies clear the first 9 of the 10 numbers in corpus/cohort.csv


@pytest.fixture
def work(tmp_path: Path) -> dict[str, Path | str | dict[str, str]]:
    """The corpus copied to ``in/``, a SQLite store, and a pending request for corpus/cohort.csv."""
    folder = tmp_path / "in"
    shutil.copytree(CORPUS, folder)
    url = f"sqlite:///{tmp_path / 'store.sqlite'}"
    env = cli_env(url)
    request = tmp_path / "request.dat"
    result = run_cli("check", "request", folder / "cohort.csv", "--id-column", "nhs_number", "--out", request, env=env)
    assert result.returncode == 0, result.stderr
    return {"in": folder, "url": url, "env": env, "request": request, "tmp": tmp_path}


REPLY_ERRORS = [
    ("reply_truncated.dat", "line 9"),
    ("reply_binary.dat", "line 1"),
    ("reply_blank_middle.dat", "line 5"),
    ("reply_not_requested.dat", "line 6"),
    ("reply_bad_check_digit.dat", "line 3"),
    ("reply_job_created.dat", "job created"),
    ("reply_utf16.dat", "line 1"),
    ("reply_spaced.dat", "line 4"),
    ("reply_header.dat", "line 1"),
    ("reply_nul_padded.dat", "line 10"),
    ("reply_eleven_digits.dat", "line 2"),
]


@pytest.mark.parametrize(("name", "where"), REPLY_ERRORS)
def test_bad_reply_is_refused_and_nothing_recorded(work, name: str, where: str) -> None:  # type: ignore[no-untyped-def]
    before = store_snapshot(work["url"])
    reply = work["in"] / name
    result = run_cli("check", "import", work["request"], reply, env=work["env"])
    clean_error(result, 2, f"file {reply}", where)
    assert store_snapshot(work["url"]) == before


@pytest.mark.parametrize(
    "name", ["reply_bom_crlf.dat", "reply_no_commas.dat", "reply_duplicates.dat", "reply_blank_end.dat"]
)
def test_reply_variants_the_format_allows(work, name: str) -> None:  # type: ignore[no-untyped-def]
    result = run_cli("check", "import", work["request"], work["in"] / name, env=work["env"])
    assert result.returncode == 0, result.stderr
    assert f"cleared {CLEARED}" in result.stdout


COHORT_ERRORS = [
    ("cohort_ragged.csv", "line 3"),
    ("cohort_latin1.csv", "line 3"),
    ("cohort_missing_column.csv", "field 'nhs_number'"),
    ("cohort_empty.csv", "line 1"),
    ("cohort_header_only.csv", "field 'nhs_number'"),
    ("cohort_unclosed_quote.csv", "line 2"),
    ("cohort_utf16.csv", "line 1"),
    ("cohort_duplicate_header.csv", "line 1"),
    ("cohort_dates.parquet", "field 'nhs_number'"),
    ("cohort_bools.parquet", "field 'nhs_number'"),
    ("cohort_not_parquet.parquet", "Parquet"),
]


@pytest.mark.parametrize(("name", "where"), COHORT_ERRORS)
def test_bad_cohort_is_refused_and_nothing_recorded(work, name: str, where: str) -> None:  # type: ignore[no-untyped-def]
    before = store_snapshot(work["url"])
    out = work["tmp"] / "out" / "request.dat"
    source = work["in"] / name
    result = run_cli("check", "request", source, "--id-column", "nhs_number", "--out", out, env=work["env"])
    clean_error(result, 2, f"file {source}", where)
    assert store_snapshot(work["url"]) == before
    assert not out.parent.exists()


def test_quoted_newlines_and_embedded_quotes_are_read(work) -> None:  # type: ignore[no-untyped-def]
    out = work["tmp"] / "request2.dat"
    source = work["in"] / "cohort_quoted_newlines.csv"
    result = run_cli("check", "request", source, "--id-column", "nhs_number", "--out", out, env=work["env"])
    assert result.returncode == 0, result.stderr
    assert "rows 2, valid 2" in result.stdout


SPEC_ERRORS = [
    ("spec_unknown_key.yaml", "field 'recipient'"),
    ("spec_unknown_table_key.yaml", "field 'tables[0].filter'"),
    ("spec_missing_purpose.yaml", "field 'purpose'"),
    ("spec_bad_purpose.yaml", "field 'purpose'"),
    ("spec_exempt_no_basis.yaml", "legal_basis"),
    ("spec_dotdot_name.yaml", "field 'tables[0].name'"),
    ("spec_absolute_name.yaml", "field 'tables[0].name'"),
    ("spec_dotdot_output.yaml", "field 'tables[0].output'"),
    ("spec_absolute_output.yaml", "field 'tables[0].output'"),
    ("spec_anchor_bomb.yaml", "line 3"),
    ("spec_not_yaml.yaml", "line"),
    ("spec_list.yaml", "mapping"),
    ("spec_no_columns.yaml", "field 'tables[0]'"),
    ("spec_no_tables.yaml", "field 'tables'"),
    ("spec_bad_extension.yaml", "field 'tables[0].path'"),
    ("spec_missing_file.yaml", "not found"),
    ("spec_missing_column.yaml", "field 'nhs'"),
    ("spec_number_is_date.yaml", "field 'nhs_number'"),
    ("spec_ragged_input.yaml", "line 3"),
    ("spec_latin1_input.yaml", "line 3"),
    ("spec_binary.yaml", "UTF-8"),
]


@pytest.fixture
def published(work):  # type: ignore[no-untyped-def]
    result = run_cli("check", "import", work["request"], work["in"] / "reply_no_commas.dat", env=work["env"])
    assert result.returncode == 0, result.stderr
    return work


@pytest.mark.parametrize(("name", "where"), SPEC_ERRORS)
def test_bad_spec_is_refused_and_nothing_written(published, name: str, where: str) -> None:  # type: ignore[no-untyped-def]
    out = published["tmp"] / "exports" / "extract"
    before = store_snapshot(published["url"])
    result = run_cli("filter", "--spec", published["in"] / name, "--out-dir", out, env=published["env"])
    clean_error(result, 2, "file ", where)
    assert not out.parent.exists() or os.listdir(out.parent) == []
    assert store_snapshot(published["url"]) == before


@pytest.mark.parametrize("inside", [".", "..", "../..", "filtered"])
def test_output_overlapping_an_input_folder_is_refused(published, inside: str) -> None:  # type: ignore[no-untyped-def]
    """Replacing the inputs, holding them, or lying inside their folder (where a later run could take it for
    input) are all refused."""
    spec = published["in"] / "spec_good.yaml"
    out = published["in"] / inside
    listing = sorted(os.listdir(published["in"]))
    result = run_cli("filter", "--spec", spec, "--out-dir", out, env=published["env"])
    clean_error(result, 2, f"file {spec}", "overlaps the input folder")
    assert sorted(os.listdir(published["in"])) == listing  # inputs untouched, nothing added


# A reply larger than memory should allow: 2 GiB on disk, sparse after the first 16 MiB of lines.
BIG = 2 << 30


def test_two_gigabyte_reply_is_streamed(work) -> None:  # type: ignore[no-untyped-def]
    """Its first block is good lines and the rest zeros: refused at the first zero line, in little memory."""
    lines = (work["in"] / "reply_no_commas.dat").read_bytes()
    reply = work["tmp"] / "huge.dat"
    with reply.open("wb") as handle:
        copies = (16 << 20) // len(lines)
        handle.write(lines * copies)
        handle.truncate(BIG)
    assert reply.stat().st_size == BIG and reply.stat().st_blocks * 512 < 64 << 20  # sparse: cheap to make
    result = subprocess.run(
        [sys.executable, "-c", _CLI_PEAK, "check", "import", str(work["request"]), str(reply)],
        env=work["env"],
        capture_output=True,
        text=True,
        check=False,
    )
    *_, peak = result.stdout.split()
    clean_error(
        subprocess.CompletedProcess([], result.returncode, "", result.stderr), 2, f"line {copies * CLEARED + 1}"
    )
    assert int(peak) < 300, f"peak RSS {peak} MiB"


# Peak memory is read from VmHWM, which starts afresh at exec: a child's ru_maxrss starts at what its parent
# (this test process, large late in a run) held when it forked.
_PEAK = "next(int(line.split()[1]) // 1024 for line in open('/proc/self/status') if line.startswith('VmHWM:'))"
_CLI_PEAK = f"""
import sys
from optout.cli import main
code = main(sys.argv[1:])
print({_PEAK})
sys.exit(code)
"""


_STREAM_CHILD = """
import sys
import numpy as np
from optout.ndop import parse_reply, read_request

class Lines:
    '''A reply of SIZE bytes made of the requested numbers again and again, never held whole.'''
    def __init__(self, line_block, size):
        self.block, self.left = line_block, size
    def read(self, n=-1):
        n = self.left if n < 0 else min(n, self.left)
        whole = self.block * (n // len(self.block))
        self.left -= len(whole)
        return whole

requested = read_request(sys.argv[1])
block = open(sys.argv[1], "rb").read()
cleared = parse_reply(Lines(block, int(sys.argv[2])), requested, name="stream")
assert np.array_equal(cleared, requested)
print(PEAK)
""".replace("PEAK", _PEAK)


def test_reply_stream_is_parsed_in_bounded_memory(work) -> None:  # type: ignore[no-untyped-def]
    """A long reply that repeats numbers (allowed) is parsed whole without holding it: memory stays flat."""
    size = int(os.environ.get("OPTOUT_STREAM_REPLY_BYTES", str(512 << 20)))
    result = subprocess.run(
        [sys.executable, "-c", _STREAM_CHILD, str(work["request"]), str(size)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert int(result.stdout) < 250, f"peak RSS {result.stdout.strip()} MiB for a {size >> 20} MiB reply"
