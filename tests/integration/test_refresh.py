"""The nightly refresh end to end: real Airflow dag.test(), real mesh-client, real mesh-sandbox, the stand-in.

The cohort comes from a real PostgreSQL table through an Airflow connection. Every test checks that no
NHS number of the cohort reached the task logs, XCom or the test's captured output.
"""

from __future__ import annotations

import json
import logging
import os
import re
import stat
import threading
from datetime import timedelta
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import sqlalchemy as sa

from optout import mesh, mesh_transport, ndop
from optout.sandbox.standin import Behaviour
from optout.store import Store

pytestmark = [pytest.mark.integration, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
DAG_FILE = ROOT / "dags" / "optout_nightly_refresh.py"
DAG_ID = "optout_nightly_refresh"
_TEN_DIGITS = re.compile(rb"(?<!\d)\d{10}(?!\d)")


def cohort_numbers(size: int, offset: int = 0) -> np.ndarray:
    candidates = np.arange(9_000_000_000 + offset, 9_000_000_000 + offset + size * 12, dtype=np.int64)
    return candidates[ndop.is_valid_number(candidates)][:size]


@pytest.fixture
def cohort_db(pg_url: str, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    """``load(numbers)`` fills a PostgreSQL table (as text, with some junk) behind connection ``cohort_db``."""
    monkeypatch.setenv("AIRFLOW_CONN_COHORT_DB", pg_url.replace("postgresql+psycopg2://", "postgresql://"))
    engine = sa.create_engine(pg_url)

    def load(numbers: np.ndarray) -> None:
        rows = [{"n": f"{n:010d}"[:3] + " " + f"{n:010d}"[3:]} for n in numbers] + [{"n": "not a number"}, {"n": None}]
        with engine.begin() as conn:
            conn.execute(sa.text("drop table if exists cohort"))
            conn.execute(sa.text("create table cohort (nhs_number text)"))
            conn.execute(sa.text("insert into cohort values (:n)"), rows)

    yield load
    engine.dispose()


@pytest.fixture(autouse=True)
def empty_inbox(request):  # type: ignore[no-untyped-def]
    """Each test starts with our sandbox mailbox empty: a test may leave messages on purpose."""
    if "mesh_sandbox" not in request.fixturenames and "mesh_connection" not in request.fixturenames:
        return
    sandbox = request.getfixturevalue("mesh_sandbox")
    with mesh_transport.connect(sandbox.settings()) as client:
        for message_id in mesh_transport.list_inbox(client, None):
            client.acknowledge_message(message_id)


@pytest.fixture
def output(capfd, caplog):  # type: ignore[no-untyped-def]
    """Everything the run printed or logged so far (task logs go to stdout under dag.test())."""
    caplog.set_level(logging.INFO)

    def read() -> str:
        captured = capfd.readouterr()
        return captured.out + captured.err + caplog.text

    return read


def run_refresh(load_dag, *, poke_interval: float = 0.3, timeout: float = 60, deferrable: bool = True, **params: Any):  # type: ignore[no-untyped-def]
    """One dag.test() of the real refresh DAG; returns the run and its task instances by task ID.

    Only the waits are shortened: the sensor pokes every ``poke_interval`` seconds, and a retry (which
    none of these tests expects) would come after one second instead of minutes.
    """
    dag = load_dag(DAG_FILE, DAG_ID)
    sensor = dag.get_task("wait_for_reply")
    sensor.poke_interval = poke_interval
    sensor.timeout = timeout
    sensor.deferrable = deferrable
    for task in dag.tasks:
        task.retry_delay = timedelta(seconds=1)
    conf = {"cohort_sql": "select nhs_number from cohort", "cohort_sql_conn_id": "cohort_db", **params}
    run = dag.test(run_conf=conf)
    return run, {ti.task_id: ti for ti in run.get_task_instances()}


def assert_no_numbers_leaked(numbers: np.ndarray, *texts: str) -> None:
    """No ten-digit run in the task logs or the given texts is one of the cohort's numbers."""
    wanted = {f"{n:010d}".encode() for n in numbers}
    blobs = [t.encode() for t in texts]
    blobs += [p.read_bytes() for p in (Path(os.environ["AIRFLOW_HOME"]) / "logs").rglob("*") if p.is_file()]
    leaked = sum(1 for blob in blobs for hit in _TEN_DIGITS.findall(blob) if hit in wanted)
    assert leaked == 0, f"{leaked} NHS number(s) of the cohort appeared in logs or output"


def xcom_text(tis: dict) -> str:  # type: ignore[type-arg]
    return json.dumps({task_id: ti.xcom_pull(task_ids=task_id) for task_id, ti in tis.items()}, default=str)


def seed_version(cohort: np.ndarray, opted_out: np.ndarray) -> int:
    """A published version made without MESH: the "previous night" a failed run must leave current."""
    store = Store()
    info = store.record_request(cohort, source="seed")
    return store.import_reply(info.id, np.setdiff1d(cohort, opted_out)).id


def states(tis: dict) -> dict[str, str]:  # type: ignore[type-arg]
    return {task_id: str(ti.state) for task_id, ti in tis.items()}


def run_refused_import(load_dag, previous: int):  # type: ignore[no-untyped-def]
    """Run the refresh, whose reply must be refused at import, once and with no retry, leaving the
    previous version current; return the task instances and the request's LocalId."""
    run, tis = run_refresh(load_dag)
    assert run.state == "failed"
    assert states(tis)["import_reply"] == "failed" and tis["import_reply"].try_number == 1
    assert Store().current().id == previous
    return tis, tis["send_request"].xcom_pull(task_ids="send_request")["local_id"]


def last_cleared_list_extra() -> dict[str, object]:
    """The extra of the newest ``optout://cleared-list`` event: the version and its counts."""
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    from optout.airflow.operators.refresh import CLEARED_LIST

    with create_session() as session:
        event = (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.uri == CLEARED_LIST.uri)
            .order_by(AssetEvent.id.desc())
            .first()
        )
        return dict(event.extra) if event is not None else {}


def cleared_list_events() -> int:
    from airflow.models.asset import AssetEvent, AssetModel
    from airflow.utils.session import create_session

    from optout.airflow.operators.refresh import CLEARED_LIST

    with create_session() as session:
        return (
            session.query(AssetEvent)
            .join(AssetModel, AssetEvent.asset_id == AssetModel.id)
            .filter(AssetModel.uri == CLEARED_LIST.uri)
            .count()
        )


def test_the_dag_is_nightly_at_one_london_time_one_run_at_a_time(load_dag):  # type: ignore[no-untyped-def]
    from airflow.sdk import Asset

    from optout.airflow.operators.refresh import CLEARED_LIST

    dag = load_dag(DAG_FILE, DAG_ID)
    assert dag.timetable.summary == "0 1 * * *"
    assert str(dag.timetable._timezone) in {"Europe/London", "Timezone('Europe/London')"}
    assert dag.catchup is False and dag.max_active_runs == 1
    assert dag.get_task("wait_for_reply").mode == "reschedule"  # the fallback without a triggerer
    assert dag.get_task("wait_for_reply").deferrable is True
    assert dag.get_task("wait_for_reply").timeout == timedelta(hours=6).total_seconds()
    assert dag.get_task("send_request").retry_exponential_backoff
    assert dag.get_task("import_reply").outlets == [CLEARED_LIST]
    assert Asset("optout://cleared-list") == CLEARED_LIST  # what extract DAGs schedule on


def test_round_trip_publishes_the_cleared_set_and_ignores_job_created(
    load_dag, mesh_sandbox, mesh_connection, cohort_db, stand_in, output
):  # type: ignore[no-untyped-def]
    cohort = cohort_numbers(500)
    opt_outs = cohort[::25]
    cohort_db(cohort)
    service = stand_in(opt_outs)
    events_before = cleared_list_events()

    run, tis = run_refresh(load_dag)

    assert run.state == "success", states(tis)
    current = Store().load()
    assert np.array_equal(current.cleared, np.setdiff1d(cohort, opt_outs))
    assert np.array_equal(current.cohort, cohort)
    assert service.answered == 1
    sent = tis["send_request"].xcom_pull(task_ids="send_request")
    assert sent["cohort_count"] == len(cohort)
    assert sent["dropped"]["malformed"] == 1 and sent["dropped"]["missing"] == 1
    assert current.info.local_id == sent["local_id"]
    assert cleared_list_events() == events_before + 1
    extra = last_cleared_list_extra()
    assert extra["version_id"] == current.info.id
    assert (extra["cohort_count"], extra["opted_out_count"]) == (len(cohort), len(opt_outs))
    # "job created" came first: it was acknowledged and never read as the list; nothing is left behind.
    with mesh_transport.connect(mesh_sandbox.settings()) as client:
        assert mesh.find_reply(client, Store(), sent["local_id"]) is None
    text = output()
    assert "'job created' notice" in text
    assert_no_numbers_leaked(cohort, text, xcom_text(tis))


def test_reply_with_crlf_line_endings_is_read(load_dag, mesh_connection, cohort_db, stand_in, output):  # type: ignore[no-untyped-def]
    cohort = cohort_numbers(300, offset=10_000)
    cohort_db(cohort)
    stand_in(cohort[:7], behaviour=Behaviour.CRLF)

    run, tis = run_refresh(load_dag)

    assert run.state == "success", states(tis)
    assert np.array_equal(Store().load().cleared, cohort[7:])
    text = output()
    assert_no_numbers_leaked(cohort, text, xcom_text(tis))


@pytest.mark.parametrize("deferrable", [True, False], ids=["deferred", "reschedule"])
def test_a_slow_reply_is_waited_for_in_the_triggerer_or_by_rescheduling(
    load_dag, mesh_connection, cohort_db, stand_in, output, deferrable
):  # type: ignore[no-untyped-def]
    cohort = cohort_numbers(200, offset=20_000 + deferrable * 5_000)
    cohort_db(cohort)
    stand_in(cohort[:3], delay=3.0)

    run, tis = run_refresh(load_dag, poke_interval=0.5, deferrable=deferrable)

    assert run.state == "success", states(tis)
    text = output()
    assert "no reply to " in text  # looked, then deferred (or rescheduled) and looked again
    if deferrable:
        assert "running trigger in line" in text, "dag.test() ran the wait in its in-line triggerer"
    assert tis["wait_for_reply"].try_number == 1
    assert np.array_equal(Store().load().cleared, cohort[3:])
    assert_no_numbers_leaked(cohort, text, xcom_text(tis))


def test_no_reply_times_out_and_the_previous_version_stays_current(
    load_dag, mesh_connection, cohort_db, stand_in, output
):  # type: ignore[no-untyped-def]
    cohort = cohort_numbers(200, offset=30_000)
    previous = seed_version(cohort, cohort[:4])
    cohort_db(cohort)
    stand_in(cohort[:4], behaviour=Behaviour.SILENT)

    run, tis = run_refresh(load_dag, poke_interval=0.5, timeout=3)

    assert run.state == "failed"
    assert states(tis) == {"send_request": "success", "wait_for_reply": "failed", "import_reply": "upstream_failed"}
    assert tis["wait_for_reply"].try_number == 1
    assert Store().current().id == previous
    text = output()
    assert_no_numbers_leaked(cohort, text, xcom_text(tis))


@pytest.mark.parametrize(
    ("behaviour", "says"),
    [(Behaviour.MALFORMED, "not a line of ten digits"), (Behaviour.UNREQUESTED, "not in the request")],
)
def test_a_bad_reply_publishes_nothing_and_is_not_retried(
    load_dag, mesh_connection, cohort_db, stand_in, output, behaviour, says
):  # type: ignore[no-untyped-def]
    cohort = cohort_numbers(300, offset=40_000)
    previous = seed_version(cohort, cohort[:6])
    cohort_db(cohort)
    stand_in(cohort[:6], behaviour=behaviour)

    tis, local_id = run_refused_import(load_dag, previous)

    assert Store().find_request(local_id=local_id).status == "pending"
    assert not any(mesh.replies_dir().iterdir()), "a rejected reply must not be kept on disk"
    text = output()
    assert says in text
    assert_no_numbers_leaked(cohort, text, xcom_text(tis))


def test_suspicious_shrink_is_quarantined_then_approved(load_dag, mesh_connection, cohort_db, stand_in, output):  # type: ignore[no-untyped-def]
    cohort = cohort_numbers(400, offset=50_000)
    previous = seed_version(cohort, cohort[:12])  # 3% opted out
    cohort_db(cohort)
    opt_outs = cohort[:120]  # 30%: a truncated or wrong reply looks like this
    stand_in(opt_outs)

    tis, local_id = run_refused_import(load_dag, previous)

    store = Store()
    quarantined = store.find_request(local_id=local_id)
    assert quarantined.status == "quarantined"
    kept = mesh.replies_dir() / f"{local_id}.dat"
    assert stat.S_IMODE(kept.stat().st_mode) == 0o600
    text = output()
    assert f"optout check approve {quarantined.id}" in text
    assert_no_numbers_leaked(cohort, text, xcom_text(tis))

    store.approve(quarantined.id)
    assert store.current().id == quarantined.id
    assert np.array_equal(store.load().cleared, np.setdiff1d(cohort, opt_outs))


def test_two_refreshes_racing_leave_one_consistent_version(mesh_sandbox, stand_in):  # type: ignore[no-untyped-def]
    first, second = cohort_numbers(300, offset=60_000), cohort_numbers(300, offset=70_000)
    opt_outs = np.concatenate([first[:9], second[:9]])
    stand_in(opt_outs)
    store = Store()
    errors: list[BaseException] = []

    def refresh(cohort: np.ndarray) -> None:
        try:
            with mesh_transport.connect(mesh_sandbox.settings()) as client:
                sent = mesh.send_request(client, store, cohort, settings=mesh_sandbox.settings())
                for _ in range(100):
                    if message_id := mesh.find_reply(client, store, sent.local_id):
                        mesh.receive_reply(client, store, sent.local_id, message_id)
                        return
                    threading.Event().wait(0.1)
                raise AssertionError("no reply")
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=refresh, args=(c,)) for c in (first, second)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert not errors, [type(e).__name__ for e in errors]
    result = store.load()
    expected = np.setdiff1d(result.cohort, opt_outs)
    assert np.array_equal(result.cleared, expected)
    assert np.array_equal(result.cohort, first) or np.array_equal(result.cohort, second)
    assert [v.status for v in store.versions()] == ["published", "published"]


