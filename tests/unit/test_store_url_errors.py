"""A store URL that cannot be opened is one line and exit 2, never a traceback, never the password."""

from __future__ import annotations

from pathlib import Path

import pytest

from optout.cli import main

SECRET = "s3cret-pw"


@pytest.mark.parametrize(
    "url",
    [
        "not a url",
        f"nodialect://u:{SECRET}@h/x",
        f"postgresql+nosuchdriver://u:{SECRET}@127.0.0.1:1/x",
        f"postgresql+psycopg2://u:{SECRET}@127.0.0.1:1/x",  # nothing listens on port 1
        "sqlite:///{folder}/not-a-database.sqlite",
    ],
)
def test_store_url_errors_are_one_line(
    url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "not-a-database.sqlite").write_text("just text, not SQLite")
    monkeypatch.setenv("OPTOUT_STORE_URL", url.format(folder=tmp_path))
    assert main(["status"]) == 2
    printed = capsys.readouterr()
    assert SECRET not in printed.out + printed.err
    assert printed.err.startswith("optout: ") and printed.err.count("\n") == 1
