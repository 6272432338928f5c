"""The Great Expectations suite over the proof's counts, run in a worker process of its own.

Importing GX takes 3-9 s here, longer than proving a few million rows. On a thread it would take the
GIL from the proof's Python; in its own process it runs on another core while the proof reads the
outputs, so ``optout verify`` costs about the longer of the two, not their sum. :func:`start` launches
the worker as a validation begins; :func:`run` hands it the frame of counts and flags (never a value,
never a person key) and the folders to write, and gets back each check's success. The worker then stays
for the process's later validations (GX imported once per process, as it was in-process).

The worker hides pyspark and SQLAlchemy from GX (a quarter of its import's CPU, 3.2 s instead of 4.3;
GX treats both as optional and the suite reads a pandas frame of a few rows). Its stdout carries the
replies only: anything GX prints goes to stderr. Fail closed: a worker that dies, or replies with
anything but a success per check, fails the validation; the next one starts a new worker.
"""

from __future__ import annotations

import atexit
import contextlib
import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import IO, Any

from optout.errors import VerificationFailed

CHECKS = ("no_uncleared_number", "no_removed_person", "manifest_reconciles", "list_fresh_and_current")
SUITE_NAME = "optout_proof"
# Values GX may list: none. SUMMARY keeps observed counts for Data Docs; every value list is switched off.
_RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 0, "include_unexpected_rows": False}
_BOOT = (
    "import sys; sys.path[:0] = [] if sys.argv[1] in sys.path else sys.argv[1:]; import optout.gx_suite as s; s.main()"
)
_HIDDEN = ("pyspark", "sqlalchemy")  # optional to GX, unused by this suite, slow to import
_SUITE = (  # (check, kind, column): "zero": the column's maximum is 0; "true": every value is True
    ("no_uncleared_number", "zero", "uncleared_number_rows"),
    ("no_uncleared_number", "true", "version_matches"),
    ("no_uncleared_number", "zero", "leaked_values"),
    ("no_uncleared_number", "zero", "unscannable_columns"),
    ("no_removed_person", "zero", "removed_person_rows"),
    ("manifest_reconciles", "zero", "rows_mismatch"),
    ("manifest_reconciles", "true", "hash_ok"),
    ("manifest_reconciles", "zero", "unexpected_files"),
    ("manifest_reconciles", "zero", "tables_mismatch"),
    ("manifest_reconciles", "zero", "schema_changed"),
    ("list_fresh_and_current", "true", "list_fresh_at_filter"),
    ("list_fresh_and_current", "true", "list_is_current"),
)


class _Worker:
    """One worker process and the lock that keeps its requests and replies in step."""

    def __init__(self) -> None:
        # -P: no current folder on the path; the folder holding this optout goes first unless the path has it
        # (Airflow adds its plugins folder at run time), so the worker runs the caller's code, not another copy.
        root = str(Path(__file__).resolve().parents[1])
        command = [sys.executable, "-P", "-c", _BOOT, root]
        env = {**os.environ}
        env.setdefault("GX_ANALYTICS_ENABLED", "False")
        self.process = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env)
        self.lock = threading.Lock()

    def ask(self, request: dict[str, Any]) -> dict[str, bool]:
        assert self.process.stdin is not None and self.process.stdout is not None
        with self.lock:
            try:
                self.process.stdin.write(json.dumps(request) + "\n")
                self.process.stdin.flush()
                line = self.process.stdout.readline()
            except OSError:
                line = ""
        try:
            outcome = json.loads(line)
        except ValueError:
            outcome = None
        if (
            not isinstance(outcome, dict)
            or sorted(outcome) != sorted(CHECKS)
            or not all(isinstance(ok, bool) for ok in outcome.values())
        ):
            self.stop()
            raise VerificationFailed(
                f"the Great Expectations suite's process failed (exit {self.process.poll()}; its error is above); "
                "the extract is not proven"
            )
        return outcome

    def stop(self) -> None:
        """End the worker. Between requests it holds nothing unwritten, and one still importing GX (a command
        that failed before proving) need not finish: it is killed rather than waited for."""
        assert self.process.stdin is not None and self.process.stdout is not None
        with contextlib.suppress(OSError):
            self.process.stdin.close()
        self.process.kill()
        self.process.wait()
        self.process.stdout.close()


_worker: _Worker | None = None
_starting = threading.Lock()


def start() -> None:
    """Start the worker, if none is running, so that GX imports while the caller proves the extract."""
    _running()


