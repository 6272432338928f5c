"""Owner-only files even under the loosest umask: the store, request files, filtered extracts, manifests,
validation results and the replies folder. (A quarantined reply kept for inspection is checked 0600 in
tests/integration/test_refresh.py, through real MESH.)"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

from rel_support import OPTOUT, cli_env, cohort_numbers, write_cohort, write_reply

from optout.ndop import read_request


def _loose(*args: str | Path, env: dict[str, str]) -> subprocess.CompletedProcess:
    """The CLI with umask 000: anything not made owner-only on purpose would be world-readable."""
    return subprocess.run(
        [OPTOUT, *map(str, args)], env=env, capture_output=True, text=True, check=False, preexec_fn=lambda: os.umask(0)
    )


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_everything_written_is_owner_only(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = cli_env(None, OPTOUT_HOME=str(home))
    cohort = cohort_numbers(200, seed=71)
    inputs = tmp_path / "in"
    write_cohort(inputs / "patients.csv", cohort)
    (inputs / "spec.yaml").write_text(
        "name: perms\npurpose: research\ntables:\n  - {name: p, path: patients.csv, nhs_number: nhs_number}\n"
    )
    request, out = tmp_path / "request.dat", tmp_path / "exports" / "extract"
    steps = [
        ("check", "request", inputs / "patients.csv", "--id-column", "nhs_number", "--out", request),
        ("check", "import", request, "REPLY"),
        ("filter", "--spec", inputs / "spec.yaml", "--out-dir", out),
        ("verify", "--spec", inputs / "spec.yaml", "--dir", out),
    ]
    for step in steps:
        if "REPLY" in step:
            step = tuple(
                write_reply(tmp_path / "reply.dat", read_request(request)[5:]) if s == "REPLY" else s for s in step
            )
        result = _loose(*step, env=env)
        assert result.returncode == 0, result.stderr
    store = home / "store.sqlite"
    assert _mode(home) == 0o700
    assert _mode(store) == 0o600
    assert all(_mode(p) == 0o600 for p in home.glob("store.sqlite-*"))  # WAL and shared memory
    assert _mode(request) == 0o600
    loose = {str(p): oct(_mode(p)) for p in [out, *out.rglob("*")] if _mode(p) & 0o077}
    assert not loose, f"readable by others: {loose}"
    # Great Expectations writes its artefacts (counts only) with default modes: the folder keeps others out.
    assert _mode(out.with_name(out.name + ".validation")) == 0o700
    assert {p.name for p in out.iterdir()} == {"patients.csv", "manifest.json"}


def test_replies_folder_and_atomic_files_are_owner_only(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from optout.atomic import write_bytes
    from optout.mesh import replies_dir

    previous = os.umask(0)
    try:
        assert _mode(replies_dir()) == 0o700
        write_bytes(tmp_path / "kept.dat", b"0000000000,\n")  # how a downloaded reply is written
        assert _mode(tmp_path / "kept.dat") == 0o600
    finally:
        os.umask(previous)
