"""What the enforcement operators share: where the spec is, where the filtered extract went, and
turning library refusals into failures that are not retried."""

from __future__ import annotations

import contextlib
import re
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from airflow.sdk.exceptions import AirflowFailException

from optout.airflow.tagging import ROLE_FILTER, extract_id, on_extract, spec_file, upstream
from optout.errors import OptOutError

if TYPE_CHECKING:
    from airflow.sdk import Context

_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


@contextlib.contextmanager
def fail_closed() -> Iterator[None]:
    """A stale list, a bad spec or a failed proof will not fix itself: fail without retrying."""
    try:
        yield
    except OptOutError as exc:
        raise AirflowFailException(f"{type(exc).__name__}: {exc}") from exc


def spec_path(task: Any, spec: str) -> Path:
    """The (rendered) spec file; a relative path is taken from the DAG file's folder, wherever the task runs."""
    return spec_file(spec, getattr(task.dag, "fileloc", None) if task.dag is not None else None)


def filtered_dir(task: Any, spec: str, context: Context) -> Path:
    """The folder the upstream filter of this extract wrote in this run (from its XCom).

    The filter is found by the extract's identity (the spec's name, or a templated spec's text as
    written), so a relative and an absolute spelling, or one template in each task, agree.
    """
    with fail_closed():
        identity = extract_id(task)
    filters = on_extract(upstream(task), ROLE_FILTER, identity) if identity else []
    if not filters:
        raise AirflowFailException(f"no OptOutFilterOperator for {spec} upstream of {task.task_id!r}")
    pushed = context["ti"].xcom_pull(task_ids=filters[0].task_id)
    if not isinstance(pushed, dict) or "out_dir" not in pushed:
        raise AirflowFailException(f"filter {filters[0].task_id!r} left no extract in this run: rerun it")
    return Path(pushed["out_dir"])


def parse_max_age(text: str | None) -> timedelta | None:
    """An operator's ``max_age`` (such as ``"48h"``); None leaves the store's default."""
    from optout import config

    return config.parse_duration(text, field="max_age") if text else None


def data_path(*parts: str) -> Path:
    """A default place under the data folder, each part made safe as one folder name."""
    from optout import config

    return config.data_dir().joinpath(*(_UNSAFE.sub("_", part) for part in parts))
