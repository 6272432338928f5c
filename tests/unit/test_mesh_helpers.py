"""Library helpers of the MESH refresh and the stand-in's file handling (no server needed)."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import requests

from optout import mesh_transport, ndop
from optout.errors import InputError
from optout.sandbox.standin import INVALID_FILE_REPLY, Behaviour, read_opt_outs, reply_bytes, request_numbers


def valid_numbers(count: int, start: int = 9_000_000_000) -> np.ndarray:
    candidates = np.arange(start, start + count * 12, dtype=np.int64)
    return candidates[ndop.is_valid_number(candidates)][:count]


def http_error(status: int) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    return requests.HTTPError(f"{status}", response=response)


def test_local_ids_are_unique_and_only_use_characters_the_service_accepts() -> None:
    ids = {mesh_transport.new_local_id("X26ABC1") for _ in range(200)}
    assert len(ids) == 200
    assert all(re.fullmatch(r"X26ABC1-\d{14}-[0-9a-f]{8}", i) for i in ids)


@pytest.mark.parametrize("bad", ["has space", "colon:here", "", "x" * 101])
def test_references_with_characters_the_service_drops_are_refused(bad: str) -> None:
    with pytest.raises(InputError, match="local_id"):
        mesh_transport.send_file(None, "X26HC065", b"", local_id=bad, subject="ok")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (401, mesh_transport.MeshAuthError),
        (403, mesh_transport.MeshAuthError),
        (400, mesh_transport.MeshRejectedError),
    ],
)
def test_mesh_refusals_become_our_errors(status: int, error: type[Exception]) -> None:
    with pytest.raises(error, match=f"HTTP {status}"), mesh_transport.mesh_errors("send"):
        raise http_error(status)


@pytest.mark.parametrize("status", [429, 500, 503])
def test_busy_or_down_passes_through_as_transient(status: int) -> None:
    with pytest.raises(requests.HTTPError) as caught, mesh_transport.mesh_errors("send"):
        raise http_error(status)
    assert mesh_transport.is_transient(caught.value)


def test_transient_classification() -> None:
    assert mesh_transport.is_transient(requests.ConnectionError())
    assert mesh_transport.is_transient(requests.Timeout())
    assert not mesh_transport.is_transient(http_error(403))
    assert not mesh_transport.is_transient(InputError("bad"))
    assert not mesh_transport.is_transient(ValueError())


def test_stand_in_reply_is_the_request_minus_opt_outs_in_every_variant() -> None:
    requested = valid_numbers(50)
    opt_outs = requested[::5]
    expected = np.setdiff1d(requested, opt_outs)
    assert np.array_equal(ndop.parse_reply(reply_bytes(requested, opt_outs), requested), expected)
    crlf = reply_bytes(requested, opt_outs, Behaviour.CRLF)
    assert b"\r\n" in crlf and np.array_equal(ndop.parse_reply(crlf, requested), expected)
    with pytest.raises(InputError, match="line 21"):
        ndop.parse_reply(reply_bytes(requested, opt_outs, Behaviour.MALFORMED), requested)
    with pytest.raises(InputError, match="not in the request"):
        ndop.parse_reply(reply_bytes(requested, opt_outs, Behaviour.UNREQUESTED), requested)


def test_stand_in_reads_requests_and_refuses_what_the_service_would() -> None:
    numbers = valid_numbers(10)
    assert np.array_equal(request_numbers(ndop.build_request(numbers)), numbers)
    assert request_numbers(b"123,\n") is None
    bad_check_digit = ndop.build_request(numbers)[:-3] + b"0,\n" if numbers[-1] % 10 else b"x"
    assert request_numbers(bad_check_digit) is None
    assert INVALID_FILE_REPLY.startswith(b"The file contains")


def test_opt_out_file_allows_trailing_commas_and_names_a_bad_line(tmp_path: Path) -> None:
    good = tmp_path / "opt-outs.txt"
    good.write_text("9434765919,\n\n9434765870\n")
    assert list(read_opt_outs(good)) == [9434765870, 9434765919]
    bad = tmp_path / "bad.txt"
    bad.write_text("9434765919\n94347\n")
    with pytest.raises(InputError, match="line 2"):
        read_opt_outs(bad)