def run(rows: list[dict[str, Any]], gx_root: Path, docs_dir: Path, checkpoint_json: Path) -> dict[str, bool]:
    """Run the suite over the frame of counts in the worker; return each check's success (all its
    expectations). It writes GX's project to ``gx_root``, Data Docs to ``docs_dir`` and GX's own
    checkpoint result to ``checkpoint_json``."""
    paths = {"gx_root": str(gx_root), "docs_dir": str(docs_dir), "checkpoint_json": str(checkpoint_json)}
    rows = [{column: _plain(value) for column, value in row.items()} for row in rows]
    global _worker
    worker = _running()
    try:
        return worker.ask({"rows": rows, **paths})
    except VerificationFailed:
        with _starting:
            if _worker is worker:
                _worker = None
        raise


def _running() -> _Worker:
    global _worker
    with _starting:
        if _worker is None or _worker.process.poll() is not None:
            _worker = _Worker()
        return _worker


def _plain(value: Any) -> int | bool | str:
    """A count, flag or table name as JSON carries it (NumPy scalars become Python ones)."""
    if isinstance(value, bool | int | str):
        return value
    return value.item()  # type: ignore[no-any-return]


def _stop_worker() -> None:
    if _worker is not None:
        _worker.stop()


def _forget_worker() -> None:
    """In a forked child: the worker and its pipes are the parent's; start another when needed."""
    global _worker
    _worker = None


atexit.register(_stop_worker)
os.register_at_fork(after_in_child=_forget_worker)


def _run_suite(rows: list[dict[str, Any]], gx_root: Path, docs_dir: Path, checkpoint_json: Path) -> dict[str, bool]:
    """In the worker: run the suite over the frame of counts; return each check's success."""
    import great_expectations as gx
    import great_expectations.expectations as gxe
    import pandas as pd
    from great_expectations.data_context.types.base import ProgressBarsConfig

    from optout.atomic import write_bytes
    from optout.offline_docs import make_offline
    from optout.proof_text import DESCRIPTIONS

    context = gx.get_context(mode="file", project_root_dir=str(gx_root))
    context.variables.progress_bars = ProgressBarsConfig(globally=False)
    context.update_data_docs_site(
        "local_site",
        {
            "class_name": "SiteBuilder",
            "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(docs_dir)},
            "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
        },
    )
    batch = (
        context.data_sources.add_pandas("optout")
        .add_dataframe_asset("extract_counts")
        .add_batch_definition_whole_dataframe("per_table")
    )
    suite = context.suites.add(gx.ExpectationSuite(name=SUITE_NAME))
    for check, kind, column in _SUITE:
        meta, said = {"check": check}, DESCRIPTIONS[column]  # said: for people
        if kind == "zero":
            suite.add_expectation(
                gxe.ExpectColumnMaxToBeBetween(column=column, min_value=0, max_value=0, meta=meta, description=said)
            )
        else:
            suite.add_expectation(
                gxe.ExpectColumnValuesToBeInSet(column=column, value_set=[True], meta=meta, description=said)
            )
    definition = context.validation_definitions.add(gx.ValidationDefinition(name=SUITE_NAME, data=batch, suite=suite))
    checkpoint = context.checkpoints.add(
        gx.Checkpoint(
            name=SUITE_NAME,
            validation_definitions=[definition],
            actions=[gx.checkpoint.UpdateDataDocsAction(name="data_docs")],
            result_format=_RESULT_FORMAT,
        )
    )
    result = checkpoint.run(batch_parameters={"dataframe": pd.DataFrame(rows)})
    make_offline(docs_dir)  # no CDN, no logo from S3: the report opens without the internet
    write_bytes(checkpoint_json, json.dumps(result.describe_dict(), indent=2, default=str).encode())
    outcome = dict.fromkeys(CHECKS, True)
    for run_result in result.run_results.values():
        for checked in run_result.results:
            assert checked.expectation_config is not None
            name = checked.expectation_config.meta["check"]
            outcome[name] = outcome[name] and bool(checked.success)
    return outcome


def _serve(requests: IO[str], replies: IO[str]) -> None:
    """The worker's loop: import GX at once, then one request per line in, one outcome per line out."""
    import logging

    for name in _HIDDEN:
        sys.modules[name] = None  # type: ignore[assignment]  # "not installed", to GX's optional imports
    logging.getLogger("great_expectations").setLevel(logging.WARNING)
    import great_expectations.expectations  # noqa: F401  # the slow part, while the caller proves

    for line in requests:
        request = json.loads(line)
        paths = (Path(request["gx_root"]), Path(request["docs_dir"]), Path(request["checkpoint_json"]))
        replies.write(json.dumps(_run_suite(request["rows"], *paths)) + "\n")
        replies.flush()


def main() -> None:
    """The worker process: replies on a copy of stdout; whatever GX prints goes to stderr instead."""
    replies = os.fdopen(os.dup(sys.stdout.fileno()), "w")
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    _serve(sys.stdin, replies)
    os._exit(0)  # every file is written and closed: skip tearing down GX's thousands of modules