@pytest.mark.parametrize("wrong", ["password", "shared_secret"])
def test_wrong_credentials_fail_once_with_a_clear_error(
    load_dag, mesh_connection, cohort_db, monkeypatch, output, wrong
):  # type: ignore[no-untyped-def]
    conn = json.loads(mesh_connection)
    if wrong == "password":
        conn["password"] = "not-the-password"
    else:
        conn["extra"]["shared_secret"] = "not-the-key"
    monkeypatch.setenv("AIRFLOW_CONN_MESH_DEFAULT", json.dumps(conn))
    cohort = cohort_numbers(100, offset=80_000)
    cohort_db(cohort)

    run, tis = run_refresh(load_dag)

    assert run.state == "failed"
    assert states(tis)["send_request"] == "failed"
    assert tis["send_request"].try_number == 1, "credentials do not get better by retrying"
    assert Store().versions() == []
    text = output()
    assert "MESH refused the handshake (HTTP 403)" in text
    assert "not-the-password" not in text and "not-the-key" not in text
    assert_no_numbers_leaked(cohort, text)


def test_hook_test_connection_reports_without_secrets(mesh_connection, monkeypatch):  # type: ignore[no-untyped-def]
    from optout.airflow.hooks.mesh import MeshHook

    assert MeshHook().test_connection()[0] is True
    conn = json.loads(mesh_connection)
    conn["password"] = "not-the-password"
    monkeypatch.setenv("AIRFLOW_CONN_MESH_DEFAULT", json.dumps(conn))
    ok, message = MeshHook().test_connection()
    assert not ok and "HTTP 403" in message and "not-the-password" not in message


