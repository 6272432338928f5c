"""What a killed writer leaves beside its output is hidden, and the next write removes it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from optout.atomic import atomic_file, remove_leftovers, staging_dir


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_next_write_removes_what_a_dead_writer_left(tmp_path: Path) -> None:
    dead, alive = _dead_pid(), os.getpid()
    out = tmp_path / "extract"
    (tmp_path / f".extract.{dead}.ab12.staging").mkdir()
    (tmp_path / f".extract.{dead}.old").mkdir()
    (tmp_path / f".extract.{alive}.cd34.staging").mkdir()  # a writer still running: left alone
    (tmp_path / f".extract.csv.{dead}.ef56.tmp").write_text("x")  # another destination's: left alone
    (tmp_path / ".extract.notapid.staging").mkdir()  # not ours: left alone
    with staging_dir(out) as staging:
        (staging / "a.csv").write_text("a\n")
    assert sorted(os.listdir(tmp_path)) == sorted(
        ["extract", f".extract.{alive}.cd34.staging", f".extract.csv.{dead}.ef56.tmp", ".extract.notapid.staging"]
    )
    with atomic_file(tmp_path / "extract.csv", "w") as handle:
        handle.write("b\n")  # type: ignore[attr-defined]
    assert not (tmp_path / f".extract.csv.{dead}.ef56.tmp").exists()
    assert remove_leftovers(out) == 0


def test_folder_is_exchanged_whole(tmp_path: Path) -> None:
    out = tmp_path / "extract"
    for content in ("old", "new"):
        with staging_dir(out) as staging:
            (staging / "table.csv").write_text(content)
            assert (out / "table.csv").read_text() == "old" if content == "new" else not out.exists()
    assert (out / "table.csv").read_text() == "new"
    assert os.listdir(tmp_path) == ["extract"]
    assert oct(out.stat().st_mode & 0o777) == "0o700"
