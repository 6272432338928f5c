"""The inbox classifier: every kind of message, from its headers and (for a status) its JSON."""

from __future__ import annotations

import pytest

from optout.inbox import Classified, Headers, Kind, Report, classify, classify_body

OURS = {"X26ABC1-20260101010000-aaaaaaaa"}
LOCAL = next(iter(OURS))
WORKFLOW = "SPINE_NTT_UPHOLDING"


def headers(**values: str) -> Headers:
    return Headers.from_http("MSG1", {"Mex-WorkflowID": WORKFLOW, "Mex-MessageType": "DATA", **values})


def kind_of(h: Headers, body: bytes | None = None, **kw: object) -> Classified:
    message = classify(h, workflow_id=WORKFLOW, local_ids=OURS, **kw)  # type: ignore[arg-type]
    return classify_body(message, body) if body is not None else message


def test_a_reply_is_told_from_its_headers() -> None:
    message = kind_of(headers(**{"Mex-LocalID": LOCAL, "Mex-FileName": f"{LOCAL}.dat"}))
    assert (message.kind, message.local_id) == (Kind.REPLY, LOCAL)
    assert kind_of(headers(**{"Mex-LocalID": LOCAL}), b"9434765919,\n").kind is Kind.REPLY


@pytest.mark.parametrize(
    ("body", "kind"),
    [
        (b'{"status": "job created", "localId": "x"}', Kind.JOB_CREATED),
        (b'\xef\xbb\xbf {"Status": "Accepted"}', Kind.JOB_CREATED),
        (b'{"status": "rejected", "reason": "The file contains one or more invalid NHS Numbers."}', Kind.JOB_REJECTED),
        (b'{"jobStatus": "FAILED", "message": "row 1234567890 is bad"}', Kind.JOB_REJECTED),
        (b'{"status": "sleeping"}', Kind.OTHER),
        (b"{not json", Kind.OTHER),
        (b"plain words", Kind.OTHER),
    ],
)
def test_a_status_message_is_read_from_its_json(body: bytes, kind: Kind) -> None:
    status = kind_of(headers(**{"Mex-LocalID": LOCAL, "Content-Type": "application/json"}))
    assert status.kind is Kind.STATUS
    assert classify_body(status, body).kind is kind
    by_name = kind_of(headers(**{"Mex-LocalID": LOCAL, "Mex-FileName": "answer.JSON"}))
    assert by_name.kind is Kind.STATUS


def test_a_rejection_keeps_the_reason_without_any_number() -> None:
    status = kind_of(headers(**{"Mex-LocalID": LOCAL, "Content-Type": "application/json"}))
    rejected = classify_body(status, b'{"status": "rejected", "reason": "NHS number 9434765919 is invalid"}')
    assert rejected.kind is Kind.JOB_REJECTED
    assert rejected.reason == "NHS number ########## is invalid"
    assert classify_body(status, b'{"status": "error"}').reason == "status error"


def test_the_plain_text_rejection_in_place_of_a_reply() -> None:
    reply = kind_of(headers(**{"Mex-LocalID": LOCAL}))
    rejected = classify_body(reply, b"The file contains one or more invalid NHS Numbers.\n")
    assert rejected.kind is Kind.JOB_REJECTED and "invalid NHS numbers" in (rejected.reason or "")
    # An unlabelled JSON body where the reply was expected is the status it is, never the list.
    assert classify_body(reply, b'{"status": "job created"}').kind is Kind.JOB_CREATED


@pytest.mark.parametrize(
    ("code", "description", "report"),
    [
        ("14", "Message not collected by recipient after 5 days", Report.NON_DELIVERY),
        ("14", "Message was not collected as the mailbox is deactivated", Report.NON_DELIVERY),
        ("12", "Unregistered to address", Report.NON_DELIVERY),
        ("19", "Message expired", Report.EXPIRED),
        ("02", "Data file is missing or inaccessible.", Report.ERROR),
    ],
)
def test_mesh_reports(code: str, description: str, report: Report) -> None:
    values = {
        "Mex-MessageType": "REPORT",
        "Mex-StatusCode": code,
        "Mex-StatusDescription": description,
        "Mex-StatusSuccess": "ERROR",
    }
    by_local_id = kind_of(headers(**values, **{"Mex-LocalID": LOCAL}))
    assert (by_local_id.kind, by_local_id.report, by_local_id.local_id) == (Kind.REPORT, report, LOCAL)
    assert by_local_id.reason == f"MESH code {code}: {description}"
    linked = kind_of(headers(**values, **{"Mex-LinkedMsgId": "SENT1"}), sent_message_ids={"SENT1"})
    assert (linked.kind, linked.local_id) == (Kind.REPORT, None)
    assert kind_of(headers(**values, **{"Mex-LinkedMsgId": "SOMEONE-ELSES"})).kind is Kind.OTHER


def test_anything_else_is_other() -> None:
    assert kind_of(headers(**{"Mex-LocalID": "X99XX9-19990101000000-00000000"})).kind is Kind.OTHER
    assert kind_of(headers(**{"Mex-LocalID": LOCAL, "Mex-WorkflowID": "PDS_MESH"})).kind is Kind.OTHER
    assert kind_of(headers()).kind is Kind.OTHER
    assert kind_of(headers(**{"Mex-LocalID": LOCAL, "Mex-WorkflowID": "spine_ntt_upholding"})).kind is Kind.REPLY