def test_cohort_from_csv_files(load_dag, mesh_connection, stand_in, output, tmp_path):  # type: ignore[no-untyped-def]
    cohort = cohort_numbers(120, offset=90_000)
    halves = [tmp_path / "a.csv", tmp_path / "b.csv"]
    halves[0].write_text("nhs_number,age\n" + "".join(f"{n},40\n" for n in cohort[:70]) + "12345,1\n")
    halves[1].write_text("nhs_number,age\n" + "".join(f"{n},50\n" for n in cohort[50:]))
    stand_in(cohort[:2])

    run, tis = run_refresh(load_dag, cohort_sql=None, cohort_sql_conn_id=None, cohort_paths=[str(p) for p in halves])

    assert run.state == "success", states(tis)
    assert np.array_equal(Store().load().cleared, cohort[2:])
    assert_no_numbers_leaked(cohort, output(), xcom_text(tis))


def page_text() -> str:
    from optout.governance import overview, render

    return render(overview())


def inbox_headers(mesh_sandbox) -> list:  # type: ignore[no-untyped-def,type-arg]
    with mesh_transport.connect(mesh_sandbox.settings()) as client:
        return [mesh_transport.headers(client, message_id) for message_id in mesh_transport.list_inbox(client, None)]


@pytest.mark.parametrize(
    ("behaviour", "says"),
    [
        (Behaviour.REJECTED, "the service rejected request"),
        (Behaviour.NON_DELIVERY, "MESH reported (non_delivery) request"),
    ],
)
def test_a_rejection_or_a_mesh_report_fails_the_run_at_once_with_the_reason(
    load_dag, mesh_sandbox, mesh_connection, cohort_db, stand_in, output, behaviour, says
):  # type: ignore[no-untyped-def]
    cohort = cohort_numbers(200, offset=100_000)
    previous = seed_version(cohort, cohort[:4])
    cohort_db(cohort)
    stand_in(cohort[:4], behaviour=behaviour)

    run, tis = run_refresh(load_dag, poke_interval=0.3, timeout=30)

    assert run.state == "failed"
    assert states(tis) == {"send_request": "success", "wait_for_reply": "failed", "import_reply": "upstream_failed"}
    assert tis["wait_for_reply"].try_number == 1, "a rejection does not get better by retrying"
    local_id = tis["send_request"].xcom_pull(task_ids="send_request")["local_id"]
    failed = Store().find_request(local_id=local_id)
    assert failed.status == "failed" and says in failed.note
    if behaviour is Behaviour.REJECTED:
        assert "The file contains one or more invalid NHS Numbers." in failed.note
    else:
        assert "MESH code 14: Message not collected by recipient after 5 days" in failed.note
    assert Store().current().id == previous
    assert inbox_headers(mesh_sandbox) == [], "the status or report is acknowledged"
    assert "<td>failed</td>" in page_text()
    text = output()
    assert says in text
    assert_no_numbers_leaked(cohort, text, xcom_text(tis))


