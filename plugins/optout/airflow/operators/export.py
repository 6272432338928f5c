"""Gated export: re-check the extract at send time, send only what was proved, record the disclosure.

``GatedExportOperator`` delivers to a local (or mounted) folder. :func:`gate` puts the same check in
front of any existing export operator (SFTP, S3, SQL transfer, ...) without subclassing it: the check
runs as its pre-execute hook and the ledger entry as its post-execute hook.
"""

from __future__ import annotations

import contextlib
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from optout.airflow.hooks.store import OptOutStoreHook
from optout.airflow.operators._extract import data_path, fail_closed, filtered_dir, parse_max_age, spec_path
from optout.airflow.operators.base import Datasets, OptOutBaseOperator
from optout.airflow.operators.links import DataDocsLink, GovernancePageLink, data_docs_url, push_link
from optout.airflow.tagging import (
    GATE_MARK,
    PurposeTag,
    as_operator,
    extract_key,
    make_tag,
    parsed_spec,
    read_tag,
    spec_conflict,
    tag_task,
)
from optout.errors import InputError

if TYPE_CHECKING:
    from airflow.sdk import Context

    from optout.gate import Permit
    from optout.ledger import LedgerEntry
    from optout.lineage import Namer
    from optout.spec import ExtractSpec


class _Gate:
    """The send-time check and the ledger entry for one task; settings only, so it is cheap to build
    (the store is opened on first use, once)."""

    def __init__(self, spec: str, store: OptOutStoreHook, max_age: str | None) -> None:
        self.spec = spec
        self.hook = store
        self.max_age = max_age

    def check(self, task: Any, context: Context, files: list[str] | None = None) -> Permit:
        """Refuse (AirflowFailException, no retry) unless the extract may leave now.

        ``self.spec`` is the rendered spec: its name, purpose and legal basis must be the manifest's, and
        a basis or reference the task repeats must be the spec's.
        """
        from optout.airflow.hooks.connections import airflow_resolver
        from optout.errors import VerificationFailed
        from optout.gate import check_before_send
        from optout.spec import load_spec

        out_dir = filtered_dir(task, self.spec, context)
        tag = _tag(task)
        with fail_closed():
            self.require_flow_reviewed(task)
            spec = load_spec(spec_path(task, self.spec))
            if conflict := spec_conflict(tag, spec):
                raise VerificationFailed(f"task {task.task_id!r}: {conflict}")
            permit = check_before_send(
                out_dir,
                tag.purpose,
                files=files,
                store=self.hook.store,
                max_age=parse_max_age(self.max_age),
                connection=spec.outputs_connection,  # database tables or Spark outputs are hashed again there
                spec=spec,
                resolver=airflow_resolver(),
            )
        task.log.info("Opt-out gate passed for %s: %d file(s), hashes match the manifest", out_dir, len(permit.files))
        return permit

    def require_flow_reviewed(self, task: Any) -> None:
        """With ``[optout] block_overdue_flows``: a flow past its review date (or never reviewed) may not send."""
        from optout.governance.flows import require_reviewed
        from optout.governance.settings import block_overdue_flows

        if block_overdue_flows():
            require_reviewed(task.dag_id, task.task_id, self.hook.url)

    def still_current(self, permit: Permit) -> None:
        """After a slow copy: the list the extract was filtered with must still be current and fresh."""
        from optout.gate import require_still_current

        if permit.validation is not None:  # a filtered extract: its list must still be current
            require_still_current(permit.manifest, self.hook.store, max_age=parse_max_age(self.max_age))

    def record(self, task: Any, context: Context, permit: Permit, recipient: str) -> LedgerEntry:
        from optout.gate import record_disclosure

        with fail_closed():
            entry = record_disclosure(
                permit,
                recipient=recipient,
                dag_id=task.dag_id,
                task_id=task.task_id,
                run_id=context["run_id"],
                ledger_url=self.hook.url,
            )
        task.log.info("Recorded disclosure %s in the ledger", entry.id)
        return entry


def _tag_gated(task: Any, spec: str, purpose: str, legal_basis: str | None, reference: str | None) -> None:
    """Tag the task; an exemption's basis and reference are copied from the spec when it can be read now,
    so the UI and the register of flows show them (a conflict is the policy's to report)."""
    if legal_basis is None and reference is None:
        with contextlib.suppress(InputError):
            written = parsed_spec(extract_key(spec), getattr(task.dag, "fileloc", None) if task.dag else None)
            if written is not None and written.legal_basis is not None:
                legal_basis, reference = written.legal_basis.value, written.legal_reference
    tag_task(task, make_tag(purpose, extract=spec, legal_basis=legal_basis, reference=reference, gated=True, task=task))


