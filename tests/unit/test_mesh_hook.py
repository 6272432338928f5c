"""MeshHook: connection fields to library settings, explicit extras only, the connection form, no secrets shown."""

from __future__ import annotations

import json

import pytest

from optout.airflow.hooks.mesh import MeshHook
from optout.airflow.provider import MESH_EXTRAS, get_provider_info
from optout.errors import InputError


def connection(monkeypatch: pytest.MonkeyPatch, **changes: object) -> None:
    conn = {
        "conn_type": "mesh",
        "host": "https://msg.intspineservices.nhs.uk",
        "login": "OURBOX01",
        "password": "s3cret-pass",
        "extra": {
            "shared_secret": "s3cret-key",
            "service_mailbox": "X26HC065",
            "client_cert": "/etc/mesh/cert.pem",
            "client_key": "/etc/mesh/key.pem",
        },
    }
    extra = changes.pop("extra", None)
    conn.update(changes)
    if extra is not None:
        conn["extra"] = extra
    monkeypatch.setenv("AIRFLOW_CONN_MESH_DEFAULT", json.dumps(conn))


def test_settings_come_from_the_connection(monkeypatch: pytest.MonkeyPatch) -> None:
    connection(monkeypatch)
    settings = MeshHook().settings
    assert settings.url == "https://msg.intspineservices.nhs.uk"
    assert (settings.mailbox, settings.service_mailbox) == ("OURBOX01", "X26HC065")
    assert (settings.client_cert, settings.client_key) == ("/etc/mesh/cert.pem", "/etc/mesh/key.pem")
    assert settings.workflow_id == "SPINE_NTT_UPHOLDING"
    assert "s3cret" not in repr(settings)


def test_only_listed_extras_are_read_and_old_prefixed_names_work(monkeypatch: pytest.MonkeyPatch) -> None:
    connection(
        monkeypatch,
        extra={"extra__mesh__service_mailbox": "X26HC065", "workflow_id": "OTHER_FLOW", "proxies": "http://evil"},
    )
    settings = MeshHook().settings
    assert settings.service_mailbox == "X26HC065" and settings.workflow_id == "OTHER_FLOW"
    assert not hasattr(settings, "proxies")


def test_no_silent_default_for_the_service_mailbox(monkeypatch: pytest.MonkeyPatch) -> None:
    connection(monkeypatch, extra={"shared_secret": "k"})
    with pytest.raises(InputError, match="service_mailbox"):
        _ = MeshHook().settings


def test_plain_http_only_to_loopback(monkeypatch: pytest.MonkeyPatch) -> None:
    connection(monkeypatch, host="http://mesh.example.org")
    with pytest.raises(InputError, match="loopback"):
        _ = MeshHook().settings
    connection(monkeypatch, host="http://127.0.0.1:9999")
    assert MeshHook().settings.url == "http://127.0.0.1:9999"


def test_a_bare_host_becomes_https(monkeypatch: pytest.MonkeyPatch) -> None:
    connection(monkeypatch, host="mesh-sync.spineservices.nhs.uk")
    assert MeshHook().settings.url == "https://mesh-sync.spineservices.nhs.uk"


def test_cert_without_key_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    connection(monkeypatch, extra={"service_mailbox": "X26HC065", "client_cert": "/c.pem"})
    with pytest.raises(InputError, match="client_key"):
        _ = MeshHook().settings


def test_unreachable_mesh_reports_without_secrets(monkeypatch: pytest.MonkeyPatch) -> None:
    connection(monkeypatch, host="http://127.0.0.1:9")
    ok, message = MeshHook(max_retries=0).test_connection()
    assert not ok and "s3cret" not in message


def test_the_mesh_connection_type_is_registered_with_its_form() -> None:
    info = get_provider_info()
    (mesh,) = [c for c in info["connection-types"] if c["connection-type"] == "mesh"]
    assert mesh["hook-class-name"] == "optout.airflow.hooks.mesh.MeshHook"
    assert set(mesh["conn-fields"]) == set(MESH_EXTRAS)
    assert mesh["conn-fields"]["shared_secret"]["schema"]["format"] == "password"
    assert mesh["ui-field-behaviour"]["relabeling"]["host"] == "MESH URL"
    assert "get_ui_field_behaviour" not in vars(MeshHook), "the provider info declares the form"
    assert (MeshHook.conn_type, MeshHook.default_conn_name, MeshHook.conn_name_attr) == (
        "mesh",
        "mesh_default",
        "mesh_conn_id",
    )


def test_airflow_sees_the_connection_type() -> None:
    from airflow.providers_manager import ProvidersManager

    manager = ProvidersManager()
    assert manager.field_behaviours["mesh"]["relabeling"]["login"] == "Mailbox ID"
    assert "extra__mesh__service_mailbox" in manager.connection_form_widgets
    assert manager.connection_form_widgets["extra__mesh__shared_secret"].is_sensitive