def test_a_duplicate_reply_is_acknowledged_and_never_imported_twice(
    load_dag, mesh_sandbox, mesh_connection, cohort_db, stand_in, output
):  # type: ignore[no-untyped-def]
    cohort = cohort_numbers(200, offset=110_000)
    cohort_db(cohort)
    stand_in(cohort[:5], behaviour=Behaviour.DUPLICATE)

    first, tis = run_refresh(load_dag)
    assert first.state == "success", states(tis)
    # The second copy waits in the inbox; the next run acknowledges it and imports only its own reply.
    second, tis = run_refresh(load_dag)
    assert second.state == "success", states(tis)

    versions = Store().versions()
    assert [v.status for v in versions] == ["published", "published"]
    assert all(v.cleared_count == len(cohort) - 5 for v in versions)
    left = inbox_headers(mesh_sandbox)
    assert [h.local_id for h in left] == [versions[0].local_id], "only the second run's own copy is left"
    with mesh_transport.connect(mesh_sandbox.settings()) as client:
        assert mesh.check_inbox(client, Store(), None).duplicates == [left[0].message_id]
    text = output()
    assert f"repeats the reply to {versions[1].local_id}" in text
    assert_no_numbers_leaked(cohort, text, xcom_text(tis))


def test_a_reply_with_a_local_id_nobody_sent_is_left_untouched(
    load_dag, mesh_sandbox, mesh_connection, cohort_db, stand_in, output
):  # type: ignore[no-untyped-def]
    from optout.sandbox.standin import STRANGER_LOCAL_ID

    cohort = cohort_numbers(150, offset=120_000)
    cohort_db(cohort)
    stand_in(cohort[:3], behaviour=Behaviour.UNKNOWN_LOCAL_ID)

    run, tis = run_refresh(load_dag)

    assert run.state == "success", states(tis)
    assert np.array_equal(Store().load().cleared, cohort[3:])
    assert [h.local_id for h in inbox_headers(mesh_sandbox)] == [STRANGER_LOCAL_ID]
    text = output()
    assert "other message(s) in the inbox were left untouched" in text
    assert_no_numbers_leaked(cohort, text, xcom_text(tis))