def _tag(task: Any) -> PurposeTag:
    tag = read_tag(task)
    assert tag is not None, "gated tasks are tagged when they are built"
    return tag


class GatedExportOperator(OptOutBaseOperator):
    """Deliver a filtered, validated extract to a folder, only if it is still what was proved.

    Before anything is written it checks the manifest, the validation result for that manifest and the
    list version (still current, still fresh); files are copied to a hidden staging folder, re-hashed
    there against the manifest, the disclosure is recorded in the ledger, and only then is the delivery
    moved into place. Any mismatch fails the task without retries and delivers nothing.

    ``spec`` (the upstream filter's and validation's), ``store_conn_id`` (store and ledger) and
    ``max_age`` (checked at send time) are :class:`OptOutBaseOperator`'s.

    :param destination: folder of the recipient; each run delivers into ``<destination>/<extract folder>``
        (default: ``<data dir>/outbox/<extract name>``).
    :param purpose: why the data leaves (``research``, ``planning``, ``service_evaluation``, ``exempt``,
        ``direct_care``); it must be the purpose the spec names.
    :param recipient: the organisation that receives it (for the ledger and the page), not a folder path.
    :param legal_basis: optional, for ``exempt``: repeats the spec's legal basis (a different one is refused).
    :param reference: optional, for ``exempt``: repeats the spec's legal reference (a different one is refused).
    """

    template_fields: Sequence[str] = (*OptOutBaseOperator.template_fields, "destination", "recipient")
    operator_extra_links = (GovernancePageLink(), DataDocsLink())
    ui_color = "#f4cccc"

    def __init__(
        self,
        *,
        purpose: str,
        recipient: str,
        destination: str | None = None,
        legal_basis: str | None = None,
        reference: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.destination = destination
        self.recipient = check_recipient(recipient, task=self)
        _tag_gated(self, self.spec, purpose, legal_basis, reference)

    def execute(self, context: Context) -> dict[str, Any]:
        from optout.atomic import staging_dir
        from optout.gate import verify_files

        check = _Gate(self.spec, self.store_hook, self.max_age)
        permit = check.check(self, context)
        destination = Path(self.destination) if self.destination else data_path("outbox", permit.manifest.spec_name)
        target = destination / permit.out_dir.name
        self.lineage_dirs = (permit.out_dir, target)
        with fail_closed(), staging_dir(target) as staging:
            for name, source in permit.files.items():
                (staging / name).parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(source, staging / name)
            verify_files(permit.manifest, {name: staging / name for name in permit.files})
            if permit.manifest.engine == "spark":
                _copy_spark_folders(permit, staging, self.load_spec())
            check.still_current(permit)  # the copy took time
            entry = check.record(self, context, permit, self.recipient)
        if entry.disclosure.data_docs:
            push_link(context, DataDocsLink(), data_docs_url(entry.id))
        sent = len(permit.files) + len(permit.tables)
        self.log.info("Delivered %d file(s) or folder(s) to %s", sent, target)
        return {"destination": str(target), "files": sent, "ledger_entry": entry.id}

    def lineage_datasets(self, names: Namer, extract: Path, written: Path) -> Datasets:
        """The proved extract in, the delivered files out."""
        return names.outputs(extract), names.outputs(written)


def _copy_spark_folders(permit: Permit, staging: Path, spec: ExtractSpec) -> None:
    """A Spark extract's folder outputs (proved in Spark by the gate), copied part by part: each copy's bytes
    must be its source's, and the sources must still hold what the manifest hashed once the copy is done.
    A Spark table output cannot go to a folder: it stays in Spark (gate the operator that shares it)."""
    from optout.airflow.hooks.connections import airflow_resolver
    from optout.errors import VerificationFailed
    from optout.manifest import sha256_of
    from optout.proof import require_tables_unchanged

    for name in permit.tables:
        source = permit.out_dir / name
        if not source.is_dir():
            raise VerificationFailed(
                f"output {name!r} is a Spark table: it stays in Spark; put gate(...) in front of the operator "
                "that shares it"
            )
        parts = {path.relative_to(source): sha256_of(path) for path in sorted(source.rglob("*")) if path.is_file()}
        shutil.copytree(source, staging / name)
        copied = {path.relative_to(staging / name) for path in (staging / name).rglob("*") if path.is_file()}
        if copied != set(parts) or any(sha256_of(staging / name / part) != digest for part, digest in parts.items()):
            raise VerificationFailed(f"output {name!r} changed while it was copied: nothing was sent")
    require_tables_unchanged(
        permit.manifest, spec.outputs_connection, permit.tables, resolver=airflow_resolver(), out_dir=permit.out_dir
    )


def gate(
    task: Any,
    *,
    spec: str,
    purpose: str,
    recipient: str,
    sends: Sequence[str],
    legal_basis: str | None = None,
    reference: str | None = None,
    store_conn_id: str = OptOutStoreHook.default_conn_name,
    max_age: str | None = None,
) -> Any:
    """Put the opt-out gate in front of an existing export operator; returns it.

    The check runs just before the task's ``execute`` and the disclosure is recorded just after it.
    ``sends`` names the operator's template fields that hold the local path(s) it sends
    (``("local_filepath",)`` for ``SFTPOperator``); each rendered path must be a file of the validated
    extract with the validated hash. A task whose sent paths no field names (``@task``, ``PythonOperator``,
    ``BashOperator``) cannot be gated: write the files with the filter and send them with
    :class:`GatedExportOperator`.

    :param recipient: the organisation that receives it (for the ledger and the page), not a folder path.
    :param store_conn_id: the opt-out store and ledger connection, as for :class:`OptOutBaseOperator`.
    """
    operator = as_operator(task)
    fields = _sent_fields(operator, sends)
    who = check_recipient(recipient, task=operator)
    _tag_gated(operator, spec, purpose, legal_basis, reference)
    permits: dict[str, tuple[_Gate, Permit]] = {}

    def before(context: Context) -> None:
        running: Any = context["task"]
        type(running).pre_execute(running, context)  # the operator's own, which this one shadows
        check = _Gate(str(running.render_template(spec, context)), OptOutStoreHook(store_conn_id), max_age)
        files = [str(path) for name in fields for path in _paths(getattr(running, name))]
        permits[context["run_id"]] = (check, check.check(running, context, files))

    def after(context: Context, result: Any = None) -> None:
        running: Any = context["task"]
        type(running).post_execute(running, context, result)
        check, permit = permits.pop(context["run_id"])
        check.record(running, context, permit, who)

    # The public pre/post-execute methods, set on this task only: the check runs just before its execute
    # and the ledger entry just after (hooks given to the operator's constructor still run, first).
    setattr(before, GATE_MARK, True)  # what the policy looks for (a params entry is only a claim)
    operator.pre_execute = before
    operator.post_execute = after
    return task


def _sent_fields(operator: Any, sends: Sequence[str]) -> tuple[str, ...]:
    """The template fields that name what leaves; refused when there are none to name."""
    where = f"task {operator.task_id!r}"
    if hasattr(operator, "python_callable") or type(operator).__name__ == "BashOperator":
        raise InputError(
            f"{where}: the gate cannot see what code sends; write the extract with OptOutFilterOperator and "
            "send it with GatedExportOperator (or an export operator whose fields name the files it sends)"
        )
    names = (sends,) if isinstance(sends, str) else tuple(sends)
    if not names:
        raise InputError(f"{where}: gate(..., sends=(...)) must name the fields that hold the paths it sends")
    templated = set(getattr(operator, "template_fields", ()))
    if unknown := [name for name in names if name not in templated]:
        raise InputError(
            f"{where}: sends={unknown} are not template fields of {type(operator).__name__} "
            f"({', '.join(sorted(templated)) or 'none'}): name the fields that hold the paths it sends"
        )
    return names


def check_recipient(recipient: object, *, task: Any) -> str:
    """Who receives a disclosure: an organisation's name, never a folder path (the ledger shows it)."""
    text = " ".join(str(recipient or "").split())
    if len(text) < 2 or "/" in text or "\\" in text or text.startswith(("~", ".")):
        raise InputError(
            f"task {task.task_id!r}: recipient= names the organisation that receives the data "
            "(for example 'University of Leeds research team'), not a folder path"
        )
    return text


def _paths(value: Any) -> list[Any]:
    return list(value) if isinstance(value, list | tuple) else [value]