def test_a_late_reply_is_imported_by_the_next_run_and_is_as_old_as_its_request(
    load_dag, mesh_sandbox, mesh_connection, cohort_db, stand_in, output
):  # type: ignore[no-untyped-def]
    cohort = cohort_numbers(200, offset=130_000)
    cohort_db(cohort)
    service = stand_in(cohort[:6], behaviour=Behaviour.LATE)

    late, tis = run_refresh(load_dag, poke_interval=0.5, timeout=2)
    assert late.state == "failed" and states(tis)["wait_for_reply"] == "failed"
    local_id = tis["send_request"].xcom_pull(task_ids="send_request")["local_id"]
    service.release()
    for _ in range(100):
        if any(h.local_id == local_id and h.message_type == "DATA" for h in inbox_headers(mesh_sandbox)):
            break
        threading.Event().wait(0.1)

    run, tis = run_refresh(load_dag)

    assert run.state == "success", states(tis)
    store = Store()
    first = store.find_request(local_id=local_id)
    assert first.status == "published", "the late reply was imported: its request was still the newest"
    assert first.checked_at == first.requested_at, "its age counts from its request"
    newest = store.current()
    assert newest.id != first.id and newest.status == "published"
    text = output()
    assert f"late reply to {local_id} imported" in text
    assert_no_numbers_leaked(cohort, text, xcom_text(tis))


def test_a_chunked_reply_is_reassembled(load_dag, mesh_connection, cohort_db, stand_in, output):  # type: ignore[no-untyped-def]
    cohort = cohort_numbers(20_000, offset=140_000)  # 240 kB: four 64 KiB MESH chunks
    cohort_db(cohort)
    stand_in(cohort[::50], behaviour=Behaviour.CHUNKED)

    run, tis = run_refresh(load_dag)

    assert run.state == "success", states(tis)
    assert np.array_equal(Store().load().cleared, np.setdiff1d(cohort, cohort[::50]))
    assert_no_numbers_leaked(cohort, output(), xcom_text(tis))


def test_late_replies_to_a_superseded_or_too_old_request_are_not_imported(mesh_sandbox, stand_in, monkeypatch):  # type: ignore[no-untyped-def]
    cohort = cohort_numbers(120, offset=150_000)
    service = stand_in(cohort[:2], behaviour=Behaviour.LATE)
    store, settings = Store(), mesh_sandbox.settings()
    with mesh_transport.connect(settings) as client:
        older = mesh.send_request(client, store, cohort, settings=settings)
        newer = mesh.send_request(client, store, cohort, settings=settings)
        service.release()
        for _ in range(100):
            if len(mesh.check_inbox(client, store, None).late) == 2:
                break
            threading.Event().wait(0.1)
        imported = mesh.collect_late_replies(client, store)
        assert [v.id for v in imported] == [newer.version_id]
        superseded = store.find_request(local_id=older.local_id)
        assert superseded.status == "failed" and superseded.note.startswith("superseded")

        monkeypatch.setenv("OPTOUT_MAX_AGE", "1s")
        stale = mesh.send_request(client, store, cohort, settings=settings)
        for _ in range(100):
            if mesh.check_inbox(client, store, None).late:
                break
            threading.Event().wait(0.1)
        threading.Event().wait(1.1)
        assert mesh.collect_late_replies(client, store) == []
        too_old = store.find_request(local_id=stale.local_id)
        assert too_old.status == "failed" and too_old.note.startswith("too old")
        assert mesh_transport.list_inbox(client, None) == []
